"""Which weights ggml's CPU backend repacks into memory of its own beside the mapped file. Pure.

llama.cpp puts a weight that a matrix multiplication reads into the `CPU_REPACK` buffer when the CPU kernels have an
interleaved layout for its type on this build's CPU features and its row count divides by the layout's rows
(ggml-cpu/repack.cpp, ggml_repack_get_optimal_repack_type, in llama-cpp-python 0.3.36's llama.cpp). The copy is
anonymous memory as large as the tensor, held beside the mapped file: the file's pages stay mapped (llama.cpp maps
the whole file, populated, and unmaps only what lies outside the span of the mapped tensors), so a repacked weight
is held twice. A tied output is a second tensor over the token embedding: the embedding stays mapped (it is looked
up row by row), the output is repacked (it is multiplied), so a tied Q4_0 embedding is held twice on an AVX2 or
ARM dot-product CPU.

The features are compile-time ones (ggml_cpu_has_avx2 and the others test the compiler's macros), so they come from
the llama.cpp build, named as `edgellm hw` names them: avx2, avx512f (x86); neon, dotprod, i8mm, sve (ARM).
RISC-V vector and s390 layouts are left out: edgellm has no profile for them.
"""

from __future__ import annotations

from collections.abc import Iterable

# tensor type -> (features that must all be present, rows the layout interleaves), tried in ggml's order; the first
# rule whose features are present and whose rows divide the tensor's row count repacks it (a rule whose rows do not
# divide falls through to the next, as in ggml).
RULES: dict[str, tuple[tuple[frozenset[str], int], ...]] = {
    "Q4_0": (
        (frozenset({"avx2"}), 8),
        (frozenset({"sve", "i8mm"}), 8),  # ggml also needs 256-bit SVE here; a shorter one falls to the next rule
        (frozenset({"neon", "i8mm"}), 4),
        (frozenset({"neon", "dotprod"}), 4),
    ),
    "Q4_K": ((frozenset({"avx2"}), 8), (frozenset({"neon", "i8mm"}), 8), (frozenset({"neon", "dotprod"}), 8)),
    "Q2_K": ((frozenset({"avx512f"}), 8),),
    "Q5_K": ((frozenset({"neon", "i8mm"}), 8), (frozenset({"neon", "dotprod"}), 8)),
    "Q6_K": ((frozenset({"neon", "i8mm"}), 8), (frozenset({"neon", "dotprod"}), 8)),
    "IQ4_NL": ((frozenset({"avx2"}), 8), (frozenset({"neon", "dotprod"}), 4)),
    "MXFP4": ((frozenset({"avx2"}), 8), (frozenset({"neon", "dotprod"}), 4)),
    "Q8_0": ((frozenset({"neon", "i8mm"}), 4), (frozenset({"neon", "dotprod"}), 4)),
}
ROW_CLASSES = (8, 4, 1)  # a tensor's rows as the spec keeps them: divisible by 8, by 4 (not 8), or neither


def row_class(rows: int) -> int:
    """The largest of ROW_CLASSES dividing `rows` (what the rules need to know of a row count)."""
    return next(step for step in ROW_CLASSES if rows % step == 0)


def repacked(type_name: str, rows: int, features: Iterable[str]) -> bool:
    """Whether ggml's CPU backend repacks a matrix of `type_name` with `rows` rows (ne[1]) on a build with
    `features`."""
    have = set(features)
    return any(needs <= have and rows % step == 0 for needs, step in RULES.get(type_name.upper(), ()))


def build_features(build_features: Iterable[str], cpu_features: Iterable[str]) -> frozenset[str]:
    """The CPU features a llama.cpp build compiled its kernels for: the build's list, or the CPU's own for a build
    made with GGML_NATIVE (recorded as "native") or not recorded."""
    chosen = tuple(build_features)
    if not chosen or "native" in chosen:
        chosen = tuple(cpu_features)
    found = set(chosen)
    if found & {"dotprod", "i8mm", "sve", "fp16"}:
        found.add("neon")  # every ARMv8 build has NEON; a profile may leave it unsaid
    return frozenset(found)
