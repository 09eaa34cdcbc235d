"""How edgellm writes numbers for people: sizes, rates, durations, progress. Pure; the one module the command line,
the TUI and every message use, so a size reads the same everywhere."""

from __future__ import annotations

from edgellm.events import Progress

KIB, MIB, GIB = 2**10, 2**20, 2**30


def size(n_bytes: float) -> str:
    """Bytes as KiB, MiB or GiB, whichever reads best: GiB from 1000 MiB (so a column never holds 1000.0 MiB)."""
    magnitude = abs(n_bytes)
    if magnitude >= 1000 * MIB:
        return f"{n_bytes / GIB:.2f} GiB"
    if magnitude >= MIB:
        return f"{n_bytes / MIB:.1f} MiB"
    return f"{n_bytes / KIB:.0f} KiB"


def gib(n_bytes: float, digits: int = 2, unit: bool = True) -> str:
    """Bytes in GiB always, for columns and totals that compare sizes: `4.58 GiB` (the number alone without
    `unit`, where one unit serves two figures: `3.0 / 8.0 GiB`)."""
    return f"{n_bytes / GIB:.{digits}f}" + (" GiB" if unit else "")


def mib(n_bytes: float, digits: int = 1) -> str:
    """Bytes in MiB always, thousands separated, for figures measured to the MiB: `1,234.5 MiB`."""
    return f"{n_bytes / MIB:,.{digits}f} MiB"


def tokens_per_s(value: float | None) -> str:
    """A decoding speed in a table cell; a dash when there is none."""
    return "—" if value is None else f"{value:.1f}"


def duration(seconds: float) -> str:
    """A time left or taken, as m:ss (h:mm:ss past an hour)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress(event: Progress, with_task: bool = False) -> str:
    """How far long work is: done of total in one unit (MiB, so the figures never change unit as they grow and a
    tenth of a MiB shows the work moving), the rate and the time left when known; `with_task`: its name first, where
    nothing else on screen says which task it is."""
    if event.unit != "bytes":
        text = f"{event.done} / {event.total} {event.unit}"
    else:
        text = f"{event.done / MIB:,.1f} / {mib(event.total)}"
        if event.rate:
            text += f", {size(event.rate)}/s"
    if event.eta_s is not None and not event.finished:
        text += f", {duration(event.eta_s)} left"
    return f"{event.task}: {text}" if with_task else text
