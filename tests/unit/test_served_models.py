"""The served models' own logic on the scripted model: naming, one load per model, placement by the planner's
estimates, keep-alive and unloading. No llama.cpp: `open_model` gives a ChatModel over a ScriptedModel, while the
plans are real (small GGUFs written by the project's writer, planned on a built-in device profile), so the memory
counted is the planner's. The server's end-to-end behaviour runs on the real model in tests/integration."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgellm.convert.tinymodel import Shape, write_model, write_tiny_llama
from edgellm.errors import DoesNotFit
from edgellm.hw.builtin import resolve_profile
from edgellm.hw.profile import DeviceProfile
from edgellm.session import served as served_module
from edgellm.session.completion import ChatModel
from edgellm.session.flags import Flags
from edgellm.session.opening import PlannedModel, choose_model
from edgellm.session.served import FOREVER, Entry, Lease, ModelNotFound, NoRoom, ServedModels
from edgellm.storage import store
from tests.support.scripted import ScriptedModel

PROFILE = "cpu-laptop-8gb"  # no GPU: a plan's memory is all on the CPU side
STORED = {  # store name: the file it is imported from
    "test/a:Q8_0": "a",
    "test/b:Q8_0": "b",
    "test/c:Q8_0": "c",
    "test/tiny:F16": "big",  # the best quant of test/tiny, and too big for the cap below
    "test/tiny:Q8_0": "tiny-q8",
    "test/tiny:Q4_0": "tiny-q4",
}


def until(condition: Callable[[], bool], seconds: float = 5.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small llama GGUFs: a, b, c (the same shape and quant, so the same plan), a Q8_0 and a Q4_0 of test/tiny, a
    file served only as the -m model, and an F16 with a 32000-token vocabulary whose weights alone (35 MB) are past
    the cap of the placement tests."""
    folder = tmp_path_factory.mktemp("served")
    written = {name: write_tiny_llama(folder / f"tiny-{name}.gguf", seed=seed) for seed, name in enumerate("abc")}
    written["tiny-q8"] = write_tiny_llama(folder / "tiny-q8.gguf", seed=3)
    written["tiny-q4"] = write_tiny_llama(folder / "tiny-q4.gguf", quant="q4_0", seed=4)
    written["solo"] = write_tiny_llama(folder / "solo.gguf", seed=5)
    written["big"] = write_model(folder / "big-f16.gguf", Shape(n_vocab=32000), quant="f16")
    return written


@pytest.fixture
def flags() -> Flags:
    """serve's defaults (read under the test's own EDGELLM_HOME) with the context, KV type and sequences fixed, so
    that a plan's estimate is the same wherever the model is planned."""
    from edgellm.cli.main import build_parser
    from edgellm.session.flags import flags_of

    return replace(flags_of(build_parser().parse_args(["serve"])), ctx_size=512, kv="f16", parallel=1)


@pytest.fixture
def profile() -> DeviceProfile:
    return resolve_profile(PROFILE)


@pytest.fixture(scope="module")
def imported(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, store.StoredModel]:
    """The store's records of the files imported under STORED's names (imported once, into a home of their own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGELLM_HOME", str(tmp_path_factory.mktemp("import-home")))
        return {name: store.import_path(files[key], name=name) for name, key in STORED.items()}


@pytest.fixture
def stored(imported: dict[str, store.StoredModel]) -> dict[str, store.StoredModel]:
    """This test's store (its own EDGELLM_HOME) holding the imported models, used in place."""
    models = {name: replace(model) for name, model in imported.items()}
    store.save_models(models)
    return models


@pytest.fixture(autouse=True)
def handed_back(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each unload's hand-back of freed memory, counted instead of done (its gc.collect is most of an unload's time
    in a test process)."""
    calls: list[int] = []
    monkeypatch.setattr(served_module, "give_back_freed_memory", lambda: calls.append(1))
    return calls


def planned_bytes(flags: Flags, profile: DeviceProfile, path: Path) -> int:
    """What the planner says `path` takes on `profile`, planned alone with `flags`."""
    plan = choose_model(replace(flags, model=str(path)), profile).plan
    assert plan is not None and plan.estimate.device(True) is None
    cpu = plan.estimate.device(False)
    assert cpu is not None
    return cpu.needed  # RAM is fitted by what must stay resident


@pytest.fixture
def need(flags: Flags, profile: DeviceProfile, files: dict[str, Path]) -> int:
    """The planned bytes of a, b and c (one number: the same plan)."""
    each = {planned_bytes(flags, profile, files[name]) for name in "abc"}
    assert len(each) == 1
    return each.pop()


@pytest.fixture
def room_for_two(need: int) -> int:
    """A memory cap that holds two of a, b and c but not three."""
    return 2 * need + need // 2


class Opener:
    """The `open_model` seam: a ChatModel over a ScriptedModel per load, each load recorded; `delay` makes each load
    take that long."""

    def __init__(self) -> None:
        self.opened: list[Path] = []
        self.engines: dict[Path, list[ScriptedModel]] = {}
        self.delay = 0.0
        self._lock = threading.Lock()

    def __call__(self, planned: PlannedModel, flags: Flags) -> ChatModel:
        path = planned.choice.path
        assert flags.model == str(path)
        with self._lock:
            self.opened.append(path)
        time.sleep(self.delay)
        engine = ScriptedModel(["ok"], name=path.stem)
        with self._lock:
            self.engines.setdefault(path, []).append(engine)
        return ChatModel.for_model(engine, "llama")  # type: ignore[arg-type]

    def engine(self, path: Path) -> ScriptedModel:
        """The latest ScriptedModel loaded from `path`."""
        return self.engines[path][-1]


Serve = Callable[..., tuple[ServedModels, Opener]]


@pytest.fixture
def serve(flags: Flags, profile: DeviceProfile) -> Iterator[Serve]:
    """ServedModels(**options) with a fresh Opener, each closed (its reaper stopped) at the end of the test."""
    made: list[ServedModels] = []

    def make(**options: object) -> tuple[ServedModels, Opener]:
        opener = Opener()
        models = ServedModels(flags, profile, open_model=opener, **options)  # type: ignore[arg-type]
        made.append(models)
        return models, opener

    yield make
    for models in made:
        models.close()


def paths_loaded(models: ServedModels) -> set[Path]:
    return {served.entry.path for served in models.loaded()}


def freed(models: ServedModels, entry: Entry, engine: ScriptedModel) -> Callable[[], bool]:
    """Whether `entry` is unloaded and its engine closed (the keep-alive thread drops a model, then closes it)."""
    return lambda: not models.is_loaded(entry) and engine.closed


def use(models: ServedModels, entry: Entry, keep_alive: float | None = None) -> None:
    """One request on `entry`: acquired and released."""
    models.acquire(entry, keep_alive).release()


# naming


def test_a_store_name_an_alias_and_a_repo_resolve_with_or_without_latest(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, _ = serve()
    for name in (
        "test/a:Q8_0",
        "TEST/A:q8_0",
        "test/a:Q8_0:latest",
        "tiny-a",
        "tiny-a:latest",
        "test/a",
        "test/a:latest",
    ):
        entry = models.resolve(name)
        assert entry.path == files["a"], name
        assert entry.name == "test/a:Q8_0" and entry.stored is not None and entry.stored.name == "test/a:Q8_0", name
    assert models.resolve("  tiny-b  ").path == files["b"]


def test_a_repo_means_its_highest_ranked_quant_that_fits_alone(
    serve: Serve, stored: dict[str, store.StoredModel], room_for_two: int
) -> None:
    unbounded, _ = serve()
    assert unbounded.resolve("test/tiny").name == "test/tiny:F16"
    assert unbounded.resolve("test/tiny:latest").name == "test/tiny:F16"
    capped, _ = serve(memory_cap=room_for_two)  # the F16 does not fit: the Q8_0 (above the Q4_0, which also fits)
    assert capped.resolve("test/tiny").name == "test/tiny:Q8_0"
    nothing_fits, opener = serve(memory_cap=2**20)  # none fits: the best, whose load then says what it needs
    entry = nothing_fits.resolve("test/tiny")
    assert entry.name == "test/tiny:F16"
    with pytest.raises(DoesNotFit):
        nothing_fits.acquire(entry)
    assert opener.opened == [] and nothing_fits.loaded() == []


def test_an_unknown_name_is_not_found_unless_it_may_fall_back_to_the_default(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    bare, _ = serve()
    for name in ("nobody/nothing:Q4_K_M", "nothing", "test/a:Q4_0", "test"):
        with pytest.raises(ModelNotFound) as raised:
            bare.resolve(name)
        assert raised.value.name == name and name in str(raised.value)
    with pytest.raises(ModelNotFound):
        bare.resolve("nothing", fallback=True)  # no -m model to fall back to
    path = files["solo"]
    default = Entry("solo", path, path.stat().st_size, path.stat().st_mtime)
    with_default, _ = serve(default=default)
    assert with_default.resolve("gpt-4o", fallback=True) is default
    with pytest.raises(ModelNotFound):
        with_default.resolve("gpt-4o")
    assert with_default.resolve("test/a", fallback=True).path == files["a"]  # a known name is never the fallback


def test_the_default_model_resolves_by_its_name_with_or_without_latest(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    path = files["solo"]
    default = Entry("solo", path, path.stat().st_size, path.stat().st_mtime)
    models, opener = serve(default=default)
    for name in ("solo", "solo:latest", "SOLO", "Solo:latest"):
        assert models.resolve(name) is default, name
    assert models.entries()[0] is default
    assert [e.path for e in models.entries()].count(path) == 1
    use(models, models.resolve("solo:latest"))
    assert opener.opened == [path] and paths_loaded(models) == {path}

    tagged = Entry("solo:latest", path, path.stat().st_size, path.stat().st_mtime)
    models, _ = serve(default=tagged)
    assert models.resolve("solo") is tagged and models.resolve("solo:latest") is tagged

    stored_default = Entry("mine", files["a"], 1, 0.0)  # -m names a stored file: listed once, under its store name
    models, _ = serve(default=stored_default)
    assert [e.path for e in models.entries()].count(files["a"]) == 1
    assert models.resolve("mine") is stored_default and models.resolve("test/a:Q8_0").name == "test/a:Q8_0"


def test_a_copy_resolves_to_the_same_file_and_shares_its_load(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    store.copy(stored["test/a:Q8_0"], "mine:latest")
    models, opener = serve()
    original, copy = models.resolve("test/a:Q8_0"), models.resolve("mine:latest")
    assert copy.name == "mine:latest" and copy.path == original.path == files["a"]
    assert models.resolve("mine").path == files["a"]
    first, second = models.acquire(original), models.acquire(copy)
    assert first.served is second.served and first.served.users == 2
    assert opener.opened == [files["a"]]
    first.release()
    second.release()


def test_the_alias_of_a_copied_model_still_resolves(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    store.copy(stored["test/a:Q8_0"], "mine:latest")
    models, _ = serve()
    assert models.resolve("tiny-a").path == files["a"]


# one load per model


def test_requests_for_one_model_at_once_share_one_load(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, opener = serve()
    opener.delay = 0.1  # a load long enough for every request to arrive during it
    entry = models.resolve("test/a:Q8_0")
    count = 8
    start = threading.Barrier(count)
    leases: list[Lease] = []
    errors: list[BaseException] = []

    def request() -> None:
        start.wait()
        try:
            leases.append(models.acquire(entry))
        except BaseException as error:  # reported by the test
            errors.append(error)

    threads = [threading.Thread(target=request) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert errors == [] and len(leases) == count
    assert opener.opened == [files["a"]]
    served = leases[0].served
    assert all(lease.served is served for lease in leases) and served.users == count
    assert models.loaded() == [served] and served.model.model is opener.engine(files["a"])
    for lease in leases:
        lease.release()
    assert served.users == 0 and models.is_loaded(entry)


# placement


def test_a_model_that_needs_room_unloads_the_least_recently_used_idle_one(
    serve: Serve,
    stored: dict[str, store.StoredModel],
    files: dict[str, Path],
    need: int,
    room_for_two: int,
    handed_back: list[int],
) -> None:
    models, opener = serve(memory_cap=room_for_two)
    a, b, c = (models.resolve(f"test/{name}:Q8_0") for name in "abc")
    use(models, a)
    use(models, b)
    assert paths_loaded(models) == {files["a"], files["b"]}  # two fit beside each other
    assert [served.memory for served in models.loaded()] == [(need, 0), (need, 0)]  # counted from their plans
    use(models, a)  # a is now used more recently than b
    use(models, c)
    assert paths_loaded(models) == {files["a"], files["c"]}
    assert opener.engine(files["b"]).closed and not opener.engine(files["a"]).closed
    assert handed_back == [1]  # b's memory handed back once
    assert opener.opened == [files["a"], files["b"], files["c"]]  # a stayed loaded: its second use loaded nothing

    uncapped, _ = serve()  # the room, not models_max (3), is what unloaded b
    for entry in (a, b, c):
        use(uncapped, entry)
    assert paths_loaded(uncapped) == {files["a"], files["b"], files["c"]}


def test_models_max_one_swaps_on_every_new_model(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, opener = serve(models_max=1)
    a, b = models.resolve("test/a:Q8_0"), models.resolve("test/b:Q8_0")
    use(models, a)
    use(models, a)
    assert paths_loaded(models) == {files["a"]} and opener.opened == [files["a"]]
    use(models, b)
    assert paths_loaded(models) == {files["b"]} and opener.engines[files["a"]][0].closed
    use(models, a)
    assert paths_loaded(models) == {files["a"]} and opener.engine(files["b"]).closed
    assert opener.opened == [files["a"], files["b"], files["a"]]


def test_a_model_that_does_not_fit_even_alone_is_refused_at_once_and_unloads_nothing(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path], room_for_two: int
) -> None:
    models, opener = serve(memory_cap=room_for_two)
    use(models, models.resolve("test/a:Q8_0"))
    held = models.acquire(models.resolve("test/b:Q8_0"))
    started = time.monotonic()
    with pytest.raises(DoesNotFit):
        models.acquire(models.resolve("test/tiny:F16"))
    assert time.monotonic() - started < 2  # not after waiting for room (WAIT_FOR_ROOM_S is minutes)
    assert paths_loaded(models) == {files["a"], files["b"]}
    assert not opener.engine(files["a"]).closed and not opener.engine(files["b"]).closed
    assert files["big"] not in opener.opened
    held.release()


def test_a_model_waits_while_every_loaded_one_is_in_use_and_loads_once_one_is_released(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path], room_for_two: int
) -> None:
    models, opener = serve(memory_cap=room_for_two)
    a, b, c = (models.resolve(f"test/{name}:Q8_0") for name in "abc")
    held_a, held_b = models.acquire(a), models.acquire(b)
    got: list[Lease] = []
    errors: list[BaseException] = []

    def request_c() -> None:
        try:
            got.append(models.acquire(c))
        except BaseException as error:  # reported by the test
            errors.append(error)

    waiting = threading.Thread(target=request_c)
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive() and got == [] and errors == []  # still waiting: nothing can be unloaded
    assert paths_loaded(models) == {files["a"], files["b"]} and files["c"] not in opener.opened
    held_a.release()
    waiting.join(5)
    assert not waiting.is_alive() and errors == [] and len(got) == 1
    assert got[0].served.entry.path == files["c"]
    assert paths_loaded(models) == {files["b"], files["c"]}  # a, released, made the room; b is still held
    assert opener.engine(files["a"]).closed and not opener.engine(files["b"]).closed
    held_b.release()
    got[0].release()


def test_no_room_when_the_models_in_use_stay_busy(
    serve: Serve,
    stored: dict[str, store.StoredModel],
    files: dict[str, Path],
    room_for_two: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(served_module, "WAIT_FOR_ROOM_S", 0.2)
    models, opener = serve(memory_cap=room_for_two)
    a, b, c = (models.resolve(f"test/{name}:Q8_0") for name in "abc")
    held = [models.acquire(a), models.acquire(b)]
    started = time.monotonic()
    with pytest.raises(NoRoom) as raised:
        models.acquire(c)
    assert 0.2 <= time.monotonic() - started < 3
    assert "test/c:Q8_0" in str(raised.value) and "test/a:Q8_0" in str(raised.value)
    assert paths_loaded(models) == {files["a"], files["b"]} and files["c"] not in opener.opened
    assert not opener.engine(files["a"]).closed and not opener.engine(files["b"]).closed
    for lease in held:
        lease.release()


# keep-alive and unloading


def test_an_idle_model_is_unloaded_once_its_keep_alive_has_passed(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, opener = serve(keep_alive=0.2)
    entry = models.resolve("test/a:Q8_0")
    lease = models.acquire(entry)
    assert lease.served.keep_alive == 0.2
    released = time.monotonic()  # before the release, from which the keep-alive counts
    lease.release()
    assert models.is_loaded(entry) and not opener.engine(files["a"]).closed
    until(freed(models, entry, opener.engine(files["a"])), what="the idle model to be unloaded and closed")
    assert time.monotonic() - released >= 0.2
    assert models.loaded() == []


def test_a_held_model_is_never_unloaded_and_goes_once_released(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, opener = serve(keep_alive=0.05)
    a, b = models.resolve("test/a:Q8_0"), models.resolve("test/b:Q8_0")
    held = models.acquire(a)
    use(models, b)  # idle after a was taken: once b is due, a would have been too
    until(lambda: not models.is_loaded(b), what="b to be unloaded")
    assert models.is_loaded(a) and held.served.users == 1 and not opener.engine(files["a"]).closed
    held.release()
    until(freed(models, a, opener.engine(files["a"])), what="a to be unloaded and closed once released")


def test_a_model_kept_forever_stays_and_a_requests_keep_alive_overrides_the_servers(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, opener = serve(keep_alive=0.05)
    a, b = models.resolve("test/a:Q8_0"), models.resolve("test/b:Q8_0")
    use(models, a, keep_alive=FOREVER)
    use(models, b)  # the server's 0.05 s
    until(lambda: not models.is_loaded(b), what="b to be unloaded")
    assert models.is_loaded(a) and not opener.engine(files["a"]).closed
    assert models.loaded()[0].keep_alive == FOREVER and models.loaded()[0].expires_in(time.monotonic()) == FOREVER

    forever, opener = serve(keep_alive=FOREVER)
    use(forever, a, keep_alive=0.05)  # the request's wins
    use(forever, b)
    until(freed(forever, a, opener.engine(files["a"])), what="a, with the request's keep-alive, to be unloaded")
    assert forever.is_loaded(b) and not opener.engine(files["b"]).closed


def test_the_keep_alive_of_the_last_request_to_end_is_the_models(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, _ = serve(keep_alive=FOREVER)
    a, b = models.resolve("test/a:Q8_0"), models.resolve("test/b:Q8_0")
    first = models.acquire(a, keep_alive=FOREVER)
    second = models.acquire(a, keep_alive=0.05)  # the latest request's keep-alive is the model's
    first.release()
    second.release()
    use(models, b, keep_alive=FOREVER)
    until(lambda: not models.is_loaded(a), what="a to be unloaded")
    assert models.is_loaded(b)


def test_unload_frees_an_idle_model_now_and_a_held_one_once_released(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, opener = serve(keep_alive=FOREVER)
    a, b = models.resolve("test/a:Q8_0"), models.resolve("test/b:Q8_0")
    assert models.unload(a) is False  # not loaded
    use(models, a)
    assert models.unload(a) is True
    assert not models.is_loaded(a) and opener.engine(files["a"]).closed  # at once, not by the reaper

    held = models.acquire(b)
    assert models.unload(b) is True
    assert models.is_loaded(b) and held.served.users == 1 and not opener.engine(files["b"]).closed
    held.release()
    until(freed(models, b, opener.engine(files["b"])), what="b to be unloaded and closed once released")


def test_a_deferred_unload_survives_the_release_of_a_lease_with_its_own_keep_alive(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, _ = serve(keep_alive=FOREVER)
    a, b = models.resolve("test/a:Q8_0"), models.resolve("test/b:Q8_0")
    held = models.acquire(a, keep_alive=300.0)  # a request that asked for 5 minutes, still running
    assert models.unload(a) is True  # keep_alive 0 from another client: deferred until the request ends
    held.release()
    use(models, b, keep_alive=0.0)  # released after a: once b is unloaded, a (due no later) must be gone too
    until(lambda: not models.is_loaded(b), what="b to be unloaded")
    assert not models.is_loaded(a)


def test_releasing_a_lease_twice_counts_once(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path]
) -> None:
    models, opener = serve(keep_alive=0.0)
    a, b = models.resolve("test/a:Q8_0"), models.resolve("test/b:Q8_0")
    first, second = models.acquire(a), models.acquire(a)
    served = first.served
    assert served.users == 2
    first.release()
    first.release()
    assert served.users == 1
    use(models, b)  # released after first: once b is unloaded, a would have been, were it idle
    until(lambda: not models.is_loaded(b), what="b to be unloaded")
    assert models.is_loaded(a) and not opener.engine(files["a"]).closed
    second.release()
    second.release()
    until(freed(models, a, opener.engine(files["a"])), what="a to be unloaded and closed")
    assert served.users == 0


def test_close_frees_every_model(
    serve: Serve, stored: dict[str, store.StoredModel], files: dict[str, Path], handed_back: list[int]
) -> None:
    models, opener = serve(keep_alive=FOREVER)
    held = models.acquire(models.resolve("test/a:Q8_0"))
    use(models, models.resolve("test/b:Q8_0"))
    assert len(models.loaded()) == 2
    models.close()
    assert models.loaded() == []
    assert opener.engine(files["a"]).closed and opener.engine(files["b"]).closed
    assert handed_back == [1, 1]
    models._reaper.join(2)
    assert not models._reaper.is_alive()
    held.release()  # a request ending after close changes nothing
    assert models.loaded() == []


# --- Ollama's `context` and copies in the store ---------------------------------------------------------------


def test_a_context_goes_before_the_prompt_with_one_bos_and_its_oldest_tokens_go_first() -> None:
    from tests.support.scripted import BOS

    chat = ChatModel.for_model(ScriptedModel(["ok"], n_ctx=256), "llama")
    prepared = chat.prepare_text("next")
    context = (BOS, *chat.model.tokenize("earlier exchange", add_bos=False, special=False))
    joined = chat.after_context(prepared, context)
    assert joined.tokens == list(context) + prepared.tokens[1:]  # the prompt's own BOS left out
    assert joined.text.endswith("next") and "earlier exchange" in joined.text
    long = (BOS, *range(10, 410))  # more than the context holds
    trimmed = chat.after_context(prepared, long, max_tokens=16)
    assert trimmed.tokens[0] == BOS and trimmed.tokens.count(BOS) == 1
    assert trimmed.tokens[1 : -len(prepared.tokens) + 1] == list(long[-(len(trimmed.tokens) - len(prepared.tokens)) :])
    assert len(trimmed.tokens) + 16 <= 256  # the reply keeps its room
    assert chat.after_context(prepared, ()) is prepared


def test_a_copy_keeps_the_files_until_the_last_name_goes(edgellm_home: Path, tmp_path: Path) -> None:
    folder = store.store_dir() / "owner" / "repo"
    folder.mkdir(parents=True)
    (folder / "m-Q8_0.gguf").write_bytes(b"GGUF")
    pulled = store.StoredModel("owner/repo:Q8_0", "owner/repo", "Q8_0", ["owner/repo/m-Q8_0.gguf"], 4, source="pull")
    store.add(pulled)
    copy = store.copy(pulled, "mine:latest")
    with pytest.raises(Exception, match="own name"):
        store.copy(pulled, "owner/repo:Q8_0")
    assert store.remove("owner/repo:Q8_0") == (pulled, False) and (folder / "m-Q8_0.gguf").exists()
    model, deleted = store.remove("mine:latest")
    assert model.name == copy.name and deleted and not (folder / "m-Q8_0.gguf").exists()
