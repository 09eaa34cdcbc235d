"""How the screens write sizes, speeds and progress: one way everywhere."""

from __future__ import annotations

from edgellm.events import Progress


def size_text(n_bytes: float) -> str:
    """Bytes as KiB, MiB or GiB, whichever reads best."""
    if n_bytes >= 1000 * 2**20:
        return f"{n_bytes / 2**30:.2f} GiB"
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes / 1024:.0f} KiB"


def speed_text(tokens_per_s: float | None) -> str:
    return "—" if tokens_per_s is None else f"{tokens_per_s:.1f}"


def progress_text(progress: Progress) -> str:
    """What a progress bar's label says: done of total, the rate and the time left when known."""
    if progress.unit != "bytes":
        text = f"{progress.done} / {progress.total} {progress.unit}"
    else:
        text = f"{size_text(progress.done)} / {size_text(progress.total)}"
        if progress.rate:
            text += f", {size_text(progress.rate)}/s"
    if progress.eta_s is not None and not progress.finished:
        minutes, seconds = divmod(int(progress.eta_s), 60)
        text += f", {minutes}:{seconds:02d} left"
    return text
