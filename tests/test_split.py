"""Planning a model across machines: the pure split, and `plan --profile A --profile B` / `plan --rpc` for real."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import PlanError, plan
from edgellm.plan.split import Device, layer_counts, plan_split, profile_device, worker_budget

from conftest import edgellm
from test_bad_input import assert_one_line_error
from test_planner import LLAMA_8B_Q4, LLAMA_8B_Q8
from test_worker import start_worker, stop

GIB, MIB = 2**30, 2**20


def test_the_output_stays_here_and_llama_cpp_is_told_the_layers_each_worker_holds() -> None:
    roomy = plan_split(LLAMA_8B_Q4, [Device("here", 64 * GIB), Device("a", 64 * GIB), Device("b", 64 * GIB)])
    assert [share.output for share in roomy.shares] == [True, False, False]  # the logits never cross the network
    here, a, b = roomy.shares
    assert here.weights > a.weights and here.overhead > a.overhead  # the embedding, the output and the logits
    assert roomy.tensor_split == (a.layers, b.layers + 1)  # llama.cpp counts the output on the last holder
    cramped = plan_split(LLAMA_8B_Q4, [Device("here", 6 * GIB), Device("a", 6 * GIB), Device("b", 20 * MIB)])
    assert cramped.fits and [share.layers > 0 for share in cramped.shares] == [True, True, False]
    assert cramped.tensor_split == (cramped.shares[1].layers + 1, 0)
    assert cramped.n_gpu_layers == cramped.shares[1].layers + 1


def test_layers_are_shared_in_proportion_to_what_each_device_gives() -> None:
    assert layer_counts(32, [6 * GIB, 3 * GIB]) == [21, 11]
    assert layer_counts(18, [2, 1, 1]) == [9, 5, 4] or layer_counts(18, [2, 1, 1]) == [9, 4, 5]
    assert sum(layer_counts(29, [5, 7, 11])) == 29
    assert layer_counts(10, [4, 0]) == [10, 0]


def test_two_pi5s_run_an_8b_q8_model_that_one_cannot() -> None:
    pi = resolve_profile("raspberry-pi-5-8gb")
    with pytest.raises(PlanError):
        plan(pi, LLAMA_8B_Q8)
    devices = [profile_device(pi, local=True), profile_device(pi, local=False)]
    split = plan_split(LLAMA_8B_Q8, devices)
    assert split.fits and split.n_ctx == 4096 and split.kv == "f16"
    here, there = split.shares
    assert here.first_layer == 0 and there.first_layer == here.layers and here.layers + there.layers == 32
    assert 0 < there.layers - here.layers <= 6  # this side also keeps the embedding, the output and the logits
    assert here.output and not there.output
    assert split.n_gpu_layers == there.layers + 1 and split.tensor_split == (there.layers + 1,)
    assert all(share.total <= share.device.budget for share in split.shares)


def test_a_model_too_big_for_every_device_names_what_each_lacks() -> None:
    small = [Device("a", 2 * GIB), Device("b", 1 * GIB, "10.0.0.2:50052")]
    with pytest.raises(PlanError, match=r"does not fit across these devices.*a needs .* of 2\.00 GiB"):
        plan_split(LLAMA_8B_Q4, small)
    roomy = plan_split(LLAMA_8B_Q4, [Device("a", 64 * GIB), Device("b", 64 * GIB)])
    squeezed = []
    for scale in (0.99, 0.98, 0.96, 0.94, 0.92, 0.9, 0.85, 0.8):  # just under what an f16 cache at 4096 takes
        devices = [Device(share.device.name, int(share.total * scale)) for share in roomy.shares]
        try:
            squeezed.append(plan_split(LLAMA_8B_Q4, devices))
        except PlanError:
            break
    assert squeezed and all(found.fits for found in squeezed)
    assert any(found.kv == "q8_0" or found.n_ctx < 4096 for found in squeezed)
    assert all(found.notices for found in squeezed if found.kv == "q8_0" or found.n_ctx < 4096)


def test_a_workers_budget_is_its_promise_never_more_than_it_has() -> None:
    assert worker_budget(8 * GIB, 2 * GIB) == 2 * GIB
    assert worker_budget(1 * GIB, 2 * GIB) == 1 * GIB
    assert worker_budget(10 * GIB, None) == 9 * GIB  # no promise: what it reports, less a tenth


def test_plan_two_profiles_from_the_command_line(test_model: Path) -> None:
    done = edgellm("plan", "-m", str(test_model), "--profile", "raspberry-pi-5-8gb", "--profile",
                   "raspberry-pi-4-4gb", "--json")
    assert done.returncode == 0, done.stderr
    split = json.loads(done.stdout)["split"]
    first, second = split["devices"]
    assert first["device"] == "raspberry-pi-5-8gb" and second["device"] == "raspberry-pi-4-4gb"
    assert first["layers"] + second["layers"] == 18 and first["layers"] > second["layers"] > 0
    assert split["tensor_split"] == [second["layers"] + 1] and split["fits"] and first["output"]
    text = edgellm("plan", "-m", str(test_model), "--profile", "raspberry-pi-5-8gb", "--profile",
                   "raspberry-pi-4-4gb").stdout
    assert "Split of 18 layers across 2 devices" in text and "tensor_split" in text


def test_plan_with_two_workers_shares_layers_by_their_promises(test_model: Path) -> None:
    first, first_port = start_worker("--memory", "8000")
    second, second_port = start_worker("--memory", "4000")
    try:
        done = edgellm("plan", "-m", str(test_model), "--profile", "raspberry-pi-4-4gb", "--rpc",
                       f"127.0.0.1:{first_port},127.0.0.1:{second_port}", "--json")
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
    assert_one_line_error(edgellm("plan", "-m", str(test_model), "--rpc", f"127.0.0.1:{port}"),
                          f"RPC worker at 127.0.0.1:{port} cannot be used", "edgellm worker")


def test_llama_cpp_places_the_split_as_planned_and_keeps_the_output_here(test_model: Path,
                                                                           edgellm_home: Path) -> None:
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
        remote = edgellm("run", "-m", str(test_model), "-p", "1, 2, 3, 4, 5,", "-n", "8", "--temp", "0", "--rpc",
                         endpoints)
    finally:
        assert stop(first) == 0 and stop(second) == 0
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout and local.stdout.strip()  # a sure continuation (see test_split_run)
    log = (edgellm_home / "logs" / "edgellm.log").read_text()
    # "load_tensors: layer  12 assigned to device RPC0, is_swa = 1"; llama.cpp counts the output as layer 18
    placed = [re.search(r"layer +(\d+) assigned to device (\S+),", line).groups()
              for line in log.splitlines() if "assigned to device" in line]
    names = [name for index, name in placed if int(index) < 18]
    here, big, small = split["devices"]
    assert all(device["layers"] for device in split["devices"])
    assert [(name, names.count(name)) for name in dict.fromkeys(names)] == [
        ("CPU", here["layers"]), ("RPC0", big["layers"]), ("RPC1", small["layers"])]
    # ... but its weights stay here, where the logits are made: none of the vocabulary's crosses the network
    assert "tensor output_norm.weight (0 MiB f32) buffer type overridden to CPU" in log
    assert re.search(r"tensor token_embd\.weight .* buffer type overridden to CPU", log) and here["output"]
    buffers = {where: float(size) for where, size in re.findall(r"load_tensors: +(\S+) model buffer size = +([\d.]+) MiB",
                                                                 log)}
    local_mib = sum(size for where, size in buffers.items() if where.startswith("CPU"))
    for planned, found in ((here, local_mib), (big, buffers[f"RPC0[127.0.0.1:{first_port}]"]),
                           (small, buffers[f"RPC0[127.0.0.1:{second_port}]"])):
        assert abs(planned["weights_bytes"] / MIB - found) <= max(2.0, 0.1 * found), (planned, found)
