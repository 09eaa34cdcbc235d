"""The model host: the one model a front end runs, from its flags to a model ready to complete, and its lifecycle.

Every front end opens its model here (the TUI, the REPL, `run`, `serve`, `bench`): plan it (pulling a -hf model
first), load it (a split in its watched child process), swap it for another, close it. One load at a time; a load
can be cancelled (a pull, a split's load); the model in use is closed before the next one loads, so its memory (and
a split's hold on its workers) is free; a model that fails while it is made ready is closed; planning that fails
keeps the model in use.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from edgellm import paths
from edgellm.engine.contract import Model
from edgellm.engine.llama_log import LlamaLog
from edgellm.errors import EdgellmError, NotEnoughMemory
from edgellm.events import Report, ignore
from edgellm.session import loading
from edgellm.session.completion import ChatModel
from edgellm.session.flags import Flags
from edgellm.session.loading import LoadProgress, check_memory, device_of
from edgellm.session.opening import PlannedModel, plan_model
from edgellm.session.speculation import with_speculation

if TYPE_CHECKING:
    from edgellm.session.chat import ChatSession
    from edgellm.session.history import History


class LoadInProgress(EdgellmError):
    """A model is being loaded already: one load at a time."""


class ModelHost:
    """Holds at most one loaded model. `full_screen`: a UI owns the terminal, so llama.cpp's log never goes to it."""

    def __init__(self, flags: Flags, *, full_screen: bool = False, report: Report = ignore) -> None:
        self.flags = flags
        self.full_screen = full_screen
        self.report = report
        self.planned: PlannedModel | None = None
        self.model: ChatModel | None = None
        self._load_lock = threading.Lock()
        self._cancel = threading.Event()

    @property
    def loading(self) -> bool:
        return self._load_lock.locked()

    def cancel(self) -> None:
        """Stop the load in progress (a pull, a split's load); the model in use, if any, stays."""
        self._cancel.set()

    def plan(self, flags: Flags | None = None, cancel: threading.Event | None = None) -> PlannedModel:
        """The model `flags` (default: the host's) name, planned on this machine; a -hf model not stored is pulled
        first, reporting progress. `cancel` set stops the pull."""
        flags, cancel = flags or self.flags, cancel or self._cancel
        return with_speculation(plan_model(flags, self.report, cancel), flags, self.report, cancel)

    def load(self, planned: PlannedModel, cancel: threading.Event | None = None) -> ChatModel:
        """Close the model in use, then load `planned` (llama.cpp's log to EDGELLM_HOME/logs, and to stderr with -v
        unless a full-screen UI owns the terminal). `cancel` set stops a split's load (KeyboardInterrupt)."""
        with self._loading(cancel):
            return self._load(planned)

    def open(self, flags: Flags | None = None, cancel: threading.Event | None = None) -> ChatModel:
        """Plan the model `flags` name, then load it in place of the one in use. Planning that fails (a model that
        does not fit, a pull that fails) keeps the model in use; a split frees it first (its child holds each
        worker's only client slot, and planning asks the workers)."""
        flags = flags or self.flags
        with self._loading(cancel):
            if flags.rpc:
                self._close()
            planned = with_speculation(plan_model(flags, self.report, self._cancel), flags, self.report, self._cancel)
            model = self._load(planned)
            self.flags = replace(flags, model=str(planned.choice.path), hf_repo=None)  # the next open finds it
            return model

    def chat(self, history: History | None, show_reasoning: bool = True) -> ChatSession:
        """A chat session on the model in use, with the flags' options and system prompt."""
        from edgellm.session.chat import ChatSession

        if self.model is None or self.planned is None:
            raise EdgellmError("no model is loaded")
        return ChatSession(
            self.model,
            history,
            model_name=str(self.planned.choice.path),
            options=self.flags.generation_options(chat=True),
            system_prompt=self.flags.system_prompt,
            show_reasoning=show_reasoning,
        )

    def close(self) -> None:
        """Free the model in use (once no call runs on it)."""
        self._close()

    # the work

    def _loading(self, cancel: threading.Event | None) -> _OneLoad:
        return _OneLoad(self, cancel)

    def _load(self, planned: PlannedModel) -> ChatModel:
        self._close()
        engine = self._engine(planned)
        try:
            model = ChatModel.for_model(engine, planned.choice.spec.architecture)
        except BaseException:
            engine.close()
            raise
        self.model, self.planned = model, planned
        return model

    def _engine(self, planned: PlannedModel) -> Model:
        """The engine for `planned`: its memory checked first (NotEnoughMemory, unless --force), then loaded with its
        progress reported (session.loading) and a load that stalls for --load-timeout stopped (LoadTimedOut)."""
        log = LlamaLog(paths.log_path(), echo=self.flags.verbose and not self.full_screen)
        if planned.split is not None:
            from edgellm.engine.split import SplitModel

            return SplitModel.open(
                planned.params, planned.watched_workers, log, keep_terminal=self.full_screen, cancel=self._cancel
            )
        speculation = planned.speculation
        drafted = planned.draft is not None and speculation is not None and speculation.draft is not None
        if not self.flags.force:
            free = functools.cache(loading.free_now)  # one reading of a device for both checks (a GPU's: a probe)
            check_memory(planned, with_draft=False, free=free)
            drafted = drafted and self._draft_fits(planned, free)
        progress = LoadProgress(self.report)
        try:
            return self._loaded(planned, log, progress, device_of(planned), drafted)
        finally:
            progress.finish()

    @staticmethod
    def _draft_fits(planned: PlannedModel, free: Callable[[bool], int]) -> bool:
        """Whether the draft model fits beside the model in the memory free now: NotEnoughMemory for a draft asked
        for (-md, --draft-hf), False for one found in the store (n-gram lookup instead)."""
        try:
            check_memory(planned, with_draft=True, free=free)
        except NotEnoughMemory:
            if planned.speculation is not None and planned.speculation.why.code != "spec_draft_auto":
                raise
            return False
        return True

    def _loaded(
        self, planned: PlannedModel, log: LlamaLog, progress: LoadProgress, device: str, drafted: bool
    ) -> Model:
        stall_s = self.flags.load_timeout
        if planned.params.parallel > 0:
            from edgellm.engine.batched import open_batched

            return open_batched(planned.params, log, self.full_screen, progress, stall_s, device)
        from edgellm.engine.local import load

        model = load(planned.params, log, self.full_screen, progress, stall_s, device)
        speculation = planned.speculation
        if drafted and planned.draft is not None and speculation is not None and speculation.draft is not None:
            try:  # its stall watched, its progress not told: the model's bar has ended
                model.draft = load(planned.draft.params, log, self.full_screen, None, stall_s, device)
                model.draft_cost = speculation.draft.cost_ratio
            except EdgellmError:
                if speculation.why.code != "spec_draft_auto":  # one it found in the store: n-gram lookup instead
                    model.close()
                    raise
            except BaseException:
                model.close()
                raise
        return model

    def _close(self) -> None:
        model, self.model, self.planned = self.model, None, None
        if model is not None:
            model.close()


class _OneLoad:
    """The host's load lock, refused at once when taken (LoadInProgress); the load's cancel is the one given, else a
    fresh one that `ModelHost.cancel` sets."""

    def __init__(self, host: ModelHost, cancel: threading.Event | None) -> None:
        self.host, self.cancel = host, cancel

    def __enter__(self) -> None:
        if not self.host._load_lock.acquire(blocking=False):
            raise LoadInProgress("a model is being loaded already: wait for it")
        self.host._cancel = self.cancel or threading.Event()

    def __exit__(self, *exc: object) -> None:
        self.host._load_lock.release()
