"""Completion of stored models' names: the scripts ask `edgellm completion --models` as they complete, so a model
imported after the script was loaded is offered for -m and for `rm`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from edgellm.cli import completion
from edgellm.cli.main import build_parser
from tests.support import REPO
from tests.support.shells import complete_in_bash


def test_stored_models_complete_for_m_and_rm(tmp_path: Path, edgellm_home: Path, test_model: Path) -> None:
    edgellm = REPO / ".venv" / "bin" / "edgellm"
    script = tmp_path / "edgellm.bash"
    script.write_text(completion.script("bash", build_parser()))  # before the model is in the store
    imported = subprocess.run([str(edgellm), "import", str(test_model)], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    names = subprocess.run([str(edgellm), "completion", "--models"], capture_output=True, text=True)
    assert names.stdout.splitlines() == sorted(["gemma-3-270m-Q4_K_M", "local/gemma-3-270m-Q4_K_M:Q4_K_M"])
    path = os.pathsep.join([str(edgellm.parent), "/usr/bin", "/bin"])
    env_home = {"EDGELLM_HOME": os.environ["EDGELLM_HOME"]}
    offered = complete_in_bash(script, ["edgellm", "run", "-m", "gemma-3"], path=path, env=env_home)
    assert offered == ["gemma-3-270m-Q4_K_M"]
    assert complete_in_bash(script, ["edgellm", "rm", "local/"], path=path, env=env_home) == [
        "local/gemma-3-270m-Q4_K_M:Q4_K_M"
    ]
    # past the ':' (where bash splits words too), what follows it: bash replaces only that part of the word
    assert complete_in_bash(script, ["edgellm", "rm", "local/gemma-3-270m-Q4_K_M:Q"], path=path, env=env_home) == [
        "Q4_K_M"
    ]
    assert complete_in_bash(script, ["edgellm", "run", "-m", "local/gemma-3-270m-Q4_K_M:"], path=path, env=env_home)[
        :1
    ] == ["Q4_K_M"]
