"""Quant names parsed from GGUF file names, and the one rank table."""

from __future__ import annotations

import pytest

from edgellm.gguf.quants import FILE_TYPES, QUANT_ORDER, above_cpu_ceiling, loadable, normalize, parse_quant, rank
from edgellm.hub.files import RemoteFile, choosable, group_quants, unknown_quant
from edgellm.hub.refs import parse_ref


@pytest.mark.parametrize(
    "name, quant",
    [
        ("Llama-3.2-3B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-1.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
        ("gemma-3-4b-it-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("Llama-3.2-3B-Instruct-Q6_K_L.gguf", "Q6_K_L"),
        ("Phi-4-mini-instruct-IQ4_XS.gguf", "IQ4_XS"),
        ("model-iq3_xxs.gguf", "IQ3_XXS"),
        ("model-fp16.gguf", "F16"),
        ("model-BF16.gguf", "BF16"),
        ("Qwen3-32B-Q8_0-00001-of-00003.gguf", "Q8_0"),
        ("Q5_K_S/Mistral-Q5_K_S.gguf", "Q5_K_S"),
        ("SmolLM2-1.7B-Instruct.Q2_K.gguf", "Q2_K"),
        ("tinyllama-q4_0.gguf", "Q4_0"),
        ("no-quant-here.gguf", None),
    ],
)
def test_parse_quant(name: str, quant: str | None) -> None:
    assert parse_quant(name) == quant


def test_rank_follows_quality() -> None:
    order = [
        "F16",
        "Q8_0",
        "Q6_K",
        "Q5_K_M",
        "Q5_K_S",
        "Q4_K_M",
        "Q4_K_S",
        "IQ4_XS",
        "Q4_0",
        "Q3_K_L",
        "Q3_K_M",
        "Q3_K_S",
        "Q2_K",
        "IQ2_XXS",
        "IQ1_S",
    ]
    assert sorted(order, key=rank, reverse=True) == order


def test_variants_rank_just_above_their_base() -> None:
    assert rank("Q6_K") < rank("Q6_K_L") < rank("Q8_0")
    assert rank("Q4_K_M") < rank("Q4_K_XL") < rank("Q4_K_L") + 1 < rank("Q5_K_S") + 1
    assert rank("Q4_K_XL") < rank("Q5_K_S")
    assert rank("UD-Q4_K_XL") == rank("Q4_K_XL")
    assert rank("nonsense") == 0.0


def test_every_file_type_is_ranked() -> None:
    assert set(FILE_TYPES.values()) <= set(QUANT_ORDER)


@pytest.mark.parametrize(
    "name, quant",
    [
        # bartowski
        ("Llama-3.2-3B-Instruct-Q6_K_L.gguf", "Q6_K_L"),
        ("Meta-Llama-3.1-8B-Instruct-Q5_K_L.gguf", "Q5_K_L"),
        ("Meta-Llama-3.1-8B-Instruct-Q4_K_L.gguf", "Q4_K_L"),
        ("Llama-3.2-3B-Instruct-Q3_K_XL.gguf", "Q3_K_XL"),
        ("Llama-3.2-3B-Instruct-Q2_K_L.gguf", "Q2_K_L"),
        ("Llama-3.2-3B-Instruct-IQ4_NL.gguf", "IQ4_NL"),
        ("Llama-3.2-3B-Instruct-IQ3_M.gguf", "IQ3_M"),
        ("Llama-3.2-3B-Instruct-Q4_0_4_4.gguf", "Q4_0_4_4"),
        ("Llama-3.2-3B-Instruct-Q4_0_4_8.gguf", "Q4_0_4_8"),
        ("Llama-3.2-3B-Instruct-Q4_0_8_8.gguf", "Q4_0_8_8"),
        ("Llama-3.2-3B-Instruct-f16.gguf", "F16"),
        ("Llama-3.2-3B-Instruct-bf16.gguf", "BF16"),
        ("Llama-3.2-3B-Instruct-f32.gguf", "F32"),
        ("Qwen_Qwen3-8B-Q8_0.gguf", "Q8_0"),
        # unsloth, UD- dropped, in folders and shards
        ("Qwen3-30B-A3B-UD-Q8_K_XL.gguf", "Q8_K_XL"),
        ("Qwen3-30B-A3B-UD-Q6_K_XL.gguf", "Q6_K_XL"),
        ("Qwen3-30B-A3B-UD-Q5_K_XL.gguf", "Q5_K_XL"),
        ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("Qwen3-30B-A3B-UD-Q3_K_XL.gguf", "Q3_K_XL"),
        ("Qwen3-30B-A3B-UD-Q2_K_XL.gguf", "Q2_K_XL"),
        ("Qwen3-30B-A3B-UD-IQ1_S.gguf", "IQ1_S"),
        ("Qwen3-30B-A3B-UD-IQ1_M.gguf", "IQ1_M"),
        ("Qwen3-30B-A3B-UD-IQ2_XXS.gguf", "IQ2_XXS"),
        ("Qwen3-30B-A3B-UD-IQ2_M.gguf", "IQ2_M"),
        ("Qwen3-30B-A3B-UD-IQ3_XXS.gguf", "IQ3_XXS"),
        ("DeepSeek-R1-0528-UD-TQ1_0.gguf", "TQ1_0"),
        ("gemma-3-4b-it-Q8_K_XL.gguf", "Q8_K_XL"),
        ("qwen3-8b-ud-q4_k_xl.gguf", "Q4_K_XL"),
        ("UD-Q8_K_XL/Qwen3-30B-A3B-UD-Q8_K_XL-00001-of-00002.gguf", "Q8_K_XL"),
        ("UD-Q8_K_XL/Qwen3-30B-A3B-UD-Q8_K_XL-00002-of-00002.gguf", "Q8_K_XL"),
        ("BF16/Qwen3-30B-A3B-BF16-00001-of-00002.gguf", "BF16"),
        # Qwen: lower case, shards
        ("qwen2.5-7b-instruct-q4_k_m.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-fp16-00003-of-00004.gguf", "F16"),
        ("qwen2.5-0.5b-instruct-q5_0.gguf", "Q5_0"),
        ("Qwen3-8B-Q4_K_M.gguf", "Q4_K_M"),
        # ggml-org
        ("Qwen3-0.6B-Q8_0.gguf", "Q8_0"),
        ("Qwen3-0.6B-f16.gguf", "F16"),
        ("gpt-oss-20b-mxfp4.gguf", "MXFP4"),
        ("gpt-oss-120b-MXFP4-00001-of-00003.gguf", "MXFP4"),
        # TheBloke, and llama.cpp's old short names
        ("llama-2-7b-chat.Q4_K_M.gguf", "Q4_K_M"),
        ("mistral-7b-instruct-v0.2.Q5_K_S.gguf", "Q5_K_S"),
        ("llama-2-13b.Q4_K.gguf", "Q4_K"),
        ("llama-2-13b.Q5_K.gguf", "Q5_K"),
        ("llama-2-13b.q3_k.gguf", "Q3_K"),
        # no quant, or a repacked type that no file format holds: not misread as its base
        ("Qwen3-30B-A3B-Instruct-2507.gguf", None),
        ("Phi-3-mini-4k-instruct.gguf", None),
        ("model-IQ4_NL_4_4.gguf", None),
    ],
)
def test_parse_publisher_names(name: str, quant: str | None) -> None:
    assert parse_quant(name) == quant
    if quant is not None:
        assert rank(quant) > 0, "every name the parser gives is in the rank table"


def test_q8_k_xl_is_q8_0_with_some_bf16() -> None:
    assert rank("Q8_0") < rank("Q8_K_XL") < rank("F16") < rank("BF16")
    assert above_cpu_ceiling("Q8_K_XL") and above_cpu_ceiling("F16")
    assert not above_cpu_ceiling("Q8_0") and not above_cpu_ceiling("Q6_K_XL")


@pytest.mark.parametrize(
    "variant, base, next_up",
    [
        ("Q8_K_XL", "Q8_0", "F16"),
        ("Q6_K_XL", "Q6_K", "Q8_0"),
        ("Q6_K_L", "Q6_K", "Q8_0"),
        ("Q5_K_XL", "Q5_K_M", "Q6_K"),
        ("Q5_K_L", "Q5_K_M", "Q6_K"),
        ("Q4_K_XL", "Q4_K_M", "Q5_K_S"),
        ("Q4_K_L", "Q4_K_M", "Q5_K_S"),
        ("Q3_K_XL", "Q3_K_L", "MXFP4"),
        ("Q2_K_XL", "Q2_K", "IQ3_XXS"),
        ("Q2_K_L", "Q2_K", "IQ3_XXS"),
    ],
)
def test_variant_between_its_base_and_the_next_quant(variant: str, base: str, next_up: str) -> None:
    assert rank(base) < rank(variant) < rank(next_up)


@pytest.mark.parametrize(
    "name", ["Q8_K_XL", "Q6_K_XL", "Q4_K_XL", "Q2_K_XL", "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_M", "IQ3_XXS", "TQ1_0"]
)
def test_ud_ranks_as_its_base_name(name: str) -> None:
    assert rank(f"UD-{name}") == rank(name) > 0
    assert normalize(f"ud-{name.lower()}") == name


def test_old_short_names_rank_as_their_medium_quant() -> None:
    assert rank("Q3_K") == rank("Q3_K_M") and rank("Q4_K") == rank("Q4_K_M") and rank("Q5_K") == rank("Q5_K_M")
    assert normalize("fp16") == "F16" and rank("fp16") == rank("F16")


@pytest.mark.parametrize("quant", ["Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "q4_0_4_4"])
def test_arm_repacks_are_parsed_but_not_loadable(quant: str) -> None:
    assert parse_quant(f"Llama-3.2-3B-Instruct-{quant}.gguf") == quant.upper()
    assert not loadable(quant)
    assert rank(quant) == rank("Q4_0")  # listed beside Q4_0, whose weights they hold


def test_loadable_quants() -> None:
    assert all(loadable(quant) for quant in QUANT_ORDER)
    assert loadable("Q8_K_XL") and loadable("UD-Q4_K_XL") and loadable("Q4_K")
    assert rank("LLAMA-3_2-3B-INSTRUCT") == 0.0  # an unknown name: loadable perhaps, ranked last


def file(path: str, size: int = 1) -> RemoteFile:
    return RemoteFile(path, size, "0" * 64)


UNSLOTH = [
    file(".gitattributes"),
    file("README.md"),
    file("imatrix_unsloth.dat"),
    file("mmproj-F16.gguf", 800),
    file("Qwen3-30B-A3B-Q4_K_M.gguf", 18),
    file("Qwen3-30B-A3B-Q8_0.gguf", 32),
    file("Qwen3-30B-A3B-UD-IQ1_S.gguf", 6),
    file("Qwen3-30B-A3B-UD-IQ2_M.gguf", 10),
    file("Qwen3-30B-A3B-UD-Q2_K_XL.gguf", 11),
    file("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", 17),
    file("Qwen3-30B-A3B-UD-Q6_K_XL.gguf", 26),
    file("UD-Q8_K_XL/Qwen3-30B-A3B-UD-Q8_K_XL-00002-of-00002.gguf", 5),
    file("UD-Q8_K_XL/Qwen3-30B-A3B-UD-Q8_K_XL-00001-of-00002.gguf", 30),
    file("BF16/Qwen3-30B-A3B-BF16-00001-of-00002.gguf", 40),
    file("BF16/Qwen3-30B-A3B-BF16-00002-of-00002.gguf", 21),
]


def test_group_an_unsloth_repo() -> None:
    groups = group_quants(UNSLOTH)
    assert [g.quant for g in groups] == [
        "BF16",
        "Q8_K_XL",
        "Q8_0",
        "Q6_K_XL",
        "Q4_K_XL",
        "Q4_K_M",
        "Q2_K_XL",
        "IQ2_M",
        "IQ1_S",
    ]
    split = groups[1]
    assert [f.path for f in split.files] == [
        "UD-Q8_K_XL/Qwen3-30B-A3B-UD-Q8_K_XL-00001-of-00002.gguf",
        "UD-Q8_K_XL/Qwen3-30B-A3B-UD-Q8_K_XL-00002-of-00002.gguf",
    ]
    assert split.size == 35 and len(groups[0].files) == 2
    assert choosable(groups) == groups


@pytest.mark.parametrize("spelling", ["UD-Q8_K_XL", "Q8_K_XL", "q8_k_xl", "ud-q8_k_xl"])
def test_every_spelling_of_a_ud_quant_selects_its_group(spelling: str) -> None:
    ref = parse_ref(f"unsloth/Qwen3-30B-A3B-GGUF:{spelling}")
    matching = [g for g in group_quants(UNSLOTH) if g.quant == ref.quant]  # as pull compares them
    assert [f.path for g in matching for f in g.files] == [
        "UD-Q8_K_XL/Qwen3-30B-A3B-UD-Q8_K_XL-00001-of-00002.gguf",
        "UD-Q8_K_XL/Qwen3-30B-A3B-UD-Q8_K_XL-00002-of-00002.gguf",
    ]


BARTOWSKI = (
    [file("README.md"), file("Llama-3.2-3B-Instruct.imatrix")]
    + [
        file(f"Llama-3.2-3B-Instruct-{quant}.gguf", size)
        for quant, size in [
            ("f16", 64),
            ("Q8_0", 34),
            ("Q6_K_L", 27),
            ("Q6_K", 26),
            ("Q5_K_L", 24),
            ("Q5_K_M", 23),
            ("Q4_K_L", 21),
            ("Q4_K_M", 20),
            ("Q4_0", 19),
            ("Q4_0_4_4", 19),
            ("Q4_0_4_8", 19),
            ("Q4_0_8_8", 19),
            ("IQ4_XS", 18),
            ("Q3_K_XL", 18),
            ("Q3_K_L", 17),
            ("IQ3_M", 15),
            ("Q2_K_L", 15),
            ("Q2_K", 14),
        ]
    ]
    + [file("Llama-3.2-3B-Instruct.gguf", 64), file("Llama-3.2-3B-Instruct-imatrix.gguf", 2)]
)


def test_group_a_bartowski_repo_with_unloadable_and_unknown_files() -> None:
    groups = group_quants(BARTOWSKI)
    assert [g.quant for g in groups] == [
        "F16",
        "Q8_0",
        "Q6_K_L",
        "Q6_K",
        "Q5_K_L",
        "Q5_K_M",
        "Q4_K_L",
        "Q4_K_M",
        "IQ4_XS",
        "Q4_0",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "Q3_K_XL",
        "Q3_K_L",
        "IQ3_M",
        "Q2_K_L",
        "Q2_K",
        "LLAMA-3_2-3B-INSTRUCT",
    ]
    assert [g.quant for g in groups if not g.loadable] == ["Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8"]
    unknown = groups[-1]
    assert not unknown.known and unknown.loadable and unknown.first.path == "Llama-3.2-3B-Instruct.gguf"
    assert parse_ref(f"bartowski/Llama-3.2-3B-Instruct-GGUF:{unknown.quant}").quant == unknown.quant
    chosen = choosable(groups)
    assert [g.quant for g in chosen] == [
        g.quant for g in groups if g.quant not in ("Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "LLAMA-3_2-3B-INSTRUCT")
    ]


def test_group_a_qwen_repo_of_lowercase_shards() -> None:
    listing = (
        [file("LICENSE"), file("README.md")]
        + [
            file(f"qwen2.5-7b-instruct-{quant}-{n:05d}-of-{count:05d}.gguf", 10)
            for quant, count in [("fp16", 4), ("q8_0", 3), ("q4_k_m", 2)]
            for n in range(1, count + 1)
        ]
        + [file("qwen2.5-7b-instruct-q2_k.gguf", 3)]
    )
    groups = group_quants(listing)
    assert [(g.quant, len(g.files)) for g in groups] == [("F16", 4), ("Q8_0", 3), ("Q4_K_M", 2), ("Q2_K", 1)]


def test_unknown_gguf_shards_form_one_group() -> None:
    groups = group_quants(
        [
            file("weights/my.model-00001-of-00002.gguf", 4),
            file("weights/my.model-00002-of-00002.gguf", 3),
            file("model-Q4_K_M.gguf", 5),
        ]
    )
    assert [(g.quant, g.size, g.known) for g in groups] == [("Q4_K_M", 5, True), ("MY_MODEL", 7, False)]
    assert unknown_quant("ud-thing.gguf") == parse_ref(f"o/r:{unknown_quant('ud-thing.gguf')}").quant
