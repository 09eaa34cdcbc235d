"""Open the TUI: the history, the log file, the app; what `edgellm` (no command) and `edgellm chat` call."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edgellm import paths
from edgellm.errors import EdgellmError
from edgellm.session.flags import Flags
from edgellm.storage import disk

if TYPE_CHECKING:
    from edgellm.tui.app import EdgeApp


def run_tui(
    flags: Flags, *, model: str | None = None, resume: int | None = None, use_history: bool = True, start: str = "home"
) -> int:
    """Run the app until it quits; 0 unless it was asked to exit otherwise."""
    log_file = paths.home() / "logs" / "tui.log"
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(
            filename=log_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    except OSError:
        pass  # no log on a read-only or full disk: the app still runs
    reported_before = disk.report
    app = None
    try:
        app = open_app(flags, model=model, resume=resume, use_history=use_history, start=start)
        app.run()
        return app.return_code or 0
    finally:
        disk.report = reported_before
        if app is not None and app.history is not None:
            app.history.close()


def open_app(
    flags: Flags, *, model: str | None = None, resume: int | None = None, use_history: bool = True, start: str = "home"
) -> EdgeApp:
    """The app, with `disk.report` pointed at its toasts, then its history: on a full or read-only disk none, and
    a toast saying so in the words `chat` uses; a damaged database is said on its first screen."""
    from edgellm.session.history import History
    from edgellm.tui.app import EdgeApp
    from edgellm.tui.words import told

    app = EdgeApp(flags, model=model, resume=resume, start=start)
    # a write edgellm can do without failed (the history, the log, the spec cache): a toast (notify is thread-safe,
    # and one asked for before the app runs is shown when it starts)
    disk.report = lambda notice: app.notify(told(notice), severity="warning", timeout=15)
    if use_history:
        try:
            app.history = History.open_or_none(paths.history_path())
        except EdgellmError as error:  # the app runs without it, and says why on its first screen
            app.trouble = error
    return app
