"""The chat model on the real test model: templates, multi-turn KV reuse, context overflow, cancellation."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from edgellm.cli.words import CLI
from edgellm.engine.contract import GenerationOptions, LoadParams, Sampling
from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import load
from edgellm.errors import ContextOverflow
from edgellm.session.completion import ChatModel, fit_history
from edgellm.session.events import Reply
from edgellm.templates.chat import choose

GREEDY = Sampling(temp=0.0)


class Engine:
    """A chat model with fixed options and a cancel switch, as these tests drive it."""

    def __init__(self, model: ChatModel, options: GenerationOptions) -> None:
        self.model, self.options, self.cancelled = model, options, threading.Event()
        self.template, self.n_ctx = model.template, model.n_ctx
        self.render, self.tokenize, self.count = model.render, model.tokenize, model.count

    def reply_room(self) -> int:
        return self.model.reply_room(self.options.max_tokens)

    def prepare(self, messages):
        self.cancelled.clear()
        return self.model.prepare(messages, self.options)

    def stream(self, prepared, reply):
        return self.model.stream(prepared, reply, self.options, self.cancelled)

    def cancel(self) -> None:
        self.cancelled.set()


def engine_for(model: Path, n_ctx: int, tmp_path: Path, max_tokens: int = -1, ignore_eos: bool = False) -> Engine:
    loaded = load(LoadParams(model, n_ctx, 2, 2, 0, True, "f16", 0), LlamaLog(tmp_path / "llama.log", False))
    return Engine(
        ChatModel.for_model(loaded, "gemma3"),
        GenerationOptions(sampling=GREEDY, max_tokens=max_tokens, ignore_eos=ignore_eos, seed=0),
    )


def say(engine: Engine, messages: list[dict[str, str]]) -> Reply:
    reply = Reply()
    for _ in engine.stream(engine.prepare(messages), reply):
        pass
    messages.append({"role": "assistant", "content": reply.content})
    return reply


def test_gemma_base_model_chats_in_gemma_turns(test_model: Path, tmp_path: Path) -> None:
    engine = engine_for(test_model, 1024, tmp_path, max_tokens=8)
    assert engine.template.name == "gemma"  # the test model has no template of its own
    text = engine.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_model_template_wins_over_the_fallback() -> None:
    own = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    assert choose(own, "gemma3").name == "model"
    assert choose(None, "qwen2").name == "chatml"
    assert choose(None, "llama", has_llama3_tokens=True).name == "llama3"
    assert choose(None, "llama", has_llama3_tokens=False).name == "mistral"


def test_multi_turn_reuses_the_kv_cache(test_model: Path, tmp_path: Path) -> None:
    engine = engine_for(test_model, 2048, tmp_path, max_tokens=16)
    messages = [{"role": "user", "content": "Name a colour."}]
    first = say(engine, messages)
    assert first.content and first.stats.prompt_evaluated == first.stats.prompt_tokens
    messages.append({"role": "user", "content": "And another one?"})
    second = say(engine, messages)
    new_turn = engine.tokenize(
        "<end_of_turn>\n<start_of_turn>user\nAnd another one?<end_of_turn>\n<start_of_turn>model\n"
    )
    assert second.stats.prompt_tokens > first.stats.prompt_tokens + first.stats.completion_tokens
    # only the new tokens were processed, plus the reply's last token when it stopped at -n: that one was
    # sampled but never fed back, so the cache does not hold it yet
    assert second.stats.prompt_evaluated == len(new_turn) + (first.stats.stop_reason == "length")
    assert second.context_used == second.stats.prompt_tokens + second.stats.completion_tokens


def test_small_context_drops_old_turns_and_goes_on(test_model: Path, tmp_path: Path) -> None:
    engine = engine_for(test_model, 512, tmp_path, max_tokens=48, ignore_eos=True)
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    dropped = 0
    for turn in range(8):
        messages.append({"role": "user", "content": f"Tell me fact number {turn} about the sea, in detail."})
        reply = say(engine, messages)
        assert reply.stats.completion_tokens > 0
        dropped = max(dropped, reply.dropped_messages)
        assert reply.context_used <= 512
    assert dropped > 0, "the conversation outgrew 512 tokens"
    kept, _ = fit_history(messages + [{"role": "user", "content": "last"}], engine.count, 512 - engine.reply_room())
    assert kept[0]["role"] == "system" and kept[-1]["content"] == "last" and kept[1]["role"] == "user"


def test_one_message_longer_than_the_context_is_an_error(test_model: Path, tmp_path: Path) -> None:
    engine = engine_for(test_model, 512, tmp_path, max_tokens=8)
    with pytest.raises(ContextOverflow) as overflow:
        engine.prepare([{"role": "user", "content": "word " * 1000}])
    assert overflow.value.needed > overflow.value.available == 512 - engine.reply_room()
    assert overflow.value.explain(CLI).endswith("shorten it, or raise -c")


def test_cancel_between_tokens(test_model: Path, tmp_path: Path) -> None:
    engine = engine_for(test_model, 1024, tmp_path, ignore_eos=True)
    reply = Reply()
    for index, _ in enumerate(engine.stream(engine.prepare([{"role": "user", "content": "Count."}]), reply)):
        if index == 5:
            engine.cancel()
    assert reply.interrupted and 5 <= reply.stats.completion_tokens <= 7


def test_cancel_during_a_long_prompt(test_model: Path, tmp_path: Path) -> None:
    engine = engine_for(test_model, 4096, tmp_path, max_tokens=4)
    prepared = engine.prepare([{"role": "user", "content": "word " * 3000}])
    started = threading.Event()
    timer = threading.Timer(0.05, lambda: (started.set(), engine.cancel()))
    timer.start()
    reply = Reply()
    list(engine.stream(prepared, reply))
    timer.join()
    assert started.is_set() and reply.interrupted and reply.stats.completion_tokens == 0
    after = say(engine, [{"role": "user", "content": "Hello"}])  # the engine still works afterwards
    assert after.stats.completion_tokens > 0 and not after.interrupted


def test_stop_sequence_ends_the_reply(test_model: Path, tmp_path: Path) -> None:
    engine = engine_for(test_model, 1024, tmp_path, max_tokens=40, ignore_eos=True)
    free = say(engine, [{"role": "user", "content": "Count: 1, 2, 3"}])
    assert len(free.content) > 6
    stop = free.content[3:6]
    engine.options = replace(engine.options, stop=(stop,))
    stopped = say(engine, [{"role": "user", "content": "Count: 1, 2, 3"}])
    assert stopped.content == free.content[: free.content.index(stop)] and stopped.stats.stop_reason == "stop"


def test_without_prompt_caching_a_reply_never_depends_on_what_ran_before(test_model: Path, tmp_path: Path) -> None:
    """cache_prompt off (the server's way): the whole prompt is evaluated afresh each time, so the same request
    gives the same greedy reply whatever the model answered before."""
    engine = engine_for(test_model, 512, tmp_path, max_tokens=12, ignore_eos=True)
    engine.options = replace(engine.options, cache_prompt=False)
    ask = [{"role": "user", "content": "Name three rivers."}]
    alone = say(engine, list(ask))
    say(engine, [{"role": "user", "content": "Name three mountains."}])
    after = say(engine, list(ask))
    assert after.content == alone.content
    assert after.stats.prompt_evaluated == after.stats.prompt_tokens  # nothing was reused


def test_replies_leave_no_native_memory_behind(test_model: Path, tmp_path: Path) -> None:
    """llama-cpp-python makes a sampler per generation that only Python's cycle collector frees; a long-running
    server must not wait for it. With the collector off, 60 replies leave the process's heap where it was."""
    import gc

    def heap_kib() -> int:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("RssAnon:")).split()[1])

    engine = engine_for(test_model, 512, tmp_path, max_tokens=2)
    for i in range(5):
        say(engine, [{"role": "user", "content": f"Warm up {i}"}])
    gc.collect()
    gc.disable()
    try:
        before = heap_kib()
        for i in range(60):
            say(engine, [{"role": "user", "content": f"Number {i}"}])
        grown = heap_kib() - before
    finally:
        gc.enable()
    assert grown < 16 * 1024, f"the heap grew {grown} KiB over 60 replies"


def test_fit_history_keeps_what_dropping_turn_by_turn_keeps() -> None:
    """The bisection keeps exactly what dropping the oldest turn, one at a time, kept (random conversations)."""
    import random

    def one_by_one(messages, count, budget):  # type: ignore[no-untyped-def]
        system = [m for m in messages[:1] if m["role"] == "system"]
        turns, dropped = messages[len(system) :], 0
        while count(system + turns) > budget and len(turns) > 1:
            turns, dropped = turns[1:], dropped + 1
            while len(turns) > 1 and turns[0]["role"] != "user":
                turns, dropped = turns[1:], dropped + 1
        return system + turns, dropped

    def count(messages):  # type: ignore[no-untyped-def]
        return sum(len(m["content"]) + 3 for m in messages)

    chance = random.Random(7)
    for _ in range(500):
        roles = (["system"] if chance.random() < 0.5 else []) + [
            chance.choice(["user", "assistant", "user"]) for _ in range(chance.randint(1, 12))
        ]
        messages = [{"role": role, "content": "x" * chance.randint(0, 20)} for role in roles]
        budget = chance.randint(5, 200)
        try:
            expected = one_by_one(messages, count, budget)
        except ContextOverflow:
            expected = None
        if expected is None or count(expected[0]) > budget:
            with pytest.raises(ContextOverflow):
                fit_history(messages, count, budget)
        else:
            assert fit_history(messages, count, budget) == expected
