"""The server's counters, and their rendering in Prometheus' text exposition format (version 0.0.4).

Updated on the event loop's thread only; the live token count is read from the running reply itself.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Metrics:
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (endpoint, status) -> answers
    prompt_tokens: int = 0
    completion_tokens: int = 0  # of finished replies
    prompt_seconds: float = 0.0  # prompt evaluation, up to the first token
    decode_seconds: float = 0.0  # the tokens after the first
    last_tokens_per_s: float = 0.0
    queue_seconds: float = 0.0  # replies' waits for a slot (the server's queue and the KV pool's)
    started: float = field(default_factory=time.time)

    def answered(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, str(status))] += 1

    def replied(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        ttft_ms: float | None,
        tokens_per_s: float | None,
        queue_s: float = 0.0,
    ) -> None:
        """Count one finished (or stopped) reply."""
        self.queue_seconds += queue_s
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if ttft_ms:
            self.prompt_seconds += ttft_ms / 1000
        if tokens_per_s:
            self.last_tokens_per_s = tokens_per_s
            self.decode_seconds += max(0, completion_tokens - 1) / tokens_per_s


@dataclass(frozen=True)
class Batching:
    """What the model's slots and steps show now (a batched model's; a single-sequence model has one slot)."""

    slots: int = 1
    busy: int = 0
    steps: int = 0  # decode calls so far
    step_tokens: int = 0  # tokens those calls held
    step_sequences: int = 0  # sequences those calls sampled, summed: the sequences decoding together


def render(
    metrics: Metrics,
    waiting: int,
    running: int,
    running_tokens: int,
    loaded: bool,
    now: Callable[[], float] = time.time,
    batching: Batching = Batching(),
) -> str:
    """The exposition text; `running_tokens` is the replies in progress, so the token count grows as they are
    written."""
    families: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]] = [
        (
            "edgellm_requests_total",
            "counter",
            "Requests answered, by endpoint and HTTP status.",
            [
                ({"endpoint": endpoint, "status": status}, count)
                for (endpoint, status), count in sorted(metrics.requests.items())
            ],
        ),
        (
            "edgellm_prompt_tokens_total",
            "counter",
            "Prompt tokens of the replies written.",
            [({}, metrics.prompt_tokens)],
        ),
        (
            "edgellm_completion_tokens_total",
            "counter",
            "Tokens generated, the reply in progress included.",
            [({}, metrics.completion_tokens + running_tokens)],
        ),
        (
            "edgellm_prompt_seconds_total",
            "counter",
            "Seconds spent reading prompts (up to each first token).",
            [({}, metrics.prompt_seconds)],
        ),
        (
            "edgellm_decode_seconds_total",
            "counter",
            "Seconds spent generating tokens after each first token.",
            [({}, metrics.decode_seconds)],
        ),
        (
            "edgellm_tokens_per_second",
            "gauge",
            "Decode speed of the last reply, tokens per second.",
            [({}, metrics.last_tokens_per_s)],
        ),
        (
            "edgellm_queue_seconds_total",
            "counter",
            "Seconds the replies waited for a slot and room in the KV pool.",
            [({}, metrics.queue_seconds)],
        ),
        ("edgellm_queue_depth", "gauge", "Requests waiting for the model.", [({}, waiting)]),
        ("edgellm_requests_running", "gauge", "Requests generating now.", [({}, running)]),
        ("edgellm_slots", "gauge", "Sequences the model decodes together (--parallel).", [({}, batching.slots)]),
        ("edgellm_slots_busy", "gauge", "Slots generating now.", [({}, batching.busy)]),
        ("edgellm_decode_steps_total", "counter", "Batched decode calls (llama_decode).", [({}, batching.steps)]),
        (
            "edgellm_batch_tokens_total",
            "counter",
            "Tokens those calls held (prompt chunks, one token per generating slot, a lone slot's drafted tokens).",
            [({}, batching.step_tokens)],
        ),
        (
            "edgellm_busy_slots_per_decode",
            "gauge",
            "Average sequences sampled per decode call: the batch occupancy (llama-server's n_busy_slots_per_decode).",
            [({}, round(batching.step_sequences / batching.steps, 3) if batching.steps else 0.0)],
        ),
        ("edgellm_model_loaded", "gauge", "1 once the model is loaded and requests are served.", [({}, int(loaded))]),
        (
            "edgellm_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            [({}, round(now() - metrics.started, 3))],
        ),
    ]
    lines = []
    for name, kind, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            label_text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
            lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(round(float(value), 6))
