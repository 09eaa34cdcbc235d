"""GGUF quantization types: one rank table, names parsed from file names, and names of llama.cpp file types.

Ranks follow the measured quality in llama.cpp's quantize tool (Llama-3-8B ΔPPL: Q8_0 +0.003, Q6_K +0.022,
Q5_K_M +0.057, Q4_K_M +0.18, Q3_K_M +0.66, Q2_K +3.52): a higher rank is closer to the original weights.
"""

from __future__ import annotations

import re

# Best first. `_L`/`_XL` variants (bartowski, unsloth) rank just above their base; `UD-` ranks as its base.
QUANT_ORDER = (
    "F32", "BF16", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "IQ4_NL",
    "IQ4_XS", "Q4_1", "Q4_0", "MXFP4", "Q3_K_L", "Q3_K_M", "IQ3_M", "IQ3_S", "Q3_K_S", "IQ3_XS", "IQ3_XXS",
    "Q2_K", "Q2_K_S", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "TQ2_0", "IQ1_M", "TQ1_0", "IQ1_S",
)
FULL_PRECISION = ("F32", "BF16", "F16")
CPU_CEILING = "Q8_0"  # on CPU-only devices nothing above this unless asked: F16 halves decode speed

# llama.cpp's llama_ftype (general.file_type) -> quant name.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4",
}

_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<ud>UD-)?(?P<name>"
    r"IQ[1-4]_(?:XXS|XS|NL|S|M)|Q[2-6]_K(?:_(?:XL|S|M|L))?|Q8_0|Q[45]_[01]|TQ[12]_0|MXFP4|BF16|F16|FP16|F32"
    r")(?P<variant>_XL|_L)?(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def parse_quant(file_name: str) -> str | None:
    """The quant named in a GGUF file name, normalized: 'qwen2.5-1.5b-instruct-q4_k_m.gguf' -> 'Q4_K_M'.

    `UD-` is dropped (it ranks as its base); `_L`/`_XL` variants are kept ('Q6_K_L'); 'fp16' -> 'F16'.
    """
    matches = list(_QUANT_RE.finditer(file_name))
    if not matches:
        return None
    match = matches[-1]
    name = match.group("name").upper().replace("FP16", "F16")
    return name + (match.group("variant") or "").upper()


def rank(quant: str) -> float:
    """Higher is better quality. Unknown names rank below every known one."""
    quant = quant.upper().removeprefix("UD-")
    if quant in QUANT_ORDER:
        return float(len(QUANT_ORDER) - QUANT_ORDER.index(quant))
    for suffix in ("_XL", "_L"):
        if quant.endswith(suffix):
            base = quant[: -len(suffix)]
            base = base if base in QUANT_ORDER else base + "_M"  # Q4_K_XL -> Q4_K_M
            if base in QUANT_ORDER:
                return rank(base) + (0.5 if suffix == "_XL" else 0.4)
    return 0.0


def is_full_precision(quant: str) -> bool:
    return quant.upper() in FULL_PRECISION
