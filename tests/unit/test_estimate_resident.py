"""The memory estimate's two figures per device (what llama.cpp allocates, what will be resident), the fit decided
by each where it applies, the GPU runtime known per family, a bench's measurements applied, and the plan saying
how sure it is."""

from __future__ import annotations

from dataclasses import replace

from edgellm.hw.builtin import resolve_profile
from edgellm.plan.estimate import MIB, EstimateInputs, estimate, gpu_runtime
from edgellm.plan.flash_attn import FlashAttnMeasured
from edgellm.plan.memory_calibration import MemoryCalibration
from edgellm.plan.planner import DeviceMeasured, Wishes, plan
from edgellm.plan.report import render, to_dict
from edgellm.words import say
from tests.support.specs import LLAMA_1B_Q4, LLAMA_3B_Q4, LLAMA_8B_Q4, llama_like

GIB = 2**30
GEMMA_LIKE = llama_like(8 * MIB, n_layers=18, n_embd=640, n_ff=2048, n_vocab=262144, tied=True)


def test_a_cpu_writes_the_logits_of_the_rows_asked_only() -> None:
    cpu = estimate(GEMMA_LIKE, EstimateInputs(n_ctx=4096)).device(False)
    assert cpu is not None
    assert cpu.compute >= 262144 * 512 * 4  # reserved: the logits of a whole micro-batch
    assert cpu.resident_part("compute") < cpu.compute // 10  # written: the activations, and one row of logits
    assert cpu.resident < cpu.total
    assert cpu.resident_part("weights") == cpu.weights and cpu.resident_part("kv_cache") == cpu.kv_cache


def test_a_discrete_gpu_holds_what_it_allocates() -> None:
    found = estimate(LLAMA_8B_Q4, EstimateInputs(n_ctx=4096, n_gpu_layers=33, gpu_backend="cuda"))
    gpu = found.device(True)
    assert gpu is not None and gpu.resident == gpu.total


def test_without_flash_attention_the_scores_are_resident_as_far_as_the_context_is_filled() -> None:
    inputs = EstimateInputs(n_ctx=16384, flash_attn=False)
    full = estimate(LLAMA_1B_Q4, inputs).device(False)
    early = estimate(LLAMA_1B_Q4, replace(inputs, filled=600)).device(False)
    assert full is not None and early is not None
    assert early.resident_part("compute") < full.resident_part("compute") <= full.compute
    assert early.compute == full.compute  # the reservation does not change


def test_the_gpu_runtime_is_known_per_family() -> None:
    assert gpu_runtime("cuda", "NVIDIA H200", 141 * GIB, False).overhead == 705 * MIB
    assert gpu_runtime("cuda", "NVIDIA GeForce RTX 4090", 24 * GIB, False).family == "cuda-large"
    small = gpu_runtime("cuda", "NVIDIA GeForce RTX 4060 Laptop GPU", 8 * GIB, False)
    assert small.family == "cuda-small" and "4060 Ti" in small.source
    assert gpu_runtime("cuda", "Jetson Orin Nano 8GB GPU", 8 * GIB, True).family == "cuda-jetson"
    assert gpu_runtime("metal", "Apple M2 GPU", 16 * GIB, True).overhead == 32 * MIB


def test_ram_is_fitted_by_what_is_resident() -> None:
    pi5 = resolve_profile("raspberry-pi-5-8gb")
    found = plan(pi5, LLAMA_3B_Q4, Wishes(ctx=4096, kv="f16", n_ubatch=512))
    cpu = found.estimate.device(False)
    assert cpu is not None and cpu.resident < cpu.total
    between = (cpu.resident + cpu.total) // 2 + found.ram.margin
    squeezed = replace(pi5, memory=replace(pi5.memory, available_bytes=between))
    assert plan(squeezed, LLAMA_3B_Q4, Wishes(ctx=4096, kv="f16", n_ubatch=512)).fits


def test_linux_keeps_what_is_reserved_within_ram_and_swap() -> None:
    # the private memory llama.cpp reserves (all but the mapped file) is bounded by Linux's heuristic overcommit
    pi5 = resolve_profile("raspberry-pi-5-8gb")
    wishes = Wishes(ctx=4096, kv="f16", n_ubatch=512)
    cpu = plan(pi5, LLAMA_3B_Q4, wishes).estimate.device(False)
    assert cpu is not None
    small_swap = replace(
        pi5,
        memory=replace(pi5.memory, total_bytes=cpu.committed - 2 * MIB, swap_total_bytes=0, available_bytes=8 * GIB),
    )
    assert not plan(small_swap, LLAMA_3B_Q4, replace(wishes, force=True)).fits
    as_a_mac = replace(small_swap, os="darwin")
    assert plan(as_a_mac, LLAMA_3B_Q4, wishes).fits


def test_a_discrete_gpu_is_fitted_by_its_allocations() -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    found = plan(laptop, LLAMA_8B_Q4)
    gpu = found.estimate.device(True)
    assert gpu is not None and gpu.total <= found.gpu.usable
    assert found.gpu_runtime is not None and found.gpu_runtime.family == "cuda-small"
    assert gpu.overhead == 256 * MIB


def test_a_bench_measurement_corrects_the_fit_and_the_plan_says_so() -> None:
    pi5 = resolve_profile("raspberry-pi-5-8gb")
    wishes = Wishes(ctx=4096, kv="f16", n_ubatch=512)
    found = plan(pi5, LLAMA_3B_Q4, wishes)
    assert found.reasons["memory"].code == "memory_not_measured"
    assert say(found.reasons["memory"]).startswith("not yet measured here")
    tight = replace(pi5, memory=replace(pi5.memory, available_bytes=found.estimate.resident + found.ram.margin))
    assert plan(tight, LLAMA_3B_Q4, wishes).fits
    larger = MemoryCalibration("cpu", 1.2, 1.0, 3)
    measured = plan(tight, LLAMA_3B_Q4, replace(wishes, force=True), measured=DeviceMeasured(memory=larger))
    assert not measured.fits and measured.resident == round(found.estimate.resident * 1.2)
    words = say(measured.reasons["memory"])
    assert words.startswith("± 10 %: measured on this device by bench (3 models)") and "resident × 1.20" in words


def test_flash_attention_on_a_cpu_follows_a_measurement() -> None:
    pi5 = resolve_profile("raspberry-pi-5-8gb")
    guessed = plan(pi5, LLAMA_1B_Q4)
    assert guessed.flash_attn and guessed.reasons["flash_attn"].code == "flash_attn_cpu_guess"
    assert "`edgellm bench` with flash attention on and off measures it" in say(guessed.reasons["flash_attn"])
    slower = FlashAttnMeasured(on_tokens_per_s=9.0, off_tokens_per_s=10.5, model="llama-1b")
    measured = plan(pi5, LLAMA_1B_Q4, measured=DeviceMeasured(flash_attn=slower))
    assert not measured.flash_attn
    assert say(measured.reasons["flash_attn"]) == (
        "off: measured faster on this CPU by bench (llama-1b: 9 tokens/s with it on, 10.5 off)"
    )
    asked = plan(pi5, LLAMA_1B_Q4, Wishes(flash_attn="on"), measured=DeviceMeasured(flash_attn=slower))
    assert asked.flash_attn  # a setting asked for is kept
    gpu = plan(resolve_profile("laptop-rtx4060-8gb"), LLAMA_1B_Q4, measured=DeviceMeasured(flash_attn=slower))
    assert gpu.flash_attn and gpu.reasons["flash_attn"].code == "flash_attn_on"  # a CPU's measurement only


def test_the_plan_shows_both_figures_and_its_confidence() -> None:
    pi5 = resolve_profile("raspberry-pi-5-8gb")
    found = plan(pi5, LLAMA_1B_Q4)
    text = render(found, LLAMA_1B_Q4, pi5)
    assert "allocated    resident" in text and "resident of" in text
    assert "Estimate not yet measured here" in text
    data = to_dict(found, LLAMA_1B_Q4, pi5)
    cpu = data["estimate"]["devices"][0]
    assert cpu["resident_bytes"] == found.estimate.device(False).resident and cpu["fit_by"] == "resident"
    assert data["estimate"]["resident_bytes"] == found.resident
    assert data["estimate"]["allocated_bytes"] == found.allocated == cpu["allocated_bytes"]
    assert data["reason_codes"]["memory"]["code"] == "memory_not_measured"
