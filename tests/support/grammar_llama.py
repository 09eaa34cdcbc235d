"""llama.cpp's own grammar sampler, through llama-cpp-python's C API, for the grammar tests: `parses(gbnf)` (does
llama.cpp's parser read it) and `accepts(gbnf, text)` (does the sampler let the tokens of `text` through, one by one,
and then let the reply end). The test model's vocabulary is loaded once per process (vocab_only: no weights).

A token the grammar refused is never accepted: llama.cpp throws a C++ exception there, which ends the process."""

from __future__ import annotations

import ctypes
import math
from functools import cache
from typing import Any

import llama_cpp

from tests.support import TEST_MODEL


@cache
def _model() -> Any:
    """The test model, its vocabulary only (no weights), loaded once and kept for the rest of the process."""
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(TEST_MODEL).encode(), params)
    assert model, f"llama.cpp could not load {TEST_MODEL}"
    return model


def vocab() -> Any:
    return llama_cpp.llama_model_get_vocab(_model())


def _sampler(gbnf: str) -> Any:
    """llama.cpp's grammar sampler for `gbnf` (rule root), None when its parser refuses the grammar."""
    return llama_cpp.llama_sampler_init_grammar(vocab(), gbnf.encode(), b"root") or None


def parses(gbnf: str) -> bool:
    """Whether llama.cpp's grammar parser reads `gbnf` (its complaint, if any, goes to stderr)."""
    sampler = _sampler(gbnf)
    if sampler is None:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def tokenize(text: str) -> list[int]:
    data = text.encode()
    buffer = (llama_cpp.llama_token * (len(data) + 8))()
    count = llama_cpp.llama_tokenize(vocab(), data, len(data), buffer, len(buffer), False, False)
    assert count >= 0, f"could not tokenize {text!r}"
    return list(buffer[:count])


def _allows(sampler: Any, token: int) -> bool:
    """Whether the grammar, in its state now, lets `token` through (it is checked alone, not accepted)."""
    one = llama_cpp.llama_token_data_array((llama_cpp.llama_token_data * 1)(), 1, -1, False)
    one.data[0].id, one.data[0].logit, one.data[0].p = token, 0.0, 0.0
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(one))
    return not math.isinf(one.data[0].logit)


def accepts(gbnf: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler for `gbnf` lets every token of `text` through and then lets the reply end
    (the end-of-sequence token)."""
    sampler = _sampler(gbnf)
    assert sampler is not None, "llama.cpp could not parse the grammar"
    try:
        for token in tokenize(text):
            if not _allows(sampler, token):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return _allows(sampler, llama_cpp.llama_vocab_eos(vocab()))
    finally:
        llama_cpp.llama_sampler_free(sampler)
