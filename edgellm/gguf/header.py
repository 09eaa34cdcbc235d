"""A fast, strict GGUF header reader: metadata and tensor table, arrays skipped by their length.

gguf's GGUFReader parses every vocabulary entry in Python (seconds on a 262k-token vocabulary);
this reader only walks string arrays and keeps the scalars, so a header check takes milliseconds.
A caller that needs one long array (the vocabulary's tokens) names it in `full_arrays` to have it read in full.
Every bad file comes out as a `GGUFError` naming what is wrong, before llama.cpp sees it.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_TENSORS = 1_000_000
MAX_METADATA = 100_000
MAX_DIMS = 4

# GGUF metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
SCALAR_FORMATS = {
    UINT8: "<B",
    INT8: "<b",
    UINT16: "<H",
    INT16: "<h",
    UINT32: "<I",
    INT32: "<i",
    FLOAT32: "<f",
    BOOL: "<?",
    UINT64: "<Q",
    INT64: "<q",
    FLOAT64: "<d",
}
SCALAR_SIZES = {kind: struct.calcsize(fmt) for kind, fmt in SCALAR_FORMATS.items()}

# ggml tensor type id -> (name, elements per block, bytes per block), from ggml.c's type traits.
# Q8_1 (9) is left out: it is an intermediate type of the CPU kernels and never stored in a file.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}


class GGUFError(Exception):
    """The file is not a GGUF llama.cpp can load; the message says why, `problem` names the kind of fault:
    missing, directory, permission, truncated (the header is cut short), incomplete (tensor data is missing),
    shards (a part of a split model alone), not-gguf or corrupt (the default)."""

    def __init__(self, message: str, problem: str = "corrupt") -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array whose values were skipped: element type and count."""

    item_type: int
    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: the first dimension is the contiguous one
    ggml_type: int
    offset: int  # relative to the start of the tensor data
    n_bytes: int


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    version: int
    metadata: dict[str, Any]  # scalars and strings; arrays as ArrayInfo (their values in small_arrays if read)
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    file_size: int
    small_arrays: dict[str, list[Any]] = field(default_factory=dict)  # short arrays, and those named in full_arrays

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def arch_value(self, key: str, default: Any = None) -> Any:
        """`{architecture}.{key}` from the metadata, e.g. arch_value("context_length")."""
        return self.metadata.get(f"{self.architecture}.{key}", default)


class _Cursor:
    """Reads little-endian values from a buffer, raising GGUFError at the end of the file."""

    __slots__ = ("buf", "pos", "size")

    def __init__(self, buf: Any, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.size = len(buf)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(f"truncated: the file ends inside {what}", "truncated")

    def scalar(self, kind: int, what: str) -> Any:
        n = SCALAR_SIZES[kind]
        self.need(n, what)
        (value,) = struct.unpack_from(SCALAR_FORMATS[kind], self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str) -> str:
        length = self.scalar(UINT64, what)
        self.need(length, what)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"corrupt: {what} is not UTF-8") from None

    def skip_strings(self, count: int, what: str) -> None:
        """Walk `count` length-prefixed strings without decoding them (the hot loop of a vocabulary: 262k strings
        in Gemma 3's). Each length is read through one of eight uint64 views of the buffer, one per byte offset
        modulo 8: an index into a memoryview costs less than a struct call."""
        if sys.byteorder != "little":  # the views are in the machine's byte order; GGUF's is little-endian
            for _ in repeat(None, count):
                self.string(what)
            return
        pos, size = self.pos, self.size
        whole = memoryview(self.buf)
        views = [whole[start : start + (size - start) // 8 * 8].cast("Q") for start in range(8)]
        try:
            for _ in repeat(None, count):
                pos += 8 + views[pos & 7][pos >> 3]
        except IndexError:  # a length runs past the end of the file
            pos = size + 1
        finally:
            for view in views:
                view.release()
            whole.release()
        if pos > size:
            raise GGUFError(f"truncated: the file ends inside {what}", "truncated")
        self.pos = pos

    def strings(self, count: int, what: str) -> list[str]:
        """Read `count` length-prefixed strings; bytes that are not UTF-8 are kept as surrogate escapes (so that
        two arrays compare equal exactly when their bytes do), since llama.cpp loads such tokens."""
        unpack = struct.Struct("<Q").unpack_from
        buf, pos, size = self.buf, self.pos, self.size
        items: list[str] = []
        append = items.append
        for _ in range(count):
            if pos + 8 > size:
                raise GGUFError(f"truncated: the file ends inside {what}", "truncated")
            end = pos + 8 + unpack(buf, pos)[0]
            if end > size:
                raise GGUFError(f"truncated: the file ends inside {what}", "truncated")
            append(str(buf[pos + 8 : end], "utf-8", "surrogateescape"))
            pos = end
        self.pos = pos
        return items


SMALL_ARRAY = 64  # arrays this short are read in full (e.g. per-layer head counts)


def _read_value(cur: _Cursor, kind: int, key: str, read_all: bool = False) -> tuple[Any, list[Any] | None]:
    if kind == STRING:
        return cur.string(f"the value of {key}"), None
    if kind in SCALAR_FORMATS:
        return cur.scalar(kind, f"the value of {key}"), None
    if kind != ARRAY:
        raise GGUFError(f"corrupt: metadata {key!r} has unknown value type {kind}")
    item_type = cur.scalar(UINT32, f"the array {key}")
    count = cur.scalar(UINT64, f"the array {key}")
    info = ArrayInfo(item_type, count)
    if item_type == STRING:
        if read_all:
            return info, cur.strings(count, f"the array {key}")
        if count <= SMALL_ARRAY:
            return info, [cur.string(f"the array {key}") for _ in range(count)]
        cur.skip_strings(count, f"the array {key}")
        return info, None
    if item_type not in SCALAR_FORMATS:
        raise GGUFError(f"corrupt: array {key!r} has unsupported element type {item_type}")
    n_bytes = SCALAR_SIZES[item_type] * count
    cur.need(n_bytes, f"the array {key}")
    values = None
    if count <= SMALL_ARRAY or read_all:
        values = list(struct.unpack_from(f"<{count}{SCALAR_FORMATS[item_type][1]}", cur.buf, cur.pos))
    cur.pos += n_bytes
    return info, values


def tensor_bytes(shape: tuple[int, ...], ggml_type: int) -> int:
    _, block, type_size = GGML_TYPES[ggml_type]
    elements = 1
    for dim in shape:
        elements *= dim
    return elements // block * type_size


def parse(buf: Any, path: Path, file_size: int, full_arrays: Collection[str] = ()) -> GGUFHeader:
    """Parse a GGUF header held in `buf` (bytes or an mmap of the whole file); the arrays named in `full_arrays`
    are read in full into small_arrays whatever their length."""
    if file_size < 4 or bytes(buf[:4]) != MAGIC:
        raise GGUFError("not a GGUF file (it does not start with the GGUF magic bytes)", "not-gguf")
    cur = _Cursor(buf, len(MAGIC))
    version = cur.scalar(UINT32, "the header")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFError(f"GGUF version {version} is not supported (llama.cpp reads versions 2 and 3)")
    n_tensors = cur.scalar(UINT64, "the header")
    n_metadata = cur.scalar(UINT64, "the header")
    if n_tensors > MAX_TENSORS or n_metadata > MAX_METADATA:
        raise GGUFError(f"corrupt: the header claims {n_tensors} tensors and {n_metadata} metadata entries")
    metadata: dict[str, Any] = {}
    small_arrays: dict[str, list[Any]] = {}
    for _ in range(n_metadata):
        key = cur.string("a metadata key")
        kind = cur.scalar(UINT32, f"the type of {key}")
        value, items = _read_value(cur, kind, key, key in full_arrays)
        metadata[key] = value
        if items is not None:
            small_arrays[key] = items
    tensors = []
    for index in range(n_tensors):
        name = cur.string(f"the name of tensor {index}")
        n_dims = cur.scalar(UINT32, f"tensor {name}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GGUFError(f"corrupt: tensor {name} has {n_dims} dimensions")
        shape = tuple(cur.scalar(UINT64, f"tensor {name}") for _ in range(n_dims))
        ggml_type = cur.scalar(UINT32, f"tensor {name}")
        offset = cur.scalar(UINT64, f"tensor {name}")
        if ggml_type not in GGML_TYPES:
            raise GGUFError(f"tensor {name} has ggml type {ggml_type}, which this reader does not know")
        if shape[0] % GGML_TYPES[ggml_type][1]:
            raise GGUFError(f"corrupt: tensor {name}'s rows do not fill whole {GGML_TYPES[ggml_type][0]} blocks")
        tensors.append(TensorInfo(name, shape, ggml_type, offset, tensor_bytes(shape, ggml_type)))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"corrupt: general.alignment is {alignment!r}, not a power of two")
    data_offset = -(-cur.pos // alignment) * alignment
    data_size = file_size - data_offset
    for tensor in tensors:
        if tensor.offset % alignment:
            raise GGUFError(f"corrupt: tensor {tensor.name} is not aligned to {alignment} bytes")
        if tensor.offset + tensor.n_bytes > data_size:
            missing = tensor.offset + tensor.n_bytes - data_size
            raise GGUFError(
                f"truncated: tensor {tensor.name} runs {missing} bytes past the end of the file "
                f"({file_size} bytes); the download or copy is incomplete",
                "incomplete",
            )
    return GGUFHeader(path, version, metadata, tuple(tensors), data_offset, file_size, small_arrays)


def read_header(path: str | os.PathLike[str], full_arrays: Collection[str] = ()) -> GGUFHeader:
    """Read and check the header of the GGUF file at `path`; raise GGUFError with the reason if it is bad.
    The arrays named in `full_arrays` (e.g. "tokenizer.ggml.tokens") are read in full into small_arrays."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise GGUFError("the file is empty", "truncated")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return parse(buf, path, size, full_arrays)
    except IsADirectoryError:
        raise GGUFError("is a directory, not a GGUF file", "directory") from None
    except FileNotFoundError:
        raise GGUFError("no such file", "missing") from None
    except PermissionError:
        raise GGUFError("permission denied", "permission") from None
