"""`edgellm bench --quality` on the real test model: perplexity and the divergence of requantized copies (Q2_K,
Q3_K_M) from the test model itself as the reference, where the result is kept, what the picker makes of it, and bad
input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgellm.convert.quantize import quantize
from tests.support import assert_one_line_error, edgellm

CHUNKS = "2"  # 510 scored tokens: enough to order Q2_K and Q3_K_M on this model


@pytest.fixture(scope="module")
def quants(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the test model requantized to Q3_K_M and Q2_K (names that say their quant)."""
    folder = tmp_path_factory.mktemp("quants")
    for quant in ("Q3_K_M", "Q2_K"):
        quantize(test_model, folder / f"gemma-3-270m-{quant}.gguf", quant, requantize=True)
    return folder


@pytest.fixture(scope="module")
def measured(quants: Path, test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Each quant measured against the test model, in one EDGELLM_HOME; the results by quant."""
    home = tmp_path_factory.mktemp("quality-home")
    found = {}
    for quant in ("Q3_K_M", "Q2_K"):
        done = edgellm(
            "bench",
            "--quality",
            "-m",
            str(quants / f"gemma-3-270m-{quant}.gguf"),
            "--reference",
            str(test_model),
            "--chunks",
            CHUNKS,
            "--json",
            env={"EDGELLM_HOME": str(home)},
        )
        assert done.returncode == 0, done.stderr
        assert "bench: quality: 2 / 2 chunks" in done.stderr  # the progress line's last
        found[quant] = json.loads(done.stdout)
    return found, home


def test_q2_k_diverges_more_than_q3_k_m(measured: tuple[dict, Path]) -> None:
    found = {quant: result["quality"] for quant, result in measured[0].items()}
    for figures in found.values():
        assert figures["chunks"] == 2 and figures["tokens"] == 2 * 255 and figures["n_ctx"] == 512
        assert figures["reference"]["quant"] == "Q4_K_M" and figures["text"]["name"] == "quality.txt"
        assert figures["kld"] > 0 and figures["kld_se"] > 0 and 0 < figures["same_top"] < 1
        assert figures["ppl"] > figures["reference_ppl"] > 1  # a coarser quant reads the text worse
        assert figures["kld_percentiles"]["99"] >= figures["kld_percentiles"]["50"] >= 0
        assert figures["peak_rss_bytes"] > 0 and figures["tokens_per_s"] > 0
    assert found["Q2_K"]["kld"] > found["Q3_K_M"]["kld"]
    assert found["Q2_K"]["same_top"] < found["Q3_K_M"]["same_top"]
    assert found["Q2_K"]["reference_ppl"] == pytest.approx(found["Q3_K_M"]["reference_ppl"])  # the same reference


def test_the_reference_against_itself_gives_zero_and_full_agreement(test_model: Path) -> None:
    done = edgellm("bench", "--quality", "-m", str(test_model), "--reference", str(test_model), "--chunks", "1")
    assert done.returncode == 0, done.stderr
    assert "Text       quality.txt: 1 chunk of 512 tokens, 255 scored" in done.stdout
    kld = next(line for line in done.stdout.splitlines() if "KL divergence" in line)
    same = next(line for line in done.stdout.splitlines() if "same top token" in line)
    assert kld.split()[2:5] == ["0.000000", "±", "0.000000"], kld
    assert same.split()[3:6] == ["100.000%", "±", "0.000"], same


def test_the_results_are_kept_with_the_devices_bench_results(measured: tuple[dict, Path]) -> None:
    found, home = measured
    (kept,) = (home / "bench").glob("*.json")
    stored = json.loads(kept.read_text())["results"]
    assert [item["quality"]["kld"] for item in stored] == [
        found["Q3_K_M"]["quality"]["kld"],
        found["Q2_K"]["quality"]["kld"],
    ]
    assert not [path for path in (home / "bench").iterdir() if path.name.startswith(".")]


def test_the_picker_shows_measured_quality_and_the_bound_refuses(measured: tuple[dict, Path], quants: Path) -> None:
    found, home = measured
    env = {"EDGELLM_HOME": str(home)}
    done = edgellm("plan", "-m", str(quants), env=env)
    assert done.returncode == 0, done.stderr
    q3 = found["Q3_K_M"]["quality"]
    line = next(line for line in done.stdout.splitlines() if line.strip().startswith("Q3_K_M: fits"))
    assert f"KLD {q3['kld']:.3g} vs Q4_K_M, {100 * q3['same_top']:.0f}% same top token, measured" in line
    unmeasured = edgellm("plan", "-m", str(quants))  # another home: the published prior
    assert "(published prior)" in unmeasured.stdout and "measured" not in unmeasured.stdout.split("Model")[0]
    bound = found["Q3_K_M"]["quality"]["kld"] / 2  # below both
    refused = edgellm("plan", "-m", str(quants), "--min-quality", f"{bound:.6f}", env=env)
    assert_one_line_error(refused, "no quant fits", "above the bound", "--min-quality")


def test_bad_input_is_one_line_and_exit_2(test_model: Path, other_vocab_model: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        edgellm("bench", "--quality", "-m", str(test_model), "--reference", str(other_vocab_model)),
        "cannot be the reference",
        "--reference",
    )
    short = tmp_path / "short.txt"
    short.write_text("Too short to fill one chunk of 512 tokens.")
    assert_one_line_error(
        edgellm("bench", "--quality", "-m", str(test_model), "--text", str(short)), "shorter than one chunk", "--text"
    )
    assert_one_line_error(
        edgellm("bench", "--quality", "-m", str(test_model), "--text", str(tmp_path / "none.txt")), "no such file"
    )
    assert_one_line_error(
        edgellm("bench", "--quality", "-m", str(test_model), "--reference", str(tmp_path / "none.gguf")), "none.gguf"
    )
    assert_one_line_error(edgellm("bench", "-m", str(test_model), "--reference", "auto"), "goes with --quality")
    assert_one_line_error(
        edgellm("bench", "--quality", "-m", str(test_model), "--reference", "auto"), "no reference", "--reference"
    )


def test_without_a_reference_it_measures_perplexity_only(test_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model.gguf"
    shutil.copyfile(test_model, copy)
    done = edgellm("bench", "--quality", "-m", str(copy), "--chunks", "1", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)["quality"]
    assert figures["reference"] is None and figures["ppl"] > 1 and "kld" not in figures


def test_auto_pulls_the_reference_from_the_repo_the_model_came_from(
    quants: Path, test_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Q2_K pulled from a repo that also has a Q4_K_M: `--reference auto` pulls the Q4_K_M, and the picker then
    shows the measured figure for the stored file (`plan`) and for the repo's Q2_K (`pull --dry-run`)."""
    from tests.support.fakehub import FakeHub, FakeRepo, point_hub_at

    hub = point_hub_at(FakeHub(), monkeypatch, tmp_path)
    hub.add(
        "tests/gemma-GGUF",
        FakeRepo({"gemma-3-270m-Q2_K.gguf": quants / "gemma-3-270m-Q2_K.gguf", "gemma-3-270m-Q4_K_M.gguf": test_model}),
    )
    try:
        pulled = edgellm("pull", "tests/gemma-GGUF:Q2_K")
        assert pulled.returncode == 0, pulled.stderr
        done = edgellm(
            "bench", "--quality", "-hf", "tests/gemma-GGUF:Q2_K", "--reference", "auto", "--chunks", "1", "--json"
        )
        assert done.returncode == 0, done.stderr
        figures = json.loads(done.stdout)["quality"]
        assert figures["reference"]["repo"] == "tests/gemma-GGUF" and figures["reference"]["quant"] == "Q4_K_M"
        assert figures["kld"] > 0
        planned = edgellm("plan", "-hf", "tests/gemma-GGUF:Q2_K")  # the stored file: its measured quality
        refused = edgellm("pull", "tests/gemma-GGUF", "--dry-run", "--min-quality", "0.01")  # the repo's quants
    finally:
        hub.close()
    assert planned.returncode == 0, planned.stderr
    assert f"Quality  KLD {figures['kld']:.3g} vs Q4_K_M, " in planned.stdout
    # Q4_K_M by its prior, Q2_K by what was measured for this repo's file: both above the bound
    assert_one_line_error(refused, "Q4_K_M: skipped, KLD ~", f"Q2_K: skipped, KLD {figures['kld']:.3g} vs Q4_K_M")


def test_ctrl_c_stops_the_pass_between_chunks_and_keeps_nothing(test_model: Path, edgellm_home: Path) -> None:
    """Ctrl-C once the reading has begun: the chunk in hand finishes, the pass stops, exit 130, nothing stored."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "bench", "--quality", "-m", str(test_model), "--reference", str(test_model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stderr.readline()  # the warning that the reference is the model itself, then...
        while first and not first.startswith("bench: quality"):
            first = process.stderr.readline()
        assert first.startswith("bench: quality: 0 / 17 chunks"), first  # ...the progress line: the reading began
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
        rest = process.stderr.read()
    finally:
        process.kill()
    assert code == 130 and "edgellm: interrupted" in rest and "Traceback" not in rest
    assert "17 / 17" not in rest  # stopped before the end of the text
    assert not (edgellm_home / "bench").exists()
