"""The systemd packaging stays in step with the command line: the unit's command, with the environment file's
settings expanded as systemd expands them, is one `edgellm serve` accepts."""

from __future__ import annotations

import re
import shlex

from edgellm.cli.main import build_parser
from tests.support import REPO

SYSTEMD = REPO / "packaging" / "systemd"


def settings(lines: list[str]) -> dict[str, str]:
    values = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name] = " ".join(shlex.split(value))  # systemd's quoting: "a b" is one value
    return values


def expand(command: str, values: dict[str, str]) -> list[str]:
    """systemd's ExecStart expansion: ${VAR} is one word, $VAR splits on whitespace (none if empty)."""
    words = []
    for word in command.split():
        whole = re.fullmatch(r"\$\{(\w+)\}", word)
        split = re.fullmatch(r"\$(\w+)", word)
        if whole:
            words.append(values[whole.group(1)])
        elif split:
            words += values[split.group(1)].split()
        else:
            words.append(word)
    return words


def test_the_units_command_is_one_edgellm_serve_accepts() -> None:
    unit = (SYSTEMD / "edgellm.service").read_text().splitlines()
    defaults = settings([line.removeprefix("Environment=") for line in unit if line.startswith("Environment=")])
    env_file = settings((SYSTEMD / "edgellm.env").read_text().splitlines())
    exec_start = next(line.removeprefix("ExecStart=") for line in unit if line.startswith("ExecStart="))
    for model in ("", "-m /var/lib/edgellm/models/model.gguf", "-hf owner/repo:Q4_K_M"):
        words = expand(exec_start, {**defaults, **env_file, "EDGELLM_MODEL": model})
        assert words[:2] == ["/usr/local/bin/edgellm", "serve"]
        args = build_parser().parse_args(words[1:])  # argparse exits (a test failure) on a flag serve lacks
        assert args.host == "127.0.0.1" and args.port == 8080
    assert env_file["EDGELLM_API_KEY"] == ""  # never a shipped key
    assert "RestartPreventExitStatus=2" in unit and "User=edgellm" in unit  # a bad configuration is not retried
