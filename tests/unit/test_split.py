"""Planning a model across machines, pure: the split across devices, the layers each holds, a worker's budget.
`plan --profile A --profile B`, `plan --rpc` and `run --rpc` for real: tests/integration/test_split.py."""

from __future__ import annotations

import pytest

from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import PlanError, plan
from edgellm.plan.split import SplitDevice, layer_counts, plan_split, profile_device, worker_budget
from tests.support.specs import LLAMA_8B_Q4, LLAMA_8B_Q8

GIB, MIB = 2**30, 2**20


def test_the_output_stays_here_and_llama_cpp_is_told_the_layers_each_worker_holds() -> None:
    roomy = plan_split(
        LLAMA_8B_Q4, [SplitDevice("here", 64 * GIB), SplitDevice("a", 64 * GIB), SplitDevice("b", 64 * GIB)]
    )
    assert [share.output for share in roomy.shares] == [True, False, False]  # the logits never cross the network
    here, a, b = roomy.shares
    assert here.weights > a.weights and here.overhead > a.overhead  # the embedding, the output and the logits
    assert roomy.tensor_split == (a.layers, b.layers + 1)  # llama.cpp counts the output on the last holder
    cramped = plan_split(
        LLAMA_8B_Q4, [SplitDevice("here", 6 * GIB), SplitDevice("a", 6 * GIB), SplitDevice("b", 20 * MIB)]
    )
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
    small = [SplitDevice("a", 2 * GIB), SplitDevice("b", 1 * GIB, "10.0.0.2:50052")]
    with pytest.raises(PlanError, match=r"does not fit across these devices.*a needs .* of 2\.00 GiB"):
        plan_split(LLAMA_8B_Q4, small)
    roomy = plan_split(LLAMA_8B_Q4, [SplitDevice("a", 64 * GIB), SplitDevice("b", 64 * GIB)])
    squeezed = []
    for scale in (0.99, 0.98, 0.96, 0.94, 0.92, 0.9, 0.85, 0.8):  # just under what an f16 cache at 4096 takes
        devices = [SplitDevice(share.device.name, int(share.total * scale)) for share in roomy.shares]
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
