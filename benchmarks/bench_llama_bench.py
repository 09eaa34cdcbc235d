"""`edgellm bench` against llama.cpp's own llama-bench: prompt (pp512) and decode (tg128) tokens/s, same model, same
threads and flash attention, runs interleaved in the same session, at context depth 0 and 1024.

llama-bench is built once from the same llama.cpp source and CMake flags as the installed wheel (llama_bench.py).
Goals (issue 13, set here): edgellm bench pp512 ≥ 0.95 × llama-bench pp512 and tg128 ≥ 0.97 × llama-bench tg128 at
depth 0. The decode figure at depth 1024 shows how decoding slows as a conversation grows, for both.
Usage: .venv/bin/python benchmarks/bench_llama_bench.py [--rounds 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _common import TEST_MODEL, Findings, add_json_flag, median, spread
from llama_bench import llama_bench_path

PP, TG, DEPTHS = 512, 128, (0, 1024)


def edgellm_bench(repetitions: int, home: str) -> dict:
    """One `edgellm bench` in its own EDGELLM_HOME (the developer's results and calibration stay untouched)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgellm",
            "bench",
            "-m",
            str(TEST_MODEL),
            "--pp",
            str(PP),
            "--tg",
            str(TG),
            "-r",
            str(repetitions),
            "--depth",
            ",".join(map(str, DEPTHS)),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "EDGELLM_HOME": home},
    )
    (run,) = json.loads(done.stdout)["runs"]
    return run


def llama_bench(binary: str, settings: dict, repetitions: int) -> dict[str, float]:
    """llama-bench's mean tokens/s by test (pp512, tg128 and tg128@d1024), with edgellm's planned settings: threads,
    flash attention, GPU layers, batch and KV type."""
    ngl = settings["n_gpu_layers"]
    done = subprocess.run(
        [
            binary,
            "-m",
            str(TEST_MODEL),
            "-p",
            str(PP),
            "-n",
            str(TG),
            "-r",
            str(repetitions),
            "-t",
            str(settings["threads"]),
            "-fa",
            "1" if settings["flash_attn"] else "0",
            "-ngl",
            str(99 if ngl < 0 else ngl),
            "-b",
            str(settings["n_batch"]),
            "-ub",
            str(settings["n_batch"]),
            "-ctk",
            settings["kv"],
            "-ctv",
            settings["kv"],
            "-d",
            ",".join(map(str, DEPTHS)),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = {}
    for test in json.loads(done.stdout):
        name = f"pp{test['n_prompt']}" if test["n_prompt"] else f"tg{test['n_gen']}"
        found[name + (f"@d{test['n_depth']}" if test["n_depth"] else "")] = test["avg_ts"]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each (default 2)")
    parser.add_argument("-r", "--repetitions", type=int, default=3, help="repetitions inside each round (default 3)")
    add_json_flag(parser)
    options = parser.parse_args()
    if options.rounds < 1 or options.repetitions < 1:
        parser.error("--rounds and --repetitions must be 1 or more")
    findings = Findings("llama-bench", "edgellm bench against llama-bench (same llama.cpp, same flags)")
    try:
        binary = llama_bench_path(build=False)
    except SystemExit as missing:  # no record of the installed build's flags
        binary, reason = None, str(missing)
    else:
        reason = "llama-bench not built: run .venv/bin/python benchmarks/llama_bench.py"
    if binary is None:
        findings.note(reason)
        print(findings.data["notes"][0])
        findings.save(options.json)
        return 0
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    home = tempfile.mkdtemp(prefix="edgellm-bench-home-")
    for _ in range(options.rounds):
        run = edgellm_bench(options.repetitions, home)
        ours.setdefault(f"pp{PP}", []).append(run["pp"]["mean"])
        for tg in run["tg"]:
            ours.setdefault(f"tg{TG}" + (f"@d{tg['depth']}" if tg["depth"] else ""), []).append(tg["mean"])
        for test, rate in llama_bench(str(binary), run["settings"], options.repetitions).items():
            theirs.setdefault(test, []).append(rate)
    print(
        f"{options.rounds} rounds of {options.repetitions} repetitions, {run['settings']['threads']} threads, "
        f"flash attention {'on' if run['flash_attn'] else 'off'}"
    )
    for test in ours:
        if test not in theirs:
            continue
        ratio = median(ours[test]) / median(theirs[test])
        print(
            f"  {test:<12} edgellm bench t/s: {spread(ours[test])}   llama-bench t/s: {spread(theirs[test])}   "
            f"ratio {ratio:.3f}"
        )
        findings.figure(f"edgellm bench {test}", median(ours[test]), "tokens/s")
        findings.figure(f"llama-bench {test}", median(theirs[test]), "tokens/s")
        findings.figure(f"{test}: edgellm bench / llama-bench", ratio, "ratio", anchor=f"llama-bench {test}")
        if test == f"pp{PP}":
            findings.goal(f"prompt: edgellm bench pp{PP} / llama-bench pp{PP} ≥ 0.95", ratio, ">=", 0.95)
        elif test == f"tg{TG}":
            findings.goal(f"decode: edgellm bench tg{TG} / llama-bench tg{TG} ≥ 0.97", ratio, ">=", 0.97)
    deep = f"tg{TG}@d{DEPTHS[-1]}"
    if deep in ours and deep in theirs and f"tg{TG}" in theirs:
        fall = median(ours[deep]) / median(ours[f"tg{TG}"])
        print(
            f"  decode at depth {DEPTHS[-1]} / depth 0: edgellm {fall:.3f}, "
            f"llama-bench {median(theirs[deep]) / median(theirs[f'tg{TG}']):.3f}"
        )
        findings.figure(
            f"decode at depth {DEPTHS[-1]} / at depth 0 (edgellm bench)", fall, "ratio", anchor=f"edgellm bench tg{TG}"
        )
    findings.save(options.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
