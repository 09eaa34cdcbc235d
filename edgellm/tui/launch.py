"""Open the TUI: the history, the log file, the app; what `edgellm` (no command) and `edgellm chat` call."""

from __future__ import annotations

import logging

from edgellm import disk, home
from edgellm.errors import UserError
from edgellm.options import ModelSettings


def run_tui(settings: ModelSettings, *, model: str | None = None, resume: int | None = None,
            use_history: bool = True, start: str = "home") -> int:
    """Run the app until it quits; 0 unless it was asked to exit otherwise."""
    from edgellm.chat.history import History
    from edgellm.tui.app import EdgeApp

    log_file = home.home() / "logs" / "tui.log"
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(filename=log_file, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    except OSError:
        pass  # no log on a read-only or full disk: the app still runs
    history, trouble = None, None
    if use_history:
        try:
            history = History(home.history_path())
        except UserError as error:  # the app runs without it, and says why on its first screen
            trouble = error
    told = disk.report
    try:
        app = EdgeApp(settings, history=history, model=model, resume=resume, start=start, trouble=trouble)
        # a write edgellm can do without failed (the log, the spec cache): a toast (notify is thread-safe)
        disk.report = lambda notice: app.notify(notice.text, severity="warning", timeout=15)
        app.run()
        return app.return_code or 0
    finally:
        disk.report = told
        if history is not None:
            history.close()
