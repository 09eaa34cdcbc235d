"""`edgellm bench --quality` against llama.cpp's own llama-perplexity: the same text (the evaluation text edgellm
ships), the same context (512) and chunks, the same threads, the test model requantized to Q2_K as the quant and the
test model itself (Q4_K_M) as the reference.

llama-perplexity is built once from the same llama.cpp source and CMake flags as the installed wheel (llama_bench.py).
It measures the KL divergence in two runs: the reference's logits saved to a file (`--kl-divergence-base`), then the
quant read against them (`--kl-divergence`); edgellm reads both models side by side, keeping no logits file.
Goals (issue 30): perplexity equal within 0.5 %, mean KL divergence within 2 %, same-top-token share within 0.5
points; the perplexity pass's tokens/s ≥ 0.9 × llama-perplexity's; peak RSS reported against the anchor's.
Usage: .venv/bin/python benchmarks/bench_quality.py [--chunks 8] [--rounds 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, TEST_MODEL, Findings, add_json_flag, median
from llama_bench import llama_tool_path

sys.path.insert(0, str(REPO))

TEXT = REPO / "edgellm" / "data" / "eval" / "quality.txt"
N_CTX = 512
THREADS = os.cpu_count() or 1


def run_measured(command: list[str], env: dict | None = None) -> tuple[str, str, float, int]:
    """Run `command`; its stdout, stderr, wall seconds and peak RSS in bytes (the child's own, from wait4)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if child.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({child.returncode}):\n{stderr[-3000:]}")
    return stdout, stderr, seconds, usage.ru_maxrss * 1024


def edgellm_quality(model: Path, reference: Path | None, chunks: int, home: str) -> tuple[dict, int]:
    command = [sys.executable, "-m", "edgellm", "bench", "--quality", "-m", str(model), "--chunks", str(chunks)]
    command += ["-t", str(THREADS), "--json"] + (["--reference", str(reference)] if reference else [])
    stdout, _, _, peak = run_measured(command, {**os.environ, "EDGELLM_HOME": home})
    return json.loads(stdout)["quality"], peak


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"llama-perplexity printed no {pattern!r}:\n{text[-3000:]}")
    return float(found.group(1))


def stamp(marker: str, text: str) -> float:
    """The seconds llama.cpp's log stamped on the line holding `marker` (its prefix: minutes.seconds.ms.µs)."""
    stamps = list(re.finditer(r"(\d+)\.(\d\d)\.(\d\d\d)\.(\d\d\d) [IWED] ", text))
    for here, after in zip(stamps, stamps[1:] + [None]):
        if marker in text[here.end() : after.start() if after else len(text)]:
            minutes, seconds, ms, us = (int(part) for part in here.groups())
            return minutes * 60 + seconds + ms / 1e3 + us / 1e6
    raise RuntimeError(f"llama-perplexity logged no {marker!r}:\n{text[-3000:]}")


def perplexity_anchor(binary: Path, model: Path, chunks: int) -> dict:
    """llama-perplexity's perplexity of `model` and its speed: the chunks' tokens over the time from the text's
    tokenization to the final estimate (its log's time stamps: the load left out, as edgellm's figure leaves it)."""
    command = [str(binary), "-m", str(model), "-f", str(TEXT), "-c", str(N_CTX), "--chunks", str(chunks)]
    stdout, stderr, seconds, peak = run_measured(command + ["-t", str(THREADS), "-tb", str(THREADS)])
    text = stdout + stderr
    started, ended = stamp("tokenization took", text), stamp("Final estimate", text)
    return {
        "ppl": number(r"Final estimate: PPL = ([\d.]+)", text),
        "tokens_per_s": chunks * N_CTX / max(1e-9, ended - started),
        "peak_rss_bytes": peak,
        "seconds": seconds,
    }


def divergence_anchor(binary: Path, model: Path, reference: Path, chunks: int, folder: Path) -> dict:
    """llama-perplexity's two-step KL divergence: the reference's logits to a file, then the quant against them."""
    base = folder / "reference.kld"
    common = ["-f", str(TEXT), "-c", str(N_CTX), "--chunks", str(chunks), "-t", str(THREADS), "-tb", str(THREADS)]
    out, err, _, peak_base = run_measured(
        [str(binary), "-m", str(reference), *common, "--kl-divergence-base", str(base)]
    )
    reading = stamp("Final estimate", out + err) - stamp("tokenization took", out + err)
    stdout, stderr, wall, peak = run_measured(
        [str(binary), "-m", str(model), *common, "--kl-divergence-base", str(base), "--kl-divergence"]
    )
    text = stdout + stderr
    reading += wall - stamp("kl_divergence: computing over", text)  # its statistics come unstamped, at the end
    found = {
        "kld": number(r"Mean\s+KLD:\s*([-\d.]+)", text),
        "same_top": number(r"Same top p:\s*([\d.]+)", text) / 100,
        "ppl": number(r"Mean PPL\(Q\)\s*:\s*([\d.]+)", text),
        "reference_ppl": number(r"Mean PPL\(base\)\s*:\s*([\d.]+)", text),
        "tokens_per_s": chunks * N_CTX / max(1e-9, reading),  # both runs' reading, as edgellm's reads both models
        "logits_file_bytes": base.stat().st_size,
        "peak_rss_bytes": max(peak, peak_base),
    }
    base.unlink()  # 1 GiB for 8 chunks of Gemma's vocabulary
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=8, help="chunks of 512 tokens to read (default 8)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the speed comparison (default 1)")
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("quality", "edgellm bench --quality against llama-perplexity (same llama.cpp, same flags)")
    binary = llama_tool_path("llama-perplexity", build=False)
    if binary is None:
        findings.note("llama-perplexity not built: run .venv/bin/python benchmarks/llama_bench.py llama-perplexity")
        print(findings.data["notes"][0])
        findings.save(options.json)
        return 0
    from edgellm.convert.quantize import quantize

    folder = Path(tempfile.mkdtemp(prefix="edgellm-bench-quality-"))
    home = tempfile.mkdtemp(prefix="edgellm-bench-home-")
    try:  # the Q2_K copy (226 MiB) and llama-perplexity's logits file (1 GiB) go with the folder, whatever happens
        quant = quantize(TEST_MODEL, folder / "gemma-3-270m-Q2_K.gguf", "Q2_K", requantize=True)
        ours_ppl, theirs_ppl = [], []
        for _ in range(options.rounds):  # the perplexity pass alone, interleaved: its speed
            ours_ppl.append(edgellm_quality(quant, None, options.chunks, home))
            theirs_ppl.append(perplexity_anchor(binary, quant, options.chunks))
        ours, ours_peak = edgellm_quality(quant, TEST_MODEL, options.chunks, home)
        theirs = divergence_anchor(binary, quant, TEST_MODEL, options.chunks, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)

    ppl_ours, ppl_theirs = ours_ppl[-1][0]["ppl"], theirs_ppl[-1]["ppl"]
    speed_ours = median([found["tokens_per_s"] for found, _ in ours_ppl])
    speed_theirs = median([found["tokens_per_s"] for found in theirs_ppl])
    ppl_gap = abs(ppl_ours / ppl_theirs - 1)
    kld_gap = abs(ours["kld"] / theirs["kld"] - 1)
    top_gap = abs(ours["same_top"] - theirs["same_top"]) * 100
    print(f"Q2_K against Q4_K_M (the test model), {options.chunks} chunks of {N_CTX}, {THREADS} threads")
    print(f"  perplexity      edgellm {ppl_ours:.4f}   llama-perplexity {ppl_theirs:.4f}   gap {100 * ppl_gap:.3f} %")
    print(
        f"  KL divergence   edgellm {ours['kld']:.6f}   llama-perplexity {theirs['kld']:.6f}   "
        f"gap {100 * kld_gap:.2f} %"
    )
    print(
        f"  same top token  edgellm {100 * ours['same_top']:.3f} %   llama-perplexity {100 * theirs['same_top']:.3f} %"
        f"   gap {top_gap:.3f} points"
    )
    print(
        f"  speed (perplexity pass)  edgellm {speed_ours:.1f} tokens/s   llama-perplexity {speed_theirs:.1f} tokens/s"
        f"   ratio {speed_ours / speed_theirs:.3f}"
    )
    print(
        f"  peak RSS  perplexity: edgellm {ours_ppl[-1][1] / 2**20:.0f} MiB, llama-perplexity "
        f"{theirs_ppl[-1]['peak_rss_bytes'] / 2**20:.0f} MiB;  divergence: edgellm {ours_peak / 2**20:.0f} MiB (both "
        f"models, no file), llama-perplexity {theirs['peak_rss_bytes'] / 2**20:.0f} MiB (one model at a time) and a "
        f"{theirs['logits_file_bytes'] / 2**20:.0f} MiB logits file"
    )
    findings.figure("perplexity (edgellm)", ppl_ours, "ppl")
    findings.figure("perplexity (llama-perplexity)", ppl_theirs, "ppl")
    findings.figure("perplexity gap", 100 * ppl_gap, "%", anchor="llama-perplexity PPL")
    findings.figure("mean KL divergence (edgellm)", ours["kld"], "nats")
    findings.figure("mean KL divergence (llama-perplexity)", theirs["kld"], "nats")
    findings.figure("KL divergence gap", 100 * kld_gap, "%", anchor="llama-perplexity KLD")
    findings.figure("same top token gap", top_gap, "points", anchor="llama-perplexity same top p")
    findings.figure(
        "perplexity pass: edgellm / llama-perplexity", speed_ours / speed_theirs, "ratio", "llama-perplexity"
    )
    findings.figure("peak RSS, perplexity (edgellm)", ours_ppl[-1][1] / 2**20, "MiB")
    findings.figure("peak RSS, perplexity (llama-perplexity)", theirs_ppl[-1]["peak_rss_bytes"] / 2**20, "MiB")
    findings.figure("peak RSS, divergence (edgellm, both models)", ours_peak / 2**20, "MiB")
    findings.figure("peak RSS, divergence (llama-perplexity)", theirs["peak_rss_bytes"] / 2**20, "MiB")
    findings.figure("llama-perplexity's logits file", theirs["logits_file_bytes"] / 2**20, "MiB")
    findings.goal("perplexity within 0.5 % of llama-perplexity's", 100 * ppl_gap, "<=", 0.5)
    findings.goal("mean KL divergence within 2 % of llama-perplexity's", 100 * kld_gap, "<=", 2.0)
    findings.goal("same-top-token share within 0.5 points", top_gap, "<=", 0.5)
    findings.goal("perplexity pass tokens/s ≥ 0.9 × llama-perplexity's", speed_ours / speed_theirs, ">=", 0.9)
    divergence_ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
    print(
        f"  speed (divergence pass, both models)  edgellm {ours['tokens_per_s']:.1f} tokens/s   llama-perplexity "
        f"{theirs['tokens_per_s']:.1f} tokens/s (its two runs)   ratio {divergence_ratio:.3f}"
    )
    findings.figure("divergence pass: edgellm / llama-perplexity", divergence_ratio, "ratio", "llama-perplexity")
    findings.goal("divergence pass tokens/s ≥ 0.9 × llama-perplexity's two runs", divergence_ratio, ">=", 0.9)
    findings.save(options.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
