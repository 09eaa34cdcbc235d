"""Download throughput: edgellm's resumable, sha256-verified fetch against a plain `hf_hub_download` of the
same 250 MB file, both from the local Hub on 127.0.0.1 (tests/support/fakehub.py), in one process, alternating.
Goal: ratio ≥ 0.9. For information, the whole `edgellm pull` command (listing, plan, download) is also timed
against a whole `hf_hub_download` process.
Usage: .venv/bin/python benchmarks/bench_download.py [--rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, TEST_MODEL, Findings, add_json_flag, median, spread

sys.path.insert(0, str(REPO))

from tests.support.fakehub import FakeHub, FakeRepo

HF_DOWNLOAD = (
    "import sys; from huggingface_hub import hf_hub_download; "
    "hf_hub_download(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3])"
)
MIB = 2**20
GOAL = 0.9


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each downloading four times (default 5)")
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("download", "Download: edgellm's fetch against hf_hub_download from a local Hub")
    hub = FakeHub()
    repo, name = "bench/gemma-3-270m-GGUF", "gemma-3-270m-Q4_K_M.gguf"
    digest = hub.add(repo, FakeRepo({name: TEST_MODEL})).digest(name)
    os.environ["HF_ENDPOINT"] = hub.endpoint
    from huggingface_hub import hf_hub_download

    from edgellm.hub.download import Meter, fetch
    from edgellm.hub.files import RemoteFile

    size = TEST_MODEL.stat().st_size
    remote = RemoteFile(name, size, digest)
    ours, theirs, our_cmd, their_cmd = [], [], [], []
    try:
        for _ in range(options.rounds):
            with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as tmp:
                theirs.append(
                    size / timed(lambda: hf_hub_download(repo, name, cache_dir=f"{tmp}/hf", endpoint=hub.endpoint))
                )
                ours.append(
                    size
                    / timed(lambda: fetch(repo, remote, hub.repos[repo].commit, Path(tmp) / "ours" / name, Meter(size)))
                )
                env = {**os.environ, "HF_HOME": f"{tmp}/hf2", "EDGELLM_HOME": f"{tmp}/e"}
                their_cmd.append(
                    timed(
                        lambda env=env: subprocess.run(
                            [sys.executable, "-c", HF_DOWNLOAD, repo, name, f"{tmp}/c2"], env=env, check=True
                        )
                    )
                )
                our_cmd.append(
                    timed(
                        lambda env=env: subprocess.run(
                            [sys.executable, "-m", "edgellm", "pull", f"{repo}:Q4_K_M"],
                            env=env,
                            check=True,
                            capture_output=True,
                        )
                    )
                )
    finally:
        hub.close()
    print(f"download of {size / MIB:.0f} MiB from 127.0.0.1, {options.rounds} rounds, alternating")
    print(f"  hf_hub_download()                 MiB/s: {spread([v / MIB for v in theirs])}")
    print(f"  edgellm fetch (resumable, sha256) MiB/s: {spread([v / MIB for v in ours])}")
    ratio = median(ours) / median(theirs)
    print(f"  ratio edgellm/hf_hub_download (medians): {ratio:.3f}  (goal >= {GOAL})")
    print(
        f"  whole commands, seconds: python -c hf_hub_download {spread(their_cmd)}; "
        f"edgellm pull {spread(our_cmd)} (adds the listing, the plan and the start-up of the CLI)"
    )
    findings.note(
        f"{TEST_MODEL.name} ({size / MIB:.0f} MiB) from a local Hub on 127.0.0.1, {options.rounds} rounds, "
        f"alternating; medians"
    )
    theirs_label, their_cmd_label = "hf_hub_download()", "whole command: python -c hf_hub_download"
    findings.figure(theirs_label, median(theirs) / MIB, "MiB/s")
    findings.figure("edgellm fetch (resumable, sha256)", median(ours) / MIB, "MiB/s")
    findings.figure("edgellm fetch / hf_hub_download()", ratio, "ratio", anchor=theirs_label)
    findings.goal(f"edgellm fetch / hf_hub_download() ≥ {GOAL}", ratio, ">=", GOAL)
    findings.figure(their_cmd_label, median(their_cmd), "s")
    findings.figure("whole command: edgellm pull", median(our_cmd), "s")
    findings.figure(
        "edgellm pull / hf_hub_download command, seconds",
        median(our_cmd) / median(their_cmd),
        "ratio",
        anchor=their_cmd_label,
    )
    findings.save(options.json)


if __name__ == "__main__":
    main()
