"""Speculative decoding of a model loaded here: the engine contract's `Generation`, drafting with n-gram lookup or a
draft model and verifying each draft with the target in one batch.

A round: the token sampled last (not yet in the KV cache) and up to γ drafted tokens go to the target in one decode,
with the logits of every row. The target's sampler then picks a token at each row in turn, exactly as it would
without a draft, and the round goes on while its pick equals the drafted token there; the first pick that differs
(or the pick after the last drafted token) is the target's own next token. The KV cells of the rows not kept are
cut off (`llama_memory_seq_rm`), on the target and the draft. So the reply is the one the target alone would give:
greedy or sampled, with a grammar or log-probabilities, since the sampler (its random state, its penalties, its
grammar) is asked once per token of the reply, in the reply's order, and never for a drafted token that is not
kept. The random state is the same seeded stream as without speculation: one draw per sampled token.

The controller (engine.drafting) grows the draft while whole drafts are accepted and shrinks it when not, and stops
drafting for the rest of the reply once rounds yield fewer tokens per second than plain steps.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from edgellm.engine.contract import GenerationOptions, GenerationStats, SpeculationStats, TokenLogprob
from edgellm.engine.drafting import PLAIN_STEPS_NEEDED, Controller, NgramDrafter
from edgellm.engine.generate import common_prefix
from edgellm.engine.loop_guard import LoopGuard
from edgellm.plan.speculation import NGRAM_MOST, NGRAM_START_LENGTH

if TYPE_CHECKING:
    from edgellm.engine.compat import OwnSequence

DRAFT_START_LENGTH = 4
DRAFT_MOST = 8
DRAFT_P_MIN = 0.4  # a draft model's round ends at its first token less likely than this (it would likely miss)


class ModelDrafter:
    """Drafts with a second, smaller model of the same vocabulary: its own KV cache follows the reply (the common
    prefix kept, the rest cut), then it picks its most likely tokens one by one."""

    def __init__(self, draft_llm: Any) -> None:
        from edgellm.engine.compat import OwnSequence

        self.sequence: OwnSequence = OwnSequence(draft_llm, DRAFT_MOST + 1)

    def catch_up(self, history: list[int]) -> None:
        """Make its KV cache hold `history` (the common prefix kept); the logits of its last token are there after."""
        sequence = self.sequence
        kept = sequence.keep(min(common_prefix(sequence.cached(), history), len(history) - 1))
        sequence.decode(history[kept:])

    def propose(self, history: list[int], most: int) -> list[int]:
        sequence = self.sequence
        self.catch_up(history)
        drafted: list[int] = []
        while len(drafted) < most:
            row = sequence.logits(-1)
            token = int(row.argmax())
            chance = 1.0 / float((_exp(row - row[token])).sum())
            if chance < DRAFT_P_MIN:
                break
            drafted.append(token)
            if len(drafted) < most:
                sequence.decode([token])
        return drafted

    def close(self) -> None:
        self.sequence.close()


def _exp(values: Any) -> Any:
    import numpy

    return numpy.exp(values)


class SpeculativeGeneration:
    """Iterate for text pieces as with engine.generate.LocalGeneration (the same stops, cancel and stats); `stats`
    also counts the drafted and accepted tokens."""

    def __init__(
        self,
        llm: Any,
        n_ctx: int,
        prompt_tokens: list[int],
        options: GenerationOptions,
        draft: tuple[Any, float] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.llm = llm  # llama_cpp.Llama: the target
        self.draft = draft  # the draft model's llama_cpp.Llama and its time per token over the target's; None: n-gram
        self.prompt_tokens = prompt_tokens
        self.options = options
        mode = "ngram" if draft is None else "draft"
        room = n_ctx - len(prompt_tokens)
        self.n_ctx = n_ctx
        self.limit = room if options.max_tokens < 0 else min(options.max_tokens, room)
        self.limited_by_context = options.max_tokens < 0 or options.max_tokens > room
        self.cancel = cancel
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.running = False
        self._abort_callback: Any = None
        llm = self.llm
        cached = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt_tokens) if options.cache_prompt else 0
        self.stats = GenerationStats(
            prompt_tokens=len(prompt_tokens),
            prompt_evaluated=max(1, len(prompt_tokens) - cached),
            speculation=SpeculationStats(mode),
        )

    def __iter__(self) -> Generator[str, None, None]:
        self.running = True
        try:
            yield from self._generate()
        finally:
            self.running = False

    def _generate(self) -> Generator[str, None, None]:
        from edgellm.engine import compat

        stats, options, cancel = self.stats, self.options, self.cancel
        if cancel is not None and cancel.is_set():
            stats.stop_reason, stats.prompt_evaluated = "interrupted", 0
            return
        stats.stop_reason = "context" if self.limited_by_context else "length"
        if self.limit <= 0:
            return
        llm = self.llm
        is_eog = compat.end_of_generation(llm)
        ends_at_eog = not options.ignore_eos or options.grammar is not None
        special = set(options.special_text)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        guard = LoopGuard() if options.loop_guard else None
        draft_model, draft_cost = self.draft if self.draft is not None else (None, 0.0)
        most = DRAFT_MOST if draft_model is not None else NGRAM_MOST
        controller = Controller(DRAFT_START_LENGTH if draft_model is not None else NGRAM_START_LENGTH, most, draft_cost)
        target = compat.OwnSequence(llm, most + 1)
        sampler = compat.TokenSampler(llm, options, target.n_vocab)
        sampler.found = self.logprobs
        drafter: ModelDrafter | NgramDrafter = ModelDrafter(draft_model) if draft_model is not None else NgramDrafter()
        prompt = self.prompt_tokens
        started = time.perf_counter()
        first = last = started
        sampled = 0
        valid = 0  # the tokens the target's KV cache holds that belong to the prompt and the reply

        def take(token: int) -> tuple[str, bool]:
            """The text of a sampled token and whether the reply goes on after it."""
            nonlocal sampled, last, first
            last = time.perf_counter()
            sampled += 1
            if sampled == 1:
                first = last
            if cancel is not None and cancel.is_set():
                stats.stop_reason = "interrupted"
                return "", False
            if is_eog(token) and ends_at_eog:
                stats.stop_reason = "eos"
                return "", False
            stats.completion_tokens += 1
            self.tokens.append(token)
            text = decoder.decode(llm.detokenize([token], special=token in special))
            if stats.completion_tokens >= self.limit:
                return text, False
            if guard is not None and guard.feed(token):
                stats.stop_reason = "repetition"
                return text, False
            return text, True

        try:
            reused = common_prefix(target.cached(), prompt) if options.cache_prompt else 0
            valid = target.keep(min(reused, len(prompt) - 1))
            stats.prompt_evaluated = len(prompt) - valid
            self._abort_when(cancel)
            target.decode(prompt[valid:])
            self._abort_when(None)
            valid = len(prompt)
            text, going = take(sampler.sample(target.ctx, -1))
            if isinstance(drafter, ModelDrafter) and going:  # the draft reads the prompt now, not in a timed step
                drafter.catch_up(prompt)
            if text:
                yield text
            while going:
                past = target.n_tokens  # the prompt and the reply but its last token, which this round decodes
                room = min(self.limit - stats.completion_tokens, self.n_ctx - past) - 1
                step_started = time.perf_counter()
                drafted: list[int] = []
                wanted = min(controller.length, room, target.n_batch - 1)
                # a draft model drafts once plain steps are timed (n-gram lookup finds none on most steps anyway)
                timed = draft_model is None or controller.plain_steps >= PLAIN_STEPS_NEEDED
                if controller.drafting and wanted > 0 and timed:
                    drafted = drafter.propose(prompt + self.tokens, wanted)
                batch = [self.tokens[-1], *drafted]
                target.decode(batch, every_row=True)
                accepted = 0
                for row in range(len(batch)):
                    token = sampler.sample(target.ctx, row)
                    valid = past + row + 1
                    text, going = take(token)
                    if text:
                        yield text
                    if not going or row == len(drafted) or token != drafted[row]:
                        break
                    accepted += 1
                target.keep(valid)
                seconds = time.perf_counter() - step_started
                if drafted:
                    controller.record_round(len(drafted), accepted, accepted + 1, seconds)
                elif not (timed and controller.drafting and wanted > 0 and draft_model is not None):
                    controller.record_plain(seconds)  # (a draft model that drafted nothing still took its time)
        except KeyboardInterrupt:
            stats.stop_reason = "interrupted"
        except RuntimeError:  # llama_decode stopped by the abort check (a cancelled prompt), or failed
            stats.stop_reason = "interrupted"
            if cancel is None or not cancel.is_set():
                raise
        except BaseException:
            stats.stop_reason = "interrupted"
            raise
        finally:
            self._abort_when(None)
            target.keep(valid)
            target.close()
            sampler.close()
            if isinstance(drafter, ModelDrafter):
                drafter.close()
            tail = decoder.decode(b"", final=True)
            self._finish(started, first, last, sampled, controller)
        if tail:
            yield tail

    def _abort_when(self, event: threading.Event | None) -> None:
        """As LocalGeneration: llama.cpp may stop the prompt's decode once `event` is set; None removes the check."""
        if event is None and self._abort_callback is None:
            return
        from edgellm.engine import compat

        self._abort_callback = compat.set_abort_check(self.llm, None if event is None else event.is_set)

    def _finish(self, started: float, first: float, last: float, sampled: int, controller: Controller) -> None:
        stats = self.stats
        if first > started:
            stats.ttft_ms = (first - started) * 1000
            stats.prompt_tokens_per_s = stats.prompt_evaluated / (first - started)
        if sampled > 1 and last > first:
            stats.tokens_per_s = (sampled - 1) / (last - first)
        speculation = stats.speculation
        assert speculation is not None
        speculation.drafted, speculation.accepted, speculation.rounds = (
            controller.drafted,
            controller.accepted,
            controller.rounds,
        )
        speculation.stopped, speculation.gain = controller.stopped_why, controller.gain()
