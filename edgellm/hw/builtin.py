"""Built-in device profiles (edgellm/data/profiles/*.json), made from the recorded device fixtures.

`--profile NAME` plans for one of them; `--profile FILE` for a profile saved with `edgellm hw --json`.
Regenerate after changing a fixture or detection: `.venv/bin/python scripts/make_profiles.py`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgellm.hw.profile import DeviceProfile, ProfileError, load
from edgellm.paths import data_dir

if TYPE_CHECKING:
    from edgellm.paths import Traversable


def profiles_dir() -> Traversable:
    return data_dir() / "profiles"


def builtin_names() -> list[str]:
    return sorted(
        entry.name.removesuffix(".json") for entry in profiles_dir().iterdir() if entry.name.endswith(".json")
    )


def profile_from_recording(recording: dict[str, Any], name: str) -> DeviceProfile:
    """The profile a recorded device gives, named for the built-in list and with no disk path of its own."""
    from edgellm.hw.detect import detect
    from edgellm.hw.probes import RecordedProbe

    found = detect(RecordedProbe(recording), "~", recording.get("llama_build"))
    return replace(found, name=name, disk_path=None)


def resolve_profile(name_or_path: str) -> DeviceProfile:
    """A built-in profile by name, or a profile file; ProfileError names the choices when neither exists."""
    builtin = profiles_dir() / f"{name_or_path}.json"
    if builtin.is_file():
        return load(builtin)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return load(path)
    raise ProfileError(
        f"no device profile {name_or_path!r}: use one of {', '.join(builtin_names())} "
        f"or a file saved with `edgellm hw --json`"
    )
