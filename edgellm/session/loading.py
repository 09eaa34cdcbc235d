"""A model's load as the session layer runs it: its progress told as events, and the memory checked before llama.cpp
is asked.

`LoadProgress` turns llama.cpp's fraction loaded into `Progress(task="load", done=per mille, total=1000, unit="‰")`
events for a front end's report: the first at once, then at most one every `INTERVAL_S`, and a last one with
finished=True when the load ends (loaded, or failed after it began). It is called on the loading thread: a report
must not block. `check_memory` compares the plan's estimate with the memory free now: a model that does not fit is
one NotEnoughMemory ("needs X GiB, has Y GiB free"), never llama.cpp's failure or abort.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgellm.errors import NotEnoughMemory
from edgellm.events import Progress, Report
from edgellm.reasons import reason

if TYPE_CHECKING:
    from edgellm.plan.planner import Plan
    from edgellm.session.opening import PlannedModel

LOAD_TASK = "load"
PER_MILLE = 1000
INTERVAL_S = 0.1  # at most ten events a second: enough for a bar, few enough for any front end's loop
ETA_AFTER = 0.02  # the time left is guessed once this share is loaded (before, one slow start would skew it)


class LoadProgress:
    """llama.cpp's fraction loaded, as throttled Progress events through `report` (see the module)."""

    def __init__(self, report: Report, clock: Callable[[], float] = time.monotonic) -> None:
        self.report, self.clock = report, clock
        self.started = clock()
        self.sent: float | None = None  # when the last event went; None: none yet
        self.done = 0
        self.finished = False

    def __call__(self, fraction: float) -> None:
        if self.finished:
            return
        self.done = max(self.done, min(PER_MILLE, max(0, int(fraction * PER_MILLE))))
        if self.done >= PER_MILLE:
            self.finish()
            return
        now = self.clock()
        if self.sent is not None and now - self.sent < INTERVAL_S:
            return
        self.sent = now
        share = self.done / PER_MILLE
        eta = (now - self.started) * (1 - share) / share if share >= ETA_AFTER else None
        self.report(Progress(LOAD_TASK, self.done, PER_MILLE, eta_s=eta, unit="‰"))

    def finish(self) -> None:
        """The last event, once: at the end of a load, or where a failed load stopped (nothing when none was sent:
        a load that failed before llama.cpp reported anything showed no bar to close)."""
        if not self.finished and (self.sent is not None or self.done >= PER_MILLE):
            self.report(Progress(LOAD_TASK, self.done, PER_MILLE, finished=True, unit="‰"))
        self.finished = True


# --- the memory, before llama.cpp is asked ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """What the plan loads onto one device: `needed` bytes; `gpu`: a discrete GPU's memory (else this machine's)."""

    device: str
    needed: int
    gpu: bool


def plan_memory(plan: Plan) -> tuple[int, int]:
    """(bytes on the CPU side, bytes on the GPU) of a plan, as the planner fits them: the RAM by what must stay
    resident, a GPU by its allocations."""
    on_cpu, on_gpu = plan.estimate.device(False), plan.estimate.device(True)
    return (on_cpu.needed if on_cpu else 0), (on_gpu.total if on_gpu else 0)


def needs(planned: PlannedModel, with_draft: bool) -> list[Need]:
    """The memory the plan's estimate puts on each device (its draft model's too, when it is loaded beside). None for
    a split: its workers' memory is checked by the split's own planning."""
    plans: list[Plan] = [planned.choice.plan] if planned.choice.plan is not None else []
    if with_draft and planned.draft is not None and planned.draft.choice.plan is not None:
        plans.append(planned.draft.choice.plan)
    if not plans or planned.split is not None:
        return []
    ram = sum(plan_memory(plan)[0] for plan in plans)
    gpu = sum(plan_memory(plan)[1] for plan in plans)
    first = plans[0]
    if first.unified_memory or first.gpu is None:  # a GPU that shares this machine's memory takes it from the RAM
        return [Need(first.ram.device, ram + gpu, False)]
    return [Need(first.ram.device, ram, False)] + ([Need(first.gpu.device, gpu, True)] if gpu else [])


def free_now(gpu: bool) -> int:
    """The bytes free now: of this machine's memory (what the OS can hand out without swapping), or of its first
    GPU's."""
    if not gpu:
        import psutil

        return int(psutil.virtual_memory().available)
    from edgellm.hw.detect import detect_this_machine

    gpus = detect_this_machine().gpus
    return gpus[0].memory_free_bytes if gpus else 0


def check_memory(planned: PlannedModel, with_draft: bool, free: Callable[[bool], int] | None = None) -> None:
    """NotEnoughMemory when the plan's estimate is more than a device has free now (`free`, default `free_now`: the
    memory may have gone elsewhere since the plan was made): said before llama.cpp is asked, which would fail or
    abort."""
    for need in needs(planned, with_draft):
        left = (free or free_now)(need.gpu)
        if need.needed > left:
            said = reason(
                "load_needs_memory",
                model=planned.choice.path.name,
                needed=need.needed,
                free=left,
                device=need.device,
            )
            raise NotEnoughMemory(said, need.needed, left, need.device)


def device_of(planned: PlannedModel) -> str:
    """Where the model's weights go, as a person names it: its GPU when layers go there, else this machine's CPU
    (or the split's devices)."""
    if planned.split is not None:
        return "this machine and its RPC workers"
    plan = planned.choice.plan
    if plan is not None and plan.gpu is not None and planned.params.n_gpu_layers != 0:
        return plan.gpu.device
    return "the CPU"
