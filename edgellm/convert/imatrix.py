"""Importance matrices (llama.cpp's imatrix): collected on a calibration text through llama.cpp's eval callback, kept
in llama.cpp's GGUF imatrix format (so llama-quantize can use them too), and read back as the per-column weights
llama.cpp's quantizer takes: its analogue of AWQ's salient channels, rounding protects the columns that see large
activations.

What is collected, as llama-imatrix collects it (tools/imatrix/imatrix.cpp): for every product by a weight of a
repeating block (`blk.*`) whose input is F32 with at least MIN_ROWS rows, and every expert product (MUL_MAT_ID), the
sum over tokens of each input column's square, Σx², per matrix (per expert), and how many tokens each saw. The text
goes in chunks of CHUNK_TOKENS tokens, each a sequence of its own that starts with BOS where the model adds one,
decoded in batches of at least MIN_ROWS tokens with every token an output (with fewer outputs llama.cpp computes the
last layer for the outputs only, and its matrices would be missed). A batch is as many tokens as keep the logits of
one batch within OUTPUT_BUDGET (Gemma 3's 262,144-token vocabulary: 64): the logits are what grows with the batch.

The file (llama-imatrix's GGUF format; llama.cpp's common/imatrix-loader.cpp reads it): general.type "imatrix";
imatrix.datasets (strings), imatrix.chunk_count and imatrix.chunk_size (u32); for each matrix NAME, the tensors
NAME.in_sum2 (F32, ne = [columns, matrices]) and NAME.counts (F32, ne = [1, matrices]), by sorted name. The legacy
binary format (`--output-format dat`) is read as well. The quantizer is given each column's mean square, sums/count,
or 1 where a matrix saw no token (llama-quantize's load_imatrix).

Collection runs in a child process (`python -m edgellm.convert.imatrix ...`), as the quantizer does, so Ctrl-C or a
cancel event stops it at once, and llama.cpp's memory goes with it; the file is written under a temporary name and
renamed once complete.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import as_file
from pathlib import Path
from typing import Any

import numpy as np

from edgellm.engine.child import child_writing, module_command
from edgellm.errors import EdgellmError, EngineFailed, ModelFileError, check_cancel
from edgellm.events import Progress, Report, ignore
from edgellm.gguf.header import GGUFError, GGUFHeader, read_header
from edgellm.paths import data_dir
from edgellm.reasons import reason

CHUNK_TOKENS = 512  # llama-imatrix's default context, and so its chunk
MIN_ROWS = 16  # llama-imatrix ignores smaller batches
OUTPUT_BUDGET = 64 * 2**20  # bytes of one batch's logits (F32): llama.cpp holds them twice, in and out of the graph
SUFFIX = ".imatrix"
CALIBRATION = "calibration.txt"  # edgellm/data/eval: the text collected on when none is named


@dataclass
class Entry:
    """One matrix's statistics: Σx² per input column of each of its matrices (experts), and the tokens each saw."""

    sums: np.ndarray  # float64, (matrices, columns)
    counts: np.ndarray  # int64, (matrices,); a dense matrix keeps one count

    @property
    def columns(self) -> int:
        return int(self.sums.shape[1])


@dataclass
class Imatrix:
    entries: dict[str, Entry] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()
    chunk_count: int = 0
    chunk_size: int = CHUNK_TOKENS


# --- accumulating, as the eval callback sees the graph ----------------------------------------------------------------


def weight_name(raw: str) -> str:
    """A weight's name as llama.cpp's graph names it, less any `#` decoration a backend added (the text between the
    first two `#`)."""
    if "#" not in raw:
        return raw
    return raw.split("#", 2)[1]


def add_dense(entries: dict[str, Entry], name: str, x: np.ndarray, weight_mats: tuple[int, int] = (1, 1)) -> None:
    """Add the input `x` of one product by the weight `name`: (ne3, ne2, ne1, ne0) rows of ne0 columns. A weight of
    more than one matrix (`weight_mats`: its ne2 and ne3) collects each matrix apart; activations of more dimensions
    than the weight go to the matrix they broadcast to."""
    mats2, mats3 = weight_mats
    n_mat = mats2 * mats3
    ne3, ne2, ne1, ne0 = x.shape
    entry = entries.get(name)
    if entry is None:
        entry = entries[name] = Entry(np.zeros((n_mat, ne0)), np.zeros(1, dtype=np.int64))
    elif entry.sums.shape != (n_mat, ne0):
        raise EngineFailed(f"{name}: inputs of {n_mat}×{ne0} columns where earlier ones had {entry.sums.shape}")
    for i3 in range(ne3):
        for i2 in range(ne2):
            rows = x[i3, i2]
            entry.sums[(i3 % mats3) * mats2 + (i2 % mats2)] += np.einsum("ij,ij->j", rows, rows)
    entry.counts += ne1 * ne2 * ne3 // n_mat


def add_experts(entries: dict[str, Entry], name: str, x: np.ndarray, ids: np.ndarray, n_experts: int) -> None:
    """Add the input of one expert product (MUL_MAT_ID) by `name`: `x` is (tokens, ne1, columns) with ne1 the
    experts used per token or 1 (one input shared by them), `ids` (tokens, experts used) the expert each went to."""
    n_tokens, ne1, ne0 = x.shape
    entry = entries.get(name)
    if entry is None:
        entry = entries[name] = Entry(np.zeros((n_experts, ne0)), np.zeros(n_experts, dtype=np.int64))
    elif entry.sums.shape != (n_experts, ne0):
        raise EngineFailed(f"{name}: inputs of {n_experts}×{ne0} columns where earlier ones had {entry.sums.shape}")
    for used in range(ids.shape[1]):
        experts = np.asarray(ids[:, used], dtype=np.int64)
        if n_tokens and (experts.min() < 0 or experts.max() >= n_experts):
            raise EngineFailed(f"{name}: an expert id outside 0..{n_experts - 1}")
        rows = np.asarray(x[:, used % ne1, :], dtype=np.float64)
        np.add.at(entry.sums, experts, rows * rows)
        entry.counts += np.bincount(experts, minlength=n_experts)


class Collector:
    """llama.cpp's eval callback: `collector(node, ask)`. Asked first of each graph node, it claims the products
    llama-imatrix claims (of its expert products, those with an F32 input: the only kind it reads); called again
    with each claimed node computed, it adds its input. An error is kept in `error` (nothing may raise into
    llama.cpp) for the caller to raise after the decode."""

    def __init__(self, mul_mat: int, mul_mat_id: int, f32: int = 0) -> None:
        self.mul_mat, self.mul_mat_id, self.f32 = mul_mat, mul_mat_id, f32
        self.entries: dict[str, Entry] = {}
        self.error: BaseException | None = None

    def __call__(self, node: Any, ask: bool) -> bool:
        try:
            return self.wants(node) if ask else self.collect(node)
        except Exception as error:
            self.error = self.error or error
            return True  # the decode goes on; the caller raises the error after it

    def wants(self, node: Any) -> bool:
        weight, activations = node.src(0), node.src(1)
        if weight is None or activations is None or activations.type != self.f32:
            return False
        if node.op == self.mul_mat_id:
            return True
        return node.op == self.mul_mat and activations.ne[1] >= MIN_ROWS and weight_name(weight.name).startswith("blk.")

    def collect(self, node: Any) -> bool:
        weight, activations = node.src(0), node.src(1)
        name = weight_name(weight.name)
        x = activations.array(np.float32)
        if node.op == self.mul_mat_id:
            ids = node.src(2).array(np.int32)[0, 0]  # (tokens, experts used)
            add_experts(self.entries, name, x[0], ids, weight.ne[2])
        else:
            add_dense(self.entries, name, x, (weight.ne[2], weight.ne[3]))
        return True


def batch_tokens(n_vocab: int) -> int:
    """Tokens per batch: the most (a power of two, up to a chunk) whose logits fit OUTPUT_BUDGET, never under
    MIN_ROWS."""
    tokens = CHUNK_TOKENS
    while tokens > MIN_ROWS and tokens * n_vocab * 4 > OUTPUT_BUDGET:
        tokens //= 2
    return tokens


# --- the file ---------------------------------------------------------------------------------------------------------


def write_imatrix(data: Imatrix, path: Path) -> Path:
    """Write `data` at `path` in llama.cpp's GGUF imatrix format, under a temporary name renamed once complete."""
    partial = path.with_name(path.name + ".partial")
    try:
        _write_gguf(data, partial)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _write_gguf(data: Imatrix, path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(path, arch="imatrix")
    writer.kv_data[0].pop(gguf.Keys.General.ARCHITECTURE, None)  # llama-imatrix writes none: the file is no model
    writer.add_type(gguf.GGUFType.IMATRIX)
    writer.add_array(gguf.Keys.IMatrix.DATASETS, list(data.datasets))
    writer.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, data.chunk_count)
    writer.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, data.chunk_size)
    for name in sorted(data.entries):
        entry = data.entries[name]
        counts = entry.counts.astype(np.float32)
        sums = entry.sums.astype(np.float32).reshape(len(counts), -1)  # numpy order: ne = [columns, counts]
        writer.add_tensor(f"{name}.in_sum2", sums)
        writer.add_tensor(f"{name}.counts", counts.reshape(len(counts), 1))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def read_imatrix(path: Path) -> Imatrix:
    """An importance matrix from `path`: llama.cpp's GGUF format, or its legacy binary one. ModelFileError for a
    missing or unreadable file, EdgellmError for one that holds no importance matrix."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file", path, "missing") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not an importance matrix", path, "directory") from None
    except OSError as error:
        raise ModelFileError(f"{path}: {error.strerror or error}", path, "unreadable") from None
    try:
        data = _read_gguf(path) if magic == b"GGUF" else _read_legacy(path)
    except (ValueError, KeyError, IndexError, struct.error, OSError) as error:
        raise EdgellmError(reason("not_an_imatrix", path=str(path), why=str(error) or type(error).__name__)) from None
    if not data.entries:
        raise EdgellmError(reason("not_an_imatrix", path=str(path), why="it holds no matrix"))
    return data


def _read_gguf(path: Path) -> Imatrix:
    import gguf

    try:  # edgellm's own header reader first: it skips a model's vocabulary, which gguf's reader parses in full
        header = read_header(path)
    except GGUFError as error:
        raise ValueError(str(error)) from None
    kind = header.metadata.get(gguf.Keys.General.TYPE)
    if kind is not None and kind != gguf.GGUFType.IMATRIX:
        raise ValueError(f"its general.type is {kind!r}, not 'imatrix'")
    if not any(tensor.name.endswith(".in_sum2") for tensor in header.tensors):
        raise ValueError("it holds no matrix")
    reader = gguf.GGUFReader(path)
    fields = reader.fields
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ValueError(f"{tensor.name} is {tensor.tensor_type.name}, not F32")
        if tensor.name.endswith(".in_sum2"):
            sums[tensor.name.removesuffix(".in_sum2")] = np.array(tensor.data, dtype=np.float64).reshape(-1)
        elif tensor.name.endswith(".counts"):
            counts[tensor.name.removesuffix(".counts")] = np.array(tensor.data, dtype=np.float64).reshape(-1)
    if set(sums) != set(counts):
        raise ValueError(f"sums and counts do not pair up ({', '.join(sorted(set(sums) ^ set(counts))[:3])})")
    entries = {}
    for name, values in sums.items():
        n = len(counts[name])
        if n == 0 or len(values) % n:
            raise ValueError(f"{name}: {len(values)} sums for {n} counts")
        entries[name] = Entry(values.reshape(n, -1), np.rint(counts[name]).astype(np.int64))

    def number(key: str) -> int:
        found = fields.get(key)
        return int(found.contents()) if found is not None else 0

    datasets = fields.get(gguf.Keys.IMatrix.DATASETS)
    return Imatrix(
        entries,
        tuple(datasets.contents()) if datasets is not None else (),
        number(gguf.Keys.IMatrix.CHUNK_COUNT),
        number(gguf.Keys.IMatrix.CHUNK_SIZE),
    )


def _read_legacy(path: Path) -> Imatrix:
    """llama-imatrix's `.dat` format: entries of (name, calls, values: sums/tokens×calls), then optionally the chunk
    count and the dataset's name. Read as one count of `calls` per entry, so the mean comes out as llama.cpp's."""
    raw = path.read_bytes()
    at = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal at
        values = struct.unpack_from(fmt, raw, at)
        at += struct.calcsize(fmt)
        return values

    (n_entries,) = take("<i")
    if n_entries < 1 or n_entries > 1_000_000:
        raise ValueError("it is neither a GGUF nor a legacy imatrix file")
    entries = {}
    for _ in range(n_entries):
        (length,) = take("<i")
        if not 0 < length < 4096:
            raise ValueError("a name of impossible length")
        name = raw[at : at + length].decode()
        at += length
        calls, n_values = take("<ii")
        if n_values < 1:
            raise ValueError(f"{name}: no values")
        values = np.frombuffer(raw, dtype="<f4", count=n_values, offset=at).astype(np.float64)
        at += 4 * n_values
        entries[name] = Entry(values.reshape(1, -1), np.array([calls], dtype=np.int64))
    chunks, datasets = 0, tuple[str, ...]()
    if len(raw) - at >= 4:
        (chunks,) = take("<i")
        if len(raw) - at >= 4:
            (length,) = take("<i")
            if 0 < length <= len(raw) - at:
                datasets = (raw[at : at + length].decode(errors="replace"),)
    return Imatrix(entries, datasets, chunks, 0)


def importance(data: Imatrix) -> dict[str, np.ndarray]:
    """What the quantizer takes: per matrix, each column's mean square activation (sums/count per matrix), 1 where
    a matrix saw no token; float32, the matrices one after another (as llama-quantize's load_imatrix gives them)."""
    weights = {}
    for name, entry in data.entries.items():
        counts = entry.counts.astype(np.float64)[:, None]
        if len(counts) != len(entry.sums):  # one count for several matrices (an old file): each saw them all
            counts = np.broadcast_to(counts[:1], (len(entry.sums), 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(counts > 0, entry.sums / np.where(counts > 0, counts, 1), 1.0)
        weights[name] = np.ascontiguousarray(mean, dtype=np.float32).reshape(-1)
    return weights


def check_matches(data: Imatrix, model: Path, header: GGUFHeader | None = None) -> None:
    """EdgellmError unless every matrix of `data` is a weight of `model` with as many values (columns × experts) as
    llama.cpp's quantizer will ask of it: a matrix made on another model is refused before anything is written."""
    header = header or read_header(model)
    shapes = {tensor.name: tensor.shape for tensor in header.tensors}
    for name in sorted(data.entries):
        size = data.entries[name].sums.size
        shape = shapes.get(name)
        if shape is None:
            raise EdgellmError(
                reason("imatrix_mismatch", model=str(model), tensor=name, why="the model has no such weight")
            )
        wanted = shape[0] * (shape[2] if len(shape) > 2 else 1)
        if size != wanted:
            raise EdgellmError(
                reason("imatrix_mismatch", model=str(model), tensor=name, why=f"{size} values where it has {wanted}")
            )


# --- what --imatrix names ---------------------------------------------------------------------------------------------


def imatrix_kind(wanted: str) -> tuple[str, Path | None]:
    """What `--imatrix` names: "" the shipped calibration text, ("text", None); a matrix file (a GGUF, or a `.imatrix`
    or `.dat` file of the legacy format), ("matrix", path); any other file a text to collect on, ("text", path).
    EdgellmError when it names no file."""
    if not wanted:
        return "text", None
    path = Path(wanted).expanduser()
    if not path.is_file():
        raise EdgellmError(reason("imatrix_text_missing", text=str(path)))
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise EdgellmError(
            f"{path}: cannot be read ({error.strerror or error}); give a readable file to --imatrix"
        ) from None
    return ("matrix", path) if magic == b"GGUF" or path.suffix in (SUFFIX, ".dat") else ("text", path)


@contextlib.contextmanager
def prepared_imatrix(
    model: Path,
    wanted: str,
    work: Path,
    report: Report = ignore,
    threads: int | None = None,
    cancel: threading.Event | None = None,
    chunks: int | None = None,
    save: Path | None = None,
) -> Iterator[Path]:
    """The importance matrix file `wanted` (see imatrix_kind) names for `model`, for the while: a matrix file checked
    against the model, or one collected on the text into `save` (kept) or a temporary file in the folder `work`
    (removed afterwards)."""
    kind, path = imatrix_kind(wanted)
    if kind == "matrix":
        assert path is not None
        check_matches(read_imatrix(path), model)
        yield path
        return
    matrix = save if save is not None else work / f".{model.stem}.{os.getpid()}{SUFFIX}"
    try:
        with contextlib.ExitStack() as stack:
            text = path if path is not None else stack.enter_context(calibration_text())
            collect_imatrix(model, text, matrix, report, threads, cancel, chunks)
        yield matrix
    finally:
        if save is None:
            matrix.unlink(missing_ok=True)


# --- collecting, in a child process -----------------------------------------------------------------------------------


@contextlib.contextmanager
def calibration_text() -> Iterator[Path]:
    """The calibration text shipped with edgellm (edgellm/data/eval), as a file for the while."""
    with as_file(data_dir() / "eval" / CALIBRATION) as path:
        yield Path(path)


def collect_imatrix(
    model: Path,
    text: Path,
    target: Path,
    report: Report = ignore,
    threads: int | None = None,
    cancel: threading.Event | None = None,
    chunks: int | None = None,
) -> Path:
    """Collect the importance matrix of the GGUF `model` on the text file `text` (all its whole chunks, or the first
    `chunks`) into `target`; returns `target`. Progress by chunk. One-line errors for a model or text that cannot
    be used, a text shorter than one chunk; setting `cancel` stops it with Cancelled, leaving no file."""
    try:
        header = read_header(model)
    except GGUFError as error:
        raise ModelFileError(f"{model}: {error}", model, error.problem, way_out=f"model_{error.problem}") from None
    if not text.is_file():
        raise EdgellmError(reason("imatrix_text_missing", text=str(text)))
    vocab = header.metadata.get("tokenizer.ggml.tokens")
    n_vocab = getattr(vocab, "count", None) or len(header.small_arrays.get("tokenizer.ggml.tokens", ())) or 2**18
    partial = target.with_name(target.name + ".partial")
    command = module_command(
        "edgellm.convert.imatrix",
        str(model),
        str(text),
        str(partial),
        str(threads or os.cpu_count() or 1),
        str(batch_tokens(n_vocab)),
        str(chunks or 0),
        text.name,
    )
    tail: deque[str] = deque(maxlen=5)
    said: dict[str, list[str]] = {}
    total = 0
    with child_writing(command, partial, target, cancel) as child:
        assert child.stdout is not None  # stdout=PIPE
        for raw in child.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("@"):
                kind, _, rest = line[1:].partition(" ")
                said[kind] = rest.split(" ", 1) if kind == "error" else rest.split()
                if kind == "chunk":
                    done, total = int(said["chunk"][0]), int(said["chunk"][1])
                    report(Progress("imatrix", done, total, unit="chunks"))
            elif line:
                tail.append(line)
        code = child.wait()
        check_cancel(cancel, f"collecting the importance matrix of {model.name}")
        if "short" in said:
            raise EdgellmError(
                reason("imatrix_text_too_short", text=str(text), tokens=int(said["short"][0]), needed=CHUNK_TOKENS)
            )
        if code != 0:
            why = " ".join(said["error"]) if "error" in said else (tail[-1] if tail else f"exit {code}")
            raise EdgellmError(f"llama.cpp could not collect the importance matrix of {model.name} ({why})")
    report(Progress("imatrix", total, total, finished=True, unit="chunks"))
    return target


def _child(model: str, text: str, target: str, threads: int, n_batch: int, chunks: int, dataset: str) -> int:
    """In the child process: tokenize the text, decode it chunk by chunk through the collector, write the file.
    Says `@chunk DONE TOTAL` as it goes, `@short TOKENS` for a text shorter than a chunk, `@error WHY` on failure."""
    from edgellm.engine import compat

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    log: deque[str] = deque(maxlen=20)
    kept = compat.silence_log(log.append)
    try:
        ops = compat.op_numbers("MUL_MAT", "MUL_MAT_ID")
        collector = Collector(ops["MUL_MAT"], ops["MUL_MAT_ID"], compat.GGML_TYPE_F32)
        words = Path(text).read_text(encoding="utf-8", errors="replace")
        claimed = frozenset(ops.values())
        with compat.eval_model(Path(model), CHUNK_TOKENS, n_batch, threads, collector, claimed) as llm:
            tokens = llm.tokenize(words)
            total = len(tokens) // CHUNK_TOKENS
            if total == 0:
                say(f"@short {len(tokens)}")
                return 3
            total = min(total, chunks) if chunks > 0 else total
            say(f"@chunk 0 {total}")
            for index in range(total):
                chunk = tokens[index * CHUNK_TOKENS : (index + 1) * CHUNK_TOKENS]
                if llm.bos is not None:
                    chunk[0] = llm.bos
                llm.clear()
                for start in range(0, CHUNK_TOKENS, n_batch):
                    llm.decode(chunk[start : start + n_batch], start)
                    if collector.error is not None:
                        raise collector.error
                say(f"@chunk {index + 1} {total}")
        _write_gguf(Imatrix(collector.entries, (dataset,), total, CHUNK_TOKENS), Path(target))
    except Exception as error:
        last = "".join(log).strip().splitlines()[-1:] or [""]
        say(f"@error {error}" + (f" ({last[0]})" if last[0] and last[0] not in str(error) else ""))
        return 1
    del kept
    return 0


if __name__ == "__main__":
    arguments = sys.argv[1:]
    sys.exit(
        _child(
            arguments[0],
            arguments[1],
            arguments[2],
            int(arguments[3]),
            int(arguments[4]),
            int(arguments[5]),
            arguments[6],
        )
    )
