"""Convert a Hugging Face safetensors checkpoint to a GGUF file llama.cpp loads, one slab of rows in memory at a time.

`convert_checkpoint(folder, out, outtype)` checks everything first (the weights' headers, config.json, the
tokenizer, every tensor's presence and shape, free disk), then writes `out.name + ".partial"` beside `out`: the
header, metadata and tensor infos, then each tensor's data as it is read, converted and written; the finished file
is renamed to `out`. Any failure (or Ctrl-C) removes the partial file, so `out` either is whole or does not exist.

A matrix goes through in slabs of rows (about SLAB_BYTES of float32, whole q/k heads), each read, transformed,
converted and written before the next is read, in buffers reused from slab to slab: memory holds one slab, never a
whole tensor, so peak RSS stays the same whatever the model's size. bf16 -> f16 reads straight to float16.

Types: f32, f16, bf16 and q8_0 (gguf's numpy quantizer) for 2-D weights; 1-D tensors (norms, biases, rope
factors) are always F32, and a Q8_0 row that 32 does not divide falls back to F16, as convert_hf_to_gguf.py does.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import gguf
import numpy as np

from edgellm.convert import architectures
from edgellm.convert.hf_config import HFConfig, read_config
from edgellm.convert.safetensors import Checkpoint
from edgellm.convert.vocab import Vocab, read_vocab, write_vocab
from edgellm.errors import DiskError, EdgellmError, ModelFileError, check_cancel
from edgellm.events import Progress, Report, ignore

Q = gguf.GGMLQuantizationType
OUTTYPES = {
    "f32": (Q.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
PROGRESS_INTERVAL_S = 0.1  # at most 10 progress events a second
HEADER_SLACK = 1 << 20  # metadata besides the vocabulary (chat template, keys), generously
SLAB_BYTES = 16 << 20  # float32 bytes of one slab of rows read, converted and written at a time
READ_CHUNK = 1 << 20  # scratch of one read within a slab (small: it stays in the CPU's cache)


@dataclass(frozen=True)
class _Job:
    tensor: architectures.PlannedTensor
    qtype: gguf.GGMLQuantizationType
    nbytes: int


def convert_checkpoint(
    folder: Path, out: Path, outtype: str = "f16", report: Report = ignore, cancel: threading.Event | None = None
) -> Path:
    """Convert the checkpoint in `folder` to the GGUF `out` at `outtype`; returns `out`. Setting `cancel` stops it
    between slabs with Cancelled, leaving no file.

    ModelFileError (before anything is written) for a broken or incomplete checkpoint, DiskError when `out`'s
    folder lacks the space, EdgellmError for an unknown `outtype`.
    """
    folder, out = Path(folder), Path(out)
    key = outtype.lower().replace("-", "_")
    if key not in OUTTYPES:
        raise EdgellmError(
            f"{outtype!r} is not a type convert writes: use one of {', '.join(OUTTYPES)} "
            "(quantize the result for K-quants)"
        )
    wanted, file_type = OUTTYPES[key]
    checkpoint = Checkpoint.open(folder)
    config = read_config(checkpoint.folder)
    vocab = read_vocab(checkpoint.folder, config.n_vocab)
    if config.architecture == "gemma3" and vocab.model == "llama":
        vocab = replace(vocab, add_space_prefix=False)  # as convert_hf_to_gguf.py writes Gemma 3's SentencePiece
    jobs = _plan(checkpoint, config, wanted)
    header = (
        sum(len(t.encode("utf-8")) + 8 + 4 + 4 for t in vocab.tokens)
        + sum(len(m.encode("utf-8")) + 8 for m in vocab.merges)
        + len(vocab.chat_template or "")
        + HEADER_SLACK
    )
    total = header + sum(_padded(job.nbytes) for job in jobs)
    out.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out.parent).free
    if free < total:
        raise DiskError(
            f"{out.parent}: {free / 1e9:.2f} GB free, the GGUF needs about {total / 1e9:.2f} GB: free "
            "some space or write it elsewhere",
            out.parent,
        )
    partial = out.with_name(out.name + ".partial")
    try:
        _write(checkpoint, config, vocab, jobs, partial, int(file_type), total, report, cancel)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def _padded(n: int) -> int:
    return -(-n // gguf.GGUF_DEFAULT_ALIGNMENT) * gguf.GGUF_DEFAULT_ALIGNMENT


def _plan(checkpoint: Checkpoint, config: HFConfig, wanted: gguf.GGMLQuantizationType) -> list[_Job]:
    """Every tensor to write with its type and size; ModelFileError for a missing, unknown or misshapen one."""
    sources, unknown = architectures.map_names(config, checkpoint.names())
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise ModelFileError(
            f"{checkpoint.folder}: tensor {unknown[0]}{more} is not part of a {config.hf_architecture}"
            " that llama.cpp knows: the weights do not match config.json",
            checkpoint.folder,
            "corrupt",
        )
    planned, missing = architectures.plan_tensors(config, sources)
    if missing:
        name = architectures.expected_source(config, missing[0])
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelFileError(
            f"{checkpoint.folder}: the checkpoint has no tensor {name}{more}, which a "
            f"{config.hf_architecture} needs: download the checkpoint again",
            checkpoint.folder,
            "corrupt",
        )
    jobs = []
    for tensor in planned:
        if tensor.source is not None:
            info = checkpoint.info(tensor.source)
            if info.shape != tensor.source_shape:
                raise ModelFileError(
                    f"{info.file}: tensor {info.name} has shape {list(info.shape)}, but config.json "
                    f"implies {list(tensor.source_shape)}: the weights do not match the config",
                    info.file,
                    "corrupt",
                )
            if info.dtype not in ("F32", "F16", "BF16", "F64"):
                raise ModelFileError(
                    f"{info.file}: tensor {info.name} is stored as {info.dtype}, not floating point: "
                    "convert reads F32, F16 and BF16 checkpoints",
                    info.file,
                    "unsupported",
                )
        qtype = wanted if len(tensor.shape) >= 2 else Q.F32
        if qtype == Q.Q8_0 and tensor.shape[0] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0]:
            qtype = Q.F16
        byte_shape = (
            gguf.quant_shape_to_byte_shape(tensor.source_shape, qtype) if qtype in (Q.Q8_0,) else tensor.source_shape
        )
        itemsize = 1 if qtype == Q.Q8_0 else 4 if qtype == Q.F32 else 2
        jobs.append(_Job(tensor, qtype, math.prod(byte_shape) * itemsize))
    return jobs


def add_general(writer: gguf.GGUFWriter, folder: Path, n_params: int, tokens: tuple[str, ...]) -> None:
    """The `general.*` keys as llama.cpp's converter writes them, through the same gguf `Metadata`: name, basename,
    finetune, version, size label, licence, tags and base models from the folder's README.md model card and its
    name; the size label from the parameter count where neither gives one; the type and the quantization version."""
    try:
        metadata = gguf.Metadata.load(None, folder, None, n_params)
    except Exception:  # a model card gguf cannot read (broken YAML front matter, say) names nothing
        metadata = gguf.Metadata()
    if metadata.name is None:
        metadata.name = folder.name
    if metadata.size_label is None and n_params > 0:
        metadata.size_label = gguf.size_label(n_params, n_params, 0, 0)  # dense: every parameter is shared
    writer.add_type(gguf.GGUFType.MODEL)
    metadata.set_gguf_meta_model(writer)
    if not loadable_name(metadata.name, tokens):
        # the one key llama.cpp's loader reads a meaning into; Metadata writes it unconditionally, so it is taken
        # back out of the writer's key-value table (its first shard's: conversions write one file)
        writer.kv_data[0].pop(gguf.Keys.General.NAME)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def loadable_name(name: str, tokens: tuple[str, ...]) -> bool:
    """Whether `general.name` may be `name` (llama.cpp's converter writes it regardless): llama.cpp sets Phi-3 token
    attributes for any model whose name holds "phi3" or "phi-3", and fails to load one whose vocabulary lacks those
    tokens (llama-vocab.cpp, token_to_id.at)."""
    if "phi3" not in name.lower() and "phi-3" not in name.lower():
        return True
    return {"</s>", "<unk>", "<s>", "<|endoftext|>"} <= set(tokens)


def _convert(array: np.ndarray, qtype: gguf.GGMLQuantizationType, out: np.ndarray | None = None) -> np.ndarray:
    """`array` as `qtype`'s bytes; F16 and F32 go into `out` (a uint8 buffer large enough) when it is given."""
    if qtype in (Q.F32, Q.F16):
        dtype = np.dtype(np.float32 if qtype == Q.F32 else np.float16)
        if array.dtype == dtype and array.flags.c_contiguous:
            return array
        if out is None:
            return np.ascontiguousarray(array, dtype=dtype)
        result = out[: array.size * dtype.itemsize].view(dtype).reshape(array.shape)
        np.copyto(result, array, casting="same_kind")
        return result
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)


def _slabs(job: _Job) -> list[tuple[int, int]]:
    """The (start, stop) row ranges a tensor is converted in: one for a vector or a generated tensor, else about
    SLAB_BYTES of float32 each, a multiple of the transform's row block."""
    shape = job.tensor.source_shape
    if job.tensor.source is None or len(shape) < 2:
        return [(0, shape[0] if shape else 0)]
    block = max(1, job.tensor.row_block)
    row_bytes = math.prod(shape[1:]) * 4
    rows = max(block, SLAB_BYTES // max(1, row_bytes * block) * block)
    return [(start, min(start + rows, shape[0])) for start in range(0, shape[0], rows)]


def _write(
    checkpoint: Checkpoint,
    config: HFConfig,
    vocab: Vocab,
    jobs: list[_Job],
    path: Path,
    file_type: int,
    total: int,
    report: Report,
    cancel: threading.Event | None = None,
) -> None:
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[architectures.GGUF_ARCH[config.architecture]])
    try:
        add_general(writer, checkpoint.folder, sum(math.prod(job.tensor.shape) for job in jobs), vocab.tokens)
        architectures.add_metadata(writer, config, file_type)
        write_vocab(writer, vocab)
        for job in jobs:
            writer.add_tensor_info(
                job.tensor.name, job.tensor.source_shape, np.dtype(np.float32), job.nbytes, raw_dtype=job.qtype
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        assert writer.fout is not None  # write_header_to_file opened it
        fout = writer.fout[0]
        done = fout.tell()
        last = time.monotonic()
        report(Progress(task="convert", done=done, total=total))
        plans = [(job, _slabs(job)) for job in jobs]
        largest = max(
            (
                math.prod(job.tensor.source_shape[1:]) * (stop - start) * 4
                for job, slabs in plans
                if job.tensor.source is not None
                for start, stop in slabs
            ),
            default=0,
        )
        source_buffer = np.empty(largest, np.uint8)  # one slab as float32, reused
        out_buffer = np.empty(largest, np.uint8)  # one slab converted (f16, f32), reused
        for job, slabs in plans:
            # the data of each tensor starts aligned, as GGUFWriter.write_tensor_data places it
            writer.write_padding(fout, fout.tell())
            written = 0
            for start, stop in slabs:
                check_cancel(cancel, "the conversion")
                if job.tensor.source is None:
                    source = None
                elif job.qtype == Q.F16 and job.tensor.moves_only:  # read as float16 at once: no float32 pass
                    source = checkpoint.read_rows(
                        job.tensor.source, start, stop, np.float16, buffer=source_buffer, chunk_bytes=READ_CHUNK
                    )
                else:
                    source = checkpoint.read_rows(
                        job.tensor.source, start, stop, np.float32, buffer=source_buffer, chunk_bytes=READ_CHUNK
                    )
                data = _convert(job.tensor.transform(source), job.qtype, out_buffer)
                del source
                fout.write(data.reshape(-1).view(np.uint8).data)  # a memoryview of its bytes
                written += data.nbytes
                del data
                now = time.monotonic()
                if now - last >= PROGRESS_INTERVAL_S:
                    report(Progress(task="convert", done=min(done + written, total), total=total))
                    last = now
            if written != job.nbytes:
                raise AssertionError(f"{job.tensor.name}: {written} bytes, {job.nbytes} planned")
            writer.write_padding(fout, written)
            done += _padded(job.nbytes)
        fout.flush()
        os.fsync(fout.fileno())
    finally:
        writer.close()
    size = path.stat().st_size
    report(Progress(task="convert", done=size, total=size, finished=True))
