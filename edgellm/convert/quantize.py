"""K-quants through llama.cpp's own quantizer, run in a child process so progress and Ctrl-C work.

The child (`python -m edgellm.convert.quantize SRC DST FTYPE THREADS REQUANTIZE [IMATRIX]`) calls
`llama_model_quantize` and passes llama.cpp's log lines through; the parent reads the `[  i/  n]` line llama.cpp
writes for each tensor and reports it as a Progress event. The output is written under a temporary name and renamed
once complete, so an interrupted quantize never leaves a file that looks finished.

With an importance matrix (convert.imatrix) the child hands llama.cpp each matrix's mean squared activations through
`llama_model_quantize_params.imatrix` (an array of `llama_model_imatrix_data` ending with a NULL entry), and records
where they came from in the file's `quantize.imatrix.*` keys, as llama-quantize does. The parent checks the matrix
against the model first; a quant llama.cpp makes only with a matrix (gguf.quants.NEEDS_IMATRIX) is refused without.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

from edgellm.convert.imatrix import check_matches, importance, read_imatrix
from edgellm.engine.child import child_writing, module_command
from edgellm.errors import DiskError, EdgellmError, check_cancel
from edgellm.events import Progress, Report, ignore
from edgellm.gguf.quants import FILE_TYPES, needs_imatrix
from edgellm.reasons import reason
from edgellm.storage import disk

FTYPES = {name: number for number, name in FILE_TYPES.items()}
TENSOR_LINE = re.compile(rb"\[\s*(\d+)/\s*(\d+)\]")
MAX_BUFFER = 64 * 2**20  # tensor rows llama.cpp keeps in memory at once (its default is 8 GiB: a Pi has 4)


def quantize(
    source: Path,
    target: Path,
    quant: str,
    report: Report = ignore,
    threads: int | None = None,
    cancel: threading.Event | None = None,
    requantize: bool = False,
    imatrix: Path | None = None,
) -> Path:
    """Quantize the GGUF `source` to `quant` (a llama.cpp file type such as Q4_K_M) at `target`. `requantize`: the
    source may itself be quantized (llama.cpp refuses that otherwise: the result carries both roundings). `imatrix`:
    an importance matrix file (convert.imatrix) to weight the rounding by, checked against the model first; the
    quants that need one are refused without. Setting `cancel` kills the child and raises Cancelled, leaving no
    file."""
    if quant not in FTYPES:
        raise EdgellmError(f"llama.cpp cannot quantize to {quant}; use one of {', '.join(sorted(FTYPES))}")
    if imatrix is None and needs_imatrix(quant):
        raise EdgellmError(reason("quant_needs_imatrix", quant=quant))
    if imatrix is not None:
        check_matches(read_imatrix(imatrix), source)
    free = shutil.disk_usage(target.parent).free
    if free < source.stat().st_size:  # a quantized file is smaller than its f16 source
        raise DiskError(
            reason("no_room_to_quantize", folder=str(target.parent), free=free, needed=source.stat().st_size),
            target.parent,
        )
    partial = target.with_name(target.name + ".partial")
    command = module_command(
        "edgellm.convert.quantize",
        str(source),
        str(partial),
        str(FTYPES[quant]),
        str(threads or os.cpu_count() or 1),
        str(int(requantize)),
        *([str(imatrix)] if imatrix is not None else []),
    )
    tail: list[bytes] = []
    total = 1
    with child_writing(command, partial, target, cancel) as child:
        assert child.stdout is not None  # stdout=PIPE
        for line in child.stdout:
            found = TENSOR_LINE.search(line)
            if found:
                total = int(found.group(2))
                report(Progress("quantize", int(found.group(1)), total, unit="tensors"))
            tail = (tail + [line.strip()])[-5:]
        code = child.wait()
        check_cancel(cancel, f"quantizing {source.name}")
        if code != 0:
            trouble = disk.problem(None, target.parent)  # llama.cpp says "iostream error" for a full disk
            if trouble is not None:
                raise DiskError(
                    reason("target_unwritable", target=str(target), why=disk.describe(target.parent, trouble)),
                    target.parent,
                )
            last = next((t.decode(errors="replace") for t in reversed(tail) if t), f"exit {code}")
            raise EdgellmError(f"llama.cpp could not quantize {source.name} to {quant} ({last})")
    report(Progress("quantize", total, total, finished=True, unit="tensors"))
    return target


def _child(source: str, target: str, ftype: int, threads: int, requantize: bool, imatrix: str | None = None) -> int:
    """In the child process: run llama.cpp's quantizer with its log on stdout (and the importance matrix at
    `imatrix`, when named, kept alive until it returns)."""
    import ctypes

    import llama_cpp

    def write(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()

    forward = llama_cpp.llama_log_callback(write)  # the C callback; kept referenced while llama.cpp runs
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.max_buf_size = MAX_BUFFER
    params.allow_requantize = requantize
    kept: list[object] = []
    if imatrix is not None:
        matrix = read_imatrix(Path(imatrix))
        weights = importance(matrix)
        names = [name.encode() for name in weights]
        entries = (llama_cpp.llama_model_imatrix_data * (len(weights) + 1))()  # the last stays NULL: the end
        for entry, name, values in zip(entries, names, weights.values()):
            entry.name, entry.size = name, values.size
            entry.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        overrides = _imatrix_keys(llama_cpp, Path(imatrix).name, matrix.datasets, len(weights), matrix.chunk_count)
        params.imatrix = entries
        params.kv_overrides = overrides
        kept += [names, weights, entries, overrides]  # what llama.cpp points at, alive for the call
    return 1 if llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)) else 0


def _imatrix_keys(llama_cpp: Any, file: str, datasets: tuple[str, ...], entries: int, chunks: int) -> Any:
    """The `quantize.imatrix.*` keys llama-quantize writes into a file quantized with a matrix, as overrides (an
    array ending with an empty key)."""
    Override = llama_cpp.llama_model_kv_override
    keys: list[tuple[str, int, str | int]] = [("quantize.imatrix.file", llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR, file)]
    if datasets:
        keys.append(("quantize.imatrix.dataset", llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR, datasets[0]))
    keys.append(("quantize.imatrix.entries_count", llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT, entries))
    if chunks > 0:
        keys.append(("quantize.imatrix.chunks_count", llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT, chunks))
    overrides = (Override * (len(keys) + 1))()
    for override, (key, tag, value) in zip(overrides, keys):
        override.key, override.tag = key.encode(), tag
        if isinstance(value, str):
            override.value.val_str = value.encode()[:127]
        else:
            override.value.val_i64 = value
    return overrides


if __name__ == "__main__":
    sys.exit(
        _child(
            sys.argv[1],
            sys.argv[2],
            int(sys.argv[3]),
            int(sys.argv[4]),
            sys.argv[5] == "1",
            sys.argv[6] if len(sys.argv) > 6 else None,
        )
    )
