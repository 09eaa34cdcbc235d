"""The headless chat as a person and a script use it: a pseudo-terminal (pexpect), a pipe, kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pexpect

from tests.support import assert_one_line_error, edgellm

PROMPT = ">>> "


def spawn_chat(model: Path, *extra: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "edgellm", "chat", "--headless", "-m", str(model), "--temp", "0", *extra],
        env=os.environ.copy(),
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 200),
    )
    child.expect("/help for commands")
    child.expect_exact(PROMPT)
    return child


def exported(conversation: int) -> dict:
    done = edgellm("export", str(conversation), "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_commands_multiline_and_stats(test_model: Path) -> None:
    child = spawn_chat(test_model, "-n", "12")
    child.sendline("/help")
    child.expect("/load ID")
    child.expect_exact(PROMPT)
    child.sendline("/set temp 0.5")
    child.expect_exact("temp = 0.5")
    child.sendline("/set top-p 7")
    child.expect("must be between 0 and 1")
    child.sendline("/system You answer in one word.")
    child.expect("system prompt set")
    child.sendline('"""')
    child.sendline("first line")
    child.sendline("second line")
    child.sendline('"""')
    child.expect(  # then how the reply was drafted, when it was
        r"\[\d+ tokens · [\d.]+ tokens/s · first token \d+ ms · prompt \d+ new of \d+ · context \d+/4096( · [^\]]+)?\]"
    )
    child.expect_exact(PROMPT)
    child.sendline("/stats")
    child.expect("last reply:")
    child.expect("this session: 1 replies")
    child.sendline("/bogus")
    child.expect("unknown command /bogus")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    conversation = exported(1)
    assert [m["role"] for m in conversation["messages"]] == ["system", "user", "assistant"]
    assert conversation["messages"][0]["content"] == "You answer in one word."
    assert conversation["messages"][1]["content"] == "first line\nsecond line"
    assert conversation["settings"]["temp"] == 0.5  # the settings in force when the conversation started


def test_ctrl_c_stops_the_reply_and_a_second_one_exits(test_model: Path) -> None:
    child = spawn_chat(test_model, "--ignore-eos", "-n", "100000")
    child.sendline("Tell me a very long story.")
    child.expect(r"\S{8}")  # the reply is streaming
    child.sendintr()
    child.expect_exact("[reply stopped]")
    child.expect_exact(PROMPT)
    child.sendintr()
    child.expect("Ctrl-C again to leave")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    reply = exported(1)["messages"][-1]
    assert reply["interrupted"] and reply["content"] and reply["timings"]["stop_reason"] == "interrupted"


def test_load_continues_a_saved_conversation(test_model: Path) -> None:
    piped = edgellm("chat", "-m", str(test_model), "-n", "6", "--temp", "0", input="Remember the word kiwi.\n")
    assert piped.returncode == 0, piped.stderr
    child = spawn_chat(test_model, "-n", "6")
    child.sendline("/history")
    child.expect(r"1 .* 2 messages +Remember the word kiwi\.")
    child.sendline("/load 1")
    child.expect("user: Remember the word kiwi.")
    child.expect("conversation 1 loaded: 2 messages")
    child.sendline("Which word?")
    child.expect(r"prompt \d+ new of \d+")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    assert [m["role"] for m in exported(1)["messages"]] == ["user", "assistant", "user", "assistant"]


def test_piped_stdin_gives_one_reply_per_line(test_model: Path) -> None:
    done = edgellm(
        "chat",
        "-m",
        str(test_model),
        "-n",
        "8",
        "--temp",
        "0",
        "--ignore-eos",
        "--no-history",
        input="Hello\nHow are you?\n",
    )
    assert done.returncode == 0, done.stderr
    replies = done.stdout.rstrip("\n").split("\n")
    assert len([r for r in replies if r]) >= 2
    assert "/help" not in done.stdout and ">>>" not in done.stdout  # stdout carries replies only
    assert not Path(os.environ["EDGELLM_HOME"], "history.db").exists()


def test_kill_9_mid_reply_loses_nothing_shown(test_model: Path, edgellm_home: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "chat", "-m", str(test_model), "--temp", "0", "--ignore-eos", "-n", "100000"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    process.stdin.write(b"Write a long story.\n")
    process.stdin.flush()
    database = edgellm_home / "history.db"
    deadline = time.monotonic() + 120
    stored = ""
    while time.monotonic() < deadline and len(stored) < 200:  # wait until the database holds part of it
        if database.exists():
            try:
                with sqlite3.connect(database) as db:
                    row = db.execute("SELECT content FROM messages WHERE role = 'assistant'").fetchone()
                stored = row[0] if row else ""
            except sqlite3.OperationalError:
                stored = ""
    assert len(stored) >= 200
    process.send_signal(signal.SIGKILL)
    shown, _ = process.communicate(timeout=30)
    shown = shown.decode(errors="replace")
    reply = exported(1)["messages"][-1]
    assert reply["interrupted"]
    assert shown and reply["content"].startswith(shown.rstrip("\n")), "everything shown was saved"
    assert len(reply["content"]) >= len(stored)


def test_headless_chat_never_imports_textual(test_model: Path) -> None:
    probe = (
        "import sys\n"
        "from edgellm.cli.main import main\n"
        f"code = main(['chat', '--headless', '-m', {str(test_model)!r}, '-n', '3', '--no-history'])\n"
        "assert 'textual' not in sys.modules, 'textual was imported'\n"
        "print('exit', code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], input="Hi\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("exit 0")


def test_history_and_export_commands(test_model: Path) -> None:
    assert edgellm("history").stdout.strip() == "no saved conversations"
    edgellm("chat", "-m", str(test_model), "-n", "4", input="Hello there\n")
    listed = json.loads(edgellm("history", "--json").stdout)
    assert [(c["id"], c["title"], c["message_count"]) for c in listed] == [(1, "Hello there", 2)]
    markdown = edgellm("export", "1").stdout
    assert markdown.startswith("# Hello there") and "## User" in markdown and "## Assistant" in markdown
    assert_one_line_error(edgellm("export", "9"), "no conversation 9")
    assert_one_line_error(edgellm("history", "rm"), "needs a conversation id")
    assert edgellm("history", "rm", "1").stdout.strip() == "deleted conversation 1"
    assert_one_line_error(edgellm("history", "rm", "1"), "no conversation 1")


def test_without_a_model_chat_takes_the_best_local_one(test_model: Path, edgellm_home: Path, tiny_model: Path) -> None:
    assert_one_line_error(edgellm("chat", "--no-history", input="hi\n"), "no model given", "-m PATH")
    store = edgellm_home / "models"
    store.mkdir(parents=True)
    (store / "tiny-llama.gguf").symlink_to(tiny_model)
    (store / "gemma-3-270m-Q4_K_M.gguf").symlink_to(test_model)
    done = edgellm("chat", "-n", "3", input="hi\n")
    assert done.returncode == 0, done.stderr
    (conversation,) = json.loads(edgellm("history", "--json").stdout)
    assert conversation["model"].endswith("gemma-3-270m-Q4_K_M.gguf")  # the larger of the two that fit


def test_template_refusal_and_odd_settings_are_errors_not_crashes(tmp_path: Path) -> None:
    from edgellm.convert.tinymodel import Shape, write_model

    template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}<|assistant|>"
    )
    model = write_model(tmp_path / "strict.gguf", Shape(chat_template=template))
    child = spawn_chat(model, "-n", "3")
    child.sendline("/system Be brief.")
    child.expect("system prompt set")
    child.sendline("Hello")
    child.expect("error: the model's chat template refused this conversation: System role not supported")
    child.expect_exact(PROMPT)
    child.sendline("/set stop \\x")
    child.expect_exact("stop = '\\\\x'")
    child.sendline("/system")
    child.expect("system prompt cleared")
    child.sendline("Hello")
    child.expect(r"\[\d+ tokens")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_the_base_model_loop_ends_in_a_notice_not_a_full_context(test_model: Path) -> None:
    done = edgellm("chat", "-m", str(test_model), "--temp", "0", "--no-history", input="Tell me about the sea.\n")
    assert done.returncode == 0, done.stderr
    assert "looks like a base model" in done.stderr  # said at the start
    assert "kept repeating the same text" in done.stderr and "loop-guard off" in done.stderr
    assert len(done.stdout) < 4000  # a few hundred tokens, not the 4096-token context


def test_retry_edit_rename_and_search(test_model: Path) -> None:
    child = spawn_chat(test_model, "-n", "4")
    child.sendline("Name a fruit.")
    child.expect(r"\[\d+ tokens")
    child.sendline("/retry")
    child.expect(r"\[\d+ tokens")
    child.sendline("/edit Name a tree.")
    child.expect(r"\[\d+ tokens")
    child.sendline("/rename Trees and such")
    child.expect("renamed: Trees and such")
    child.sendline("/search TREE")
    child.expect(r"1 .* 2 messages +Trees and such")
    child.sendline("/search fruit")
    child.expect("no conversation mentions 'fruit'")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    messages = exported(1)["messages"]
    assert [(m["role"], m["content"]) for m in messages][0] == ("user", "Name a tree.") and len(messages) == 2


def test_resume_continues_a_conversation_and_a_bad_id_fails_before_any_model_loads(test_model: Path) -> None:
    assert edgellm("chat", "-m", str(test_model), "-n", "4", "--temp", "0", input="Remember kiwi.\n").returncode == 0
    done = edgellm("chat", "-m", str(test_model), "-n", "4", "--temp", "0", "--resume", "1", input="Which fruit?\n")
    assert done.returncode == 0, done.stderr
    assert "user: Remember kiwi." in done.stderr and "conversation 1 loaded: 2 messages" in done.stderr
    assert [m["content"] for m in exported(1)["messages"] if m["role"] == "user"] == ["Remember kiwi.", "Which fruit?"]
    # checked before the model is even looked at: a missing model file is not what the error names
    assert_one_line_error(
        edgellm("chat", "-m", "/nonexistent.gguf", "--resume", "9"), "no conversation 9", "edgellm history"
    )
    assert_one_line_error(edgellm("chat", "-m", str(test_model), "--no-history", "--resume", "1"), "drop --no-history")
