"""The models a server serves by name: loaded on first use, kept while used, unloaded when idle.

A request names a model (a store name `owner/repo:QUANT`, an alias, `owner/repo` for its best stored quant that
fits, the server's `-m` model by its id); the name is resolved to a file, and the file is loaded once however many
requests name it (they wait for the one load). Each loaded model has its own scheduler over its slots. Models stay
loaded together only while the planner says they fit together: a model is planned on this device's memory less
what the loaded ones were planned to take; when it does not fit, the least recently used idle model is unloaded
first, and a model that does not fit even alone is refused with what it needs. A model is unloaded once idle for
its keep-alive (the request's, else the server's); at most `models_max` stay loaded.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgellm.api.ollama import ModelFacts, with_tag
from edgellm.errors import EdgellmError
from edgellm.events import Report, ignore
from edgellm.gguf.quants import rank
from edgellm.hw.profile import DeviceProfile
from edgellm.session.completion import ChatModel
from edgellm.session.flags import Flags
from edgellm.session.host import ModelHost
from edgellm.session.loading import plan_memory
from edgellm.session.opening import PlannedModel, choose_model
from edgellm.session.scheduler import Scheduler, ShuttingDown
from edgellm.storage import store

if TYPE_CHECKING:
    from edgellm.engine.embed import Embedder

FOREVER = math.inf
WAIT_FOR_ROOM_S = 300.0  # how long a load waits for busy models to go idle before it is refused
REAP_EVERY_S = 60.0  # the longest the keep-alive thread sleeps (a model kept forever is never due)


class ModelNotFound(EdgellmError):
    """No stored model, alias or served model has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")
        self.name = name


class NoRoom(EdgellmError):
    """The model fits alone but the models in use leave no room, and none went idle in time."""


@dataclass(frozen=True)
class Entry:
    """A model a request can name: its listed name and its file."""

    name: str  # owner/repo:QUANT, or the -m model's id
    path: Path
    size: int
    modified: float  # the file's time
    sha256: str | None = None
    stored: store.StoredModel | None = None  # None: the -m model, used where it is


@dataclass(eq=False)
class Served:
    """One loaded model: its plan, its chat model (and embedder, once asked for), its scheduler and its use."""

    entry: Entry
    planned: PlannedModel
    model: ChatModel
    scheduler: Scheduler
    load_s: float
    keep_alive: float  # seconds it stays once idle: the last request's, else `default_keep_alive`
    default_keep_alive: float  # the server's (--keep-alive), or for ever for the model serve -m preloaded
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)
    embedder: Embedder | None = None
    unload_asked: bool = False  # keep_alive 0 came while it was in use: it goes once idle, whatever else is said

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def memory(self) -> tuple[int, int]:
        """(bytes on the CPU side, bytes on the GPU) the plan gives it: what must stay resident in RAM, what is
        allocated on a discrete GPU (the figures the planner fits by)."""
        plan = self.planned.choice.plan
        return plan_memory(plan) if plan is not None else (0, 0)

    def expires_in(self, now: float) -> float | None:
        """Seconds until it is unloaded (0 or less: due); None while in use."""
        if self.users:
            return None
        return 0.0 if self.unload_asked else self.last_used + self.keep_alive - now


@dataclass(frozen=True)
class Lease:
    """One request's hold on a served model; released once (its keep-alive counts from then)."""

    served: Served
    keep_alive: float | None
    _release: Callable[[Lease], None]
    _released: list[bool] = field(default_factory=list)

    @property
    def model(self) -> ChatModel:
        return self.served.model

    @property
    def scheduler(self) -> Scheduler:
        return self.served.scheduler

    def release(self) -> None:
        """Let the model go (once: a second call does nothing)."""
        self._release(self)


class ServedModels:
    """The loaded models, by file. Thread-safe: requests acquire on worker threads; a reaper unloads idle ones."""

    def __init__(
        self,
        flags: Flags,
        profile: DeviceProfile,
        *,
        keep_alive: float = 300.0,
        models_max: int = 3,
        queue: int = 32,
        memory_cap: int | None = None,
        default: Entry | None = None,
        log: Callable[[str], None] = lambda line: None,
        open_model: Callable[[PlannedModel, Flags], ChatModel] | None = None,
        report: Report = ignore,
    ) -> None:
        """`open_model`: how a planned model is loaded (default: through a model host of its own, as every front end
        loads one, reporting each load's progress to `report`)."""
        self.flags = flags
        self.profile = _capped(profile, memory_cap, flags)
        self.keep_alive = keep_alive
        self.models_max = max(1, models_max)
        self.queue = queue
        self.default = default
        self.log = log
        self._open = open_model or functools.partial(_load_through_a_host, report=report)
        self._served: dict[Path, Served] = {}
        self._plans: dict[Path, PlannedModel] = {}  # plans made by the caller (serve -m), used at each load
        self._condition = threading.Condition()  # guards _served and each Served's users/last_used
        self._load_lock = threading.Lock()  # one load or unload at a time: the room is counted between them
        self._closed = False
        self._reaper = threading.Thread(target=self._reap, name="edgellm-keep-alive", daemon=True)
        self._reaper.start()

    # naming

    def entries(self) -> list[Entry]:
        """What requests can name: the stored models whose files are here, and the -m model."""
        folder = store.store_dir()
        found = []
        for model in store.load_models().values():
            path = model.path(folder)
            try:
                modified = path.stat().st_mtime
            except OSError:
                continue
            sha = model.sha256[0] if model.sha256 else None
            found.append(Entry(model.name, path, model.size, modified, sha, model))
        if self.default is not None and all(entry.path != self.default.path for entry in found):
            found.insert(0, self.default)
        return found

    def resolve(self, name: str, fallback: bool = False, exact: bool = False) -> Entry:
        """The model `name` means: the -m model's id, a store name or alias (`:latest` is no tag), or `owner/repo`
        for its highest-ranked stored quant that fits this device alone. `fallback`: an unknown name means the -m
        model when there is one (the OpenAI API, whose clients send any name). `exact`: a store name or alias only
        (what a delete or copy names). ModelNotFound otherwise."""
        wanted = name.strip()
        bare = wanted.removesuffix(":latest")
        default = self.default
        if default is not None and bare.lower() in (default.name.lower(), default.name.lower().removesuffix(":latest")):
            return default
        entries = self.entries()
        for entry in entries:
            if entry.name.lower() in (wanted.lower(), bare.lower()):
                return entry
        matches = [e for e in entries if e.stored is not None and e.stored.alias.lower() == bare.lower()]
        if len({e.path for e in matches}) == 1:  # one file (its copies share its alias)
            return matches[0]
        of_repo = [e for e in entries if e.stored is not None and e.stored.repo.lower() == bare.lower()]
        if of_repo and not exact:
            return self._best_fitting(of_repo)
        if fallback and default is not None:
            return default
        raise ModelNotFound(name)

    def _best_fitting(self, entries: list[Entry]) -> Entry:
        ranked = sorted(entries, key=lambda e: rank(e.stored.quant if e.stored else ""), reverse=True)
        for entry in ranked:
            try:
                self._plan(entry, self.profile)
                return entry
            except (EdgellmError, OSError):  # does not fit, or a file that cannot be read
                continue
        return ranked[0]  # none fits: the best, so its load says what it needs

    # use

    def acquire(
        self, entry: Entry, keep_alive: float | None = None, embed: bool = False, planned: PlannedModel | None = None
    ) -> Lease:
        """Hold the model `entry` names, loading it first if it is not (one load per model: requests for a model
        being loaded wait for it). `embed`: also its embedder. `planned`: its plan, made already (serve -m, a split
        across workers), kept for its later loads. Blocking: call it off the event loop."""
        if planned is not None:
            self._plans[entry.path] = planned
        with self._condition:
            served = self._served.get(entry.path)
            if served is not None and (served.embedder is not None or not embed):
                return self._hold(served, keep_alive)
        with self._load_lock:
            with self._condition:
                served = self._served.get(entry.path)
            if served is None:
                served = self._load(entry, keep_alive)
            if embed and served.embedder is None:
                served.embedder = self._open_embedder(served)
            with self._condition:
                return self._hold(served, keep_alive)

    def _hold(self, served: Served, keep_alive: float | None) -> Lease:
        served.users += 1
        return Lease(served, keep_alive, self._release)

    def _release(self, lease: Lease) -> None:
        served = lease.served
        with self._condition:
            if lease._released:
                return
            lease._released.append(True)
            served.users -= 1
            served.last_used = time.monotonic()
            served.keep_alive = served.default_keep_alive if lease.keep_alive is None else lease.keep_alive
            self._condition.notify_all()

    def loaded(self) -> list[Served]:
        with self._condition:
            return list(self._served.values())

    def is_loaded(self, entry: Entry) -> bool:
        with self._condition:
            return entry.path in self._served

    def unload(self, entry: Entry) -> bool:
        """Unload the model now if it is loaded and idle (keep_alive 0); in use, it goes once its requests end."""
        with self._condition:
            served = self._served.get(entry.path)
            if served is None:
                return False
            served.keep_alive, served.unload_asked = 0.0, True
            self._condition.notify_all()
            if served.users:
                return True
        with self._load_lock:
            self._unload_if_idle(served)
        return True

    def close(self) -> None:
        """Stop every scheduler (the running replies finish) and free every model."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        for served in self.loaded():
            served.scheduler.drain()
        with self._load_lock:  # no load or unload runs meanwhile: each model is freed once
            for served in self.loaded():
                served.scheduler.join()
                self._free(served)
            with self._condition:
                self._served.clear()

    def drain(self, stop_running: bool = False) -> None:
        """Take no more requests: each model's waiting ones end with ShuttingDown."""
        for served in self.loaded():
            served.scheduler.drain(stop_running=stop_running)

    # loading and unloading

    def _load(self, entry: Entry, keep_alive: float | None) -> Served:
        planned = self._place(entry)
        with self._condition:
            loaded = self._served.get(entry.path)
        if loaded is not None:  # another request loaded it while this one waited for room
            return loaded
        started = time.perf_counter()
        model = self._open(planned, self._flags(entry))
        load_s = time.perf_counter() - started
        served = Served(
            entry,
            planned,
            model,
            Scheduler(self.queue, model.model.parallel),
            load_s,
            self.keep_alive if keep_alive is None else keep_alive,
            FOREVER if entry.path in self._plans else self.keep_alive,  # serve -m's model stays unless told
        )
        with self._condition:
            if self._closed:  # the server stopped while it loaded
                model.close()
                raise ShuttingDown()
            self._served[entry.path] = served
            self._condition.notify_all()
        if entry.stored is not None:
            store.touch(entry.stored)
        self.log(f"{entry.name} loaded in {load_s:.1f} s ({self._room_said()})")
        return served

    def _place(self, entry: Entry) -> PlannedModel:
        """The model planned as it would run alone (DoesNotFit when it cannot; the caller's plan when it gave one),
        then room made for it: idle models unloaded, least recently used first, while it does not fit beside the
        loaded ones or too many are loaded; while every loaded model is in use, it waits for one to go idle (NoRoom
        after WAIT_FOR_ROOM_S)."""
        planned = self._plans.get(entry.path) or self._plan(entry, self.profile)
        deadline = time.monotonic() + WAIT_FOR_ROOM_S
        while True:
            with self._condition:
                loaded = len(self._served)
            if loaded == 0 or (loaded < self.models_max and self._fits_beside(planned)):
                return planned
            if self._unload_idle_one("--models-max" if loaded >= self.models_max else "room"):
                continue
            if not self._wait_for_idle(deadline):
                raise NoRoom(
                    f"{entry.name} needs the memory that {', '.join(s.name for s in self.loaded())} hold, and they "
                    f"stayed busy for {WAIT_FOR_ROOM_S:.0f} s; retry later"
                )

    def _fits_beside(self, planned: PlannedModel) -> bool:
        """Whether the plan fits in the memory the loaded models leave."""
        from edgellm.plan.planner import budgets, fits, usable_gpu

        plan = planned.choice.plan
        if plan is None:
            return True
        room = self._room()
        gpu, _ = usable_gpu(room)
        ram, gpu_budget = budgets(room, gpu if plan.gpu is not None else None, self.flags.wishes())
        return fits(plan.estimate, ram, gpu_budget, plan.unified_memory)

    def _plan(self, entry: Entry, profile: DeviceProfile) -> PlannedModel:
        from edgellm.plan.params import load_params

        flags = self._flags(entry)
        choice = choose_model(flags, profile)
        assert choice.plan is not None
        params = load_params(choice.path, choice.plan, flags.seed)
        return PlannedModel(choice, profile, replace(params, projector=choice.projector))

    def _flags(self, entry: Entry) -> Flags:
        """The flags `entry` loads with: --mmproj goes with the model -m named, others take the projector kept with
        them (if any)."""
        from edgellm.session.opening import local_model

        named = self.flags.model is not None and local_model(self.flags.model)[0].resolve() == entry.path.resolve()
        return replace(self.flags, model=str(entry.path), hf_repo=None, mmproj=self.flags.mmproj if named else None)

    def reads_images(self, entry: Entry) -> bool:
        """Whether the model `entry` names reads images: loaded with a projector, or (not loaded) one would be loaded
        with it."""
        from edgellm.session.opening import projector_path

        for served in self.loaded():
            if served.entry.path == entry.path:
                return served.model.vision
        try:
            return projector_path(self._flags(entry), entry.path) is not None
        except (EdgellmError, OSError):
            return False

    def _room(self) -> DeviceProfile:
        """This device as the next model sees it: its memory less what the loaded models were planned to take."""
        from edgellm.plan.planner import room_beside

        plans = [served.planned.choice.plan for served in self.loaded()]
        return room_beside(self.profile, [plan for plan in plans if plan is not None])

    def _room_said(self) -> str:
        served = self.loaded()
        used = sum(sum(s.memory) for s in served)
        return f"{len(served)} loaded, {used / 2**30:.2f} GiB planned"

    def _unload_idle_one(self, why: str) -> bool:
        """Unload the least recently used idle model; False when every loaded model is in use."""
        with self._condition:
            idle = [s for s in self._served.values() if not s.users]
            if not idle:
                return False
            victim = min(idle, key=lambda s: s.last_used)
        self.log(f"unloading {victim.name} to make room ({why})")
        return self._unload_if_idle(victim)

    def _wait_for_idle(self, deadline: float) -> bool:
        """Wait for a loaded model to go idle (False past `deadline`), letting go of the load lock meanwhile so that
        other loads, unloads and the keep-alive go on."""
        self._load_lock.release()
        try:
            with self._condition:
                while not self._closed:
                    if any(not s.users for s in self._served.values()):
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._condition.wait(left)
        finally:
            self._load_lock.acquire()
        raise ShuttingDown()

    def _unload_if_idle(self, served: Served) -> bool:
        """Unload `served` if nobody holds it (the load lock held)."""
        with self._condition:
            if served.users or self._served.get(served.entry.path) is not served:
                return False
            del self._served[served.entry.path]
        served.scheduler.drain()
        served.scheduler.join()
        self._free(served)
        self.log(f"{served.name} unloaded")
        return True

    @staticmethod
    def _free(served: Served) -> None:
        if served.embedder is not None:
            served.embedder.close()
        served.model.close()
        give_back_freed_memory()

    def _open_embedder(self, served: Served) -> Embedder:
        """An embedding context on the loaded model's own weights (a split's are across workers: refused)."""
        from edgellm import paths
        from edgellm.engine.batched import BatchedModel
        from edgellm.engine.embed import open_embedder
        from edgellm.engine.llama_log import LlamaLog
        from edgellm.engine.local import LocalModel

        engine = served.model.model
        local = engine.local if isinstance(engine, BatchedModel) else engine
        if not isinstance(local, LocalModel):
            raise EdgellmError(f"{served.name} is split across workers: it serves no embeddings; load it alone")
        params = served.planned.params
        log = LlamaLog(paths.log_path(), echo=False)
        return open_embedder(params.path, params.n_threads, params.n_gpu_layers, log, loaded=local)

    def _reap(self) -> None:
        """Unload each model once it has been idle for its keep-alive."""
        while True:
            with self._condition:
                if self._closed:
                    return
                now = time.monotonic()
                waits = {s: w for s in self._served.values() if (w := s.expires_in(now)) is not None}
                due = [s for s, w in waits.items() if w <= 0]
                if not due:
                    self._condition.wait(min([*waits.values(), REAP_EVERY_S]))
                    continue
            with self._load_lock:
                for served in due:
                    try:
                        self._unload_if_idle(served)
                    except Exception as error:
                        self.log(f"unloading {served.name} failed: {type(error).__name__}: {error}")


def _load_through_a_host(planned: PlannedModel, flags: Flags, report: Report = ignore) -> ChatModel:
    return ModelHost(flags, report=report).load(planned)


def give_back_freed_memory() -> None:
    """Collect Python's cycles (llama-cpp-python's objects hold native memory) and hand the C heap's free pages back
    to the system (glibc keeps them otherwise: a model unloaded would leave its tokenizer's and context's heap in this
    process's RSS). A no-op where there is no glibc."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        return
    if trim is not None:
        trim(0)


def _capped(profile: DeviceProfile, memory_cap: int | None, flags: Flags) -> DeviceProfile:
    """The profile with at most `memory_cap` bytes of RAM available to models (beside the margin kept free)."""
    if memory_cap is None:
        return profile
    from edgellm.plan.planner import ram_margin

    available = min(profile.memory.available_bytes, memory_cap + ram_margin(profile, flags.wishes()))
    return replace(profile, memory=replace(profile.memory, available_bytes=available))


@functools.lru_cache(maxsize=256)
def _header_facts(path: Path, modified: float) -> tuple[str, int, str, int | None, int | None, str, bool]:
    """(architecture, parameters, quantization, trained context, width, chat template, pooled) from a GGUF header,
    remembered per file and time."""
    from edgellm.gguf.header import read_header
    from edgellm.storage.specs import cached_spec

    spec = cached_spec(path)
    header = read_header(path)
    counted = header.metadata.get("general.parameter_count")
    parameters = counted if isinstance(counted, int) else sum(math.prod(t.shape) for t in header.tensors)
    template = header.metadata.get("tokenizer.chat_template")
    return (
        spec.architecture,
        parameters,
        spec.file_type or "unknown",
        spec.trained_ctx or None,
        spec.n_embd or None,
        template if isinstance(template, str) else "",
        header.arch_value("pooling_type") not in (None, 0),
    )


def facts(entry: Entry) -> ModelFacts:
    """What the Ollama API tells of a model: its header's facts, its digest and what it can do."""
    architecture, parameters, quantization, context, width, template, pooled = _header_facts(entry.path, entry.modified)
    capabilities = ["embedding"] if pooled else ["completion"]
    if "tool" in template:
        capabilities.append("tools")
    if "<think>" in template or "reasoning" in template:
        capabilities.append("thinking")
    digest = entry.sha256 or hashlib.sha256(f"{entry.path}:{entry.size}:{entry.modified}".encode()).hexdigest()
    return ModelFacts(
        name=with_tag(entry.name),
        size=entry.size,
        modified_at=entry.modified,
        digest=digest,
        architecture=architecture,
        parameters=parameters,
        quantization=quantization,
        context_length=context,
        capabilities=tuple(capabilities),
        template=template,
        embedding_length=width,
    )
