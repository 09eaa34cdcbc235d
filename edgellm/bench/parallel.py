"""How much decoding several sequences together gains on this device: `bench --parallel 1,2,4,8`, measured as
llama.cpp's `llama-batched-bench -npp PP -ntg TG -npl 1,2,4,8` measures it.

For each count B, B requests of PP prompt tokens and TG generated tokens (greedy, past end-of-sequence) are submitted
to the batched engine together (held between steps until all are in, so they share one batch shape), then:
S_PP = B·PP over the time until every sequence has its first token (prompts read in chunks of the micro-batch), and
S_TG = B·(TG − 1) over the time from there to the last token (the decode steps, one token per sequence each): the
aggregate decode speed; per stream, S_TG / B. TTFT is each sequence's own time to its first token.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from edgellm.bench.measure import Interrupted, filler_tokens
from edgellm.engine.batched import BatchedModel
from edgellm.engine.contract import GenerationOptions, GenerationStats, Sampling

GREEDY_PAST_EOS = GenerationOptions(Sampling(temp=0.0), ignore_eos=True, cache_prompt=False)


@dataclass(frozen=True)
class ParallelRequest:
    counts: tuple[int, ...] = (1, 2, 4, 8)
    pp: int = 128
    tg: int = 128
    repetitions: int = 3

    def context_needed(self) -> int:
        return self.pp + self.tg + 1


def one_round(model: BatchedModel, count: int, request: ParallelRequest) -> dict[str, float]:
    """B sequences together, once: S_PP, S_TG (aggregate), TTFT (mean)."""
    prompt = filler_tokens(model, request.pp)
    options = replace(GREEDY_PAST_EOS, max_tokens=request.tg)
    firsts: list[float] = [0.0] * count
    ends: list[float] = [0.0] * count
    stats: list[GenerationStats | None] = [None] * count
    failures: list[BaseException] = []

    def read(index: int) -> None:
        generation = model.generation(prompt, options)
        stats[index] = generation.stats
        try:
            for _ in generation:
                if not firsts[index]:
                    firsts[index] = time.perf_counter()
        except BaseException as error:
            failures.append(error)
        ends[index] = time.perf_counter()

    readers = [threading.Thread(target=read, args=(index,), daemon=True) for index in range(count)]
    with model.paused():
        for reader in readers:
            reader.start()
        while model.waiting < count and not failures and any(reader.is_alive() for reader in readers):
            time.sleep(0.001)
        started = time.perf_counter()
    for reader in readers:
        reader.join()
    if failures:
        raise failures[0]
    first_all, end_all = max(firsts), max(ends)
    decode_s = max(end_all - first_all, 1e-9)
    ttfts = [s.ttft_ms for s in stats if s is not None and s.ttft_ms is not None]
    return {
        "t_pp": first_all - started,
        "s_pp": count * request.pp / max(first_all - started, 1e-9),
        "t_tg": decode_s,
        "s_tg": count * (request.tg - 1) / decode_s,
        "ttft_ms": statistics.fmean(ttfts) if ttfts else 0.0,
    }


def measure_parallel(
    model: BatchedModel, request: ParallelRequest, step: Callable[[str], None], stop: threading.Event
) -> list[dict[str, Any]]:
    """One row per count: the means (and each round's aggregate) over the repetitions, after one warm-up round."""
    one_round(model, 1, ParallelRequest((1,), min(request.pp, 16), 4, 1))  # warm-up: caches and threads
    rows = []
    for count in request.counts:
        rounds = []
        for repetition in range(request.repetitions):
            if stop.is_set():
                raise Interrupted()
            step(f"{count} sequence{'s' if count > 1 else ''}, round {repetition + 1}")
            rounds.append(one_round(model, count, request))
        aggregate = [r["s_tg"] for r in rounds]
        rows.append(
            {
                "sequences": count,
                "pp": request.pp,
                "tg": request.tg,
                "t_pp": statistics.fmean(r["t_pp"] for r in rounds),
                "pp_tokens_per_s": statistics.fmean(r["s_pp"] for r in rounds),
                "t_tg": statistics.fmean(r["t_tg"] for r in rounds),
                "tg_aggregate": statistics.fmean(aggregate),
                "tg_aggregate_stddev": statistics.stdev(aggregate) if len(aggregate) > 1 else 0.0,
                "tg_per_stream": statistics.fmean(aggregate) / count,
                "ttft_ms": statistics.fmean(r["ttft_ms"] for r in rounds),
                "values": aggregate,
            }
        )
    return rows


def render_rows(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as llama-batched-bench prints its table, with the per-stream speed and TTFT beside."""
    lines = [
        f"  {'PP':>5} {'TG':>5} {'B':>4} {'T_PP s':>8} {'S_PP t/s':>9} {'T_TG s':>8} {'S_TG t/s':>9} "
        f"{'per stream':>11} {'TTFT ms':>8}"
    ]
    for row in rows:
        lines.append(
            f"  {row['pp']:>5} {row['tg']:>5} {row['sequences']:>4} {row['t_pp']:>8.3f} "
            f"{row['pp_tokens_per_s']:>9.1f} {row['t_tg']:>8.3f} {row['tg_aggregate']:>9.1f} "
            f"{row['tg_per_stream']:>11.1f} {row['ttft_ms']:>8.0f}"
        )
    return lines
