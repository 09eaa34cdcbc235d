"""The chat's status line: model, layers on the GPU, context used of the total, TTFT and decode speed."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static


def status_text(model: str | None, gpu_layers: int | None, n_layers: int | None, context_used: int | None,
                n_ctx: int | None, timings: dict[str, Any] | None, state: str = "",
                on_workers: tuple[int, int] | None = None) -> str:
    """One line; parts not known yet are left out. `on_workers`: a split's layers on RPC workers, and the workers."""
    if model is None:
        return "no model loaded: F2 Home or F3 Models to choose one" + (f" · {state}" if state else "")
    parts = [model]
    if on_workers is not None and n_layers:
        layers, workers = on_workers
        parts.append(f"{layers}/{n_layers} layers on {workers} RPC worker{'s' if workers != 1 else ''}")
    elif gpu_layers is not None and n_layers:
        parts.append(f"ngl {min(gpu_layers, n_layers)}/{n_layers}" if gpu_layers else "CPU")
    if n_ctx:
        parts.append(f"ctx {context_used or 0}/{n_ctx}")
    if timings:
        if timings.get("ttft_ms") is not None:
            parts.append(f"TTFT {timings['ttft_ms']:.0f} ms")
        if timings.get("tokens_per_s"):
            parts.append(f"{timings['tokens_per_s']:.1f} tok/s")
    if state:
        parts.append(state)
    return " · ".join(parts)


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; color: $text; padding: 0 1; }
    """
