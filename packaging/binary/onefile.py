"""The one-file binary: a small POSIX shell launcher (onefile.sh) followed by the one-folder build packed as tar.gz.

PyInstaller's own one-file mode unpacks everything into a new temporary folder at every start (about a second for
edgellm's 106 MiB). This one unpacks once, into a cache folder named by the version and the pack's SHA-256, and
then starts the one-folder build from there (onefile.sh says how, and what it does when it cannot).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

LAUNCHER = Path(__file__).with_name("onefile.sh")
MARKER = ".edgellm-unpacked"  # the pack's last member: a folder holding it came out whole
OFFSET_WIDTH = 10  # room kept for the offset (padded with spaces), so that writing it does not move it


def _owned_by_root(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """No builder's user in the pack: unpacked by root, every file is root's (not a user's who could change it)."""
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def pack_folder(folder: Path, version: str) -> tuple[str, bytes]:
    """The folder's files as tar.gz, in a fixed order, then the marker; and the cache key, `VERSION-SHA256PREFIX`
    of the files' tar (which the marker holds)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False, filter=_owned_by_root)
        key = f"{version}-{hashlib.sha256(raw.getbuffer()).hexdigest()[:16]}"
        marker = _owned_by_root(tarfile.TarInfo(MARKER))
        marker.size, marker.mode = len(key.encode()), 0o644
        tar.addfile(marker, io.BytesIO(key.encode()))
    return key, gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def launcher_text(version: str, key: str, offset: int) -> bytes:
    text = LAUNCHER.read_text()
    return (
        text.replace("@VERSION@", version).replace("@KEY@", key).replace("@OFFSET@", str(offset).ljust(OFFSET_WIDTH))
    ).encode()


def build(folder: Path, out: Path, version: str) -> str:
    """Write the one-file binary `out` from the one-folder build `folder` (its program is `folder/edgellm`);
    returns the cache key it unpacks under (`VERSION-SHA256PREFIX`)."""
    if not (folder / "edgellm").is_file():
        raise FileNotFoundError(f"{folder} holds no edgellm program")
    key, payload = pack_folder(folder, version)
    head = launcher_text(version, key, 0)
    head = launcher_text(version, key, len(head) + 1)  # `tail -c +N` counts from 1
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(head + payload)
    partial.chmod(0o755)
    partial.replace(out)
    return key
