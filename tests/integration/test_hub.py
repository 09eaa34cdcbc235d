"""Pull, store and -hf against a local Hub on 127.0.0.1: the real huggingface_hub client, real HTTP, real files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgellm.convert.tinymodel import Shape, write_model
from tests.support import assert_one_line_error, edgellm
from tests.support.disks import fill, mount
from tests.support.fakehub import FakeHub, FakeRepo, Faults, point_hub_at, sparse_model
from tests.support.specs import SMALL

LLAMA_8B = Shape("llama", 4096, 32, 14336, 128256, 32, 8, 128, tied=False, context_length=131072)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hub-files")
    made = {
        f"tiny-{q.upper()}.gguf": write_model(folder / f"tiny-{q.upper()}.gguf", SMALL, quant=q)
        for q in ("q8_0", "q4_0", "f16")
    }
    for quant in ("Q8_0", "Q6_K", "Q4_K", "Q2_K"):
        name = f"Llama-8B-{'Q4_K_M' if quant == 'Q4_K' else quant}.gguf"
        made[name] = sparse_model(folder / name, LLAMA_8B, quant)
    split = write_model(folder / "odd.gguf", SMALL, quant="q4_0", split_max_tensors=20)
    made["split"] = split
    made["split-2"] = split.with_name(split.name.replace("00001-of", "00002-of"))
    return made


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, models: dict[str, Path], test_model: Path):
    server = point_hub_at(FakeHub(), monkeypatch, tmp_path)
    server.add(
        "tests/tiny-GGUF",
        FakeRepo(
            {name: models[name] for name in ("tiny-Q8_0.gguf", "tiny-Q4_0.gguf", "tiny-F16.gguf")}
            | {"README.md": models["tiny-Q8_0.gguf"].with_name("README.md")}
        ),
    )
    models["tiny-Q8_0.gguf"].with_name("README.md").write_text("# tiny\n")
    big = {name: path for name, path in models.items() if name.startswith("Llama-8B")}
    # the sparse files are never downloaded: name their sha256 rather than hash gigabytes of zeros
    server.add(
        "bigco/Llama-8B-GGUF", FakeRepo(big, sha256={name: hashlib.sha256(name.encode()).hexdigest() for name in big})
    )
    server.add(
        "odd/Names-GGUF",
        FakeRepo(
            {
                "UD-Q4_K_XL/model-UD-Q4_K_XL-00001-of-00002.gguf": models["split"],
                "UD-Q4_K_XL/model-UD-Q4_K_XL-00002-of-00002.gguf": models["split-2"],
                "model-q8_0.gguf": models["tiny-Q8_0.gguf"],
                "mmproj-F16.gguf": models["tiny-F16.gguf"],
            }
        ),
    )
    server.add("gated/Model-GGUF", FakeRepo({"model-Q8_0.gguf": models["tiny-Q8_0.gguf"]}, gated=True))
    server.add("google/gemma-3-270m-GGUF", FakeRepo({"gemma-3-270m-Q4_K_M.gguf": test_model}))
    yield server
    server.close()


def pull_json(*args: str, **options) -> dict:
    done = edgellm("pull", *args, "--json", **options)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "profile, quant",
    [
        ("raspberry-pi-5-8gb", "Q6_K"),  # Q8_0 needs more than the Pi's usable RAM
        ("laptop-rtx4060-8gb", "Q8_0"),  # split with the CPU, as Q6_K would be too: the better quant
        ("macbook-air-m2-16gb", "Q4_K_M"),  # whole on the GPU: Q6_K whole would need 30 MiB more than the 6.90 GiB
        # usable (what the process keeps resident beside the buffers counts), and fits only on the CPU
        ("jetson-orin-nano-8gb", "Q2_K"),  # whole on the GPU, rather than Q4_K_M split with the CPU
        ("cpu-laptop-8gb", "Q2_K"),
    ],
)
def test_dry_run_picks_the_quant_that_fits_each_profile(hub: FakeHub, profile: str, quant: str) -> None:
    data = pull_json("bigco/Llama-8B-GGUF", "--profile", profile, "--dry-run")
    assert data["quant"] == quant, data["considered"]
    assert data["plan"]["fits"] and data["files"][0]["path"] == f"Llama-8B-{quant}.gguf"
    assert data["files"][0]["sha256"] == hub.repos["bigco/Llama-8B-GGUF"].digest(f"Llama-8B-{quant}.gguf")
    # sized from headers read with Range requests: a few MiB, never the multi-GB files
    ranged = [entry for entry in hub.gets("/blob/") if entry[2] and entry[2].startswith("bytes=0-")]
    assert ranged and sum(hub.served.values()) < 64 * 2**20


def test_plan_of_a_remote_model_downloads_nothing(hub: FakeHub, edgellm_home: Path) -> None:
    done = edgellm("plan", "-hf", "bigco/Llama-8B-GGUF", "--profile", "raspberry-pi-5-8gb", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["quant"] == "Q6_K" and data["model"]["architecture"] == "llama" and data["fits"]
    assert all((wanted or "").startswith("bytes=0-") for _, wanted, _ in hub.transfers), "headers only"
    assert not (edgellm_home / "models").exists()


def test_unreadable_header_is_sized_from_the_file_with_a_wider_margin(hub: FakeHub, tmp_path: Path) -> None:
    broken = tmp_path / "broken-Q4_K_M.gguf"
    broken.write_bytes(b"not a gguf header" * 100_000)
    hub.add(
        "odd/Broken-GGUF",
        FakeRepo(
            {"broken-Q4_K_M.gguf": broken}, gguf={"architecture": "llama", "context_length": 8192, "total": 1_000_000}
        ),
    )
    data = pull_json("odd/Broken-GGUF", "--dry-run", "--profile", "raspberry-pi-5-8gb")
    assert data["quant"] == "Q4_K_M"
    assert any("header unreadable" in line and "wider margin" in line for line in data["considered"])
    assert data["plan"]["model"]["trained_ctx"] == 8192  # from model_info(expand=["gguf"])
    pi5_ram = 8449957888
    margin = data["plan"]["estimate"]["devices"][0]["margin_bytes"]
    assert margin == pi5_ram // 10 + broken.stat().st_size // 4  # the usual margin, plus a quarter of the file


def test_nothing_fits_names_the_smallest(hub: FakeHub) -> None:
    assert_one_line_error(
        edgellm("pull", "bigco/Llama-8B-GGUF", "--profile", "raspberry-pi-4-4gb", "--dry-run", "-c", "131072"),
        "no quant fits",
        "The smallest file is Q2_K",
    )


def test_forced_quant_warns_when_it_does_not_fit(hub: FakeHub) -> None:
    done = edgellm("pull", "bigco/Llama-8B-GGUF:q8_0", "--profile", "raspberry-pi-5-8gb", "--dry-run")
    assert done.returncode == 0 and "warning: Q8_0 does not fit raspberry-pi-5-8gb" in done.stderr


def test_pull_stores_verifies_and_runs(hub: FakeHub, edgellm_home: Path, models: dict[str, Path]) -> None:
    done = edgellm("pull", "tests/tiny-GGUF")
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])  # the local path comes last
    assert path == edgellm_home / "models" / "tests" / "tiny-GGUF" / "tiny-Q8_0.gguf"  # F16 skipped on a CPU
    assert path.read_bytes() == models["tiny-Q8_0.gguf"].read_bytes()
    listed = json.loads(edgellm("ls", "--json").stdout)
    assert [(m["name"], m["alias"], m["source"]) for m in listed] == [("tests/tiny-GGUF:Q8_0", "tiny-Q8_0", "pull")]
    served = dict(hub.served)
    for ref in (
        ("-hf", "tests/tiny-GGUF"),
        ("-hf", "tests/tiny-GGUF:Q8_0"),
        ("-m", "tests/tiny-GGUF:Q8_0"),
        ("-m", "tiny-Q8_0"),
    ):
        ran = edgellm("run", *ref, "-p", "a", "-n", "2", "--json")
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout.splitlines()[-1])["model"] == str(path)
    assert hub.served == served, "a stored model is never downloaded again"
    assert json.loads(edgellm("ls", "--json").stdout)[0]["last_used"] is not None
    assert edgellm("rm", "tiny-Q8_0").stdout.strip() == "removed tests/tiny-GGUF:Q8_0"
    assert not path.exists() and not (edgellm_home / "models" / "tests").exists()


def test_a_file_changed_on_the_hub_is_fetched_again(hub: FakeHub, models: dict[str, Path], tmp_path: Path) -> None:
    first = Path(edgellm("pull", "tests/tiny-GGUF:Q8_0").stdout.strip().splitlines()[-1])
    changed = tmp_path / "changed.gguf"
    changed.write_bytes(models["tiny-Q4_0.gguf"].read_bytes())
    repo = hub.repos["tests/tiny-GGUF"]
    repo.files["tiny-Q8_0.gguf"], repo.commit = changed, "f" * 40
    repo.sha256.pop("tiny-Q8_0.gguf")
    again = edgellm("pull", "tests/tiny-GGUF:Q8_0")
    assert again.returncode == 0, again.stderr
    assert first.read_bytes() == changed.read_bytes()
    assert json.loads(edgellm("ls", "--json").stdout)[0]["name"] == "tests/tiny-GGUF:Q8_0"


def test_store_names_that_do_not_fit_one_model(hub: FakeHub, models: dict[str, Path], tmp_path: Path) -> None:
    assert edgellm("pull", "tests/tiny-GGUF:Q8_0").returncode == 0
    copy = tmp_path / "other" / "tiny-Q8_0.gguf"
    copy.parent.mkdir()
    shutil.copy(models["tiny-Q8_0.gguf"], copy)
    assert edgellm("import", str(copy)).returncode == 0
    assert_one_line_error(edgellm("rm", "tiny-Q8_0"), "names 2 stored models", "tests/tiny-GGUF:Q8_0")
    cache = tmp_path / "hf-home" / "hub" / "models--x--y" / "snapshots" / "c"
    cache.mkdir(parents=True)
    shutil.copy(models["tiny-Q4_0.gguf"], cache / "y-Q4_0.gguf")
    assert_one_line_error(edgellm("rm", "x/y:Q4_0"), "belongs to another tool")


def test_kill_9_mid_download_then_a_new_process_finishes_it(hub: FakeHub, edgellm_home: Path, test_model: Path) -> None:
    repo = hub.repos["google/gemma-3-270m-GGUF"]
    repo.faults["gemma-3-270m-Q4_K_M.gguf"] = Faults(bytes_per_s=40 * 2**20)
    part = edgellm_home / "models" / "google" / "gemma-3-270m-GGUF" / "gemma-3-270m-Q4_K_M.gguf.part"
    first = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "pull", "google/gemma-3-270m-GGUF"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 30 * 2**20):
        time.sleep(0.05)  # polling for a condition: the partial file holding 30 MiB
    first.send_signal(signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(wanted is None for _, wanted, _ in hub.transfers):
        time.sleep(0.05)  # the server notices the broken connection and records the cut transfer
    kept = part.stat().st_size
    assert kept > 30 * 2**20
    repo.faults.clear()
    digest = repo.digest("gemma-3-270m-Q4_K_M.gguf")
    already = len(hub.transfers)
    second = edgellm("pull", "google/gemma-3-270m-GGUF")
    assert second.returncode == 0, second.stderr
    bodies = [
        (wanted, sent) for _, wanted, sent in hub.transfers[already:] if not (wanted or "").startswith("bytes=0-")
    ]
    assert bodies == [(f"bytes={kept}-", test_model.stat().st_size - kept)], "only the rest was fetched"
    final = Path(second.stdout.strip().splitlines()[-1])
    assert hashlib.sha256(final.read_bytes()).hexdigest() == digest and not part.exists()


def test_dropped_connection_resumes_within_the_run(hub: FakeHub) -> None:
    repo = hub.repos["tests/tiny-GGUF"]
    size = repo.files["tiny-Q8_0.gguf"].stat().st_size
    repo.faults["tiny-Q8_0.gguf"] = Faults(drop_after=size // 3, drops_left=1)
    done = edgellm("pull", "tests/tiny-GGUF:Q8_0")
    assert done.returncode == 0, done.stderr
    bodies = [
        (wanted, sent)
        for path, wanted, sent in hub.transfers
        if path == "tiny-Q8_0.gguf" and not (wanted or "").startswith("bytes=0-")
    ]
    assert bodies == [(None, size // 3), (f"bytes={size // 3}-", size - size // 3)], "nothing fetched twice"


def test_corrupted_byte_is_caught_and_fetched_again(hub: FakeHub, models: dict[str, Path]) -> None:
    hub.repos["tests/tiny-GGUF"].faults["tiny-Q8_0.gguf"] = Faults(corrupt_left=1)
    done = edgellm("pull", "tests/tiny-GGUF:Q8_0")
    assert done.returncode == 0, done.stderr
    bodies = [
        wanted
        for path, wanted, _ in hub.transfers
        if path == "tiny-Q8_0.gguf" and not (wanted or "").startswith("bytes=0-")
    ]
    assert bodies == [None, None], "fetched whole a second time after the sha256 mismatch"
    assert Path(done.stdout.strip().splitlines()[-1]).read_bytes() == models["tiny-Q8_0.gguf"].read_bytes()


def test_gated_repo_needs_a_token_that_is_never_shown(hub: FakeHub, edgellm_home: Path) -> None:
    assert_one_line_error(edgellm("pull", "gated/Model-GGUF"), "gated/Model-GGUF is gated", "HF_TOKEN")
    done = edgellm("pull", "gated/Model-GGUF", "-v" if False else "--json", env={"HF_TOKEN": hub.token})
    assert done.returncode == 0, done.stderr
    assert hub.token not in done.stdout + done.stderr
    for path in edgellm_home.rglob("*"):
        if path.is_file() and not path.name.endswith(".gguf"):
            assert hub.token not in path.read_text(errors="ignore"), path


def test_unknown_repo_and_quant(hub: FakeHub) -> None:
    assert_one_line_error(edgellm("pull", "nobody/Nothing-GGUF"), "was not found on the Hub")
    assert_one_line_error(edgellm("pull", "tests/tiny-GGUF:Q5_K_M"), "has no Q5_K_M file", "Q8_0")
    assert_one_line_error(edgellm("pull", "not a ref"), "is not a Hugging Face model reference")


def test_odd_names_split_model_and_projector(hub: FakeHub) -> None:
    data = pull_json("odd/Names-GGUF", "--dry-run")
    assert data["quant"] == "Q8_0" and data["files"][0]["path"] == "model-q8_0.gguf"
    split = pull_json("odd/Names-GGUF:UD-Q4_K_XL")
    assert [f["path"] for f in split["files"]] == [
        "UD-Q4_K_XL/model-UD-Q4_K_XL-00001-of-00002.gguf",
        "UD-Q4_K_XL/model-UD-Q4_K_XL-00002-of-00002.gguf",
    ]
    ran = edgellm("run", "-hf", "odd/Names-GGUF:Q4_K_XL", "-p", "a", "-n", "2")
    assert ran.returncode == 0, ran.stderr


def test_offline_mode_works_from_the_store(hub: FakeHub) -> None:
    assert edgellm("pull", "tests/tiny-GGUF:Q8_0").returncode == 0
    log_length = len(hub.log)
    ran = edgellm("run", "-hf", "tests/tiny-GGUF:Q8_0", "-p", "a", "-n", "2", "--offline")
    assert ran.returncode == 0, ran.stderr
    assert edgellm("pull", "tests/tiny-GGUF:Q8_0", "--offline").returncode == 0
    assert len(hub.log) == log_length, "offline: no request reached the Hub"
    assert_one_line_error(
        edgellm("run", "-hf", "tests/tiny-GGUF:Q4_0", "-p", "a", env={"HF_HUB_OFFLINE": "1"}),
        "not in the store and offline mode is on",
    )
    assert_one_line_error(edgellm("pull", "odd/Names-GGUF", "--offline"), "offline mode is on")


@pytest.mark.root
def test_not_enough_disk(hub: FakeHub, tmp_path: Path) -> None:
    small = tmp_path / "small-disk"
    mount(small, 1024)
    try:
        done = edgellm("pull", "tests/tiny-GGUF:Q8_0", env={"EDGELLM_HOME": str(small)})
        assert_one_line_error(done, "not enough disk", "free some space")
        assert not list(small.rglob("*.part")), "nothing half-written"
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.root
def test_the_disk_fills_during_a_download_then_it_resumes(hub: FakeHub, tmp_path: Path, test_model: Path) -> None:
    """Something else fills the disk mid-download: one line naming the disk, the partial file kept (never one that
    looks complete), and once space is freed the next pull fetches only the rest and verifies it."""
    disk = tmp_path / "filling-disk"
    mount(disk, 300 * 1024)
    try:
        repo = hub.repos["google/gemma-3-270m-GGUF"]
        repo.faults["gemma-3-270m-Q4_K_M.gguf"] = Faults(bytes_per_s=40 * 2**20)
        env = {**os.environ, "EDGELLM_HOME": str(disk / "home")}
        folder = disk / "home" / "models" / "google" / "gemma-3-270m-GGUF"
        part = folder / "gemma-3-270m-Q4_K_M.gguf.part"
        pull = subprocess.Popen(
            [sys.executable, "-m", "edgellm", "pull", "google/gemma-3-270m-GGUF"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 20 * 2**20):
            time.sleep(0.05)  # polling for a condition: 20 MiB downloaded
        fill(disk)  # another program takes the rest of the disk
        _out, err = pull.communicate(timeout=120)
        assert pull.returncode == 2, err
        last = err.strip().splitlines()[-1]
        assert "No space left on device" in last and "free some space" in last and "Traceback" not in err
        assert part.exists() and not (folder / "gemma-3-270m-Q4_K_M.gguf").exists()
        (disk / "filler").unlink()
        repo.faults.clear()
        kept, already = part.stat().st_size, len(hub.transfers)
        again = subprocess.run(
            [sys.executable, "-m", "edgellm", "pull", "google/gemma-3-270m-GGUF"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert again.returncode == 0, again.stderr
        wanted = [wanted for _, wanted, _ in hub.transfers[already:] if not (wanted or "").startswith("bytes=0-")]
        assert wanted == [f"bytes={kept}-"], "only the rest was fetched"
        final = Path(again.stdout.strip().splitlines()[-1])
        assert final.read_bytes() == test_model.read_bytes() and not part.exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_models_in_the_hf_cache_are_used_in_place(hub: FakeHub, models: dict[str, Path], tmp_path: Path) -> None:
    digest = hub.repos["tests/tiny-GGUF"].digest("tiny-Q8_0.gguf")
    cache = tmp_path / "hf-home" / "hub" / "models--tests--tiny-GGUF"
    (cache / "blobs").mkdir(parents=True)
    shutil.copy(models["tiny-Q8_0.gguf"], cache / "blobs" / digest)
    (cache / "snapshots" / "abc").mkdir(parents=True)
    (cache / "snapshots" / "abc" / "tiny-Q8_0.gguf").symlink_to(cache / "blobs" / digest)
    listed = json.loads(edgellm("ls", "--all", "--json").stdout)
    assert [(m["name"], m["source"]) for m in listed] == [("tests/tiny-GGUF:Q8_0", "hf-cache")]
    ran = edgellm("run", "-m", "tests/tiny-GGUF:Q8_0", "-p", "a", "-n", "2", "--json")  # usable by name, in place
    assert json.loads(ran.stdout.splitlines()[-1])["model"] == str(cache / "snapshots" / "abc" / "tiny-Q8_0.gguf")
    data = pull_json("tests/tiny-GGUF:Q8_0")
    assert data["path"] == str(cache / "blobs" / digest)
    assert digest not in hub.served, "never downloaded twice"
    assert "left in place" in edgellm("rm", "tests/tiny-GGUF:Q8_0").stdout
    assert (cache / "blobs" / digest).exists()


def test_import_uses_a_file_in_place(models: dict[str, Path]) -> None:
    done = edgellm("import", str(models["tiny-Q4_0.gguf"]))
    assert done.stdout.strip() == "imported local/tiny-Q4_0:Q4_0 (alias tiny-Q4_0)"
    ran = edgellm("run", "-m", "tiny-Q4_0", "-p", "a", "-n", "2", "--json")
    assert json.loads(ran.stdout.splitlines()[-1])["model"] == str(models["tiny-Q4_0.gguf"])
    edgellm("rm", "local/tiny-Q4_0:Q4_0")
    assert models["tiny-Q4_0.gguf"].exists()
    assert_one_line_error(edgellm("import", str(models["tiny-Q4_0.gguf"].parent)), "is a directory")


@pytest.fixture
def closed_port(monkeypatch: pytest.MonkeyPatch) -> str:
    """HF_ENDPOINT on a port nothing listens on: every connection is refused."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return endpoint


def test_a_refused_connection_is_typed_hub_unreachable(closed_port: str) -> None:
    from edgellm.errors import HubUnreachable
    from edgellm.hub.client import list_files

    with pytest.raises(HubUnreachable) as raised:
        list_files("tests/tiny-GGUF")
    assert (raised.value.repo, raised.value.endpoint) == ("tests/tiny-GGUF", closed_port)
    assert f"cannot reach the Hub at {closed_port}" in str(raised.value)
    assert_one_line_error(edgellm("pull", "tests/tiny-GGUF"), "cannot reach the Hub", "--offline")


def test_recommend_with_an_unreachable_hub_estimates_sizes(closed_port: str) -> None:
    done = edgellm("recommend", "--profile", "raspberry-pi-5-8gb", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["hub_unreachable"] and data["sizes"] == "estimated"
    assert data["recommended"] and all(pick["sizes_from"] == "estimated" for pick in data["recommended"])
