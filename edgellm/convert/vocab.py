"""A checkpoint's tokenizer as the `tokenizer.ggml.*` keys of a GGUF: SentencePiece or byte-level BPE.

`read_vocab(folder)` reads `tokenizer.model` (SentencePiece, parsed here without the sentencepiece package) or
`tokenizer.json` (a Hugging Face byte-level BPE), plus `tokenizer_config.json`, `chat_template.jinja` and
`config.json` for special tokens, add_bos/add_eos and the chat template. `write_vocab(writer, vocab)` writes it.

llama.cpp splits BPE text with a fixed set of pre-tokenizer regexes, chosen by the `tokenizer.ggml.pre` name.
Its own converter finds that name by hashing the token ids of a test string, which refuses any vocabulary it
has not seen. Here the name comes from what decides the split, the tokenizer's `pre_tokenizer` description
(`pre_tokenizer_name`), so a freshly trained vocabulary with a known pattern converts; a pattern llama.cpp has no
name for is an error naming the pattern, never a silent 'default'. Each mapped pattern is the one llama.cpp's
src/llama-vocab.cpp lists for that name (its "original regex from tokenizer.json" where it adapts one), and
tests/integration/test_convert_vocab.py trains a tokenizer with each and compares llama.cpp's token ids with HF's.

Not handled: BPE tokenizers whose split is not byte-level (Metaspace/SentencePiece-style BPE in tokenizer.json,
WordPiece, Unigram), normalizers in tokenizer.json (llama.cpp applies none to BPE: Qwen2's NFC is skipped), and a
SentencePiece normalization rule other than identity (llama.cpp applies no precompiled charsmap to SPM).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgellm.errors import ModelFileError

# The GPT-2 split, as HF's ByteLevel(use_regex=True) applies it; llama.cpp lists it without the final `|\s+`
# (its GPT-2 splitter is hand-written and gives the same pieces).
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
GPT2_LLAMA_CPP = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_CONTRACTIONS_LLAMA_CPP = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN35 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
SEED_CODER = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
_UPPER, _LOWER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
TEKKEN = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*|\p{{N}}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GPT4O = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{_CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
    rf"{_CONTRACTIONS}?|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEEPSEEK3 = (
    r"\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)

# (the split regexes in order, then byte-level) -> llama.cpp names with that split, as
# (name, ignore_merges, clean_spaces) from llama-vocab.cpp; the first whose ignore_merges matches the
# tokenizer's is taken (it changes tokens), then the one whose clean_spaces matches (it changes only decoding).
PRE_TOKENIZERS: dict[tuple[str, ...], tuple[tuple[str, bool, bool], ...]] = {
    (GPT2,): (("gpt-2", False, True),),
    (LLAMA3,): (("llama-bpe", True, True), ("dbrx", False, True)),
    (QWEN2,): (("qwen2", False, False), ("stablelm2", False, True)),
    (QWEN35,): (("qwen35", False, False),),
    (SEED_CODER,): (("seed-coder", False, False),),
    (TEKKEN,): (("tekken", True, False),),
    # llama.cpp's 'gpt-4o' adaptation of this pattern leaves combining marks (\p{M}) out of words, splitting
    # "cafe\u0301" and most Indic text apart where HF does not; 'granite-embed-multi-97m' is the same pattern with
    # \p{M} kept (llama-vocab.cpp says so), and it is the one that tokenizes as HF does.
    (GPT4O,): (("granite-embed-multi-97m", True, False),),
    (r"\p{N}", GPT2): (("smollm", False, False), ("starcoder", False, True)),
    DEEPSEEK3: (("deepseek-v3", False, False),),
}
# llama.cpp's spelling of a pattern -> HF's (llama.cpp's regex engine has no (?i:...), see _canonical).
_SPELLINGS = {GPT2_LLAMA_CPP: GPT2}

TOKENIZER_MODEL, TOKENIZER_JSON = "tokenizer.model", "tokenizer.json"
TOKENIZER_CONFIG, CHAT_TEMPLATE_FILE = "tokenizer_config.json", "chat_template.jinja"

# gguf.TokenType values (the same numbers as SentencePiece's piece types)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class Vocab:
    """What a GGUF needs of a tokenizer: `model` is "llama" (SentencePiece) or "gpt2" (BPE, with `pre`)."""

    model: str
    tokens: tuple[str, ...]
    scores: tuple[float, ...]
    token_types: tuple[int, ...]
    pre: str | None = None
    merges: tuple[str, ...] = ()
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None  # SentencePiece: its add_dummy_prefix
    remove_extra_whitespaces: bool | None = None
    chat_template: str | None = None
    source: Path = field(default=Path("."), compare=False)

    def __len__(self) -> int:
        return len(self.tokens)


def read_vocab(folder: Path | str, n_vocab: int | None = None) -> Vocab:
    """The tokenizer of the checkpoint in `folder`, padded with unused `[PAD{i}]` tokens to `n_vocab`."""
    folder = Path(folder)
    config = _read_json(folder / TOKENIZER_CONFIG) if (folder / TOKENIZER_CONFIG).is_file() else {}
    spm = folder / TOKENIZER_MODEL
    pieces = _read_spm(spm) if spm.is_file() else None
    if pieces is None and not (folder / TOKENIZER_JSON).is_file():
        found = " (tokenizer.model is not SentencePiece)" if spm.is_file() else ""
        raise ModelFileError(
            f"{folder}: no tokenizer{found}: a checkpoint needs {TOKENIZER_MODEL} (SentencePiece) "
            f"or {TOKENIZER_JSON} (BPE); download them from the model's repo",
            folder,
            "missing",
        )
    if pieces is not None:
        base = _spm_vocab(pieces, config, folder)
    else:
        base = _bpe_vocab(folder / TOKENIZER_JSON, config)
    tokens, scores, types = list(base["tokens"]), list(base["scores"]), list(base["types"])
    if n_vocab is not None:
        if n_vocab < len(tokens):
            raise ModelFileError(
                f"{folder}: the tokenizer has {len(tokens)} tokens but the model only {n_vocab} "
                "embedding rows: the tokenizer is not this model's",
                folder,
                "corrupt",
            )
        for i in range(len(tokens), n_vocab):  # embedding rows no token uses: never matched in text, as llama.cpp
            tokens.append(f"[PAD{i}]")
            scores.append(-10000.0)
            types.append(UNUSED)
    ids = {tok: i for i, tok in enumerate(tokens)}
    model_config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}

    def special(name: str) -> int | None:
        value = config.get(f"{name}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in ids:
            return ids[value]
        token_id = model_config.get(f"{name}_token_id")
        if isinstance(token_id, list):
            token_id = token_id[0] if token_id else None
        if isinstance(token_id, int) and 0 <= token_id < len(tokens):
            return token_id
        return base.get(f"{name}_id")

    add_bos, add_eos = config.get("add_bos_token"), config.get("add_eos_token")
    if not isinstance(add_bos, bool):
        add_bos = base["add_bos"]
    if not isinstance(add_eos, bool):
        add_eos = base["add_eos"]
    return Vocab(
        base["model"],
        tuple(tokens),
        tuple(scores),
        tuple(types),
        base.get("pre"),
        tuple(base.get("merges", ())),
        special("bos"),
        special("eos"),
        special("unk"),
        special("pad"),
        add_bos,
        add_eos,
        base.get("add_space_prefix"),
        base.get("remove_extra_whitespaces"),
        _chat_template(folder, config),
        folder,
    )


def write_vocab(writer: Any, vocab: Vocab) -> None:
    """Add the `tokenizer.ggml.*` keys (and `tokenizer.chat_template`) of `vocab` to a gguf.GGUFWriter."""
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre is not None:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_scores(list(vocab.scores))
    writer.add_token_types(list(vocab.token_types))
    if vocab.merges:
        writer.add_token_merges(list(vocab.merges))
    for value, add in (
        (vocab.bos_id, writer.add_bos_token_id),
        (vocab.eos_id, writer.add_eos_token_id),
        (vocab.unk_id, writer.add_unk_token_id),
        (vocab.pad_id, writer.add_pad_token_id),
    ):
        if value is not None:
            add(value)
    if vocab.add_bos is not None:
        writer.add_add_bos_token(vocab.add_bos)
    if vocab.add_eos is not None:
        writer.add_add_eos_token(vocab.add_eos)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.remove_extra_whitespaces is not None:
        writer.add_remove_extra_whitespaces(vocab.remove_extra_whitespaces)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def pre_tokenizer_name(
    tokenizer_json: dict[str, Any], *, clean_up_spaces: bool | None = None, path: Path | str = TOKENIZER_JSON
) -> str:
    """The llama.cpp `tokenizer.ggml.pre` name whose split is the one `tokenizer_json`'s pre_tokenizer makes.

    `clean_up_spaces` (tokenizer_config.json's clean_up_tokenization_spaces) picks between names that split
    alike and differ only in decoding. Anything llama.cpp has no name for is a ModelFileError naming it.
    """
    steps = _pre_steps(tokenizer_json.get("pre_tokenizer"), path)
    if not steps or steps[-1] != "<bytes>" or "<bytes>" in steps[:-1]:
        raise ModelFileError(
            f"{path}: pre-tokenizer {_describe(steps)} is not a byte-level BPE split that "
            "llama.cpp knows: edgellm converts byte-level BPE and SentencePiece tokenizers",
            path,
            "unsupported",
        )
    candidates = PRE_TOKENIZERS.get(tuple(steps[:-1]))
    if candidates is None:
        raise ModelFileError(
            f"{path}: llama.cpp has no pre-tokenizer for the split {_describe(steps[:-1])}: "
            "it cannot tokenize this model as its tokenizer does",
            path,
            "unsupported",
        )
    model = tokenizer_json.get("model") or {}
    ignore_merges = bool(model.get("ignore_merges", False))

    def rank(entry: tuple[str, bool, bool]) -> tuple[bool, bool]:
        _, ignores, cleans = entry
        return ignores != ignore_merges, clean_up_spaces is not None and cleans != clean_up_spaces

    return min(candidates, key=rank)[0]


def _pre_steps(pre: Any, path: Path | str) -> list[str]:
    """A pre_tokenizer as a list of Isolated split regexes and "<bytes>" for the byte-level mapping."""
    if pre is None:
        return []
    if not isinstance(pre, dict):
        raise ModelFileError(
            f"{path}: pre_tokenizer is not an object: download {TOKENIZER_JSON} again", path, "corrupt"
        )
    kind = pre.get("type")
    if kind == "Sequence":
        return [step for sub in pre.get("pretokenizers") or [] for step in _pre_steps(sub, path)]
    if kind == "ByteLevel":
        if pre.get("add_prefix_space"):
            raise ModelFileError(
                f"{path}: ByteLevel pre-tokenizer with add_prefix_space: llama.cpp cannot add the space; not supported",
                path,
                "unsupported",
            )
        return ([GPT2] if pre.get("use_regex", True) else []) + ["<bytes>"]
    if kind == "Digits":
        return [r"\p{N}" if pre.get("individual_digits") else r"\p{N}+"]
    if kind == "Split":
        pattern = pre.get("pattern") or {}
        regex = pattern.get("Regex") if isinstance(pattern, dict) else None
        if regex is None or pre.get("behavior") != "Isolated" or pre.get("invert"):
            raise ModelFileError(
                f"{path}: Split pre-tokenizer {json.dumps(pattern, ensure_ascii=False)} "
                f"({pre.get('behavior')}, invert={pre.get('invert')}): llama.cpp only isolates "
                "regex matches; not supported",
                path,
                "unsupported",
            )
        return [_canonical(regex)]
    raise ModelFileError(
        f"{path}: pre-tokenizer type {kind!r}: llama.cpp has no pre-tokenizer for it", path, "unsupported"
    )


def _canonical(regex: str) -> str:
    """One spelling of a regex: escapes for CR/LF, and llama.cpp's adaptations mapped to HF's originals."""
    regex = regex.replace("\r", r"\r").replace("\n", r"\n")
    regex = regex.replace(_CONTRACTIONS_LLAMA_CPP, _CONTRACTIONS)
    return _SPELLINGS.get(regex, regex)


def _describe(steps: list[str]) -> str:
    return " then ".join(repr(s) if s != "<bytes>" else "ByteLevel" for s in steps) or "(none)"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path}: not readable JSON ({why}): download it again", path, "corrupt") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: not a JSON object: download it again", path, "corrupt")
    return data


def _chat_template(folder: Path, config: dict[str, Any]) -> str | None:
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str) and template:
        return template
    jinja = folder / CHAT_TEMPLATE_FILE
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8") or None
        except (OSError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{jinja}: cannot be read ({e}): download it again", jinja, "corrupt") from None
    return None


# ---- BPE (tokenizer.json) ----


def _bpe_vocab(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    data = _read_json(path)
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("vocab"), dict):
        raise ModelFileError(f"{path}: no model vocabulary: download {TOKENIZER_JSON} again", path, "corrupt")
    if model.get("type", "BPE") != "BPE":
        raise ModelFileError(
            f"{path}: a {model.get('type')} tokenizer: edgellm converts BPE and SentencePiece tokenizers",
            path,
            "unsupported",
        )
    clean = config.get("clean_up_tokenization_spaces")
    pre = pre_tokenizer_name(data, clean_up_spaces=clean if isinstance(clean, bool) else None, path=path)
    by_id: dict[int, str] = {}
    for token, token_id in model["vocab"].items():
        if not isinstance(token_id, int) or token_id < 0:
            raise ModelFileError(f"{path}: token {token!r} has id {token_id!r}: download it again", path, "corrupt")
        by_id[token_id] = token
    added: dict[int, tuple[str, bool]] = {}
    for entry in data.get("added_tokens") or []:
        if isinstance(entry, dict) and isinstance(entry.get("id"), int) and isinstance(entry.get("content"), str):
            added[entry["id"]] = (entry["content"], bool(entry.get("special")))
            by_id[entry["id"]] = entry["content"]
    size = max(by_id, default=-1) + 1
    tokens, types = [], []
    for i in range(size):
        if i in added:
            tokens.append(added[i][0])
            types.append(CONTROL if added[i][1] else USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(NORMAL)
        else:  # an id no token has: never matched in text, as llama.cpp's converter marks it
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
    merges = []
    for merge in model.get("merges") or []:
        if isinstance(merge, list) and len(merge) == 2:
            merge = f"{merge[0]} {merge[1]}"
        if not isinstance(merge, str) or " " not in merge:
            raise ModelFileError(f"{path}: bad merge {merge!r}: download {TOKENIZER_JSON} again", path, "corrupt")
        merges.append(merge)
    ids = {tok: i for i, tok in enumerate(tokens)}

    def named(name: str) -> int | None:
        value = config.get(f"{name}_token")
        value = value.get("content") if isinstance(value, dict) else value
        return ids.get(value) if isinstance(value, str) else None

    bos = named("bos")
    add_bos = bos is not None and _template_starts_with(data.get("post_processor"), tokens[bos])
    return {
        "model": "gpt2",
        "pre": pre,
        "tokens": tokens,
        "scores": [0.0] * size,
        "types": types,
        "merges": merges,
        "add_bos": add_bos,
        "add_eos": False,
    }


def _template_starts_with(post: Any, token: str) -> bool:
    """Whether a TemplateProcessing post-processor (alone or in a Sequence) puts `token` first in `single`."""
    if not isinstance(post, dict):
        return False
    if post.get("type") == "Sequence":
        return any(_template_starts_with(p, token) for p in post.get("processors") or [])
    single = post.get("single") if post.get("type") == "TemplateProcessing" else None
    if not single or not isinstance(single[0], dict):
        return False
    return (single[0].get("SpecialToken") or {}).get("id") == token


# ---- SentencePiece (tokenizer.model, a protobuf ModelProto) ----


def _spm_vocab(pieces: dict[str, Any], config: dict[str, Any], folder: Path) -> dict[str, Any]:
    tokens, scores, types = pieces["tokens"], pieces["scores"], pieces["types"]
    ids = {tok: i for i, tok in enumerate(tokens)}
    for key, entry in (config.get("added_tokens_decoder") or {}).items():  # tokens the tokenizer added on top
        if not (isinstance(entry, dict) and str(key).isdigit() and isinstance(entry.get("content"), str)):
            continue
        token_id, content = int(key), entry["content"]
        if token_id < len(tokens):
            if tokens[token_id] == content and entry.get("special") and types[token_id] == NORMAL:
                types[token_id] = CONTROL
            continue
        while len(tokens) < token_id:  # ids no token has, before an added token
            tokens.append(f"[PAD{len(tokens)}]")
            scores.append(-10000.0)
            types.append(UNUSED)
        tokens.append(content)
        scores.append(-1000.0)
        types.append(CONTROL if entry.get("special") else USER_DEFINED)
        ids[content] = token_id

    def first(kind: int) -> int | None:
        return next((i for i, t in enumerate(types) if t == kind), None)

    def piece_id(number: int | None) -> int | None:
        return number if number is not None and 0 <= number < len(tokens) else None

    return {
        "model": "llama",
        "pre": "default",  # what llama.cpp's converter writes for SentencePiece (its loader reads no split from it)
        "tokens": tokens,
        "scores": scores,
        "types": types,
        "bos_id": piece_id(pieces["bos_id"]),
        "eos_id": piece_id(pieces["eos_id"]),
        "unk_id": piece_id(pieces["unk_id"]) if pieces["unk_id"] is not None else first(UNKNOWN),
        "pad_id": piece_id(pieces["pad_id"]),
        "add_bos": True,
        "add_eos": False,
        "add_space_prefix": pieces["add_dummy_prefix"],
        "remove_extra_whitespaces": pieces["remove_extra_whitespaces"],
    }


def _read_spm(path: Path) -> dict[str, Any] | None:
    """The pieces and settings of a SentencePiece model file; None when the file is not one (e.g. tiktoken)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"{path}: cannot be read ({e.strerror})", path, "unreadable") from None
    try:
        fields = _proto(raw)
        tokens, scores, types = [], [], []
        for value in fields.get(1, []):
            piece = _proto(value)
            tokens.append(piece.get(1, [b""])[0].decode("utf-8"))
            scores.append(struct.unpack("<f", piece[2][0])[0] if 2 in piece else 0.0)
            types.append(piece.get(3, [NORMAL])[0])
        trainer = _proto(fields[2][0]) if 2 in fields else {}
        normalizer = _proto(fields[3][0]) if 3 in fields else {}
    except (ValueError, KeyError, IndexError, struct.error, UnicodeDecodeError, TypeError, AttributeError):
        return None
    if not tokens or any(not isinstance(t, int) or not 1 <= t <= 6 for t in types):
        return None
    model_type = trainer.get(3, [1])[0]  # TrainerSpec.model_type: UNIGRAM 1 (the default), BPE 2
    if model_type != 2:
        kind = {1: "unigram", 3: "word", 4: "char"}.get(model_type, f"type {model_type}")
        raise ModelFileError(
            f"{path}: a {kind} SentencePiece model: llama.cpp's SentencePiece tokenizer ('llama') "
            "reproduces BPE models only; not supported",
            path,
            "unsupported",
        )

    def number(spec: dict[int, list[Any]], key: int, default: int | None) -> int | None:
        value = spec.get(key, [default])[0]
        return None if value is None or value >= 1 << 31 else value  # -1 (unset) is stored as 2**64 - 1

    def flag(spec: dict[int, list[Any]], key: int, default: bool) -> bool:
        return bool(spec.get(key, [default])[0])

    # TrainerSpec: unk_id 40, bos_id 41, eos_id 42, pad_id 43; NormalizerSpec: add_dummy_prefix 3,
    # remove_extra_whitespaces 4 (sentencepiece_model.proto)
    return {
        "tokens": tokens,
        "scores": scores,
        "types": types,
        "unk_id": number(trainer, 40, 0),
        "bos_id": number(trainer, 41, 1),
        "eos_id": number(trainer, 42, 2),
        "pad_id": number(trainer, 43, None),
        "add_dummy_prefix": flag(normalizer, 3, True),
        "remove_extra_whitespaces": flag(normalizer, 4, True),
    }


def _proto(data: bytes) -> dict[int, list[Any]]:
    """A protobuf message's fields: number -> values (varints as int, 32-bit as bytes, bytes as bytes)."""
    fields: dict[int, list[Any]] = {}
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos > end or number == 0:
            raise ValueError("truncated")
        fields.setdefault(number, []).append(value)
    return fields


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
