"""The CLI reference page and the shell completion scripts, both written from the argparse parsers: every command
and flag is in them, defaults and choices come through, and the completion scripts complete in a real bash (and in
zsh and fish where they are installed)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgellm.cli import completion, reference
from edgellm.cli.introspect import commands
from edgellm.cli.main import build_parser
from edgellm.hw.builtin import builtin_names
from tests.support.shells import complete_in_bash


def every_flag(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each command's option strings, read from argparse directly (not through introspect)."""
    found = {"": [s for action in parser._actions for s in action.option_strings if action.help != argparse.SUPPRESS]}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = [s for a in sub._actions for s in a.option_strings if a.help != argparse.SUPPRESS]
    return found


def test_the_reference_names_every_command_and_flag() -> None:
    parser = build_parser()
    page = reference.render(parser)
    sections = page.split("\n## ")
    for name, flags in every_flag(parser).items():
        title = f"`edgellm {name}`" if name else "`edgellm`"
        section = next(s for s in sections if s.startswith(title + "\n"))
        for flag in flags:
            if flag not in ("-h", "--help"):
                assert f"{flag}" in section, (name, flag)


def test_the_reference_shows_the_common_flags_defaults_and_groups() -> None:
    page = reference.render(build_parser())
    run = page.split("## `edgellm run`")[1].split("\n## ")[0]
    assert "**model and sampling**" in run
    assert "- `--temp T`: sampling temperature, 0 for greedy (default: `0.8`)" in run
    assert (
        "- `-ngl, --gpu-layers, --n-gpu-layers auto|all|N`: layers on the GPU: auto, all or a count (default: `auto`)"
        in run
    )
    assert "10% of RAM" in run  # argparse's %% came out as one %
    export = page.split("## `edgellm export`")[1].split("\n## ")[0]
    assert "- `ID`: conversation id" in export


def test_introspect_reads_choices_from_the_common_flag_table() -> None:
    run = next(c for c in commands(build_parser()) if c.name == "run")
    by_dest = {a.dest: a for a in run.arguments}
    assert by_dest["kv"].choices == ("f16", "q8_0", "q4_0")
    assert by_dest["flash_attn"].choices == ("auto", "on", "off")
    assert by_dest["ignore_eos"].takes_value is False and by_dest["ctx_size"].metavar == "N"


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "edgellm.bash"
    path.write_text(completion.script("bash", build_parser()))
    return path


def test_bash_completes_commands_flags_and_choices(bash_script: Path) -> None:
    names = [c.name for c in commands(build_parser()) if c.name]
    assert complete_in_bash(bash_script, ["edgellm", ""]) == names
    assert complete_in_bash(bash_script, ["edgellm", "r"]) == ["run", "recommend", "rm"]
    assert "--ctx-size" in complete_in_bash(bash_script, ["edgellm", "run", "--c"])
    assert complete_in_bash(bash_script, ["edgellm", "run", "--kv", ""]) == ["f16", "q8_0", "q4_0"]
    assert complete_in_bash(bash_script, ["edgellm", "chat", "-fa", "o"]) == ["on", "off"]
    assert complete_in_bash(bash_script, ["edgellm", "export", "7", "--format", ""]) == ["md", "json"]
    assert complete_in_bash(bash_script, ["edgellm", "history", ""]) == ["rm"]
    assert complete_in_bash(bash_script, ["edgellm", "completion", "z"]) == ["zsh"]
    profiles = complete_in_bash(bash_script, ["edgellm", "plan", "--profile", "raspberry"])
    assert profiles == [name for name in builtin_names() if name.startswith("raspberry")]
    # after a flag whose value is free text or a number, nothing is offered (bash then completes a file name)
    assert complete_in_bash(bash_script, ["edgellm", "run", "-c", ""]) == []


def test_scripts_hold_every_command_and_flag() -> None:
    parser = build_parser()
    for shell in completion.SHELLS:
        text = completion.script(shell, parser)
        for name, flags in every_flag(parser).items():
            if name:
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (shell, name)
            for flag in flags:
                spelled = {"fish": completion._fish_flag(flag)}.get(shell, flag)
                # the whole flag, not a part of a longer one (-m inside --models)
                assert re.search(rf"(?<![\w-]){re.escape(spelled)}(?![\w-])", text), (shell, name, flag)


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_parse(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed here: only its script's content is checked (above)")
    script = tmp_path / f"edgellm.{shell}"
    script.write_text(completion.script(shell, build_parser()))
    done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_fish_completes_choices() -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed here")
    script = completion.script("fish", build_parser())
    done = subprocess.run(
        ["fish", "--no-config", "-c", script + '\ncomplete -C "edgellm run --kv "\ncomplete -C "edgellm pl"'],
        capture_output=True,
        text=True,
    )
    offered = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert offered == ["f16", "q4_0", "q8_0", "plan"], done.stderr
