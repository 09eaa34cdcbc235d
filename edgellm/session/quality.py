"""`bench --quality` for the front ends: the model -m names and a reference (the same model at a higher precision)
read side by side over a text, chunk by chunk, and the result record kept with the device's bench results.

The reference: `--reference FILE|NAME`, or `auto` (also what no flag means, quietly): a stored model of the same
architecture and shape, with the same vocabulary, at a higher precision (F32, F16, BF16 or Q8_0 first, then any quant
ranked above the model's). Without one the pass measures perplexity only.
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgellm import paths
from edgellm.bench import quality as figures
from edgellm.bench.measure import PeakMemory
from edgellm.engine.llama_log import LlamaLog, interrupt_after
from edgellm.errors import DraftIncompatible, EdgellmError, ModelFileError
from edgellm.events import Notice, Progress, Report, ctrl_c_sets, ignore
from edgellm.gguf.quants import rank
from edgellm.hw.detect import detect_this_machine
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.spec import ModelSpec
from edgellm.reasons import reason
from edgellm.session.bench import model_record, record_head
from edgellm.session.embedding import gpu_layer_count
from edgellm.session.flags import Flags
from edgellm.session.opening import local_model
from edgellm.storage import store
from edgellm.storage.specs import read_spec

REFERENCE_QUANTS = ("F32", "F16", "BF16", "Q8_0")  # what a reference is, best first; else any quant ranked higher


@dataclass(frozen=True)
class QualityRequest:
    reference: str | None = None  # a file or stored name, "auto", or None (auto, quietly)
    text: Path | None = None  # None: the shipped evaluation text
    chunks: int | None = None  # None: every whole chunk of the text
    n_ctx: int = figures.CHUNK


def default_text() -> Path:
    return Path(str(paths.data_dir() / "eval" / "quality.txt"))


def read_text(path: Path | None) -> tuple[str, str]:
    """The evaluation text and its name; ModelFileError-like one line for a file that cannot be read."""
    chosen = path or default_text()
    try:
        return chosen.read_text(encoding="utf-8"), chosen.name
    except FileNotFoundError:
        raise EdgellmError(f"{chosen}: no such file; give a UTF-8 text file to --text") from None
    except IsADirectoryError:
        raise EdgellmError(f"{chosen}: is a directory; give a UTF-8 text file to --text") from None
    except UnicodeDecodeError:
        raise EdgellmError(f"{chosen}: is not UTF-8 text; give a UTF-8 text file to --text") from None
    except OSError as error:
        raise EdgellmError(f"{chosen}: cannot be read ({error.strerror or error})") from None


def same_model(spec: ModelSpec, other: ModelSpec) -> bool:
    """Whether `other` is the same model as `spec` at another precision: its architecture and shape."""
    return (spec.architecture, spec.n_layers, spec.n_embd, spec.n_ff, spec.n_vocab) == (
        other.architecture,
        other.n_layers,
        other.n_embd,
        other.n_ff,
        other.n_vocab,
    )


def precision(spec: ModelSpec) -> float:
    return rank(spec.file_type) if spec.file_type else 0.0


def find_reference(path: Path, spec: ModelSpec) -> Path | None:
    """A stored model that can be the reference of the model at `path`: the same model at a higher precision, the
    best of REFERENCE_QUANTS first, else the highest ranked above it; None when the store has none."""
    try:
        stored = store.load_models()
    except EdgellmError:
        return None
    folder, found = store.store_dir(), []
    for model in stored.values():
        candidate = model.path(folder)
        if not candidate.is_file() or candidate.resolve() == path.resolve():
            continue
        try:
            other = read_spec(candidate)
        except ModelFileError:
            continue
        if (
            same_model(spec, other)
            and precision(other) > precision(spec)
            and vocabulary_problem(path, candidate) is None
        ):
            found.append((other.file_type in REFERENCE_QUANTS, precision(other), candidate))
    return max(found, key=lambda item: (item[0], item[1]))[2] if found else None


def vocabulary_problem(path: Path, reference: Path) -> str | None:
    """Why the two models' next-token distributions cannot be compared (their vocabularies differ); None when they
    can."""
    from edgellm.gguf.header import GGUFError
    from edgellm.gguf.vocab import draft_incompatibility, read_vocab

    try:
        ours, theirs = read_vocab(path), read_vocab(reference)
    except GGUFError as error:
        return str(error)
    if ours.n_tokens != theirs.n_tokens:
        return f"its vocabulary has {theirs.n_tokens} tokens, the model's {ours.n_tokens}"
    return draft_incompatibility(ours, theirs)


def reference_quant(quants: list[str], spec: ModelSpec) -> str | None:
    """Of a repo's quants, the one to pull as the reference of a model of `spec`: Q8_0 (as good as F16 for this, at
    half the download), else F16, BF16 or F32, else the best ranked above the model's own; None when none is above."""
    for wanted in ("Q8_0", "F16", "BF16", "F32"):
        if wanted in quants and rank(wanted) > precision(spec):
            return wanted
    above = [quant for quant in quants if rank(quant) > precision(spec)]
    return max(above, key=rank) if above else None


def pulled_reference(path: Path, spec: ModelSpec, offline: bool, report: Report) -> Path | None:
    """The reference pulled from the Hub repo the model came from, when it has a more precise quant; None when the
    model came from no repo, the repo has none, or edgellm is offline."""
    from edgellm.hub import client
    from edgellm.hub.files import group_quants
    from edgellm.hub.refs import parse_ref
    from edgellm.session.bench import stored_origin
    from edgellm.session.flags import config_wishes
    from edgellm.session.remote import stored_or_pulled

    repo = stored_origin(path).get("repo")
    if not repo or "/" not in repo or offline or client.offline():
        return None
    _, files = client.list_files(repo)
    quant = reference_quant([group.quant for group in group_quants(files) if group.loadable], spec)
    if quant is None:
        return None
    stored = stored_or_pulled(
        parse_ref(f"{repo}:{quant}"), detect_this_machine(), config_wishes(), offline, report=report
    )
    return stored.path(store.store_dir())


def choose_reference(
    path: Path, spec: ModelSpec, asked: str | None, report: Report, offline: bool = False
) -> Path | None:
    """The reference the request names, checked, or the one `auto` finds (in the store; asked for outright, pulled
    from the repo the model came from); None for perplexity only."""
    if asked is None or asked == "auto":
        found = find_reference(path, spec)
        if found is None and asked == "auto":
            found = pulled_reference(path, spec, offline, report)
        if found is None and asked == "auto":
            raise EdgellmError(
                reason(
                    "no_quality_reference", model=path.name, quant=spec.file_type or "its quant", arch=spec.architecture
                )
            )
        return found
    reference, _ = local_model(asked)
    other = read_spec(reference)
    if not same_model(spec, other):
        raise DraftIncompatible(
            f"{reference.name} is not {path.name} at another precision ({other.architecture}, {other.n_layers} layers, "
            f"width {other.n_embd} against {spec.architecture}, {spec.n_layers}, {spec.n_embd}); give the same model "
            f"in F16, BF16 or Q8_0 to --reference",
            reference,
            path,
            "shape",
        )
    problem = vocabulary_problem(path, reference)
    if problem is not None:
        raise DraftIncompatible(
            f"{reference.name} cannot be the reference of {path.name}: {problem}; give the same model at a higher "
            f"precision to --reference",
            reference,
            path,
            problem,
        )
    if precision(other) <= precision(spec):
        report(  # said, not refused: comparing two quants is a fair question
            Notice(
                f"the reference {reference.name} ({other.file_type}) is not more precise than {path.name} "
                f"({spec.file_type}): the divergence measures their difference, not what the quant loses",
                "warning",
            )
        )
    return reference


def run_quality(
    flags: Flags, request: QualityRequest, report: Report = ignore, cancel: threading.Event | None = None
) -> tuple[DeviceProfile, dict[str, Any]]:
    """Read the text with the model `flags.model` names (and the reference, side by side); the result record."""
    from edgellm.engine.scoring import open_scorer

    assert flags.model is not None, "the front end asks for a model first"
    path, stored = local_model(flags.model)
    spec = read_spec(path)
    text, text_name = read_text(request.text)
    reference = choose_reference(path, spec, request.reference, report, flags.offline)
    profile = detect_this_machine()
    threads = flags.threads or profile.cpu.performance_cores
    log = LlamaLog(paths.log_path(), echo=flags.verbose)
    layers = gpu_layer_count(flags.gpu_layers)
    peak = PeakMemory()
    peak_since = peak.reset()
    with ctrl_c_sets(cancel or threading.Event()) as stop:
        with interrupt_after():  # a load's Ctrl-C, kept from llama.cpp's log callback; the reading checks `stop`
            model = open_scorer(path, threads, layers, log, request.n_ctx)
        base = None
        try:
            tokens = model.tokenize(text)
            chunks = figures.chunks(tokens, request.n_ctx, model.bos, request.chunks)
            if not chunks:
                raise EdgellmError(
                    f"{text_name}: {len(tokens)} tokens, shorter than one chunk of {request.n_ctx}; give a longer text "
                    f"to --text"
                )
            if stop.is_set():
                raise KeyboardInterrupt
            if reference is not None:
                with interrupt_after():
                    base = open_scorer(reference, threads, layers, log, request.n_ctx)
            else:  # said once the text is known to be long enough: a refusal stays one line
                report(
                    Notice(
                        f"no reference for {path.name} in the store: perplexity only (`--reference auto` pulls one "
                        f"from the repo it came from, `--reference FILE` takes one)"
                    )
                )
            tally = _read(model, base, chunks, request.n_ctx, threads, report, stop)
            seconds = tally.pop("seconds")
        finally:
            model.close()
            if base is not None:
                base.close()
            gc.collect()
    result = record_head(profile, path, spec)
    scored = tally["tokens"]
    result.update(
        {
            "runs": [],
            "quality": {
                **tally,
                "text": {"name": text_name, "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]},
                "n_ctx": request.n_ctx,
                "reference": model_record(reference, read_spec(reference)) if reference is not None else None,
                "threads": threads,
                "seconds": round(seconds, 2),
                "tokens_per_s": round(len(chunks) * request.n_ctx / seconds, 1) if seconds > 0 else None,
                "scored_tokens": scored,
                "peak_rss_bytes": peak.peak(),
                "peak_rss_since": peak_since,
            },
        }
    )
    if stored is not None:
        store.touch(stored)
    return profile, result


def _read(
    model: Any, base: Any, chunks: list[list[int]], n_ctx: int, threads: int, report: Report, stop: threading.Event
) -> dict[str, Any]:
    """Each chunk through the model (and the reference), its scored rows into the tally (blocks of rows worked on by
    `threads` threads, every one finished before the logits they read are overwritten or freed); the summary."""
    first = figures.first_scored(n_ctx)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return _read_chunks(model, base, chunks, first, figures.QualityTally(pool=pool), report, stop)


def _read_chunks(
    model: Any,
    base: Any,
    chunks: list[list[int]],
    first: int,
    tally: figures.QualityTally,
    report: Report,
    stop: threading.Event,
) -> dict[str, Any]:
    started = time.perf_counter()
    for number, chunk in enumerate(chunks):
        if stop.is_set():
            raise KeyboardInterrupt
        report(Progress("bench: quality", number, len(chunks), unit="chunks"))
        targets = chunk[first + 1 :]
        done = 0
        theirs = base.read(chunk, first) if base is not None else None
        for rows in model.read(chunk, first):
            count = min(len(rows), len(targets) - done)  # the last row predicts nothing in the chunk
            reference_rows = next(theirs)[:count] if theirs is not None else None
            if count > 0:
                tally.add(rows[:count], targets[done : done + count], reference_rows)
            done += count
        if theirs is not None:
            for _ in theirs:  # let the reference's reading finish
                pass
        tally.chunks += 1
    seconds = time.perf_counter() - started
    report(Progress("bench: quality", len(chunks), len(chunks), unit="chunks", finished=True))
    return {**tally.summary(), "seconds": seconds}
