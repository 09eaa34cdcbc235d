"""The commands that do not open the TUI never import Textual (nor edgellm.tui): a run, a piped chat, ls, plan, bench
and
`edgellm` alone off a terminal, each in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, sys
from edgellm.cli.main import main
code = main(json.loads(sys.argv[1]))
sys.stdout.flush()
loaded = sorted(name for name in sys.modules if name == "textual" or name.startswith(("textual.", "edgellm.tui")))
print("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}))
"""


def probe(args: list[str], stdin: str = "") -> tuple[int, str, list[str]]:
    """Run `edgellm ARGS` in a fresh Python with piped stdin and stdout; its exit code, output and the TUI
    modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], input=stdin, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    output, _, report = done.stdout.rpartition("\nPROBE ")
    result = json.loads(report)
    return result["code"], output, result["loaded"]


@pytest.mark.parametrize(
    "args, stdin, shows",
    [
        pytest.param(["run", "-m", "{model}", "-p", "hi", "-n", "2"], "", None, id="run"),
        pytest.param(
            ["chat", "--headless", "-m", "{model}", "-n", "2"], "Hi\nHow are you?\n", None, id="chat-headless"
        ),
        pytest.param(["chat", "-m", "{model}", "-n", "2"], "Hi\n", None, id="chat-piped"),
        pytest.param(["ls"], "", "no models yet", id="ls"),
        pytest.param(["embed", "-m", "{model}", "hello"], "", "[", id="embed"),
        pytest.param(["plan", "-m", "{model}"], "", "gemma-3-270m", id="plan"),
        pytest.param(["bench", "-m", "{model}", "--pp", "8", "--tg", "4", "-r", "1"], "", "tg4", id="bench"),
        pytest.param([], "", "usage: edgellm", id="no-command"),
    ],
)
def test_headless_commands_never_import_textual(
    test_model: Path, args: list[str], stdin: str, shows: str | None
) -> None:
    """The command succeeds without the TUI's modules being imported."""
    code, output, loaded = probe([arg.format(model=test_model) for arg in args], stdin)
    assert code == 0, output
    assert loaded == []
    assert output.strip()
    if shows:
        assert shows in output


def test_the_server_never_imports_textual() -> None:
    """`edgellm serve`'s modules, its app built and its flags parsed, leave Textual out (a board has no use for it)."""
    code = (
        "import sys\n"
        "from edgellm.cli.main import build_parser\n"
        "from edgellm.cli.commands import serve\n"
        "from edgellm.engine.contract import GenerationOptions\n"
        "from edgellm.server.app import create_app\n"
        "from edgellm.server.turns import ServerState\n"
        "from edgellm.server.config import ServerConfig\n"
        "from edgellm.server.launch import serve as run_server\n"
        "from edgellm.hw.detect import detect_this_machine\n"
        "from edgellm.session.flags import flags_of\n"
        "from edgellm.session.served import ServedModels\n"
        "args = build_parser().parse_args(['serve', '-m', 'x.gguf', '--port', '0'])\n"
        "models = ServedModels(flags_of(args), detect_this_machine())\n"
        "create_app(ServerState(ServerConfig(GenerationOptions()), models))\n"
        "print(sorted(n for n in sys.modules if n == 'textual' or n.startswith(('textual.', 'edgellm.tui'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
