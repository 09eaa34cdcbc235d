"""plan.repack: which weights ggml's CPU backend repacks, by type, rows and the build's CPU features (ggml-cpu's
repack.cpp), and the planner counting the copies on the profiles that have such CPUs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgellm.hw.builtin import resolve_profile
from edgellm.plan.estimate import EstimateInputs, estimate
from edgellm.plan.planner import plan
from edgellm.plan.repack import build_features, repacked, row_class
from edgellm.plan.spec import OUTPUT_LAYER, ModelSpec
from tests.support.specs import llama_like

MIB = 2**20
AVX2 = {"avx", "avx2", "fma", "f16c"}
PI4 = {"neon"}
PI5 = {"neon", "fp16", "dotprod"}
M2 = {"neon", "fp16", "dotprod", "i8mm", "bf16"}
GRAVITON3 = {"neon", "dotprod", "i8mm", "sve"}


@pytest.mark.parametrize(
    ("kind", "features", "expected"),
    [
        ("Q4_0", AVX2, True),
        ("Q4_0", PI4, False),  # a Cortex-A72 has no dot product: no layout for it
        ("Q4_0", PI5, True),
        ("Q4_0", M2, True),
        ("Q4_0", GRAVITON3, True),
        ("Q4_K", AVX2, True),
        ("Q4_K", PI5, True),
        ("Q5_K", AVX2, False),  # x86 has no repacked Q5_K or Q6_K kernels
        ("Q6_K", AVX2, False),
        ("Q6_K", PI5, True),
        ("Q5_K", M2, True),
        ("Q8_0", AVX2, False),
        ("Q8_0", PI5, True),
        ("Q2_K", AVX2, False),  # AVX-512 only
        ("Q2_K", AVX2 | {"avx512f"}, True),
        ("IQ4_NL", AVX2, True),
        ("IQ4_NL", PI4, False),
        ("MXFP4", PI5, True),
        ("Q5_0", AVX2 | {"avx512f"}, False),
        ("F16", M2, False),
        ("Q3_K", M2, False),
    ],
)
def test_types_and_features_as_ggml_chooses_them(kind: str, features: set[str], expected: bool) -> None:
    assert repacked(kind, 4096, features) is expected


def test_rows_must_divide_the_layout() -> None:
    assert repacked("Q4_0", 8, AVX2) and not repacked("Q4_0", 12, AVX2)  # 8 rows interleaved on AVX2
    assert repacked("Q4_0", 12, PI5)  # 4 on NEON with dot product
    assert not repacked("Q4_K", 12, PI5)  # Q4_K interleaves 8 everywhere
    assert repacked("Q4_0", 12, AVX2 | {"neon", "dotprod"})  # a rule whose rows do not divide falls through
    assert [row_class(rows) for rows in (4096, 12, 7)] == [8, 4, 1]
    assert repacked("Q4_0", row_class(12), PI5) and not repacked("Q4_0", row_class(12), AVX2)


def test_build_features_follow_the_build_or_the_cpu_for_a_native_build() -> None:
    assert build_features(("avx2",), ("avx2", "avx512f")) == frozenset({"avx2"})
    assert build_features(("native",), ("neon", "dotprod", "i8mm")) == frozenset({"neon", "dotprod", "i8mm"})
    assert build_features((), ("dotprod",)) == frozenset({"neon", "dotprod"})


def tied_q4_0_1b() -> ModelSpec:
    """A Llama 3.2 1B-like spec whose weights and tied embedding are all Q4_0 (the matrices the header lists)."""
    spec = llama_like(30 * MIB, n_layers=16, n_embd=2048, n_ff=8192, tied=True, quant="Q4_0")
    layers = tuple((layer, "Q4_0", 8, 30 * MIB) for layer in range(16))
    return replace(spec, matrices=layers + ((OUTPUT_LAYER, "Q4_0", 8, spec.token_embd_bytes),))


def test_a_tied_q4_0_embedding_is_held_twice_on_a_pi5_and_once_on_a_pi4() -> None:
    spec = tied_q4_0_1b()
    pi5 = plan(resolve_profile("raspberry-pi-5-8gb"), spec)
    pi4 = plan(resolve_profile("raspberry-pi-4-4gb"), spec)
    on_pi5, on_pi4 = pi5.estimate.device(False), pi4.estimate.device(False)
    assert on_pi4.repacked == 0
    assert on_pi5.repacked == 16 * 30 * MIB + spec.token_embd_bytes  # the layers and the tied output
    assert on_pi5.weights == on_pi4.weights + on_pi5.repacked
    assert "repacks" in on_pi5.notes["weights"]


def test_the_gpu_holds_no_repacked_copy_and_the_cpu_only_its_own_layers() -> None:
    spec = tied_q4_0_1b()
    inputs = EstimateInputs(n_ctx=4096, n_gpu_layers=9, gpu_backend="cuda", cpu_features=frozenset(AVX2))
    found = estimate(spec, inputs)
    on_gpu, on_cpu = found.device(True), found.device(False)
    assert on_gpu is not None and on_cpu is not None
    assert on_gpu.repacked == 0
    assert on_cpu.repacked == on_cpu.layers * 30 * MIB  # the output went to the GPU with the first offloaded layer


@pytest.mark.parametrize("name", ["raspberry-pi-5-8gb", "jetson-orin-nano-8gb", "macbook-air-m2-16gb"])
def test_the_arm_profiles_repack_q4_0(name: str) -> None:
    profile = resolve_profile(name)
    build = profile.llama_build
    assert build is not None
    assert repacked("Q4_0", 2048, build_features(build.cpu_features, profile.cpu.features))


def test_the_mapped_pages_a_copy_was_read_from_are_resident_but_not_needed() -> None:
    # llama.cpp maps the file populated and keeps the span of its mapped tensors: RSS shows both copies, but the
    # pages the repacked copy was read from are clean and never read again, so the kernel drops them when short
    spec = tied_q4_0_1b()
    found = plan(resolve_profile("raspberry-pi-5-8gb"), spec)
    cpu = found.estimate.device(False)
    assert cpu is not None and cpu.repacked > 0
    assert cpu.resident - cpu.needed == cpu.reclaimable == cpu.repacked
    assert found.needed == found.estimate.needed < found.estimate.resident
