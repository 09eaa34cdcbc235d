"""Speculative decoding on the real llama.cpp and the real test model: the reply is the target's own, drafted by
n-gram lookup or by a draft model, whatever stops it; the KV cache is left as plain decoding leaves it.

llama.cpp's CPU kernels compute the later rows of a batch with other rounding than one-token decodes (up to about one
logit on the test model), so where the target's two best tokens are that close, a drafted reply may take the other
one, as llama.cpp's own speculative decoding does. The comparisons below hold token for token up to the first such
near tie of the plain reply, and each covers at least `least` tokens.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgellm.engine.contract import GenerationOptions, LoadParams, Model, Sampling
from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import LocalModel, load
from tests.support import edgellm

NEAR_TIE = 1.5  # logits: closer than this, the two best tokens may swap between a batch row and a one-token decode
PASSAGE = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a small lamp and a notebook. "
    "He wrote down the colour of the sky, the direction of the wind, and the names of the ships that passed the "
    "point. In winter the storms came from the north and the sea turned grey and loud against the rocks below."
)
COPYING = f"Text: {PASSAGE}\nThe same text again: {PASSAGE}\nOnce more: The lighthouse keeper"  # its reply copies
COUNTING = "The numbers from one to thirty: one, two, three, four,"  # no passage to copy, few near ties
FREE = "Here is a list of the planets of the solar system, from the Sun outwards:"
GREEDY = GenerationOptions(sampling=Sampling(temp=0.0), max_tokens=64, cache_prompt=False)


def loaded(path: Path, n_ctx: int, log: Path) -> LocalModel:
    params = LoadParams(
        path=path, n_ctx=n_ctx, n_threads=2, n_threads_batch=2, n_gpu_layers=0, flash_attn=True, kv="f16", seed=-1
    )
    return load(params, LlamaLog(log, echo=False))


@pytest.fixture(scope="module")
def model(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModel]:
    found = loaded(test_model, 1024, tmp_path_factory.mktemp("spec") / "llama.log")
    yield found
    found.close()


def reply(model: Model, prompt: str, options: GenerationOptions, cancel_after: int | None = None):  # type: ignore[no-untyped-def]
    cancel = threading.Event()
    generation = model.generation(model.tokenize(prompt, add_bos=True, special=False), options, cancel=cancel)
    for count, _ in enumerate(generation, 1):
        if cancel_after is not None and count >= cancel_after:
            cancel.set()
    return generation


def same_until_near_tie(plain, drafted, least: int) -> None:  # type: ignore[no-untyped-def]
    """The drafted reply's tokens equal the plain reply's up to the first near tie of the plain one (its
    log-probabilities were asked for), which comes after `least` tokens at the earliest."""
    ties = [
        i
        for i, found in enumerate(plain.logprobs)
        if len(found.top) > 1 and found.top[0][1] - found.top[1][1] < NEAR_TIE
    ]
    end = min([len(plain.tokens), *ties])
    assert end >= least, f"a near tie at token {end}: the prompt does not test {least} tokens"
    assert drafted.tokens[:end] == plain.tokens[:end]
    if end == len(plain.tokens):
        assert drafted.tokens == plain.tokens
        assert drafted.stats.stop_reason == plain.stats.stop_reason


@pytest.mark.parametrize(("prompt", "least"), [(COPYING, 48), (COUNTING, 8)], ids=["repeating", "free"])
def test_ngram_greedy_reply_is_the_plain_one(model: LocalModel, prompt: str, least: int) -> None:
    plain = reply(model, prompt, replace(GREEDY, logprobs=2))
    drafted = reply(model, prompt, replace(GREEDY, speculation="ngram"))
    same_until_near_tie(plain, drafted, least)
    assert drafted.stats.speculation is not None and drafted.stats.speculation.mode == "ngram"
    if prompt is COPYING:
        speculation = drafted.stats.speculation
        assert speculation.accepted >= 32, "copying a passage of the prompt drafts most of the reply"
        assert speculation.rounds < len(drafted.tokens) / 2, "several tokens a round"


def test_plain_path_is_untouched(model: LocalModel) -> None:
    off = reply(model, COPYING, GREEDY)
    assert off.stats.speculation is None
    assert type(off).__name__ == "LocalGeneration"


@pytest.mark.parametrize("max_tokens", [1, 2, 7, 33])
def test_max_tokens_is_exact_while_drafting(model: LocalModel, max_tokens: int) -> None:
    drafted = reply(model, COPYING, replace(GREEDY, max_tokens=max_tokens, speculation="ngram"))
    plain = reply(model, COPYING, replace(GREEDY, max_tokens=max_tokens))
    assert len(drafted.tokens) == max_tokens == drafted.stats.completion_tokens
    assert drafted.stats.stop_reason == "length"
    assert drafted.tokens == plain.tokens


def test_the_context_limit_ends_a_drafted_reply_where_a_plain_one_ends(test_model: Path, tmp_path: Path) -> None:
    small = loaded(test_model, 256, tmp_path / "llama.log")
    try:
        prompt_tokens = len(small.tokenize(COPYING, add_bos=True, special=False))
        options = replace(GREEDY, max_tokens=-1, ignore_eos=True)
        drafted = reply(small, COPYING, replace(options, speculation="ngram"))
        plain = reply(small, COPYING, options)
        assert drafted.stats.stop_reason == plain.stats.stop_reason == "context"
        assert len(drafted.tokens) == len(plain.tokens) == small.n_ctx - prompt_tokens
        assert drafted.stats.speculation is not None and drafted.stats.speculation.accepted > 0
    finally:
        small.close()


def test_cancel_mid_draft_stops_and_leaves_the_cache_right(model: LocalModel) -> None:
    options = replace(GREEDY, speculation="ngram", cache_prompt=True)
    cancelled = reply(model, COPYING, options, cancel_after=20)
    assert cancelled.stats.stop_reason == "interrupted"
    assert 20 <= len(cancelled.tokens) < 40
    # the next call reuses what the cache holds: its reply is the one a fresh context gives
    again = reply(model, COPYING, replace(options, speculation="off"))
    assert again.stats.prompt_evaluated == 1, "the whole prompt was reused from the cache"
    fresh = reply(model, COPYING, replace(GREEDY, cache_prompt=False))
    assert again.tokens == fresh.tokens


def test_a_drafted_reply_continues_from_the_cache_as_a_plain_one_does(model: LocalModel) -> None:
    first = reply(model, COPYING, replace(GREEDY, max_tokens=30, speculation="ngram", cache_prompt=True))
    text = COPYING + model.detokenize(first.tokens).decode()
    follow = reply(model, text, replace(GREEDY, max_tokens=20, cache_prompt=True))
    assert follow.stats.prompt_evaluated < 10, "the drafted reply's tokens stayed in the cache"
    fresh = reply(model, text, replace(GREEDY, max_tokens=20))
    assert follow.tokens == fresh.tokens


def test_stop_strings_end_a_drafted_reply(model: LocalModel) -> None:
    from edgellm.session.completion import ChatModel
    from edgellm.session.events import Reply

    chat = ChatModel.for_model(model, "gemma3")
    options = replace(GREEDY, stop=("ships",))
    answers = {}
    for mode in ("off", "ngram"):
        done = Reply()
        list(chat.stream(chat.prepare_text(COPYING), done, replace(options, speculation=mode)))
        answers[mode] = done
    assert answers["ngram"].content == answers["off"].content
    assert answers["ngram"].content.endswith("the names of the ")
    assert answers["ngram"].stats.stop_reason == "stop"


def test_grammar_and_logprobs_hold_while_drafting(model: LocalModel) -> None:
    from edgellm.engine.contract import Grammar

    grammar = Grammar('root ::= " climbed the spiral" [a-z ,.]+')
    options = replace(GREEDY, grammar=grammar, logprobs=3, max_tokens=40)
    plain = reply(model, COPYING, options)
    drafted = reply(model, COPYING, replace(options, speculation="ngram"))
    assert drafted.tokens == plain.tokens
    assert [found.token for found in drafted.logprobs] == drafted.tokens
    # the first token comes from the prompt's last row in both; the next from a verifying batch's rows, whose
    # rounding differs a little from one-token decodes (by CPU: 0.006 seen on an AVX-512 Xeon, none on an EPYC)
    assert drafted.logprobs[0].logprob == pytest.approx(plain.logprobs[0].logprob, abs=1e-4)
    assert [found.logprob for found in drafted.logprobs[:8]] == pytest.approx(
        [found.logprob for found in plain.logprobs[:8]], abs=0.05
    )


@pytest.fixture(scope="module")
def with_draft(test_model: Path, draft_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModel]:
    log = tmp_path_factory.mktemp("draft") / "llama.log"
    target = loaded(test_model, 1024, log)
    target.draft = loaded(draft_model, 1024, log)
    yield target
    target.close()


def test_a_draft_model_gives_the_plain_reply(with_draft: LocalModel) -> None:
    plain = reply(with_draft, COUNTING, replace(GREEDY, logprobs=2))
    drafted = reply(with_draft, COUNTING, replace(GREEDY, speculation="draft"))
    same_until_near_tie(plain, drafted, 8)
    speculation = drafted.stats.speculation
    assert speculation is not None and speculation.mode == "draft" and speculation.drafted > 0


def test_a_draft_model_samples_as_the_plain_reply_with_a_seed(with_draft: LocalModel) -> None:
    sampled = GenerationOptions(sampling=Sampling(temp=0.7), max_tokens=48, seed=1234, cache_prompt=False)
    plain = reply(with_draft, COPYING, sampled)
    drafted = reply(with_draft, COPYING, replace(sampled, speculation="draft"))
    again = reply(with_draft, COPYING, replace(sampled, speculation="draft"))
    assert drafted.tokens == again.tokens, "a seed gives one reply"
    assert drafted.tokens == plain.tokens, "one random draw per sampled token, as without drafting"


def test_auto_stops_drafting_where_nothing_is_accepted(with_draft: LocalModel) -> None:
    # the test model's first four layers guess nearly no token of its own: drafting stops for the reply
    drafted = reply(with_draft, FREE, replace(GREEDY, max_tokens=96, speculation="auto"))
    speculation = drafted.stats.speculation
    assert speculation is not None and speculation.mode == "draft"
    assert speculation.stopped, "drafting stopped"
    assert speculation.drafted < 48, "long before the reply ended"


def test_a_draft_of_another_vocabulary_is_refused(test_model: Path, other_vocab_model: Path) -> None:
    done = edgellm("run", "-m", str(test_model), "-md", str(other_vocab_model), "-p", "Hi", "-n", "4")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot draft for" in lines[0] and "token 1000" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_run_reports_drafting_in_its_json(test_model: Path, draft_model: Path) -> None:
    done = edgellm(
        "run", "-m", str(test_model), "-md", str(draft_model), "-p", COPYING, "-n", "24", "--temp", "0", "--json"
    )
    assert done.returncode == 0, done.stderr
    import json

    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["speculation"]["mode"] == "draft"
    assert stats["speculation"]["drafted"] >= stats["speculation"]["accepted"] >= 0
    assert stats["settings"]["speculation"] == "auto"


@pytest.fixture(scope="module")
def batched(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model]:
    from edgellm.engine.batched import open_batched

    params = LoadParams(
        path=test_model,
        n_ctx=1024,
        n_threads=2,
        n_threads_batch=2,
        n_gpu_layers=0,
        flash_attn=True,
        kv="f16",
        seed=-1,
        parallel=2,
    )
    found = open_batched(params, LlamaLog(tmp_path_factory.mktemp("batched") / "llama.log", echo=False))
    yield found
    found.close()


def test_a_lone_stream_on_the_batched_engine_drafts_and_gives_the_plain_reply(batched: Model) -> None:
    plain = reply(batched, COPYING, replace(GREEDY, logprobs=2))
    drafted = reply(batched, COPYING, replace(GREEDY, speculation="auto"))
    same_until_near_tie(plain, drafted, 48)
    speculation = drafted.stats.speculation
    assert speculation is not None and speculation.accepted >= 32
    assert plain.stats.speculation is None


def test_streams_decoding_together_draft_nothing(batched: Model) -> None:
    # (sequences sharing a batch may already differ from a lone one by the batch's rounding: only counts are compared)
    options = replace(GREEDY, max_tokens=48, speculation="ngram")
    generations = [
        batched.generation(batched.tokenize(p, add_bos=True, special=False), options) for p in (COPYING, COPYING)
    ]
    pieces = [iter(generation) for generation in generations]
    for stream in pieces:  # both admitted before either ends: they decode together from the start
        next(stream)
    for stream in pieces:
        list(stream)
    for generation in generations:
        assert len(generation.tokens) == 48 and generation.stats.stop_reason == "length"
        speculation = generation.stats.speculation
        # the first drafts until the second is admitted (a round or two): none after, while they decode together
        assert speculation is not None and speculation.drafted <= 12, "no drafting while another stream decodes"
