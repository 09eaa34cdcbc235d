"""A small scripted model for the unit tier: the engine contract's `Model`, with no llama.cpp behind it.

Its vocabulary is one token per character (BOS 1 and EOS 2 apart), its chat template ChatML, and each reply is the
next of its script: a reply is streamed a character at a time, then ends with EOS. It keeps the tokens of its last
call as llama.cpp's KV cache does, so a prompt that extends the last one evaluates only the new tokens; it honours
max_tokens, the context, cancel (even before it starts) and the loop guard, and can be held after N tokens so that
a test can act while a reply is being written. The session layer's own logic is tested on it; every behaviour is also
tested once end to end on the real model (the integration tier).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgellm.engine.contract import GenerationOptions, GenerationStats, LoadParams, SlotState
from edgellm.engine.loop_guard import LoopGuard

BOS, EOS = 1, 2
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class ScriptedModel:
    """Replies from `script`: a list (taken in turn, the last repeated) or a function of the prompt's text."""

    parallel = 1

    def __init__(
        self,
        script: list[str] | Callable[[str], str],
        n_ctx: int = 512,
        template: str | None = CHATML,
        name: str = "scripted-instruct",
    ) -> None:
        self.script = script
        self.params = LoadParams(Path(f"/models/{name}.gguf"), n_ctx, 1, 1, 0, False, "f16", 0)
        self.load_ms = 1.0
        self._metadata = {"general.name": name} | ({"tokenizer.chat_template": template} if template else {})
        self.calls = 0
        self.cached: list[int] = []  # what the "KV cache" holds: the last call's prompt and reply
        self.closed = False
        self.prompts: list[str] = []
        self._hold_after: int | None = None
        self.holding = threading.Event()  # set while a reply is held (see hold_after)
        self._released = threading.Event()

    # the contract

    @property
    def n_ctx(self) -> int:
        return self.params.n_ctx

    @property
    def metadata(self) -> dict[str, str]:
        return self._metadata

    @property
    def token_bos(self) -> int:
        return BOS

    @property
    def token_eos(self) -> int:
        return EOS

    @property
    def other_processes(self) -> tuple[int, ...]:
        return ()

    vision = False

    def tokenize_with_images(self, text: str, images: Any, *, add_bos: bool, special: bool = True) -> list[int]:
        from edgellm.engine.contract import text_only

        raise text_only(self.params.path)

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return ([BOS] if add_bos else []) + [ord(c) + 3 for c in text]

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        names = {BOS: "<s>" if special else "", EOS: "</s>" if special else ""}
        return "".join(names.get(t, chr(t - 3) if t > 2 else "") for t in tokens).encode()

    def generation(
        self, prompt_tokens: list[int], options: GenerationOptions, cancel: threading.Event | None = None
    ) -> ScriptedGeneration:
        if self.closed:
            raise RuntimeError("the scripted model was closed")
        return ScriptedGeneration(self, prompt_tokens, options, cancel)

    def slots(self) -> list[SlotState]:
        return [SlotState(0, self.holding.is_set(), self.n_ctx, len(self.cached))]

    def close(self) -> None:
        self.closed = True

    # the script

    def next_reply(self, prompt: str) -> str:
        self.calls += 1
        self.prompts.append(prompt)
        if callable(self.script):
            return self.script(prompt)
        return self.script[min(self.calls, len(self.script)) - 1]

    def hold_after(self, tokens: int) -> None:
        """Hold the next reply after `tokens` tokens (`holding` is set) until `release` (or a cancel)."""
        self._hold_after, self._released = tokens, threading.Event()

    def release(self) -> None:
        self._released.set()


class ScriptedGeneration:
    def __init__(
        self, model: ScriptedModel, prompt_tokens: list[int], options: GenerationOptions, cancel: threading.Event | None
    ) -> None:
        self.model, self.prompt_tokens, self.options, self.cancel = model, prompt_tokens, options, cancel
        cached = 0
        if options.cache_prompt:
            for old, new in zip(model.cached, prompt_tokens):
                if old != new:
                    break
                cached += 1
        self.tokens: list[int] = []
        self.logprobs: list = []  # the scripted model samples nothing: it reports none
        self.stats = GenerationStats(
            prompt_tokens=len(prompt_tokens), prompt_evaluated=max(1, len(prompt_tokens) - cached)
        )

    def __iter__(self) -> Iterator[str]:
        model, stats, options, cancel = self.model, self.stats, self.options, self.cancel
        if cancel is not None and cancel.is_set():
            stats.stop_reason, stats.prompt_evaluated = "interrupted", 0
            return
        text = model.next_reply(model.detokenize(self.prompt_tokens, special=True).decode())
        room = model.n_ctx - len(self.prompt_tokens)
        limit = room if options.max_tokens < 0 else min(options.max_tokens, room)
        guard = LoopGuard() if options.loop_guard else None
        hold, model._hold_after = model._hold_after, None
        stats.stop_reason = "eos"
        stats.ttft_ms, stats.prompt_tokens_per_s = 1.0, 1000.0
        try:
            for char in text:
                if hold is not None and stats.completion_tokens == hold:
                    model.holding.set()
                    while not model._released.wait(0.01):
                        if cancel is not None and cancel.is_set():
                            break
                    model.holding.clear()
                if cancel is not None and cancel.is_set():
                    stats.stop_reason = "interrupted"
                    return
                if stats.completion_tokens >= limit:
                    stats.stop_reason = "context" if options.max_tokens < 0 or options.max_tokens > room else "length"
                    return
                token = ord(char) + 3
                stats.completion_tokens += 1
                self.tokens.append(token)
                yield char
                if guard is not None and guard.feed(token):
                    stats.stop_reason = "repetition"
                    return
        except BaseException:  # closed early by its consumer
            stats.stop_reason = "interrupted"
            raise
        finally:
            stats.tokens_per_s = 100.0 if stats.completion_tokens > 1 else None
            model.cached = self.prompt_tokens + self.tokens
