"""GGUF quantization types: one rank table, names parsed from file names, and names of llama.cpp file types.

Ranks follow the measured quality in llama.cpp's quantize tool (Llama-3-8B ΔPPL: Q8_0 +0.003, Q6_K +0.022,
Q5_K_M +0.057, Q4_K_M +0.18, Q3_K_M +0.66, Q2_K +3.52): a higher rank is closer to the original weights.
"""

from __future__ import annotations

import re

# Best first. `_L`/`_XL` variants (bartowski, unsloth) rank just above their base; `UD-` ranks as its base;
# ALIASES as the name they stand for.
QUANT_ORDER = (
    "F32",
    "BF16",
    "F16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_1",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "IQ4_NL",
    "IQ4_XS",
    "Q4_1",
    "Q4_0",
    "MXFP4",
    "Q3_K_L",
    "Q3_K_M",
    "IQ3_M",
    "IQ3_S",
    "Q3_K_S",
    "IQ3_XS",
    "IQ3_XXS",
    "Q2_K",
    "Q2_K_S",
    "IQ2_M",
    "IQ2_S",
    "IQ2_XS",
    "IQ2_XXS",
    "TQ2_0",
    "IQ1_M",
    "TQ1_0",
    "IQ1_S",
)
CPU_CEILING = "Q8_0"  # on CPU-only devices nothing above this unless asked: F16 halves decode speed

# llama.cpp's llama_ftype (general.file_type) -> quant name.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}

# The file types llama.cpp's quantizer refuses to make without an importance matrix (llama-quant.cpp's
# tensor_requires_imatrix: the IQ1/IQ2/IQ3_XXS tensor types, and Q2_K tensors in a Q2_K_S file; IQ2_M's default type
# is IQ2_S). token_embd and output are exempt, so a tiny model may still quantize; edgellm refuses them all the same.
NEEDS_IMATRIX = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "Q2_K_S")

# Names with no row of their own, ranked as the quant they stand for.
ALIASES = {
    "Q3_K": "Q3_K_M",
    "Q4_K": "Q4_K_M",
    "Q5_K": "Q5_K_M",  # old llama.cpp short names
    "Q4_0_4_4": "Q4_0",
    "Q4_0_4_8": "Q4_0",
    "Q4_0_8_8": "Q4_0",  # Q4_0 repacked for ARM
}
# The base an `_L`/`_XL` variant improves on, where it is not the name less its suffix (or that name's alias).
VARIANT_BASES = {"Q8_K": "Q8_0", "Q3_K": "Q3_K_L"}  # Q8_K_XL: Q8_0 with some BF16; Q3_K_XL: Q3_K_L with Q8_0
# ARM repacks of Q4_0 that llama.cpp no longer loads (it repacks Q4_0 itself as it loads).
DROPPED = ("Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8")

_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<name>"
    r"Q4_0_(?:4_4|4_8|8_8)|IQ[1-4]_(?:XXS|XS|NL|S|M)|Q[2-6]_K(?:_(?:XL|S|M|L))?|Q8_K_XL|Q8_0|Q[45]_[01]"
    r"|TQ[12]_0|MXFP4|BF16|FP?16|FP?32"
    r")(?P<variant>_XL|_L)?(?![A-Za-z0-9]|_\d)",  # `_4_4` after a name makes another name: no match
    re.IGNORECASE,
)


def normalize(quant: str) -> str:
    """One spelling per quant, so that names from files and from `repo:QUANT` match: 'ud-q4_k_xl' -> 'Q4_K_XL'."""
    quant = quant.upper().removeprefix("UD-")
    return {"FP16": "F16", "FP32": "F32"}.get(quant, quant)


def parse_quant(file_name: str) -> str | None:
    """The quant named in a GGUF file name, normalized: 'qwen2.5-1.5b-instruct-q4_k_m.gguf' -> 'Q4_K_M'.

    `UD-` is dropped (it ranks as its base); `_L`/`_XL` variants are kept ('Q6_K_L'); 'fp16' -> 'F16'.
    """
    matches = list(_QUANT_RE.finditer(file_name))
    if not matches:
        return None
    match = matches[-1]
    return normalize(match.group("name") + (match.group("variant") or ""))


def rank(quant: str) -> float:
    """Higher is better quality. Unknown names rank below every known one."""
    quant = normalize(quant)
    quant = ALIASES.get(quant, quant)
    if quant in QUANT_ORDER:
        return float(len(QUANT_ORDER) - QUANT_ORDER.index(quant))
    for suffix, above in (("_XL", 0.5), ("_L", 0.4)):
        if quant.endswith(suffix):
            base = quant[: -len(suffix)]
            base = VARIANT_BASES.get(base) or ALIASES.get(base, base)
            if base in QUANT_ORDER:
                return rank(base) + above
    return 0.0


def loadable(quant: str) -> bool:
    """False for the quants this llama.cpp refuses to load (Q4_0_4_4 and the other ARM repacks of Q4_0).

    An unknown name may still load: whether to pick it is the caller's call (`rank` puts it last).
    """
    return normalize(quant) not in DROPPED


def above_cpu_ceiling(quant: str) -> bool:
    """Ranked above Q8_0 (F16, BF16, Q8_K_XL…): on the CPU it decodes slower for no visible quality gain."""
    return rank(quant) > rank(CPU_CEILING)


def needs_imatrix(quant: str) -> bool:
    """Whether llama.cpp makes the file type `quant` only with an importance matrix (NEEDS_IMATRIX)."""
    return normalize(quant) in NEEDS_IMATRIX
