#!/usr/bin/env python3
"""Write edgellm/data/profiles/NAME.json from tests/fixtures/devices/NAME.json (the built-in device profiles)."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgellm.hw.builtin import profile_from_recording  # noqa: E402

for fixture in sorted((REPO / "tests" / "fixtures" / "devices").glob("*.json")):
    profile = profile_from_recording(json.loads(fixture.read_text()), fixture.stem)
    target = REPO / "edgellm" / "data" / "profiles" / fixture.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(profile.to_json() + "\n")
    print(target.relative_to(REPO))
