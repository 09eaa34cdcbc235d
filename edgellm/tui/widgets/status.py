"""The chat's status line: model, layers on the GPU, context used of the total, TTFT, decode speed, and the last
reply's drafting (acceptance and speed-up)."""

from __future__ import annotations

from textual.widgets import Static

from edgellm.session.events import Timings


def status_text(
    model: str | None,
    gpu_layers: int | None,
    n_layers: int | None,
    context_used: int | None,
    n_ctx: int | None,
    timings: Timings | None,
    state: str = "",
    on_workers: tuple[int, int] | None = None,
) -> str:
    """One line; parts not known yet are left out. `on_workers`: a split's layers on RPC workers, and the workers."""
    if model is None:  # none yet, or one being loaded (the state says which)
        return state or "no model loaded: F2 Home or F3 Models to choose one"
    parts = [model]
    if on_workers is not None and n_layers:
        layers, workers = on_workers
        parts.append(f"{layers}/{n_layers} layers on {workers} RPC worker{'s' if workers != 1 else ''}")
    elif gpu_layers is not None and n_layers:
        parts.append(f"ngl {min(gpu_layers, n_layers)}/{n_layers}" if gpu_layers else "CPU")
    if n_ctx:
        parts.append(f"ctx {context_used or 0}/{n_ctx}")
    if timings is not None:
        parts += timings.parts("first_token", "speed", "drafting", short=True)
    if state:
        parts.append(state)
    return " · ".join(parts)


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; color: $text; padding: 0 1; }
    """
