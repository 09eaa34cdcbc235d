"""A whole quantization of a GGUF file that exists (`edgellm quantize`): check the request, collect or read the
importance matrix, quantize through llama.cpp, and keep the result in the store.

Everything that can be refused is refused before any work: an unknown quant, a file that is no GGUF model, a quant
that needs an importance matrix without one, a matrix made for another model, an output that exists. Quantizing a
file that is quantized already is allowed, with a warning that says what it costs (two roundings).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgellm.convert.imatrix import imatrix_kind, prepared_imatrix
from edgellm.convert.quantize import FTYPES, quantize
from edgellm.errors import EdgellmError
from edgellm.events import Report, ignore
from edgellm.gguf.quants import needs_imatrix, normalize, parse_quant
from edgellm.reasons import reason
from edgellm.storage import store
from edgellm.storage.specs import read_spec
from edgellm.words import notice

UNQUANTIZED = ("F32", "F16", "BF16")


@dataclass(frozen=True)
class Quantized:
    path: Path
    quant: str
    name: str | None  # its store name, when it went into the store
    imatrix: Path | None  # the matrix used, when it was kept (a file named, or --save-imatrix)
    requantized: bool  # made from a file quantized already


def target_name(source: Path) -> str:
    """The model's name in the store and its files: the source's file name less `.gguf` and its quant."""
    stem = source.name.removesuffix(".gguf")
    quant = parse_quant(source.name)
    if quant:
        at = stem.upper().rfind(quant)
        if at >= 0:
            stem = stem[:at] + stem[at + len(quant) :]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-_.") or "model"


def default_target(source: Path, quant: str) -> Path:
    """Where the store keeps a quantization: models/local/NAME/NAME-QUANT.gguf, beside a conversion of the same
    model (convert's own place for it)."""
    name = target_name(source)
    return store.store_dir() / "local" / name / f"{name}-{quant}.gguf"


def check_quant(quant: str, imatrix: str | None) -> str:
    """The quant as llama.cpp names its file type; one-line errors for one it cannot make, or cannot make without
    an importance matrix when none is asked for."""
    name = normalize(quant)
    if name not in FTYPES:
        raise EdgellmError(f"llama.cpp cannot quantize to {quant}; use one of {', '.join(sorted(FTYPES))}")
    if imatrix is None and needs_imatrix(name):
        raise EdgellmError(reason("quant_needs_imatrix", quant=name))
    return name


def quantize_file(
    source: Path,
    quant: str,
    output: Path | None = None,
    imatrix: str | None = None,
    save_imatrix: Path | None = None,
    report: Report = ignore,
    threads: int | None = None,
    cancel: threading.Event | None = None,
    chunks: int | None = None,
) -> Quantized:
    """Quantize the GGUF `source` to `quant` at `output` (default: into the store, see default_target).

    `imatrix`: None for no importance matrix; "" to collect one on the calibration text shipped with edgellm; else a
    text file to collect it on or a matrix file to use (convert.imatrix.imatrix_kind). A collected matrix is kept at
    `save_imatrix` when named. `chunks` bounds the chunks of text collected on. Setting `cancel` stops it with
    Cancelled, leaving no file."""
    quant = check_quant(quant, imatrix)
    spec = read_spec(source)  # ModelFileError for a missing file or one that is no GGUF model
    if output is not None and output.suffix != ".gguf":
        raise EdgellmError(f"{output}: the output must be a .gguf file")
    target = output if output is not None else default_target(source, quant)
    if target.exists():
        raise EdgellmError(reason("target_exists", target=str(target)))
    kind, named = imatrix_kind(imatrix) if imatrix is not None else ("", None)
    requantize = spec.file_type not in UNQUANTIZED  # an unknown type too: llama.cpp decides from the tensors
    warning = reason("requantize_costs", source=source.name, from_quant=spec.file_type, quant=quant)
    warn = spec.file_type is not None and requantize  # said once the matrix is ready: a refusal stays one line
    made = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EdgellmError(reason("target_unwritable", target=str(target), why=error.strerror or str(error))) from None
    try:
        if imatrix is None:
            if warn:
                report(notice(warning, "warning"))
            quantize(source, target, quant, report, threads, cancel, requantize)
        else:
            with prepared_imatrix(
                source, imatrix, target.parent, report, threads, cancel, chunks, save_imatrix
            ) as matrix:
                if warn:
                    report(notice(warning, "warning"))
                quantize(source, target, quant, report, threads, cancel, requantize, imatrix=matrix)
    finally:
        if not target.exists():
            for folder in made:  # folders made for this quantization, empty again after a failure
                try:
                    folder.rmdir()
                except OSError:
                    break
    name = None
    if output is None:
        name = f"local/{target.parent.name}:{quant}"
        store.add(
            store.StoredModel(
                name=name,
                repo=name.split(":")[0],
                quant=quant,
                files=[str(target.relative_to(store.store_dir()))],
                size=target.stat().st_size,
                source="quantize",
                added=time.time(),
            )
        )
    kept = named if kind == "matrix" else save_imatrix
    return Quantized(target, quant, name, kept, requantize)
