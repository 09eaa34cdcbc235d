"""Planning a model across machines for real: `plan --profile A --profile B`, `plan --rpc` over loopback workers, and
`run --rpc` placing the layers as planned. The pure split: tests/unit/test_split.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support import assert_one_line_error, edgellm
from tests.support.workers import start_worker, stop

GIB, MIB = 2**30, 2**20


def test_plan_two_profiles_from_the_command_line(test_model: Path) -> None:
    done = edgellm(
        "plan", "-m", str(test_model), "--profile", "raspberry-pi-5-8gb", "--profile", "raspberry-pi-4-4gb", "--json"
    )
    assert done.returncode == 0, done.stderr
    split = json.loads(done.stdout)["split"]
    first, second = split["devices"]
    assert first["device"] == "raspberry-pi-5-8gb" and second["device"] == "raspberry-pi-4-4gb"
    assert first["layers"] + second["layers"] == 18 and first["layers"] > second["layers"] > 0
    assert split["tensor_split"] == [second["layers"] + 1] and split["fits"] and first["output"]
    text = edgellm(
        "plan", "-m", str(test_model), "--profile", "raspberry-pi-5-8gb", "--profile", "raspberry-pi-4-4gb"
    ).stdout
    assert "Split of 18 layers across 2 devices" in text and "tensor_split" in text


def test_plan_with_two_workers_shares_layers_by_their_promises(test_model: Path) -> None:
    first, first_port = start_worker("--memory", "8000")
    second, second_port = start_worker("--memory", "4000")
    try:
        done = edgellm(
            "plan",
            "-m",
            str(test_model),
            "--profile",
            "raspberry-pi-4-4gb",
            "--rpc",
            f"127.0.0.1:{first_port},127.0.0.1:{second_port}",
            "--json",
        )
    finally:
        assert stop(first) == 0 and stop(second) == 0
    assert done.returncode == 0, done.stderr
    here, big, small = json.loads(done.stdout)["split"]["devices"]
    assert (big["endpoint"], small["endpoint"]) == (f"127.0.0.1:{first_port}", f"127.0.0.1:{second_port}")
    assert (big["budget_bytes"], small["budget_bytes"]) == (8000 * MIB, 4000 * MIB)
    # in proportion to what each promises: the output (and the logits) stay here
    assert abs(big["layers"] - 2 * small["layers"]) <= 1 and small["layers"] > 0 and here["output"]
    assert here["layers"] + big["layers"] + small["layers"] == 18
    assert all(device["total_bytes"] <= device["budget_bytes"] for device in (here, big, small))


def test_an_unreachable_worker_in_a_plan_is_one_line_and_exit_2(test_model: Path) -> None:
    from edgellm.engine.side_channel import free_port_pair

    port = free_port_pair()
    assert_one_line_error(
        edgellm("plan", "-m", str(test_model), "--rpc", f"127.0.0.1:{port}"),
        f"RPC worker at 127.0.0.1:{port} cannot be used",
        "edgellm worker",
    )


def test_llama_cpp_places_the_split_as_planned_and_keeps_the_output_here(test_model: Path, edgellm_home: Path) -> None:
    """`run --rpc` over two workers: llama.cpp's own log shows each layer on the device the plan gave it, the output's
    weights kept on this CPU, and each device's model buffer near what the plan says it holds; the greedy text is
    the local one."""
    local = edgellm("run", "-m", str(test_model), "-p", "1, 2, 3, 4, 5,", "-n", "8", "--temp", "0")
    first, first_port = start_worker("--memory", "8000", "-t", "1")
    second, second_port = start_worker("--memory", "4000", "-t", "1")
    try:
        endpoints = f"127.0.0.1:{first_port},127.0.0.1:{second_port}"
        split = json.loads(edgellm("plan", "-m", str(test_model), "--rpc", endpoints, "--json").stdout)["split"]
        (edgellm_home / "logs").mkdir(parents=True, exist_ok=True)
        (edgellm_home / "logs" / "edgellm.log").write_text("")
        remote = edgellm(
            "run", "-m", str(test_model), "-p", "1, 2, 3, 4, 5,", "-n", "8", "--temp", "0", "--rpc", endpoints
        )
    finally:
        assert stop(first) == 0 and stop(second) == 0
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout and local.stdout.strip()  # a sure continuation (see test_split_run)
    log = (edgellm_home / "logs" / "edgellm.log").read_text()
    # "load_tensors: layer  12 assigned to device RPC0, is_swa = 1"; llama.cpp counts the output as layer 18
    placed = [
        re.search(r"layer +(\d+) assigned to device (\S+),", line).groups()
        for line in log.splitlines()
        if "assigned to device" in line
    ]
    names = [name for index, name in placed if int(index) < 18]
    here, big, small = split["devices"]
    assert all(device["layers"] for device in split["devices"])
    assert [(name, names.count(name)) for name in dict.fromkeys(names)] == [
        ("CPU", here["layers"]),
        ("RPC0", big["layers"]),
        ("RPC1", small["layers"]),
    ]
    # ... but its weights stay here, where the logits are made: none of the vocabulary's crosses the network
    assert "tensor output_norm.weight (0 MiB f32) buffer type overridden to CPU" in log
    assert re.search(r"tensor token_embd\.weight .* buffer type overridden to CPU", log) and here["output"]
    buffers = {
        where: float(size) for where, size in re.findall(r"load_tensors: +(\S+) model buffer size = +([\d.]+) MiB", log)
    }
    local_mib = sum(size for where, size in buffers.items() if where.startswith("CPU"))
    for planned, found in (
        (here, local_mib),
        (big, buffers[f"RPC0[127.0.0.1:{first_port}]"]),
        (small, buffers[f"RPC0[127.0.0.1:{second_port}]"]),
    ):
        assert abs(planned["weights_bytes"] / MIB - found) <= max(2.0, 0.1 * found), (planned, found)
