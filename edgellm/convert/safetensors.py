"""A strict, torch-free safetensors reader that checks a whole checkpoint first, then reads one tensor at a time.

Every shard's header is parsed and checked (shards present, offsets inside the file, sizes matching shapes,
dtypes known, no tensor twice, the index agreeing with the shards) before any tensor is read, so a bad checkpoint
fails before conversion writes anything. Tensors are read with `readinto` into numpy buffers, never memory-mapped:
mapped pages that were read stay in RSS, and on a 4 GB board the model must stream through, not pile up.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from edgellm.errors import ModelFileError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit
CHUNK_BYTES = 32 * 1024 * 1024  # the most scratch memory one read uses besides its output array
SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<part>\d+)-of-(?P<total>\d+)\.safetensors$")
LFS_POINTER = b"version https://git-lfs"

# safetensors dtype -> numpy dtype of the stored bytes (little-endian); BF16 is kept as its raw 16 bits.
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "F64": "<f8",
        "F32": "<f4",
        "F16": "<f2",
        "BF16": "<u2",
        "I64": "<i8",
        "I32": "<i4",
        "I16": "<i2",
        "I8": "i1",
        "U64": "<u8",
        "U32": "<u4",
        "U16": "<u2",
        "U8": "u1",
        "BOOL": "?",
    }.items()
}
BF16_RAW = np.dtype("<u2")
BF16_STEP = 1 << 16  # values converted bf16 -> f16 at a time (their scratch stays in the CPU's cache)


@dataclass(frozen=True)
class CheckpointTensor:
    """One stored tensor: where its bytes lie (`offset` from the start of `file`) and what they hold."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    offset: int
    nbytes: int

    @property
    def n_elements(self) -> int:
        """How many values the tensor holds."""
        return math.prod(self.shape)


class Checkpoint:
    """The safetensors weights of one checkpoint folder, checked whole; `read` gives one tensor as numpy."""

    def __init__(self, folder: Path, files: list[Path], tensors: list[CheckpointTensor]) -> None:
        self.folder, self.files, self.tensors = folder, tuple(files), tuple(tensors)
        self._by_name = {info.name: info for info in tensors}

    @classmethod
    def open(cls, folder: Path | str) -> Checkpoint:
        """Find the weights in `folder` (or a lone .safetensors file), parse every header and check it all."""
        folder = Path(folder)
        if folder.is_file() and folder.suffix == ".safetensors":
            files, weight_map = [folder], None
            folder = folder.parent
        elif not folder.is_dir():
            raise ModelFileError(
                f"{folder}: no such checkpoint folder: point at a folder with config.json and *.safetensors weights",
                folder,
                "missing",
            )
        else:
            files, weight_map = _find_weights(folder)
        tensors: list[CheckpointTensor] = []
        where: dict[str, Path] = {}
        for file in files:
            for info in _read_header(file):
                if info.name in where:
                    raise ModelFileError(
                        f"{file}: tensor {info.name} is stored twice, here and in "
                        f"{where[info.name].name}: download the checkpoint again",
                        file,
                        "corrupt",
                    )
                where[info.name] = file
                tensors.append(info)
        if weight_map is not None:
            _check_index(folder / INDEX_FILE, weight_map, where)
        return cls(folder, files, tensors)

    def names(self) -> list[str]:
        """The tensor names in file order (shard by shard, by position in the file)."""
        return [info.name for info in self.tensors]

    def info(self, name: str) -> CheckpointTensor:
        """The stored tensor called `name`."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no tensor {name!r} in the checkpoint at {self.folder}") from None

    @property
    def total_bytes(self) -> int:
        """The size of all tensor data, as stored."""
        return sum(info.nbytes for info in self.tensors)

    def output_dtype(self, info: CheckpointTensor, out_dtype: DTypeLike | None = None) -> np.dtype:
        """The dtype `read` returns: `out_dtype`, else float32 for BF16 and the stored dtype for the rest."""
        if out_dtype is not None:
            return np.dtype(out_dtype)
        return np.dtype(np.float32) if info.dtype == "BF16" else DTYPES[info.dtype].newbyteorder("=")

    def read(
        self,
        name: str,
        out_dtype: DTypeLike | None = None,
        *,
        buffer: np.ndarray | None = None,
        chunk_bytes: int | None = None,
    ) -> np.ndarray:
        """Read one tensor, converted to `out_dtype` (BF16: exactly to float32, or np.uint16 for its raw bits).

        The data is read in chunks of at most `chunk_bytes` of scratch (CHUNK_BYTES by default), so a tensor costs
        its output array and one chunk. `buffer` (a uint8 array at least as large as the output) is used for the
        output instead of a new array; the result is then a view of it, valid until the buffer is reused.
        """
        info = self.info(name)
        out_dtype = self.output_dtype(info, out_dtype)
        out = _output_array(info, out_dtype, buffer)
        if info.nbytes == 0:
            return out
        with _open(info.file) as f:
            f.seek(info.offset)
            _fill(f, out.reshape(-1), info, chunk_bytes)
        return out

    def read_rows(
        self,
        name: str,
        start: int,
        stop: int,
        out_dtype: DTypeLike | None = None,
        *,
        buffer: np.ndarray | None = None,
        chunk_bytes: int | None = None,
    ) -> np.ndarray:
        """Rows `start:stop` (along the first axis) of one tensor, converted as `read` does, without reading the
        rest: a slab of a large tensor costs its own size, not the tensor's. `buffer` as for `read`."""
        info = self.info(name)
        if not info.shape:
            raise ValueError(f"{info.name} is a scalar: it has no rows")
        rows = info.shape[0]
        if not 0 <= start <= stop <= rows:
            raise ValueError(f"rows {start}:{stop} are not inside the {rows} rows of {info.name}")
        out_dtype = self.output_dtype(info, out_dtype)
        shape = (stop - start, *info.shape[1:])
        count = math.prod(shape)
        if buffer is None:
            out = np.empty(shape, out_dtype)
        else:
            nbytes = count * out_dtype.itemsize
            if buffer.dtype != np.uint8 or buffer.ndim != 1 or buffer.size < nbytes:
                raise ValueError(f"buffer must be a 1-D uint8 array of at least {nbytes} bytes for {info.name}")
            out = buffer[:nbytes].view(out_dtype).reshape(shape)
        if count == 0:
            return out
        per_row = math.prod(info.shape[1:]) * DTYPES[info.dtype].itemsize
        with _open(info.file) as f:
            f.seek(info.offset + start * per_row)
            _fill(f, out.reshape(-1), info, chunk_bytes)
        return out


def _find_weights(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The weight files of a checkpoint folder, and the index's weight_map when there is one."""
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE], None
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = _read_index(index)
        files = []
        for shard in sorted(set(weight_map.values())):
            path = folder / shard
            if Path(shard).name != shard or not path.is_file():
                raise ModelFileError(
                    f"{path}: shard {shard} named in {INDEX_FILE} is missing: download the "
                    "checkpoint again, every shard",
                    path,
                    "missing",
                )
            files.append(path)
        return files, weight_map
    found = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if len(found) == 1:
        return found, None
    if len(found) > 1:
        parts = [m for m in (SHARD_RE.match(p.name) for p in found) if m is not None]
        if (
            len(parts) == len(found)
            and len({(m["stem"], int(m["total"])) for m in parts}) == 1
            and sorted(int(m["part"]) for m in parts) == list(range(1, int(parts[0]["total"]) + 1))
        ):
            part_of = {p: int(m["part"]) for p, m in zip(found, parts, strict=True)}  # every name matched
            return sorted(found, key=lambda p: part_of[p]), None
        names = ", ".join(p.name for p in found[:4]) + (", …" if len(found) > 4 else "")
        raise ModelFileError(
            f"{folder}: several .safetensors files ({names}) and no {INDEX_FILE}: add the index "
            "from the model's repo, or keep only the model's weights",
            folder,
            "ambiguous",
        )
    hint = (
        " (it holds PyTorch .bin weights: load and save them with save_pretrained(safe_serialization=True))"
        if any(folder.glob("pytorch_model*.bin"))
        else ""
    )
    raise ModelFileError(
        f"{folder}: no {SINGLE_FILE} or {INDEX_FILE}{hint}: point at a Hugging Face checkpoint "
        "folder with safetensors weights",
        folder,
        "missing",
    )


def _read_index(index: Path) -> dict[str, str]:
    """The weight_map of a model.safetensors.index.json: tensor name -> shard file name."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise ModelFileError(
            f"{index}: not a readable safetensors index ({e}): download it again", index, "corrupt"
        ) from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelFileError(
            f"{index}: no weight_map of tensor names to shard files: download it again", index, "corrupt"
        )
    return weight_map


def _check_index(index: Path, weight_map: dict[str, str], where: dict[str, Path]) -> None:
    """The index and the shards must name the same tensors in the same files."""
    for name, file in where.items():
        if name not in weight_map:
            raise ModelFileError(
                f"{file}: tensor {name} is not in {INDEX_FILE}: the index and the shards do not "
                "match; download the checkpoint again",
                file,
                "corrupt",
            )
        if weight_map[name] != file.name:
            raise ModelFileError(
                f"{file}: tensor {name} is here, but {INDEX_FILE} puts it in {weight_map[name]}: "
                "download the checkpoint again",
                file,
                "corrupt",
            )
    for name, shard in weight_map.items():
        if name not in where:
            raise ModelFileError(
                f"{index.parent / shard}: has no tensor {name}, which {INDEX_FILE} puts there: "
                "download the checkpoint again",
                index.parent / shard,
                "corrupt",
            )


def _open(path: Path) -> io.FileIO:
    """Open a weight file unbuffered for reading; a failure is a ModelFileError."""
    try:
        return open(path, "rb", buffering=0)
    except PermissionError:
        raise ModelFileError(f"{path}: permission denied: make the file readable", path, "permission") from None
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing: download the checkpoint again", path, "missing") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot be read ({e.strerror})", path, "corrupt") from None


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object hook that refuses a key given twice (json.loads would keep the last silently)."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"{key} is listed twice")
        out[key] = value
    return out


def _read_header(file: Path) -> list[CheckpointTensor]:
    """Parse and check one file's header: the tensors it holds, in data order, each inside the file."""
    with _open(file) as f:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(8)
        if head + f.read(len(LFS_POINTER) - 8) == LFS_POINTER:
            raise ModelFileError(
                f"{file}: a Git LFS pointer, not the weights: run `git lfs pull` in the folder, "
                "or download with `hf download`",
                file,
                "missing",
            )
        if len(head) < 8:
            raise ModelFileError(
                f"{file}: truncated: {size} bytes, too short for a safetensors header: download it again",
                file,
                "truncated",
            )
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES:
            raise ModelFileError(
                f"{file}: not a safetensors file (header length {length}): download it again", file, "corrupt"
            )
        if 8 + length > size:
            raise ModelFileError(
                f"{file}: truncated: its header needs {8 + length} bytes, the file has {size}: download it again",
                file,
                "truncated",
            )
        f.seek(8)
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelFileError(
            f"{file}: damaged safetensors header ({str(e).splitlines()[0]}): download it again", file, "corrupt"
        ) from None
    data_start = 8 + length
    tensors = [
        _tensor_info(file, name, entry, data_start, size) for name, entry in header.items() if name != "__metadata__"
    ]
    return sorted(tensors, key=lambda info: info.offset)


def _tensor_info(file: Path, name: str, entry: object, data_start: int, size: int) -> CheckpointTensor:
    """Check one header entry (dtype known, offsets inside the file and matching the shape) and describe it."""

    def bad(why: str, problem: str = "corrupt", way_out: str = "download it again") -> ModelFileError:
        return ModelFileError(f"{file}: tensor {name}: {why}: {way_out}", file, problem)

    if not isinstance(entry, dict):
        raise bad("its header entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise bad("no dtype")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise bad(f"bad shape {shape!r}")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(type(o) is int for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise bad(f"bad data_offsets {offsets!r}")
    if dtype not in DTYPES:
        way_out = (
            "convert the model's BF16 or F16 release instead"
            if dtype.startswith(("F8", "F6", "F4"))
            else "convert a F32, F16 or BF16 checkpoint of the model"
        )
        raise bad(
            f"dtype {dtype} cannot be converted (edgellm reads F32, F16, BF16, F64 and integer tensors)",
            "unsupported",
            way_out,
        )
    begin, end = offsets
    needed = math.prod(shape) * DTYPES[dtype].itemsize
    if end - begin != needed:
        raise bad(f"data_offsets span {end - begin} bytes, but shape {shape} of {dtype} needs {needed}")
    if data_start + end > size:
        raise bad(f"truncated: its data ends at byte {data_start + end}, the file has {size}", "truncated")
    return CheckpointTensor(name, dtype, tuple(shape), file, data_start + begin, needed)


def _output_array(info: CheckpointTensor, out_dtype: np.dtype, buffer: np.ndarray | None) -> np.ndarray:
    """The array a tensor is read into: a new one, or a view of `buffer`."""
    if buffer is None:
        return np.empty(info.shape, out_dtype)
    nbytes = info.n_elements * out_dtype.itemsize
    if buffer.dtype != np.uint8 or buffer.ndim != 1 or buffer.size < nbytes:
        raise ValueError(f"buffer must be a 1-D uint8 array of at least {nbytes} bytes for {info.name}")
    return buffer[:nbytes].view(out_dtype).reshape(info.shape)


def _fill(f: io.FileIO, flat: np.ndarray, info: CheckpointTensor, chunk_bytes: int | None) -> None:
    """Fill the contiguous 1-D `flat` with the next `flat.size` stored values of `info` from `f`, converted to its
    dtype through at most `chunk_bytes` of scratch (none when the stored dtype is the one asked for)."""
    src = DTYPES[info.dtype]
    if flat.dtype == src:  # stored as asked: straight into the output, no scratch
        _read_exact(f, flat, info)
        return
    if info.dtype == "BF16" and flat.dtype == np.float16:  # bit arithmetic, 3x numpy's float32 -> float16 cast
        step = max(1, (chunk_bytes or CHUNK_BYTES) // 4)  # 2 bytes of raw, at most 2 of scratch per value
        raw = np.empty(min(step, flat.size), src)
        for start in range(0, flat.size, step):
            n = min(step, flat.size - start)
            _read_exact(f, raw[:n], info)
            for at in range(0, n, BF16_STEP):
                _bf16_to_f16(raw[at : at + BF16_STEP][: n - at], flat[start + at : start + min(n, at + BF16_STEP)])
        return
    via_f32 = info.dtype == "BF16" and flat.dtype != np.float32
    per_element = src.itemsize + (4 if via_f32 else 0)
    step = max(1, (chunk_bytes or CHUNK_BYTES) // per_element)
    raw = np.empty(min(step, flat.size), src)
    f32 = np.empty(raw.size, np.float32) if via_f32 else None
    for start in range(0, flat.size, step):
        n = min(step, flat.size - start)
        _read_exact(f, raw[:n], info)
        if info.dtype != "BF16":
            np.copyto(flat[start : start + n], raw[:n], casting="same_kind")
        elif f32 is None:  # BF16 -> float32: the 16 bits are the top half of the float32
            np.left_shift(raw[:n], 16, out=flat[start : start + n].view(np.uint32), dtype=np.uint32)
        else:
            np.left_shift(raw[:n], 16, out=f32[:n].view(np.uint32), dtype=np.uint32)
            np.copyto(flat[start : start + n], f32[:n], casting="same_kind")


def _bf16_to_f16(raw: np.ndarray, out: np.ndarray) -> None:
    """bf16 bits (uint16) -> float16 in `out`, bit for bit what numpy's float32 -> float16 cast gives: a value in
    float16's normal range keeps its 7 mantissa bits (exact, only the exponent is rebiased); the rare rest
    (subnormal, zero, overflow, inf, NaN) goes through numpy's cast."""
    h = out.view(np.uint16)
    pre = np.bitwise_and(raw, np.uint16(0x7FFF))
    np.subtract(pre, np.uint16(113 << 7), out=pre)  # wraps: 0 <= pre < 30 << 7 exactly for float16's normal range
    odd = pre >= np.uint16(30 << 7)
    np.add(pre, np.uint16(1 << 7), out=h)  # exponent - 127 + 15, mantissa: the 15 low bits >> 3 of the float16
    np.left_shift(h, np.uint16(3), out=h)
    np.bitwise_or(h, np.bitwise_and(raw, np.uint16(0x8000), out=pre), out=h)
    n_odd = np.count_nonzero(odd)
    if not n_odd:
        return
    with np.errstate(over="ignore"):
        if n_odd > raw.size // 16:  # many (a block of zeros): the whole step through float32
            f32 = np.left_shift(raw, 16, dtype=np.uint32).view(np.float32)
            np.copyto(out, f32, casting="same_kind")
        else:
            idx = np.flatnonzero(odd)
            h[idx] = np.left_shift(raw[idx], 16, dtype=np.uint32).view(np.float32).astype(np.float16).view(np.uint16)


def _read_exact(f: io.FileIO, array: np.ndarray, info: CheckpointTensor) -> None:
    """Fill a contiguous array from the file's current position; a short read means the file shrank."""
    view = array.reshape(-1).view(np.uint8).data  # a memoryview of its bytes
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise ModelFileError(
                f"{info.file}: truncated while reading tensor {info.name} (the file changed "
                "after it was checked): download it again",
                info.file,
                "truncated",
            )
        done += n
