"""One image in: its encoding and the first token, `edgellm run --mmproj --image` against llama.cpp's llama-mtmd-cli.

Goals (issue 32), each against llama-mtmd-cli measured in the same run (the same files, threads, context and flash
attention; built from the wheel's llama.cpp source and CMake flags, `benchmarks/llama_bench.py llama-mtmd-cli`):
- image speed ≥ 0.95 × llama-mtmd-cli's: encoding the image and decoding its embeddings into the model (edgellm's
  `image_ms`; llama-mtmd-cli logs "mtmd batch encoding done in X ms" and "image decoded (batch 1/1) in Y ms");
- time to first token ≥ 0.95 × its speed, from the prompt tokenized (the image read, decoded and preprocessed) to
  the first token: edgellm's `ttft_ms` of `run --json`; llama-mtmd-cli's from its tokenizer's last log line to its
  first token on stdout, each read as it comes (its reading and tokenizing is printed beside, in neither figure);
- memory: what the projector and one image add (peak RSS of `edgellm run` with them, minus the same run without)
  within ± 10 % of the plan's projector estimate (`plan --mmproj --json`: its weights and one image's encoding).

The files: the Gemma 3 test model, a projector of a realistic size written with edgellm.convert.tinyprojector (a
SIGLIP-base-like tower: 768 wide, 12 layers, 448 px, 64 image tokens; random weights, 167 MiB in F16) into a
temporary folder, and llama.cpp's test photo (tools/mtmd/test-1.jpeg, 640×488). Fresh processes, alternating
(llama-mtmd-cli, edgellm with the image, edgellm without), several rounds; medians.

Usage: .venv/bin/python benchmarks/bench_vision.py [--rounds 3] [--threads 2] [--tokens 16] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import REPO, TEST_MODEL, Findings, add_json_flag, median, spread

sys.path.insert(0, str(REPO))

from edgellm.convert.tinyprojector import ProjectorShape, write_projector

GOAL = 0.95
LOW, HIGH = 0.9, 1.1  # the memory goal: measured / estimated
PROMPT = "Describe the image."
CTX = 4096
# A SigLIP-base-like vision tower (ViT-B/14 at 448 px), pooled 4×4 as Gemma 3 pools: 64 tokens per image
SHAPE = ProjectorShape(n_embd=768, n_ff=3072, n_layers=12, n_head=12, image_size=448, patch_size=14, merge=4)
ENCODED = re.compile(r"(?:mtmd batch encoding done|image slice encoded) in (\d+) ms")
DECODED = re.compile(r"image decoded \(batch \d+/\d+\) in (\d+) ms")
IMAGE_TOKENS = re.compile(r"image_tokens->n([xy]) = (\d+)")
# llama-mtmd-cli's log: its last line before it reads the image file; each text piece its tokenizer adds (the last
# one ends the tokenizing: the image decoded and preprocessed); the start of the image's encoding
BEFORE_MEDIA = "WARN: This is an experimental CLI"
TOKENIZED = "add_text:"
ENCODING = "encoding mtmd batch"
MIB = 2**20


@dataclass
class Run:
    """What one process showed: its output, when each part of it came, and its peak resident memory."""

    stdout: str = ""
    stderr: str = ""
    first_token_at: float | None = None  # monotonic time the second byte of stdout came (its first is a newline)
    peak_rss: int = 0
    returncode: int = 0
    lines: list[tuple[float, str]] = field(default_factory=list)  # stderr's lines, each with when it came

    def last_before(self, needle: str, ending: str) -> float | None:
        """When the last stderr line holding `needle` before the first holding `ending` came."""
        found = None
        for at, line in self.lines:
            if ending in line:
                return found
            if needle in line:
                found = at
        return None


def watched(command: list[str], env: dict[str, str] | None = None) -> Run:
    """Run `command`, reading stdout and stderr as they come (the first token and each log line timed as they
    arrive), and take its peak RSS from the kernel's accounting of the process (wait4)."""
    run = Run()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out: list[bytes] = []

    def read_stdout() -> None:
        assert child.stdout is not None
        count = 0
        while chunk := os.read(child.stdout.fileno(), 65536):
            count += len(chunk)
            if count >= 2 and run.first_token_at is None:
                run.first_token_at = time.monotonic()
            out.append(chunk)

    def read_stderr() -> None:
        assert child.stderr is not None
        for raw in iter(child.stderr.readline, b""):
            run.lines.append((time.monotonic(), raw.decode(errors="replace")))

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(child.pid, 0)
    for reader in readers:
        reader.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    run.returncode = child.returncode
    run.peak_rss = usage.ru_maxrss * 1024  # KiB on Linux
    run.stdout = b"".join(out).decode(errors="replace")
    run.stderr = "".join(line for _, line in run.lines)
    return run


def failed(what: str, run: Run) -> RuntimeError:
    return RuntimeError(f"{what} failed ({run.returncode}):\n{run.stderr[-3000:]}")


@dataclass(frozen=True)
class Measured:
    image_ms: float  # encoding the image and decoding its embeddings
    ttft_ms: float
    image_tokens: int
    peak_rss: int
    encode_ms: float | None = None  # llama-mtmd-cli: the encoding alone
    read_ms: float | None = None  # llama-mtmd-cli: reading the image and tokenizing the prompt (not in ttft_ms)


def anchor(tool: Path, projector: Path, image: Path, threads: int, tokens: int) -> Measured:
    """llama-mtmd-cli on the same files. It needs a chat template (the test model has none): Gemma's, built in."""
    command = [
        str(tool),
        "-m",
        str(TEST_MODEL),
        "--mmproj",
        str(projector),
        "--image",
        str(image),
        "-p",
        PROMPT,
        "-n",
        str(tokens),
        "--temp",
        "0",
        "-t",
        str(threads),
        "-c",
        str(CTX),
        "-fa",
        "on",
        "--chat-template",
        "gemma",
        "-v",  # the image's token counts and the decoding time are logged at debug and info level
    ]
    run = watched(command)
    before_image = run.last_before(BEFORE_MEDIA, ENCODING)
    tokenized = run.last_before(TOKENIZED, ENCODING)
    if run.returncode != 0 or before_image is None or tokenized is None or run.first_token_at is None:
        raise failed("llama-mtmd-cli", run)
    encoded = [float(ms) for ms in ENCODED.findall(run.stderr)]
    decoded = [float(ms) for ms in DECODED.findall(run.stderr)]
    if not encoded or not decoded:
        raise failed("llama-mtmd-cli (no image timings in its log)", run)
    sides = dict(IMAGE_TOKENS.findall(run.stderr))
    return Measured(
        image_ms=sum(encoded) + sum(decoded),
        ttft_ms=(run.first_token_at - tokenized) * 1000,
        image_tokens=int(sides.get("x", 0)) * int(sides.get("y", 1)),
        peak_rss=run.peak_rss,
        encode_ms=sum(encoded),
        read_ms=(tokenized - before_image) * 1000,
    )


def stat(report: dict, key: str) -> float | None:
    """A figure of `run --json`, in its `stats` object or at its top level."""
    value = report.get("stats", {}).get(key, report.get(key))
    return None if value is None else float(value)


def edgellm(home: str, projector: Path | None, image: Path | None, threads: int, tokens: int) -> Measured:
    """`edgellm run --json`, with the projector and the image or (both None) without."""
    vision = ["--mmproj", str(projector), "--image", str(image)] if projector and image else ["--no-mmproj"]
    command = [
        sys.executable,
        "-m",
        "edgellm",
        "run",
        "-m",
        str(TEST_MODEL),
        *vision,
        "-p",
        PROMPT,
        "-n",
        str(tokens),
        "--temp",
        "0",
        "-t",
        str(threads),
        "-c",
        str(CTX),
        "-fa",
        "on",
        "--json",
    ]
    run = watched(command, env={**os.environ, "EDGELLM_HOME": home})
    if run.returncode != 0:
        raise failed("edgellm run" + (" --image" if image else ""), run)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    ttft = stat(report, "ttft_ms")
    if ttft is None:
        raise RuntimeError(f"edgellm run --json has no ttft_ms: {report}")
    return Measured(
        image_ms=stat(report, "image_ms") or 0.0,
        ttft_ms=ttft,
        image_tokens=int(stat(report, "image_tokens") or 0),
        peak_rss=run.peak_rss,
    )


def projector_estimate(home: str, projector: Path, threads: int) -> tuple[int | None, str]:
    """The plan's estimate of what the projector adds (its weights and one image's encoding), and how it was read;
    None when `plan` does not count a projector."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgellm",
            "plan",
            "-m",
            str(TEST_MODEL),
            "--mmproj",
            str(projector),
            "-c",
            str(CTX),
            "-t",
            str(threads),
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGELLM_HOME": home},
        timeout=300,
    )
    if done.returncode != 0:
        return None, f"edgellm plan --mmproj failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}"
    counted = json.loads(done.stdout).get("projector")
    if not counted or "weights_bytes" not in counted:
        return None, "edgellm plan --json has no projector object"
    weights, encode = int(counted["weights_bytes"]), int(counted.get("encode_bytes") or 0)
    working = int(counted.get("working_bytes") or 0)
    return weights + encode + working, (
        f"weights {weights / MIB:.1f} MiB + one image's encoding {encode / MIB:.1f} MiB + libmtmd's context and the "
        f"image's pixels {working / MIB:.1f} MiB"
    )


def test_image() -> Path:
    from edgellm.hw.buildconfig import llama_cpp_source

    return llama_cpp_source() / "tools" / "mtmd" / "test-1.jpeg"


def find_tool(findings: Findings) -> Path | None:
    from llama_bench import cached_tool

    tool, why = cached_tool("llama-mtmd-cli")
    if tool is None:
        findings.note(f"llama-mtmd-cli skipped: {why}")
        print(f"llama-mtmd-cli skipped: {why}")
    return tool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=16, help="tokens generated after the image")
    parser.add_argument("--anchor-only", action="store_true", help="measure llama-mtmd-cli alone (a check of it)")
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("vision", "One image: encoding and first token, edgellm run vs llama-mtmd-cli")
    findings.note(
        f"{TEST_MODEL.name} with a SigLIP-base-like Gemma 3 projector (random weights, 768 wide, 12 layers, "
        f"{SHAPE.image_size} px, {SHAPE.image_tokens} image tokens), llama.cpp's test-1.jpeg, '{PROMPT}', "
        f"{options.tokens} tokens, {options.threads} threads, context {CTX}, flash attention on, "
        f"{options.rounds} rounds, fresh processes alternating"
    )
    tool = find_tool(findings)
    image = test_image()
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-vision-") as tmp:
        projector = write_projector(Path(tmp) / "mmproj-siglip-base-like-f16.gguf", SHAPE)
        home = str(Path(tmp) / "home")
        theirs: list[Measured] = []
        ours: list[Measured] = []
        text_only: list[Measured] = []
        for _ in range(options.rounds):
            if tool is not None:
                theirs.append(anchor(tool, projector, image, options.threads, options.tokens))
            if not options.anchor_only:
                ours.append(edgellm(home, projector, image, options.threads, options.tokens))
                text_only.append(edgellm(home, None, None, options.threads, options.tokens))
        estimated, how = (
            (None, "not asked") if options.anchor_only else projector_estimate(home, projector, options.threads)
        )
    report(findings, theirs, ours, text_only, estimated, how)
    findings.save(options.json)


def report(
    findings: Findings,
    theirs: list[Measured],
    ours: list[Measured],
    text_only: list[Measured],
    estimated: int | None,
    how: str,
) -> None:
    """Print the medians and ratios, and record them (and the goals) in `findings`."""
    if theirs:
        print(f"llama-mtmd-cli ({theirs[0].image_tokens} image tokens):")
        print(f"  encode ms:                 {spread([m.encode_ms or 0.0 for m in theirs])}")
        print(f"  encode + decode image ms:  {spread([m.image_ms for m in theirs])}")
        print(f"  time to first token ms:    {spread([m.ttft_ms for m in theirs])}")
        print(f"  (before: image read and prompt tokenized, ms {spread([m.read_ms or 0.0 for m in theirs])})")
        print(f"  peak RSS MiB:              {spread([m.peak_rss / MIB for m in theirs])}")
        findings.figure("llama-mtmd-cli image encoding", median([m.encode_ms or 0.0 for m in theirs]), "ms")
        findings.figure("llama-mtmd-cli image encode + decode", median([m.image_ms for m in theirs]), "ms")
        findings.figure("llama-mtmd-cli time to first token", median([m.ttft_ms for m in theirs]), "ms")
        findings.figure(
            "llama-mtmd-cli image read + prompt tokenized", median([m.read_ms or 0.0 for m in theirs]), "ms"
        )
        findings.figure("llama-mtmd-cli peak RSS", median([m.peak_rss for m in theirs]) / MIB, "MiB")
    if ours:
        print(f"edgellm run --image ({ours[0].image_tokens} image tokens):")
        print(f"  encode + decode image ms:  {spread([m.image_ms for m in ours])}")
        print(f"  time to first token ms:    {spread([m.ttft_ms for m in ours])}")
        print(f"  peak RSS MiB:              {spread([m.peak_rss / MIB for m in ours])}")
        print(f"edgellm run, no image: time to first token ms {spread([m.ttft_ms for m in text_only])}")
        print(f"  peak RSS MiB:              {spread([m.peak_rss / MIB for m in text_only])}")
        findings.figure("edgellm image encode + decode", median([m.image_ms for m in ours]), "ms")
        findings.figure("edgellm time to first token, one image", median([m.ttft_ms for m in ours]), "ms")
        findings.figure("edgellm peak RSS, one image", median([m.peak_rss for m in ours]) / MIB, "MiB")
        findings.figure("edgellm peak RSS, no projector", median([m.peak_rss for m in text_only]) / MIB, "MiB")
    if theirs and ours:
        anchor_image, anchor_ttft = "llama-mtmd-cli image encode + decode", "llama-mtmd-cli time to first token"
        image_speed = median([m.image_ms for m in theirs]) / median([m.image_ms for m in ours])
        ttft_speed = median([m.ttft_ms for m in theirs]) / median([m.ttft_ms for m in ours])
        print(f"image speed edgellm / llama-mtmd-cli (medians): {image_speed:.3f}  (goal >= {GOAL})")
        print(f"first-token speed edgellm / llama-mtmd-cli (medians): {ttft_speed:.3f}  (goal >= {GOAL})")
        findings.figure("image speed, edgellm / llama-mtmd-cli", image_speed, "ratio", anchor=anchor_image)
        findings.figure("first-token speed, edgellm / llama-mtmd-cli", ttft_speed, "ratio", anchor=anchor_ttft)
        findings.goal(f"image encode + decode speed, edgellm / llama-mtmd-cli ≥ {GOAL}", image_speed, ">=", GOAL)
        findings.goal(f"time to first token speed, edgellm / llama-mtmd-cli ≥ {GOAL}", ttft_speed, ">=", GOAL)
        if ours[0].image_tokens and theirs[0].image_tokens and ours[0].image_tokens != theirs[0].image_tokens:
            findings.note(
                f"image tokens differ: edgellm {ours[0].image_tokens}, llama-mtmd-cli {theirs[0].image_tokens}"
            )
    elif ours:
        findings.note("speed goals not checked: llama-mtmd-cli was not measured")
    if ours and estimated:
        added = median([m.peak_rss for m in ours]) - median([m.peak_rss for m in text_only])
        ratio = added / estimated
        print(
            f"memory the projector and one image add (peak RSS with - without): {added / MIB:.1f} MiB; "
            f"the plan's estimate {estimated / MIB:.1f} MiB ({how}): measured / estimated {ratio:.3f} "
            f"(goal {LOW}-{HIGH})"
        )
        findings.figure("peak RSS added by the projector and one image", added / MIB, "MiB")
        findings.figure("plan's projector estimate", estimated / MIB, "MiB")
        findings.figure("projector memory, measured / estimated", ratio, "ratio", anchor="plan's projector estimate")
        findings.goal(f"projector memory / the plan's estimate ≥ {LOW}", ratio, ">=", LOW)
        findings.goal(f"projector memory / the plan's estimate ≤ {HIGH}", ratio, "<=", HIGH)
    elif ours:
        findings.note(f"memory goal not measured: {how}")
        print(f"memory goal not measured: {how}")


if __name__ == "__main__":
    main()
