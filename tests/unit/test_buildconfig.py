"""Build flags chosen from the CPU's features: fast kernels on, AMX always off, a GPU backend only with a driver."""

from __future__ import annotations

import pytest

from edgellm.hw import buildconfig

SAPPHIRE_RAPIDS = {
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx512f",
    "avx512vbmi",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "avx_vnni",
}


def test_sapphire_rapids_gets_avx512_without_amx() -> None:
    args = buildconfig.cmake_args("cpu", "x86_64", "Linux", SAPPHIRE_RAPIDS)
    assert "-DGGML_NATIVE=OFF" in args
    for option in ("GGML_AVX2", "GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16", "GGML_AVX_VNNI"):
        assert f"-D{option}=ON" in args
    for option in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"):
        assert f"-D{option}=OFF" in args
    assert buildconfig.enabled_cpu_features(args) == [
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi2",
        "avx_vnni",
        "avx512f",
        "avx512_vbmi",
        "avx512_vnni",
        "avx512_bf16",
    ]


def test_older_x86_turns_off_what_it_lacks() -> None:
    args = buildconfig.cmake_args("cpu", "x86_64", "Linux", {"avx", "avx2", "fma", "f16c"})
    assert "-DGGML_AVX2=ON" in args and "-DGGML_AVX512=OFF" in args and "-DGGML_BMI2=OFF" in args


@pytest.mark.parametrize(
    "features, march",
    [
        ({"fp", "asimd", "fphp", "asimdhp", "asimddp"}, "armv8.2-a+fp16+dotprod"),  # Pi 5, Cortex-A76
        ({"fp", "asimd", "crc32"}, "armv8-a"),  # Pi 4, Cortex-A72
        ({"asimd", "fphp", "asimddp", "i8mm", "sve"}, "armv8.2-a+fp16+dotprod+i8mm+sve"),  # Neoverse V1
    ],
)
def test_linux_arm_march(features: set[str], march: str) -> None:
    args = buildconfig.cmake_args("cpu", "aarch64", "Linux", features)
    assert args == ["-DGGML_NATIVE=OFF", f"-DGGML_CPU_ARM_ARCH={march}", "-DGGML_RPC=ON"]


def test_gpu_backends() -> None:
    assert "-DGGML_CUDA=ON" in buildconfig.cmake_args("cuda", "x86_64", "Linux", {"avx2"})
    assert buildconfig.cmake_args("metal", "arm64", "Darwin", set()) == [
        "-DGGML_NATIVE=ON",
        "-DGGML_METAL=ON",
        "-DGGML_RPC=ON",
    ]
    assert "-DGGML_METAL=OFF" in buildconfig.cmake_args("cpu", "arm64", "Darwin", set())
    with pytest.raises(ValueError, match="unknown backend"):
        buildconfig.cmake_args("rocm-typo", "x86_64", "Linux", set())


def test_forced_backend_and_bad_value() -> None:
    assert buildconfig.detect_backend({"EDGELLM_BACKEND": "vulkan"}) == "vulkan"
    with pytest.raises(ValueError, match="EDGELLM_BACKEND='opencl' is not a backend"):
        buildconfig.detect_backend({"EDGELLM_BACKEND": "opencl"})


def test_this_machine_without_a_driver_builds_for_cpu() -> None:
    # nvcc may be on PATH here, but there is no driver: that is not a GPU.
    if buildconfig.nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver")
    assert buildconfig.detect_backend({}) in ("cpu", "metal")


def test_build_key_changes_with_flags() -> None:
    one = buildconfig.build_key("0.3.36", ["-DGGML_AVX512=ON"])
    assert one == buildconfig.build_key("0.3.36", ["-DGGML_AVX512=ON"])
    assert one != buildconfig.build_key("0.3.36", ["-DGGML_AVX512=OFF"])
    assert one != buildconfig.build_key("0.3.37", ["-DGGML_AVX512=ON"])


def test_install_recorded_this_environment() -> None:
    info = buildconfig.read_build_info()
    assert info is not None, "scripts/install.py records the build in the venv"
    assert info["llama_cpp_python"] == buildconfig.LLAMA_CPP_PYTHON_VERSION
    assert all(not arg.startswith("-DGGML_AMX") or arg.endswith("=OFF") for arg in info["cmake_args"])


HASWELL = {"sse2", "sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"}
AVX512 = {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}


@pytest.mark.parametrize(
    "flags, variant",
    [
        (set(), None),  # not x86
        ({"sse2"}, "x64"),
        ({"sse2", "sse4_2", "avx"}, "sandybridge"),
        (HASWELL, "haswell"),
        (HASWELL | {"avx_vnni"}, "alderlake"),
        (HASWELL | {"avx512f"}, "haswell"),  # AVX-512 foundation alone is not ggml's AVX512 option
        (HASWELL | AVX512, "skylakex"),
        (HASWELL | AVX512 | {"avx512_vnni"}, "cascadelake"),
        (HASWELL | AVX512 | {"avx512vbmi", "avx512_vnni"}, "icelake"),
        (HASWELL | AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16"}, "zen4"),
        (HASWELL | AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8"}, "zen4"),
    ],
)
def test_the_cpu_variant_ggml_loads(flags: set[str], variant: str | None) -> None:
    """As ggml scores its variant libraries; a Sapphire Rapids Xeon (AMX) gets zen4, its own variant left out."""
    assert buildconfig.cpu_variant(flags) == variant


def test_every_variant_is_one_ggml_builds_and_the_amx_one_is_left_out() -> None:
    names = [name for name, _ in buildconfig.X86_CPU_VARIANTS]
    assert len(names) == len(set(names)) == 13 and "sapphirerapids" not in names
    assert buildconfig.variant_features("zen4") == [
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi2",
        "avx512f",
        "avx512_vbmi",
        "avx512_vnni",
        "avx512_bf16",
    ]
    args = buildconfig.portable_cmake_args("x86_64")
    assert {"-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_RPC=ON", "-DGGML_NATIVE=OFF"} <= set(args)
    with pytest.raises(ValueError, match="build on the device"):
        buildconfig.portable_cmake_args("aarch64")
