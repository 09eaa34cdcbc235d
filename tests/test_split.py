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


def test_the_output_goes_to_the_last_worker_with_room_for_it() -> None:
    roomy = plan_split(LLAMA_8B_Q4, [Device("here", 64 * GIB), Device("a", 64 * GIB), Device("b", 64 * GIB)])
    assert [share.output for share in roomy.shares] == [False, False, True]
    cramped = plan_split(LLAMA_8B_Q4, [Device("here", 6 * GIB), Device("a", 6 * GIB), Device("b", 300 * MIB)])
    assert cramped.fits and [share.layers > 0 for share in cramped.shares] == [True, True, False]
    assert [share.output for share in cramped.shares] == [False, True, False]
    assert cramped.tensor_split == (cramped.shares[1].layers + 1, 0)


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
    assert (here.first_layer, here.layers, there.first_layer, there.layers) == (0, 16, 16, 16)
    assert there.output and not here.output  # llama.cpp offloads the output first, to the last device
    assert split.n_gpu_layers == 17 and split.tensor_split == (17,)
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
    assert split["tensor_split"] == [second["layers"] + 1] and split["fits"] and second["output"]
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
    # in proportion to the room each has for layers: the last worker also holds the output (700 MiB with this
    # model's 262k vocabulary), so the smaller one gets less than half the larger's layers
    assert big["layers"] >= 2 * small["layers"] - 1 and small["layers"] > 0 and small["output"]
    assert here["layers"] + big["layers"] + small["layers"] == 18
    assert all(device["total_bytes"] <= device["budget_bytes"] for device in (here, big, small))


def test_an_unreachable_worker_in_a_plan_is_one_line_and_exit_2(test_model: Path) -> None:
    from test_worker import free_port_pair

    port = free_port_pair()
    assert_one_line_error(edgellm("plan", "-m", str(test_model), "--rpc", f"127.0.0.1:{port}"),
                          f"RPC worker at 127.0.0.1:{port} cannot be used", "edgellm worker")


SPLIT_RUN = """
import json, sys
from edgellm.engine import rpc
from edgellm.engine.backends import devices
import llama_cpp
endpoints = [rpc.parse_endpoint(text) for text in sys.argv[2].split(",")] if sys.argv[2] else []
for endpoint in endpoints:
    rpc.check_worker(endpoint)
rpc.join(endpoints)
split = json.loads(sys.argv[3]) if endpoints else {"n_gpu_layers": 0, "tensor_split": []}
extra = {"tensor_split": [float(n) for n in split["tensor_split"]]} if endpoints else {}
llm = llama_cpp.Llama(sys.argv[1], n_ctx=512, n_threads=1, n_gpu_layers=split["n_gpu_layers"], seed=0, verbose=True,
                      **extra)
text = llm("1, 2, 3, 4, 5,", max_tokens=8, temperature=0)["choices"][0]["text"]  # sure tokens (test_split_run)
print(json.dumps({"text": text, "devices": [d.name for d in devices()]}))
"""


def test_the_planned_split_over_two_loopback_workers_gives_the_local_greedy_text(test_model: Path) -> None:
    """llama.cpp runs the split edgellm planned (n_gpu_layers, tensor_split) on two workers, in a process of its own
    (joining workers cannot be undone), and says what the model says run locally."""
    import subprocess
    import sys

    def run(endpoints: str, split: dict | None) -> dict:
        done = subprocess.run([sys.executable, "-c", SPLIT_RUN, str(test_model), endpoints, json.dumps(split)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        found = json.loads(done.stdout.strip().splitlines()[-1])
        # llama.cpp's own log: "load_tensors: layer  12 assigned to device RPC0, is_swa = 1"; layer 18 is the output
        placed = [re.search(r"layer +(\d+) assigned to device (\S+),", line).groups()
                  for line in done.stderr.splitlines() if "assigned to device" in line]
        names = [name for index, name in placed if int(index) < 18]
        found["layers"] = [(name, names.count(name)) for name in dict.fromkeys(names)]
        found["output"] = next(name for index, name in placed if int(index) == 18)
        return found

    local = run("", None)
    first, first_port = start_worker("--memory", "8000", "-t", "1")
    second, second_port = start_worker("--memory", "4000", "-t", "1")
    try:
        endpoints = f"127.0.0.1:{first_port},127.0.0.1:{second_port}"
        planned = edgellm("plan", "-m", str(test_model), "--profile", "raspberry-pi-4-4gb", "--rpc", endpoints,
                          "--json")
        split = json.loads(planned.stdout)["split"]
        assert all(device["layers"] for device in split["devices"])
        remote = run(endpoints, split)
    finally:
        assert stop(first) == 0 and stop(second) == 0
    assert remote["devices"] == ["CPU", "RPC0", "RPC1"]
    # llama.cpp placed the layers as the plan says: the first here, then each worker's share, the output last
    assert remote["layers"] == [("CPU", split["devices"][0]["layers"]), ("RPC0", split["devices"][1]["layers"]),
                                ("RPC1", split["devices"][2]["layers"])] and remote["output"] == "RPC1"
    assert remote["text"] == local["text"] and local["text"].strip()
