"""A whole conversion: choose the quant and the file, write the GGUF, quantize it, keep it in the store.

`plan_conversion` checks everything it can before any byte is written (the checkpoint's config, the quant,
the target) and says why it chose what it chose; `run_conversion` does the work, reporting progress events,
and leaves either the finished file or nothing.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgellm.convert.hf_config import (
    CONVERTER_TYPES,
    SUPPORTED_QUANTS,
    HFConfig,
    canonical_quant,
    read_config,
    spec_from_config,
)
from edgellm.convert.imatrix import imatrix_kind, prepared_imatrix
from edgellm.convert.quantize import quantize
from edgellm.convert.writer import convert_checkpoint
from edgellm.errors import DiskError, DoesNotFit, EdgellmError
from edgellm.events import Notice, Report, ignore
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.planner import PlanError, Wishes, choose_quant
from edgellm.reasons import reason
from edgellm.storage import disk, store
from edgellm.words import notice


@dataclass(frozen=True)
class Conversion:
    source: Path
    config: HFConfig
    quant: str  # the final file's quant
    outtype: str  # what the GGUF writer writes: the quant itself, or the f16/bf16 file llama.cpp quantizes
    target: Path
    in_store: bool
    notices: tuple[Notice, ...] = ()
    imatrix: str | None = None  # the importance matrix to quantize with (convert.imatrix.imatrix_kind), if any

    @property
    def name(self) -> str:
        return f"local/{self.target.parent.name}:{self.quant}"


def requested_quant(quant: str | None, outtype: str) -> str:
    """The quant asked for: `quant` when named; without it, a named output type is the file's type, written as it
    is (as llama.cpp's converter does), and "auto" (the best that fits) when neither is named."""
    if quant is not None:
        return quant
    return "auto" if outtype == "auto" else outtype.upper()


def check_request(quant: str, output: Path | None, imatrix: str | None = None) -> None:
    """What can be refused before anything is read or fetched: an unknown quant, an output that is no GGUF, an
    importance matrix's text or file that does not exist."""
    if quant != "auto":
        canonical_quant(quant)
    if output is not None and output.suffix != ".gguf":
        raise EdgellmError(f"{output}: the output must be a .gguf file")
    if imatrix is not None:
        imatrix_kind(imatrix)


def plan_conversion(
    source: Path,
    quant: str | None,
    outtype: str,
    profile: DeviceProfile,
    output: Path | None = None,
    wishes: Wishes = Wishes(),
    imatrix: str | None = None,
) -> Conversion:
    """What converting `source` will do; one-line errors for a bad checkpoint, quant or target. `quant` None: the
    output type's own (see `requested_quant`). `imatrix`: quantize with an importance matrix collected on the
    converted model ("" the shipped calibration text, else a text file or a matrix file)."""
    quant = requested_quant(quant, outtype)
    check_request(quant, output, imatrix)
    config = read_config(source)
    notices: list[Notice] = []
    if quant == "auto":
        candidates = [(q, spec_from_config(config, q, str(source))) for q in SUPPORTED_QUANTS]
        try:
            chosen = choose_quant(profile, candidates, wishes)
        except PlanError as error:
            raise DoesNotFit(reason("about", subject=str(source), reason=error.reason), str(source)) from None
        quant = chosen.quant
        notices.append(notice(reason("best_quant_chosen", quant=quant, device=profile.name)))
    else:
        quant = canonical_quant(quant)
    if outtype == "auto":
        outtype = quant.lower() if quant in CONVERTER_TYPES else ("bf16" if config.dtype == "bfloat16" else "f16")
    elif quant in CONVERTER_TYPES and outtype != quant.lower() and quant != "Q8_0":
        raise EdgellmError(reason("outtype_cannot_become", outtype=outtype, quant=quant))
    elif quant not in CONVERTER_TYPES and outtype == "q8_0":
        raise EdgellmError(reason("outtype_not_a_source", quant=quant))
    target = output if output is not None else default_target(source, quant)
    if target.exists():
        raise EdgellmError(reason("target_exists", target=str(target)))
    if imatrix is not None and outtype == quant.lower():
        notices.append(notice(reason("imatrix_unused", quant=quant), "warning"))
        imatrix = None
    return Conversion(source, config, quant, outtype, target, output is None, tuple(notices), imatrix)


def default_target(source: Path, quant: str) -> Path:
    """Where the store keeps a conversion: models/local/NAME/NAME-QUANT.gguf."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", source.resolve().name).strip("-") or "model"
    return store.store_dir() / "local" / name / f"{name}-{quant}.gguf"


def _write(conversion: Conversion, report: Report, cancel: threading.Event | None) -> None:
    """The GGUF at the target (through llama.cpp's quantizer when the quant needs it), then its store entry."""
    target = conversion.target
    if conversion.outtype == conversion.quant.lower():
        convert_checkpoint(conversion.source, target, conversion.outtype, report, cancel)
    else:
        intermediate = target.with_name(f"{target.stem}.{conversion.outtype}.tmp.gguf")
        try:
            convert_checkpoint(conversion.source, intermediate, conversion.outtype, report, cancel)
            if conversion.imatrix is None:
                quantize(intermediate, target, conversion.quant, report, cancel=cancel)
            else:  # collected on the f16/bf16 model, as close to the checkpoint as a GGUF gets
                with prepared_imatrix(intermediate, conversion.imatrix, target.parent, report, cancel=cancel) as matrix:
                    quantize(intermediate, target, conversion.quant, report, cancel=cancel, imatrix=matrix)
        finally:
            intermediate.unlink(missing_ok=True)
    if conversion.in_store:
        store.add(
            store.StoredModel(
                name=conversion.name,
                repo=conversion.name.split(":")[0],
                quant=conversion.quant,
                files=[str(target.relative_to(store.store_dir()))],
                size=target.stat().st_size,
                source="convert",
                added=time.time(),
            )
        )


def run_conversion(
    conversion: Conversion, report: Report = ignore, discard_source: bool = False, cancel: threading.Event | None = None
) -> Path:
    """Write the GGUF, quantize it when the quant needs llama.cpp, and add it to the store when it lives there.
    `discard_source` removes the checkpoint afterwards (one fetched only to be converted: it would double the disk
    used). Setting `cancel` stops it with Cancelled, leaving no output file."""
    target = conversion.target
    missing = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write(conversion, report, cancel)
    except OSError as error:  # a folder that cannot be written, a disk that fills up: the way out, not a traceback
        trouble = disk.problem(error, target.parent)
        why = disk.describe(target.parent, trouble) if trouble else error.strerror or error
        raise DiskError(
            reason("target_unwritable", target=str(error.filename or target), why=str(why)), target.parent
        ) from None
    finally:
        if not target.exists():
            for folder in missing:  # folders made for this conversion, empty again after a failure
                try:
                    folder.rmdir()
                except OSError:
                    break
    if discard_source:
        shutil.rmtree(conversion.source, ignore_errors=True)
        report(notice(reason("checkpoint_removed", source=str(conversion.source))))
    return target


def convert(
    source: Path | None,
    repo: str | None,
    quant: str | None,
    outtype: str,
    profile: DeviceProfile,
    output: Path | None = None,
    report: Report = ignore,
    keep_checkpoint: bool = False,
    cancel: threading.Event | None = None,
    wishes: Wishes = Wishes(),
    imatrix: str | None = None,
) -> tuple[Conversion, Path]:
    """The whole job for any front end: a folder's checkpoint, or a Hub repo's fetched first (and removed after
    unless kept), planned (the quant chosen with `wishes`: config.toml's margins), reported and converted; with
    `imatrix` (see plan_conversion), quantized with an importance matrix."""
    if repo is not None:
        from edgellm.hub.checkpoint import fetch_checkpoint

        check_request(requested_quant(quant, outtype), output, imatrix)  # before fetching gigabytes
        source = fetch_checkpoint(repo, report, cancel)
    if source is None:
        raise EdgellmError("name one checkpoint: a folder or a Hub repo")
    conversion = plan_conversion(source, quant, outtype, profile, output, wishes, imatrix)
    for told in conversion.notices:
        report(told)
    path = run_conversion(conversion, report, discard_source=repo is not None and not keep_checkpoint, cancel=cancel)
    report(notice(reason("conversion_written", target=str(path), quant=conversion.quant)))
    return conversion, path
