"""Grammars and log-probabilities in the engine, on the real llama.cpp and the test model: the solo path and the
batched engine agree; a refused token's replacement found among the most likely tokens is the one filtering the whole
vocabulary finds; a grammar's dead end or a grammar llama.cpp cannot parse fails that request alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgellm.engine import compat
from edgellm.engine.batched import BatchedModel, open_batched
from edgellm.engine.contract import GenerationOptions, Grammar, LoadParams, Sampling
from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import LocalModel, load
from edgellm.errors import GrammarDeadEnd, GrammarInvalid
from edgellm.grammar.json_schema import schema_grammar

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
    },
    "required": ["name", "age"],
}
JSON = Grammar(schema_grammar(SCHEMA))
GREEDY = GenerationOptions(Sampling(temp=0.0), max_tokens=60, grammar=JSON)
PROMPT = "Here is a person as JSON:"


def params(model: Path, **changes: object) -> LoadParams:
    return replace(LoadParams(model, 512, 2, 2, 0, True, "f16", 0), **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def engines(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalModel, BatchedModel]]:
    log = LlamaLog(tmp_path_factory.mktemp("log") / "llama.log", echo=False)
    local, batched = load(params(test_model), log), open_batched(params(test_model, parallel=2), log)
    try:
        yield local, batched
    finally:
        local.close()
        batched.close()


def complete(model: LocalModel | BatchedModel, options: GenerationOptions, text: str = PROMPT):  # type: ignore[no-untyped-def]
    generation = model.generation(model.tokenize(text, add_bos=True, special=False), options)
    return "".join(generation), generation


def test_the_solo_path_and_the_batched_engine_write_the_same_constrained_reply(engines) -> None:  # type: ignore[no-untyped-def]
    local, batched = engines
    for options in (GREEDY, replace(GREEDY, sampling=Sampling(temp=0.9), seed=7)):
        alone, generation = complete(local, options)
        together, _ = complete(batched, options)
        assert alone == together and generation.stats.stop_reason == "eos"
        assert alone.lstrip().startswith('{"name"') or alone.lstrip().startswith("{")


def test_the_most_likely_tokens_give_the_full_filters_choice(engines, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    local, _ = engines
    quick, _ = complete(local, GREEDY)
    monkeypatch.setattr(compat, "LIKELY_TIERS", ())
    assert complete(local, GREEDY)[0] == quick


def test_a_grammar_ends_the_reply_even_past_end_of_sequence(engines) -> None:  # type: ignore[no-untyped-def]
    _, batched = engines
    text, generation = complete(batched, replace(GREEDY, ignore_eos=True, grammar=Grammar('root ::= "yes" | "no"')))
    assert text in ("yes", "no") and generation.stats.stop_reason == "eos"


def test_logprobs_are_the_same_on_both_paths_and_the_top_one_is_chosen(engines) -> None:  # type: ignore[no-untyped-def]
    local, batched = engines
    options = GenerationOptions(Sampling(temp=0.0), max_tokens=8, ignore_eos=True, logprobs=3)
    _, alone = complete(local, options)
    _, together = complete(batched, options)
    assert len(alone.logprobs) == len(alone.tokens) == 8
    for first, second, token in zip(alone.logprobs, together.logprobs, alone.tokens):
        assert first.token == second.token == token and first.top[0][0] == token
        assert first.logprob == pytest.approx(second.logprob, abs=1e-3) and first.logprob <= 0
        assert len(first.top) == 3 and first.top[0][1] >= first.top[1][1] >= first.top[2][1]


def test_a_dead_end_fails_its_request_and_not_the_one_beside_it(engines) -> None:  # type: ignore[no-untyped-def]
    _, batched = engines
    found: dict[str, object] = {}

    def dead() -> None:
        try:
            complete(batched, replace(GREEDY, grammar=Grammar('root ::= "a" [\\x00]')))
        except GrammarDeadEnd as error:
            found["dead"] = error

    def alive() -> None:
        found["alive"] = complete(batched, GREEDY)

    threads = [threading.Thread(target=dead), threading.Thread(target=alive)]
    with batched.paused():
        for thread in threads:
            thread.start()
        from tests.support.server import until

        until(lambda: batched.waiting == 2, what="both requests to wait")
    for thread in threads:
        thread.join(120)
    assert isinstance(found.get("dead"), GrammarDeadEnd)
    text, generation = found["alive"]  # type: ignore[misc]
    assert generation.stats.stop_reason == "eos" and set(json.loads(text)) == {"name", "age"}
    with pytest.raises(GrammarInvalid):
        complete(batched, replace(GREEDY, grammar=Grammar("root ::= undefined-rule")))
    text, generation = complete(batched, GREEDY)  # the engine goes on
    assert generation.stats.stop_reason == "eos" and set(json.loads(text)) == {"name", "age"}
