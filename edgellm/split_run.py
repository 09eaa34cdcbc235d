"""Run a model split across RPC workers: the plan, then a child process that generates, watched.

ggml aborts the process that runs a split when a worker goes away, and waits forever when the network goes silent. So
the generation runs in a child process (edgellm.engine.split_child) and this side keeps what was shown and watches:
while the child is quiet it looks at each worker's side channel (which answers even while the worker computes); when
one misses MISSES_TO_LOSE times running, or the child dies and a side channel is gone, the reply ends with WorkerLost
naming the worker. Workers without a side channel (a plain llama.cpp rpc-server, a tunnel of one port) are given
WATCHDOG_S of silence mid-reply. Shared by the front ends that run with `--rpc`.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from edgellm.engine.rpc import Endpoint
from edgellm.errors import DoesNotFit, EngineFailed, UserError, WorkerLost
from edgellm.plan.spec import ModelSpec
from edgellm.plan.split import SplitPlan

WATCHDOG_S = 30.0  # silence mid-reply that ends it, for workers without a side channel to look at
POLL_S = 1.0  # how often the workers' side channels are looked at while the child is quiet
MISSES_TO_LOSE = 3  # side-channel answers missed running before a worker counts as gone (a busy network drops one)


@dataclass(frozen=True)
class SplitSetup:
    path: Path
    spec: ModelSpec
    split: SplitPlan
    endpoints: tuple[Endpoint, ...]
    threads: int
    flash_attn: bool


def plan_for_workers(settings, endpoints: list[Endpoint], profiles: list[str] = ()) -> SplitSetup:
    """The model the flags name, split across this machine (or the first of `profiles`), the other `profiles` and
    the workers (each checked: WorkerUnreachable). Shared by `plan` and the commands that run a split."""
    from edgellm import loading
    from edgellm.plan.planner import FLASH_ATTN_BACKENDS, PlanError
    from edgellm.plan.split import plan_split, profile_device
    from edgellm.workers import worker_device

    here = loading.profile_named(profiles[0] if profiles else None)
    devices = [profile_device(here, local=not profiles)]
    devices += [profile_device(loading.profile_named(name), local=False) for name in profiles[1:]]
    devices += [worker_device(endpoint) for endpoint in endpoints]
    path = loading.model_file(settings)
    spec = loading.read_spec(path)
    backend = here.llama_build.backend if here.llama_build else "cpu"
    flash_attn = settings.flash_attn == "on" or (settings.flash_attn == "auto" and backend in FLASH_ATTN_BACKENDS)
    try:
        split = plan_split(spec, devices, settings.ctx_size, settings.kv, flash_attn)
    except PlanError as error:
        raise DoesNotFit(f"{path.name}: {error}", str(path)) from None
    return SplitSetup(path, spec, split, tuple(endpoints), settings.threads or here.cpu.performance_cores, flash_attn)


def gone_workers(endpoints: list[str], timeout: float = 2.0) -> list[str]:
    """Of the watched workers, those whose side channel does not answer (stopped, killed, or cut off)."""
    from edgellm.engine.rpc import parse_endpoint
    from edgellm.workers import fetch_profile

    return [where for where in endpoints if fetch_profile(parse_endpoint(where), timeout=timeout) is None]


def job(setup: SplitSetup, prompt: str, options) -> dict:
    split = setup.split
    return {"model": str(setup.path), "workers": [str(endpoint) for endpoint in setup.endpoints],
            "prompt": prompt, "seed": options.seed,
            "load": {"n_ctx": split.n_ctx, "n_batch": 512, "threads": setup.threads, "n_gpu_layers": split.n_gpu_layers,
                     "tensor_split": list(split.tensor_split), "flash_attn": setup.flash_attn, "kv": split.kv},
            "options": {"sampling": asdict(options.sampling), "max_tokens": options.max_tokens,
                        "ignore_eos": options.ignore_eos, "seed": options.seed}}


def stream(setup: SplitSetup, prompt: str, options, watchdog_s: float = WATCHDOG_S) -> Iterator[dict]:
    """The child's events ({"loaded"}, {"text"}..., {"stats"}) as they come; WorkerLost when a worker goes away (its
    side channel fails MISSES_TO_LOSE times running) or, for workers without one, when the reply falls silent for
    `watchdog_s`; the child is always ended when this ends."""
    from edgellm.child import module_command

    watched = [share.device.where for share in setup.split.shares if share.device.where and share.device.watched]
    unwatched = [str(endpoint) for endpoint in setup.endpoints if str(endpoint) not in watched]
    errors = tempfile.TemporaryFile(mode="w+", errors="replace")  # llama.cpp's messages: a pipe could fill and block
    child = subprocess.Popen(module_command("edgellm.engine.split_child"), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True,
                             env={**os.environ, "GGML_NO_BACKTRACE": "1"})
    events: queue.Queue = queue.Queue()

    def read() -> None:
        for line in child.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                continue
        events.put(None)

    try:
        child.stdin.write(json.dumps(job(setup, prompt, options)))  # the job (and the prompt) on stdin: any size,
        child.stdin.close()  # and not in `ps` for other users to read
    except OSError:
        pass  # the child died at once: told below, from its exit
    threading.Thread(target=read, name="edgellm-split-reader", daemon=True).start()
    phase, quiet_since, misses = "loading", time.monotonic(), {where: 0 for where in watched}
    try:
        while True:
            try:
                event = events.get(timeout=POLL_S)
            except queue.Empty:
                for where in watched:
                    misses[where] = misses[where] + 1 if gone_workers([where]) else 0
                gone = [where for where, count in misses.items() if count >= MISSES_TO_LOSE]
                silent = bool(unwatched) and phase == "replying" and time.monotonic() - quiet_since > watchdog_s
                if (gone or silent) and events.empty():
                    child.kill()
                    raise lost(gone or unwatched, silent and not gone, phase)
                continue
            if event is None:
                break
            quiet_since = time.monotonic()
            if "text" in event:
                phase = "replying"
            if "error" in event:
                raise (UserError if event.get("unreachable") else EngineFailed)(event["error"])
            yield event
            if "stats" in event:
                return
        code = child.wait()
        gone = gone_workers(watched)
        if gone:
            raise lost(gone, False, phase)
        errors.seek(0)
        last = (errors.read().strip().splitlines() or ["no message"])[-1]
        raise EngineFailed(f"the split run ended {'mid-reply' if phase == 'replying' else 'while loading'} (exit "
                           f"{code}): {last}; a worker may have refused the work: see its terminal")
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        errors.close()


def lost(endpoints: list[str], silent: bool, phase: str) -> WorkerLost:
    names = ", ".join(endpoints)
    plural = "s" if len(endpoints) > 1 else ""
    what = (f"the network to the RPC worker{plural} at {names} went silent" if silent
            else f"the RPC worker{plural} at {names} went away")
    if phase == "replying":
        return WorkerLost(f"{what} mid-reply; the reply ends here (what was shown is kept): restart `edgellm worker` "
                          f"there, or run without it", endpoints)
    return WorkerLost(f"{what} while the model loaded: restart `edgellm worker` there, or run without it", endpoints)
