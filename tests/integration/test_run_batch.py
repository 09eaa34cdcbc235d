"""`edgellm run --batch`: a JSON-lines job on the real model, several requests at once; answers in input order,
bad lines answered with their error, and a job killed with -9 continues where it stopped, nothing lost or repeated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import edgellm
from tests.support.server import until


def write_job(path: Path, requests: list[object]) -> None:
    path.write_text("".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in requests))


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_answers_come_in_input_order_with_bad_lines_answered_by_their_error(test_model: Path, tmp_path: Path) -> None:
    job, out = tmp_path / "job.jsonl", tmp_path / "answers.jsonl"
    write_job(
        job,
        [
            {"prompt": "The sky is", "max_tokens": 6, "temperature": 0, "ignore_eos": True},
            "{not json",
            {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "ignore_eos": True},
            {"prompt": "x", "max_tokens": 0},
            {"custom_id": "r-7", "body": {"prompt": "Once", "max_tokens": 9, "ignore_eos": True}},
            {"temperature": 0.5},
            "",  # blank lines are skipped
            {"prompt": "Cats", "max_tokens": 3, "ignore_eos": True, "stop": ["\n"], "seed": 4},
        ],
    )
    done = edgellm(
        "run",
        "--batch",
        str(job),
        "-o",
        str(out),
        "-m",
        str(test_model),
        "-c",
        "512",
        "--parallel",
        "3",
        "--json",
        env={"EDGELLM_HOME": str(tmp_path / "home")},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    answers = records(out)
    assert [answer["index"] for answer in answers] == [0, 1, 2, 3, 4, 5, 7]
    assert answers[0]["usage"]["completion_tokens"] == 6 and answers[0]["finish_reason"] == "length"
    assert "not valid JSON" in answers[1]["error"]
    assert answers[2]["usage"]["completion_tokens"] == 5
    assert "max_tokens" in answers[3]["error"]
    assert answers[4]["custom_id"] == "r-7" and answers[4]["usage"]["completion_tokens"] == 9
    assert "no prompt and no messages" in answers[5]["error"]
    assert answers[6]["usage"]["completion_tokens"] <= 3
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["requests"] == 4 and summary["failed"] == 3 and summary["requests_per_s"] > 0
    assert "requests/s" in done.stderr and "tokens/s" in done.stderr
    assert not (tmp_path / "answers.jsonl.partial").exists()
    again = edgellm(
        "run",
        "--batch",
        str(job),
        "-o",
        str(out),
        "-m",
        str(test_model),
        "-c",
        "512",
        env={"EDGELLM_HOME": str(tmp_path / "home")},
        timeout=600,
    )
    assert again.returncode == 0 and "7 of 7 requests answered already" in again.stderr
    assert records(out) == answers  # nothing answered twice


def test_a_job_killed_with_9_goes_on_where_it_stopped(test_model: Path, tmp_path: Path) -> None:
    job, out = tmp_path / "job.jsonl", tmp_path / "job.out.jsonl"
    journal = tmp_path / "job.out.jsonl.partial"
    write_job(job, [{"prompt": f"Story {n}:", "max_tokens": 40, "ignore_eos": True, "seed": n} for n in range(12)])
    command = [
        sys.executable,
        "-m",
        "edgellm",
        "run",
        "--batch",
        str(job),
        "-m",
        str(test_model),
        "-c",
        "512",
        "--parallel",
        "2",
    ]
    env = {**os.environ, "EDGELLM_HOME": str(tmp_path / "home")}
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        until(lambda: journal.exists() and journal.read_text().count("\n") >= 3, timeout=300, what="3 answers")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    kept = {}
    for line in journal.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by the kill
            continue
        kept[record["index"]] = record
    assert 3 <= len(kept) < 12 and not out.exists()
    second = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stderr
    assert f"{len(kept)} of 12 requests answered already" in second.stderr
    answers = records(out)
    assert [answer["index"] for answer in answers] == list(range(12))  # each once, in order
    assert all(answers[index] == record for index, record in kept.items())  # the answers before the kill, kept
    assert all(answer["usage"]["completion_tokens"] == 40 for answer in answers)
    assert not journal.exists()


def test_a_batch_job_stopped_with_ctrl_c_keeps_its_answers(test_model: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.jsonl"
    journal = tmp_path / "job.out.jsonl.partial"
    write_job(job, [{"prompt": f"Story {n}:", "max_tokens": 60, "ignore_eos": True} for n in range(10)])
    running = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "run", "--batch", str(job), "-m", str(test_model), "-c", "512"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EDGELLM_HOME": str(tmp_path / "home")},
    )
    until(lambda: journal.exists() and journal.read_text().count("\n") >= 1, timeout=300, what="an answer")
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 130
    assert "run the same command again" in stderr and "Traceback" not in stderr
    assert all(json.loads(line)["index"] >= 0 for line in journal.read_text().splitlines())


def test_a_missing_batch_file_is_one_line(tmp_path: Path, test_model: Path) -> None:
    done = edgellm("run", "--batch", str(tmp_path / "nope.jsonl"), "-m", str(test_model), timeout=120)
    assert done.returncode == 2 and "no batch file" in done.stderr and done.stderr.count("\n") == 1
