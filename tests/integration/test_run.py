"""`edgellm run` with the real llama.cpp on the real test model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import edgellm

PROMPT = "The capital of France is"


def split_json(stdout: str) -> tuple[str, dict]:
    text, _, last = stdout.rstrip("\n").rpartition("\n")
    return text, json.loads(last)


def test_greedy_output_is_identical_across_runs(test_model: Path) -> None:
    args = ("run", "-m", str(test_model), "-p", PROMPT, "-n", "24", "--temp", "0", "-t", "2")
    first, second = edgellm(*args), edgellm(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip(), "generated some text"
    assert first.stdout == second.stdout
    assert first.stderr == "", "llama.cpp's log stays out of the terminal without -v"


def test_json_figures_agree_with_the_printed_text(test_model: Path, edgellm_home: Path) -> None:
    import llama_cpp

    done = edgellm(
        "run",
        "-m",
        str(test_model),
        "-p",
        PROMPT,
        "-n",
        "32",
        "--temp",
        "0",
        "--ignore-eos",
        "-t",
        "2",
        "-c",
        "1024",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    text, report = split_json(done.stdout)
    vocab = llama_cpp.Llama(str(test_model), vocab_only=True, verbose=False)
    assert report["prompt_tokens"] == len(vocab.tokenize(PROMPT.encode(), add_bos=True))
    assert report["completion_tokens"] == 32
    assert report["stop_reason"] == "length"
    # the printed text is what those 32 tokens spell (greedy, so a second process reproduces it)
    retokenized = vocab.tokenize(text.encode(), add_bos=False)
    assert abs(len(retokenized) - 32) <= 3
    assert report["ttft_ms"] > 0 and report["load_ms"] > 0
    assert report["tokens_per_s"] > 1
    assert abs(report["prompt_tokens_per_s"] - report["prompt_tokens"] / (report["ttft_ms"] / 1000)) < 1
    settings = report["settings"]
    assert (settings["n_ctx"], settings["threads"], settings["temp"], settings["kv"]) == (1024, 2, 0.0, "f16")
    assert (edgellm_home / "logs" / "edgellm.log").read_text().count("llama_model_loader") > 0


def test_prompt_from_stdin_matches_prompt_flag(test_model: Path) -> None:
    args = ("run", "-m", str(test_model), "-n", "12", "--temp", "0")
    from_flag = edgellm(*args, "-p", PROMPT)
    from_stdin = edgellm(*args, "-p", "-", input=PROMPT)
    assert from_flag.returncode == from_stdin.returncode == 0
    assert from_flag.stdout == from_stdin.stdout


def test_config_file_sets_defaults_and_flags_win(test_model: Path, edgellm_home: Path) -> None:
    edgellm_home.mkdir(parents=True, exist_ok=True)
    (edgellm_home / "config.toml").write_text("n-predict = 5\ntemp = 0\nctx-size = 512\nthreads = 1\n")
    from_config = split_json(edgellm("run", "-m", str(test_model), "-p", PROMPT, "--ignore-eos", "--json").stdout)[1]
    assert from_config["completion_tokens"] == 5
    assert from_config["settings"]["n_ctx"] == 512 and from_config["settings"]["threads"] == 1
    overridden = split_json(
        edgellm("run", "-m", str(test_model), "-p", PROMPT, "--ignore-eos", "--json", "-n", "7", "-t", "2").stdout
    )[1]
    assert overridden["completion_tokens"] == 7 and overridden["settings"]["threads"] == 2


def test_verbose_shows_llama_log(test_model: Path) -> None:
    done = edgellm("run", "-m", str(test_model), "-p", PROMPT, "-n", "2", "-v")
    assert done.returncode == 0
    assert "llama_model_loader" in done.stderr
    assert "Memory budget: CPU RAM" in done.stderr and "n_ctx        4096" in done.stderr


def test_quantized_kv_cache_runs(test_model: Path) -> None:
    done = edgellm("run", "-m", str(test_model), "-p", PROMPT, "-n", "8", "--kv", "q8_0", "--json")
    assert done.returncode == 0, done.stderr
    assert split_json(done.stdout)[1]["settings"]["flash_attn"] is True


def test_ctrl_c_keeps_the_text_and_exits_130(test_model: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgellm",
            "run",
            "-m",
            str(test_model),
            "-p",
            PROMPT,
            "--ignore-eos",
            "-n",
            "100000",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    received = b""
    deadline = time.monotonic() + 120
    while len(received) < 40 and time.monotonic() < deadline:  # wait for streamed text, not for a fixed time
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            break
        received += chunk
    assert len(received) >= 40, "text streamed before the end"
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    text, report = split_json((received + rest).decode())
    assert text.startswith(received.decode(errors="ignore")[:20])
    assert report["stop_reason"] == "interrupted" and report["completion_tokens"] > 0
    assert "interrupted" in stderr.decode() and "Traceback" not in stderr.decode()
