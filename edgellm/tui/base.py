"""What every screen of the TUI shares with the app: the model host and its flags, the device planned for, long
work's reports as messages, errors shown with their ways out. The screens see the app as this (the app module
itself, with its modes, is above them)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.screen import Screen

from edgellm.errors import EdgellmError
from edgellm.events import Event, Notice, Progress
from edgellm.tui.messages import ProgressUpdate, WorkNotice

if TYPE_CHECKING:
    from edgellm.hw.profile import DeviceProfile
    from edgellm.session.chat import ChatSession
    from edgellm.session.flags import Flags
    from edgellm.session.history import History
    from edgellm.session.host import ModelHost
    from edgellm.session.opening import PlannedModel
    from edgellm.tui.gauges import Sampler

log = logging.getLogger("edgellm.tui")


class EdgellmApp(App[int]):
    """The app as its screens use it. `profile` and `sampler` replace this machine's for tests and snapshots."""

    def __init__(
        self,
        flags: Flags,
        *,
        profile: DeviceProfile | None = None,
        sampler: Sampler | None = None,
        history: History | None = None,
        model: str | None = None,
        resume: int | None = None,
        start: str = "home",
        trouble: EdgellmError | None = None,
    ) -> None:
        super().__init__()
        self._flags = flags
        self._host: ModelHost | None = None  # made when a model is first opened: the first frame comes sooner
        self._profile = profile
        self.sampler = sampler
        self.history = history
        self.session: ChatSession | None = None
        self.planned: PlannedModel | None = None
        self._opening = False  # from the ask to open a model until its load ends
        self.start_model, self.resume, self.start_mode = model, resume, start
        self.trouble = trouble  # a problem met before the app started (a history that cannot be opened)
        self.theme = "textual-dark"

    # what every screen shares

    @property
    def host(self) -> ModelHost:
        """The model host the chat's models are opened through."""
        if self._host is None:
            from edgellm.session.host import ModelHost

            self._host = ModelHost(self._flags, full_screen=True, report=self.reporter())
        return self._host

    @property
    def flags(self) -> Flags:
        """The flags the app was started with (config.toml under them), -m being the model in use."""
        return self._host.flags if self._host is not None else self._flags

    @property
    def profile(self) -> DeviceProfile:
        """The device the screens plan for: this machine (detected once), or the one given."""
        if self._profile is None:
            from edgellm.hw.detect import detect_this_machine

            self._profile = detect_this_machine()
        return self._profile

    def reporter(self, target: App[Any] | Screen[Any] | None = None) -> Callable[[Event], None]:
        """A `report` for long work on a thread: events become messages to `target` (the app)."""
        receiver = target or self

        def report(event: Event) -> None:
            if isinstance(event, Progress):
                receiver.post_message(ProgressUpdate(event))
            elif isinstance(event, Notice):
                receiver.post_message(WorkNotice(event))

        return report

    # errors: shown with the way out, never a traceback, never the app exiting

    def show_error(
        self,
        error: BaseException,
        retry: Callable[[], None] | None = None,
        retry_with: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        """The error with its ways out; `retry_with(changes)` tries again with some flags changed (a context that
        fits), offered when the error names such a change."""
        from edgellm.tui.screens.error import ErrorScreen

        if not isinstance(error, EdgellmError):
            log.error("unexpected error in the TUI", exc_info=error)
        self.push_screen(ErrorScreen(error, retry, retry_with))
