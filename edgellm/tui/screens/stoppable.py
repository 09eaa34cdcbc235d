"""What a screen running one cancellable job (a download, a conversion) shares: Esc stops it, and so does quitting."""

from __future__ import annotations

import threading

from textual.widgets import Label


class StoppableJob:
    """Mixed into a Screen whose job checks `_cancel`; `STATE_LABEL` names the label that says it is stopping."""

    STATE_LABEL = ""
    _cancel: threading.Event | None = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Esc (stop) is offered only while the job runs."""
        return self._cancel is not None if action == "stop" else True

    def stop_work(self) -> None:
        """The app is quitting: stop the job."""
        if self._cancel is not None:
            self._cancel.set()

    def action_stop(self) -> None:
        """Stop the job; what it keeps for a later run (a partial download) stays."""
        if self._cancel is not None:
            self._cancel.set()
            self.query_one(self.STATE_LABEL, Label).update("stopping ...")  # type: ignore[attr-defined]
