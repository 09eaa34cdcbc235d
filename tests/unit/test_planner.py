"""The planner is pure: device profile + model spec + wishes -> plan. Tested over the built-in profiles and shapes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgellm.hw.builtin import resolve_profile
from edgellm.hw.profile import LlamaBuild
from edgellm.plan.estimate import EstimateInputs, estimate
from edgellm.plan.planner import PlanError, Wishes, choose_quant, plan
from edgellm.plan.spec import ModelSpec
from edgellm.reasons import reason
from tests.support.specs import LLAMA_1B_Q4, LLAMA_3B_Q4, LLAMA_8B_Q4, LLAMA_8B_Q8, llama_like

MIB, GIB = 2**20, 2**30


def test_cpu_only_pi5_runs_a_1b_model_with_default_context() -> None:
    found = plan(resolve_profile("raspberry-pi-5-8gb"), LLAMA_1B_Q4)
    assert (found.n_gpu_layers, found.n_ctx, found.kv, found.n_threads) == (0, 4096, "f16", 4)
    assert found.fits and found.gpu is None and found.reasons["n_gpu_layers"] == reason("no_gpu")
    assert found.estimate.total <= found.ram.usable


def test_rtx4060_offloads_an_8b_q8_model_partially_with_the_most_layers_that_fit() -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    found = plan(laptop, LLAMA_8B_Q8)
    assert 0 < found.n_gpu_layers < 32
    on_gpu = found.estimate.device(True)
    assert on_gpu.total <= found.gpu.usable
    one_more = estimate(
        LLAMA_8B_Q8, EstimateInputs(n_ctx=4096, n_gpu_layers=found.n_gpu_layers + 1, gpu_backend="cuda"), "gpu"
    )
    assert one_more.device(True).total > found.gpu.usable
    assert found.n_threads == 6  # the P-cores of the i7-13700H, not its 20 threads
    assert found.reasons["n_gpu_layers"] == reason(
        "gpu_some_fit", layers=found.n_gpu_layers - 1, n_layers=32, gpu="NVIDIA GeForce RTX 4060 Laptop GPU"
    )


def test_rtx4060_takes_an_8b_q4_model_whole() -> None:
    found = plan(resolve_profile("laptop-rtx4060-8gb"), LLAMA_8B_Q4)
    assert found.n_gpu_layers == 33 and found.full_offload
    assert found.estimate.device(False).layers == 0
    assert found.reasons["n_gpu_layers"] == reason("gpu_all_fit", n_layers=32, gpu="NVIDIA GeForce RTX 4060 Laptop GPU")


def test_gpu_margin_is_configurable() -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    default = plan(laptop, LLAMA_8B_Q8)
    roomier = plan(laptop, LLAMA_8B_Q8, Wishes(gpu_margin=3 * GIB))
    assert roomier.n_gpu_layers < default.n_gpu_layers
    assert roomier.gpu.margin == 3 * GIB


def test_cpu_build_with_a_gpu_present_does_not_offload() -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    cpu_build = replace(laptop, llama_build=LlamaBuild("cpu", ("avx2",), "0.3.36"))
    found = plan(cpu_build, LLAMA_3B_Q4)
    assert found.n_gpu_layers == 0
    assert found.reasons["n_gpu_layers"] == reason(
        "gpu_unusable", gpu="NVIDIA GeForce RTX 4060 Laptop GPU", backend="cpu"
    )


def test_unified_memory_is_one_budget() -> None:
    jetson = resolve_profile("jetson-orin-nano-8gb")
    found = plan(jetson, LLAMA_3B_Q4)
    assert found.unified_memory and found.full_offload
    assert found.estimate.total <= found.ram.usable


def test_apple_gpu_is_capped_near_metals_working_set() -> None:
    mac = resolve_profile("macbook-air-m2-16gb")
    found = plan(mac, LLAMA_8B_Q4)
    assert found.gpu.usable <= 16 * GIB * 2 // 3
    assert found.estimate.device(True).total <= found.gpu.usable


def test_context_is_reduced_with_a_notice_but_never_below_2048() -> None:
    pi4 = resolve_profile("raspberry-pi-4-4gb")
    tight = replace(pi4, memory=replace(pi4.memory, available_bytes=int(2.9 * GIB)))
    found = plan(tight, LLAMA_3B_Q4)
    assert found.n_ctx < 4096 or found.kv != "f16"
    assert found.n_ctx >= 2048 and found.notices
    with pytest.raises(PlanError) as refused:
        plan(replace(pi4, memory=replace(pi4.memory, available_bytes=int(2.2 * GIB))), LLAMA_3B_Q4)
    why = refused.value.reason
    assert (why.code, why["fix"], why["device"]) == ("too_big", "smaller_quant", "raspberry-pi-4-4gb")
    assert round(why["usable"] / GIB, 2) == 1.70 and round(why["weights"] / GIB, 2) == 1.93
    assert why["bpw_fit"] < why["bpw_now"]


def test_q8_cache_is_tried_before_the_context_shrinks() -> None:
    pi4 = resolve_profile("raspberry-pi-4-4gb")
    f16 = plan(pi4, LLAMA_3B_Q4, Wishes(kv="f16", ctx=4096))
    needed = f16.estimate.needed  # RAM is fitted by what must stay resident
    kv_f16 = f16.estimate.device(False).kv_cache
    squeezed = replace(pi4, memory=replace(pi4.memory, available_bytes=needed - kv_f16 // 3 + f16.ram.margin))
    found = plan(squeezed, LLAMA_3B_Q4, Wishes(n_ubatch=512))
    assert (found.n_ctx, found.kv) == (4096, "q8_0")
    assert found.notices[0] == reason("kv_quantized", kv="q8_0", n_ctx=4096)


def test_explicit_context_is_honoured_or_refused_with_the_nearest_fit() -> None:
    pi4 = resolve_profile("raspberry-pi-4-4gb")
    assert plan(pi4, LLAMA_1B_Q4, Wishes(ctx=8192)).n_ctx == 8192
    with pytest.raises(PlanError) as refused:
        plan(pi4, LLAMA_1B_Q4, Wishes(ctx=131072))
    why = refused.value.reason
    assert (why["n_ctx"], why["device"], why["fix"], why["ctx_asked"]) == (131072, "raspberry-pi-4-4gb", "ctx", True)
    assert plan(pi4, LLAMA_1B_Q4, Wishes(ctx=why["fit_ctx"], kv=why["fit_kv"])).fits  # the nearest fit does fit
    forced = plan(pi4, LLAMA_1B_Q4, Wishes(ctx=131072, force=True))
    assert not forced.fits and forced.n_ctx == 131072 and forced.notices[-1] == reason("forced")


def test_context_above_trained_is_refused() -> None:
    with pytest.raises(PlanError) as refused:
        plan(resolve_profile("raspberry-pi-5-8gb"), LLAMA_1B_Q4, Wishes(ctx=200000))
    assert refused.value.reason == reason("ctx_above_trained", asked=200000, trained=131072)


def test_explicit_gpu_layers() -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    assert plan(laptop, LLAMA_8B_Q8, Wishes(gpu_layers=10)).n_gpu_layers == 10
    with pytest.raises(PlanError) as refused:
        plan(laptop, LLAMA_8B_Q8, Wishes(gpu_layers=33))
    why = refused.value.reason
    assert (why["gpu_layers"], why["fix"]) == (33, "gpu_layers") and why["fit_gpu_layers"] < 33
    assert plan(laptop, LLAMA_8B_Q8, Wishes(gpu_layers=why["fit_gpu_layers"])).fits
    every = plan(laptop, LLAMA_8B_Q8, Wishes(gpu_layers="all"))
    assert every.n_gpu_layers == 33 and every.reasons["n_gpu_layers"] == reason("gpu_all_asked")


def test_quantized_cache_needs_flash_attention() -> None:
    with pytest.raises(PlanError) as refused:
        plan(resolve_profile("raspberry-pi-5-8gb"), LLAMA_1B_Q4, Wishes(kv="q4_0", flash_attn="off"))
    assert refused.value.reason == reason("kv_needs_flash_attn", kv="q4_0")


def test_a_model_larger_than_every_budget_names_a_smaller_quant_or_model() -> None:
    with pytest.raises(PlanError) as refused:
        plan(resolve_profile("raspberry-pi-4-4gb"), LLAMA_8B_Q8)
    why = refused.value.reason
    assert why["fix"] == "smaller_quant" and 8 * GIB < why["weights"] < 9 * GIB and 2 < why["bpw_fit"] < 3
    huge = llama_like(1700 * MIB, n_layers=80, n_embd=8192, quant="Q8_0")  # a 70B at Q8_0
    with pytest.raises(PlanError) as refused:
        plan(resolve_profile("raspberry-pi-5-8gb"), huge)
    assert refused.value.reason["fix"] == "no_quant"


def test_micro_batch_shrinks_before_the_cache_is_quantized() -> None:
    pi4 = resolve_profile("raspberry-pi-4-4gb")
    full = plan(pi4, LLAMA_3B_Q4)
    compute = full.estimate.device(False).resident_part("compute")  # RAM is fitted by what is resident
    squeezed = replace(
        pi4, memory=replace(pi4.memory, available_bytes=full.estimate.needed - compute // 3 + full.ram.margin)
    )
    found = plan(squeezed, LLAMA_3B_Q4)
    assert (found.n_ctx, found.kv, found.n_ubatch) == (4096, "f16", 256)
    assert found.notices == (reason("ubatch_reduced", ubatch=256),)


def quants_of(base: ModelSpec, sizes: dict[str, float]) -> list[tuple[str, ModelSpec]]:
    """The same model at several quants: layer and embedding bytes scaled by bits per weight."""
    out = []
    for quant, bits in sizes.items():
        scale = bits / 4.89
        out.append(
            (
                quant,
                replace(
                    base,
                    file_type=quant,
                    path=f"/models/m-{quant}.gguf",
                    layer_bytes=tuple(int(b * scale) for b in base.layer_bytes),
                    token_embd_bytes=int(base.token_embd_bytes * scale),
                    output_bytes=int(base.output_bytes * scale),
                ),
            )
        )
    return out


BITS = {"F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.7, "Q4_K_M": 4.89, "Q3_K_M": 4.0, "Q2_K": 3.16}


def test_quant_choice_takes_the_best_that_fits() -> None:
    pi5 = resolve_profile("raspberry-pi-5-8gb")
    choice = choose_quant(pi5, quants_of(LLAMA_8B_Q4, BITS))
    assert choice.quant == "Q5_K_M"  # Q8_0 and Q6_K need more than the Pi's usable RAM
    assert [(line.code, line["quant"]) for line in choice.considered[:3]] == [
        ("quant_above_cpu_ceiling", "F16"),
        ("quant_does_not_fit", "Q8_0"),
        ("quant_does_not_fit", "Q6_K"),
    ]
    assert choice.considered[1]["why"].code == "too_big"


def test_quant_choice_keeps_full_precision_off_the_cpu() -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    choice = choose_quant(laptop, quants_of(LLAMA_8B_Q4, BITS))
    assert (choice.considered[0].code, choice.considered[0]["quant"]) == ("quant_would_run_on_cpu", "F16")
    assert choice.quant == "Q8_0"


def test_quant_choice_on_cpu_allows_f16_when_asked() -> None:
    small = quants_of(LLAMA_1B_Q4, BITS)
    machine = resolve_profile("cpu-laptop-8gb")
    assert choose_quant(machine, small).quant == "Q8_0"
    assert choose_quant(machine, small, asked="F16").quant == "F16"


def test_quant_choice_prefers_full_offload_over_a_partial_one_a_rank_higher() -> None:
    mac = resolve_profile("macbook-air-m2-16gb")
    choice = choose_quant(mac, quants_of(LLAMA_8B_Q4, BITS))
    assert (choice.quant, choice.plan.full_offload) == ("Q5_K_M", True)
    assert any(line.code == "quant_fits" and line["quant"] == "Q6_K" for line in choice.considered)
    assert choice.considered[-1] == reason("quant_full_offload_wins", chosen="Q5_K_M", over="Q6_K")


def test_parallel_sequences_share_one_kv_pool_the_budget_counts() -> None:
    """N slots: N times the context in one pool (the full-attention layers' cells), and the plan says so."""
    profile = resolve_profile("raspberry-pi-5-8gb")
    one = plan(profile, LLAMA_1B_Q4, Wishes(ctx=4096))
    four = plan(profile, LLAMA_1B_Q4, Wishes(ctx=4096, parallel=4))
    assert four.parallel == 4 and four.n_ctx == 4096
    assert four.estimate.kv_cells_full == 4 * 4096
    assert four.estimate.devices[0].kv_cache > 3.9 * one.estimate.devices[0].kv_cache
    assert four.reasons["parallel"].code == "parallel_asked"


def test_parallel_auto_takes_what_this_device_measured_worth_it() -> None:
    from edgellm.plan.planner import parallel_worth

    counts, why = parallel_worth(((1, 70.0), (2, 75.0), (4, 120.0), (8, 126.0)))
    assert counts[0] == 4 and why.code == "parallel_measured" and why["gain"] == round(120 / 70, 2)
    assert parallel_worth(((1, 70.0), (2, 71.0)))[0][0] == 1  # nothing gained: one at a time
    counts, why = parallel_worth(())
    assert counts == [4, 2, 1] and why.code == "parallel_default"
    profile = resolve_profile("raspberry-pi-5-8gb")
    measured = ((1, 10.0), (2, 16.0), (4, 22.0))
    chosen = plan(profile, LLAMA_1B_Q4, Wishes(ctx=2048, parallel="auto", parallel_measured=measured))
    assert chosen.parallel == 4 and chosen.reasons["parallel"].code == "parallel_measured"


def test_parallel_auto_never_costs_what_a_single_sequence_gets() -> None:
    """On a board an 8B model fills, auto takes fewer slots rather than a shorter context or a quantized KV cache."""
    profile = resolve_profile("raspberry-pi-5-8gb")
    chosen = plan(profile, LLAMA_8B_Q4, Wishes(parallel="auto"))
    assert (chosen.parallel, chosen.n_ctx, chosen.kv) == (2, 4096, "f16")  # 4 would need a q8_0 KV cache
    chosen = plan(profile, LLAMA_8B_Q4, Wishes(ctx=16384, parallel="auto"))
    assert chosen.parallel == 1 and chosen.reasons["parallel"].code == "parallel_memory"
    assert plan(profile, LLAMA_3B_Q4, Wishes(parallel="auto")).parallel == 4
