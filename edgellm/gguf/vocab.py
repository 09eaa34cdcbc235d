"""A GGUF model's vocabulary as llama.cpp sees it, and whether a draft model's fits a target for speculative decoding.

`read_vocab` reads the `tokenizer.ggml.*` keys with the project's header reader and applies llama.cpp's defaults
(llama-vocab.cpp) for what a file leaves out; `draft_incompatibility` repeats the checks of llama.cpp's
`common_speculative_are_compatible` and names the first one that fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from edgellm.gguf.header import STRING, ArrayInfo, GGUFError, read_header

TOKENS_KEY = "tokenizer.ggml.tokens"
MAX_SIZE_DIFFERENCE = 128  # SPEC_VOCAB_MAX_SIZE_DIFFERENCE
FIRST_COMPARED_ID = 5  # SPEC_VOCAB_CHECK_START_TOKEN_ID: the ids below (special tokens) may differ
SHOWN_CHARS = 24  # a token's text is cut to this in a message

# tokenizer.ggml.model -> (llama.cpp's vocab type, default BOS id, default EOS id, add_bos, add_eos) when the file
# does not say (-1: none); the BPE defaults change with the pre-tokenizer, below.
_MODEL_DEFAULTS: dict[str, tuple[str, int, int, bool, bool]] = {
    "no_vocab": ("none", -1, -1, False, False),
    "none": ("none", -1, -1, False, False),
    "llama": ("SPM", 1, 2, True, False),
    "bert": ("WPM", 101, -1, True, False),
    "gpt2": ("BPE", 11, 11, False, False),
    "hybriddna": ("BPE", 11, 11, False, False),
    "whitespace": ("BPE", 11, 11, False, False),
    "gemma4": ("BPE", -1, -1, False, False),
    "t5": ("UGM", -1, 1, False, True),
    "rwkv": ("RWKV", -1, -1, False, False),
    "plamo2": ("PLAMO2", 1, 2, False, False),
}
# BPE pre-tokenizers after which llama.cpp adds a BOS token unless the file says otherwise
_BPE_PRE_ADDING_BOS = frozenset(
    {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"}
    | {"tekken", "chameleon"}
)
_BPE_PRE_WITHOUT_BOS = frozenset({"chatglm-bpe", "glm4", "glm5"})  # no default BOS id


@dataclass(frozen=True)
class VocabFacts:
    """What llama.cpp's draft check compares: the tokenizer's type, special tokens and every token's text."""

    model: str  # tokenizer.ggml.model: "llama" (SentencePiece), "gpt2" (BPE), ...
    pre: str  # tokenizer.ggml.pre, "" when absent
    bos: int  # -1: none
    eos: int  # -1: none
    add_bos: bool
    add_eos: bool
    tokens: tuple[str, ...] = field(repr=False)  # the text of each token id

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def vocab_type(self) -> str:
        """llama.cpp's vocab type ("SPM", "BPE", ...); an unknown tokenizer stands for itself."""
        return _MODEL_DEFAULTS.get(self.model, (self.model, -1, -1, False, False))[0]


def read_vocab(path: str | os.PathLike[str]) -> VocabFacts:
    """The vocabulary of the GGUF at `path`, with llama.cpp's defaults for what the file leaves out; GGUFError for a
    bad file or one without a vocabulary."""
    header = read_header(path, full_arrays=(TOKENS_KEY,))
    metadata = header.metadata
    model = metadata.get("tokenizer.ggml.model")
    if not isinstance(model, str):
        raise GGUFError("the file has no vocabulary (no tokenizer.ggml.model)")
    pre = metadata.get("tokenizer.ggml.pre", "")
    pre = pre if isinstance(pre, str) else ""
    vocab_type, bos, eos, add_bos, add_eos = _MODEL_DEFAULTS.get(model, (model, -1, -1, False, False))
    if vocab_type == "none":
        size = header.arch_value("vocab_size", 0)
        tokens: tuple[str, ...] = ("",) * (size if isinstance(size, int) else 0)
    else:
        info = metadata.get(TOKENS_KEY)
        if not isinstance(info, ArrayInfo) or info.item_type != STRING:
            raise GGUFError(f"the file's vocabulary has no {TOKENS_KEY} array of strings")
        tokens = tuple(header.small_arrays[TOKENS_KEY])
    if vocab_type == "BPE" and pre in _BPE_PRE_ADDING_BOS:
        add_bos = True
    if vocab_type == "BPE" and pre in _BPE_PRE_WITHOUT_BOS:
        bos = -1
    bos = _special_id(metadata.get("tokenizer.ggml.bos_token_id"), bos, len(tokens))
    eos = _special_id(metadata.get("tokenizer.ggml.eos_token_id"), eos, len(tokens))
    add_bos = _flag(metadata.get("tokenizer.ggml.add_bos_token"), add_bos)
    add_eos = _flag(metadata.get("tokenizer.ggml.add_eos_token"), add_eos)
    if vocab_type == "BPE" and (pre == "gemma4" or model == "gemma4"):
        add_bos = True  # llama.cpp overrides a Gemma 4 file that says otherwise
    return VocabFacts(model, pre, bos, eos, add_bos, add_eos, tokens)


def _special_id(value: object, default: int, n_tokens: int) -> int:
    """A special token's id as llama.cpp takes it: a default out of range is none, a stated id out of range is
    ignored for the default."""
    if default >= n_tokens:
        default = -1
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n_tokens:
        return value
    return default


def _flag(value: object, default: bool) -> bool:
    return value if isinstance(value, bool) else default


def draft_incompatibility(target: VocabFacts, draft: VocabFacts) -> str | None:
    """None when llama.cpp accepts `draft`'s vocabulary for speculative decoding of `target`, else a clause about
    the draft naming the first difference (the draft's value first, then the model's)."""
    if draft.vocab_type != target.vocab_type:
        return (
            f"its tokenizer type is {draft.vocab_type} ({draft.model}), "
            f"the model's is {target.vocab_type} ({target.model})"
        )
    for name, adds, adds_target, token, token_target in (
        ("BOS", draft.add_bos, target.add_bos, draft.bos, target.bos),
        ("EOS", draft.add_eos, target.add_eos, draft.eos, target.eos),
    ):
        if adds != adds_target:
            if adds:
                return f"it adds the {name} token, the model does not"
            return f"it does not add the {name} token, the model does"
        if adds and token != token_target:
            return f"its {name} token is {token}, the model's is {token_target}"
    if abs(draft.n_tokens - target.n_tokens) > MAX_SIZE_DIFFERENCE:
        return (
            f"its vocabulary has {draft.n_tokens} tokens, the model's {target.n_tokens} "
            f"(more than {MAX_SIZE_DIFFERENCE} apart)"
        )
    end = min(draft.n_tokens, target.n_tokens)
    if draft.tokens[FIRST_COMPARED_ID:end] == target.tokens[FIRST_COMPARED_ID:end]:
        return None
    first = next(i for i in range(FIRST_COMPARED_ID, end) if draft.tokens[i] != target.tokens[i])
    return (
        f"its vocabulary differs from the model's at token {first} "
        f"({_shown(draft.tokens[first])} vs {_shown(target.tokens[first])})"
    )


def _shown(text: str) -> str:
    """A token's text quoted for a message, control characters escaped, cut to SHOWN_CHARS."""
    return repr(text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…")
