"""The batched engine on the real llama.cpp and the test model: one sequence through it is today's solo path exactly;
several decode together, each ending as it asked; cancel, admission, chunked prefill and the slots' prompt cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgellm.engine.batched import BatchedModel, PoolTooSmall, open_batched
from edgellm.engine.contract import GenerationOptions, LoadParams, Sampling
from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import load
from tests.support.server import until

GREEDY = GenerationOptions(Sampling(temp=0.0), max_tokens=24, ignore_eos=True)


def params(model: Path, **changes: object) -> LoadParams:
    return replace(LoadParams(model, 512, 2, 2, 0, True, "f16", 0), **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def batched(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchedModel]:
    log = LlamaLog(tmp_path_factory.mktemp("log") / "llama.log", echo=False)
    model = open_batched(params(test_model, parallel=4), log)
    try:
        yield model
    finally:
        model.close()


def run(model: BatchedModel, tokens: list[int], options: GenerationOptions = GREEDY) -> tuple[str, list[int], object]:
    generation = model.generation(tokens, options)
    text = "".join(generation)
    return text, generation.tokens, generation.stats


def prompt(model: BatchedModel, text: str) -> list[int]:
    return model.tokenize(text, add_bos=True, special=False)


def together(
    model: BatchedModel, jobs: list[tuple[list[int], GenerationOptions]]
) -> list[tuple[str, list[int], object]]:
    """Run `jobs` as one batch: submitted while the stepper is held, so they are admitted in one step."""
    answers: list[tuple[str, list[int], object] | None] = [None] * len(jobs)

    def read(index: int) -> None:
        answers[index] = run(model, *jobs[index])

    threads = [threading.Thread(target=read, args=(index,)) for index in range(len(jobs))]
    with model.paused():
        for thread in threads:
            thread.start()
        until(lambda: model.waiting == len(jobs), what="every request to wait")
    for thread in threads:
        thread.join()
    return [answer for answer in answers if answer is not None]


def test_one_sequence_through_the_batched_engine_is_the_solo_path_exactly(test_model: Path, tmp_path: Path) -> None:
    """Greedy and sampled with a seed: the same tokens as llama-cpp-python's own generate on its own context."""
    log = LlamaLog(tmp_path / "llama.log", echo=False)
    sampled = GenerationOptions(Sampling(temp=0.9, repeat_penalty=1.2), max_tokens=32, ignore_eos=True, seed=7)
    solo = load(params(test_model), log)
    try:
        tokens = solo.tokenize("The capital of France is", add_bos=True, special=False)
        expected = []
        for options in (GREEDY, sampled):
            generation = solo.generation(tokens, options)
            expected.append(("".join(generation), generation.tokens))
    finally:
        solo.close()
    model = open_batched(params(test_model, parallel=2), log)
    try:
        for options, (text, sampled_tokens) in zip((GREEDY, sampled), expected):
            got_text, got_tokens, stats = run(model, tokens, options)
            assert got_tokens == sampled_tokens and got_text == text
            assert stats.completion_tokens == options.max_tokens  # type: ignore[attr-defined]
    finally:
        model.close()


def test_sequences_decode_together_each_ending_as_asked(batched: BatchedModel) -> None:
    """Four requests in one batch with their own max_tokens, stop conditions, seeds and temperatures."""
    jobs = [
        (prompt(batched, "Once upon a time"), replace(GREEDY, max_tokens=5)),
        (prompt(batched, "The weather"), GenerationOptions(Sampling(temp=1.0), max_tokens=17, ignore_eos=True, seed=3)),
        (
            prompt(batched, "Numbers: 1, 2, 3,"),
            GenerationOptions(Sampling(temp=0.5), max_tokens=9, ignore_eos=True, seed=9),
        ),
        (prompt(batched, "Hello"), replace(GREEDY, max_tokens=12)),
    ]
    steps_before, sampled_before = batched.steps, batched.step_sequences
    answers = together(batched, jobs)
    assert [len(tokens) for _, tokens, _ in answers] == [5, 17, 9, 12]
    assert all(stats.stop_reason == "length" for _, _, stats in answers)  # type: ignore[attr-defined]
    # they decoded together: fewer steps than tokens, more than one sequence sampled per step on average
    steps = batched.steps - steps_before
    assert steps < sum(len(tokens) for _, tokens, _ in answers)
    assert (batched.step_sequences - sampled_before) / steps > 1.5
    again = together(batched, jobs)  # the same requests in the same batch shape: the same answers
    assert [tokens for _, tokens, _ in again] == [tokens for _, tokens, _ in answers]


def test_end_of_sequence_and_the_context_end_a_sequence_alone(batched: BatchedModel) -> None:
    short = prompt(batched, "Hi")
    long = prompt(batched, "word " * 200)
    room = batched.n_ctx - len(long)
    answers = together(
        batched,
        [(short, replace(GREEDY, max_tokens=-1, ignore_eos=False)), (long, replace(GREEDY, max_tokens=-1))],
    )
    assert answers[1][2].stop_reason == "context" and len(answers[1][1]) == room  # type: ignore[attr-defined]
    assert answers[0][2].stop_reason in ("eos", "context")  # type: ignore[attr-defined]


def test_a_cancelled_sequence_leaves_the_others_running_and_frees_its_slot(batched: BatchedModel) -> None:
    cancel = threading.Event()
    long = batched.generation(prompt(batched, "A long story:"), replace(GREEDY, max_tokens=400), cancel)
    pieces = iter(long)
    next(pieces)
    other: list[object] = []
    thread = threading.Thread(
        target=lambda: other.append(run(batched, prompt(batched, "Count:"), replace(GREEDY, max_tokens=30)))
    )
    thread.start()
    until(lambda: sum(slot.busy for slot in batched.slots()) == 2, what="both to run")
    cancel.set()
    list(pieces)
    assert long.stats.stop_reason == "interrupted" and long.stats.completion_tokens < 400
    thread.join()
    assert len(other[0][1]) == 30  # type: ignore[index]
    until(lambda: not any(slot.busy for slot in batched.slots()), what="every slot to be free")


def test_a_reader_that_leaves_ends_its_sequence_at_the_next_step(batched: BatchedModel) -> None:
    generation = batched.generation(prompt(batched, "Tell me"), replace(GREEDY, max_tokens=400))
    pieces = iter(generation)
    next(pieces)
    pieces.close()
    assert generation.stats.stop_reason == "interrupted"
    until(lambda: not any(slot.busy for slot in batched.slots()), what="its slot to be free")


def test_a_long_prompt_delays_running_streams_by_one_chunk_at_most(test_model: Path, tmp_path: Path) -> None:
    """A 1500-token prompt arrives while two streams decode: it is read 64 tokens per step beside them, so no gap
    between their tokens is longer than a few chunks' time, never the whole prompt's."""
    log = LlamaLog(tmp_path / "llama.log", echo=False)
    model = open_batched(params(test_model, parallel=3, n_ctx=2048, n_batch=64), log)
    try:
        gaps: list[list[float]] = [[], []]

        def stream(index: int) -> None:
            last = None
            for _ in model.generation(prompt(model, f"Story {index}:"), replace(GREEDY, max_tokens=150)):
                now = time.perf_counter()
                if last is not None:
                    gaps[index].append(now - last)
                last = now

        threads = [threading.Thread(target=stream, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        until(lambda: all(len(g) > 5 for g in gaps), what="both streams to decode")
        long = prompt(model, "word " * 1500)
        started = time.perf_counter()
        _, _, stats = run(model, long, replace(GREEDY, max_tokens=1))
        whole_prompt_s = time.perf_counter() - started
        for thread in threads:
            thread.join()
        assert stats.prompt_evaluated == len(long)  # type: ignore[attr-defined]
        # the whole prompt took many steps; no stream ever waited anywhere near that long for its next token
        assert max(max(g) for g in gaps) < whole_prompt_s / 3
    finally:
        model.close()


def test_a_pool_too_small_makes_a_request_wait_never_breaks_the_running(test_model: Path, tmp_path: Path) -> None:
    """A pool of 512 cells, two slots of up to 1024 tokens: the second request (prompt + max_tokens beyond what is
    left) waits for the first to end, then runs; the first is never cut short. A request bigger than the pool is
    refused."""
    log = LlamaLog(tmp_path / "llama.log", echo=False)
    model = open_batched(params(test_model, parallel=2, n_ctx=1024, kv_pool=512), log)
    try:
        first = model.generation(prompt(model, "First:"), replace(GREEDY, max_tokens=300))
        pieces = iter(first)
        next(pieces)
        answers: list[object] = []
        thread = threading.Thread(
            target=lambda: answers.append(run(model, prompt(model, "Second:"), replace(GREEDY, max_tokens=300)))
        )
        thread.start()
        until(lambda: model.waiting == 1, what="the second request to wait")
        assert sum(slot.busy for slot in model.slots()) == 1
        rest = list(pieces)
        assert first.stats.stop_reason == "length" and first.stats.completion_tokens == 300 and rest
        thread.join()
        assert len(answers[0][1]) == 300 and answers[0][2].queue_ms > 0  # type: ignore[index, attr-defined]
        with pytest.raises(PoolTooSmall, match="pool holds 512"):
            list(model.generation(prompt(model, "Third:"), replace(GREEDY, max_tokens=600)))
    finally:
        model.close()


def test_a_growing_conversation_reuses_its_slots_cache(batched: BatchedModel) -> None:
    """Each turn goes to the slot holding its longest prefix and evaluates only its new tokens, even with other
    requests in between."""
    text, previous = "A conversation about the sea.", 0
    for turn in range(4):
        tokens = prompt(batched, text)
        reply, _, stats = run(batched, tokens, replace(GREEDY, max_tokens=8))
        if turn:  # at most what is new since the last turn's prompt (its reply and the question), not the whole
            assert stats.prompt_evaluated <= len(tokens) - previous + 2  # type: ignore[attr-defined]
        run(
            batched, prompt(batched, f"Something else entirely {turn}"), replace(GREEDY, max_tokens=4)
        )  # another client
        previous = len(tokens)
        text += reply + f" And turn {turn}?"
    cached = max(slot.cached for slot in batched.slots())
    assert cached >= len(prompt(batched, text)) - 20


def test_more_slots_than_the_micro_batch_holds_still_decode_together(test_model: Path, tmp_path: Path) -> None:
    """Four slots and a 2-token micro-batch: every step has room for one token per slot (the batch grows to the
    slots), so the four sequences decode together and end as asked."""
    log = LlamaLog(tmp_path / "llama.log", echo=False)
    model = open_batched(params(test_model, parallel=4, n_batch=2), log)
    try:
        jobs = [(prompt(model, f"Item {n}:"), replace(GREEDY, max_tokens=6 + n)) for n in range(4)]
        answers = together(model, jobs)
        assert [len(tokens) for _, tokens, _ in answers] == [6, 7, 8, 9]
        assert model.n_batch == 4
    finally:
        model.close()
