"""An image sent with a message: its bytes, checked and named by content.

llama.cpp's decoder (stb_image, in libmtmd's helper) reads PNG, JPEG, GIF and BMP. Before it sees an image, the
checks here read the format and the pixel size from the header alone (no pixel is decoded) and refuse what it cannot
read or should not be asked to: another format (WebP, HEIC, AVIF, TIFF, SVG, named so a person knows what to
convert), a file cut short, an empty or zero-sized image, more pixels than `MAX_PIXELS` or more bytes than
`MAX_FILE_BYTES`. Each refusal is an `ImageRefused` with one line naming the image and the way out. Pure, except
`read_image_file`, which reads the file it is given.
"""

from __future__ import annotations

import hashlib
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgellm.errors import ImageRefused
from edgellm.formatting import size as format_size

MAX_PIXELS = (
    33_554_432  # 32 Mi pixels: an 8192×4096 image; far more than any projector's input, far less than stb's cap
)
MAX_FILE_BYTES = 64 * 2**20

FORMATS = ("png", "jpeg", "gif", "bmp")  # what llama.cpp's decoder reads
READ = "PNG, JPEG, GIF or BMP"
CONVERT = "convert it to PNG or JPEG"


@dataclass(frozen=True)
class Image:
    """An image a message carries: its bytes (PNG, JPEG, GIF or BMP: what llama.cpp's decoder reads), named by their
    SHA-256 (`digest`), with what a person is shown of it (`name`, the pixel size, the format)."""

    digest: str
    data: bytes
    name: str
    width: int
    height: int
    format: str  # png | jpeg | gif | bmp

    @property
    def size(self) -> int:
        return len(self.data)


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_image(data: bytes, name: str, *, max_pixels: int = MAX_PIXELS) -> Image:
    """The image in `data` (named `name` in every message), its format and pixel size read from the header alone;
    ImageRefused (problem: empty, not-image, format, truncated, too-large) for what llama.cpp should not decode."""
    if not data:
        raise ImageRefused(f"{name} is empty (0 bytes): send an image file ({READ})", source=name, problem="empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageRefused(
            f"{name} is {format_size(len(data))}, over the {format_size(MAX_FILE_BYTES)} limit for an image: scale it "
            "down or save it as JPEG",
            source=name,
            problem="too-large",
        )
    kind = sniff(data) or ""
    reader = READERS.get(kind)
    if reader is None:
        if kind in OTHER_FORMATS:
            raise ImageRefused(
                f"{name} is {OTHER_FORMATS[kind]}, which llama.cpp cannot decode: {CONVERT}",
                source=name,
                problem="format",
            )
        raise ImageRefused(
            f"{name} is not an image llama.cpp can read ({READ}): {CONVERT}", source=name, problem="not-image"
        )
    width, height, incomplete = reader(data, name)
    if width <= 0 or height <= 0:
        raise ImageRefused(
            f"{name} is a {FORMAT_NAMES[kind]} of {width}×{height} pixels, which holds no picture: send another image",
            source=name,
            problem="not-image",
        )
    if width * height > max_pixels:
        raise ImageRefused(
            f"{name}: {width}×{height} pixels ({megapixels(width * height)} megapixels) is over the "
            f"{megapixels(max_pixels)}-megapixel limit: scale it down",
            source=name,
            problem="too-large",
        )
    if incomplete is not None:
        raise incomplete
    return Image(digest_of(data), data, name, width, height, kind)


def read_image_file(path: Path, *, max_pixels: int = MAX_PIXELS) -> Image:
    """The image in the file at `path` (named by the file's name), read as `read_image` does; ImageRefused (problem:
    missing, unreadable, or one of read_image's) when it cannot be. Reads at most MAX_FILE_BYTES + 1 bytes, and only
    from a regular file (never waits on a pipe or reads a device)."""
    name = path.name or str(path)
    try:
        found = path.stat()
        if stat.S_ISDIR(found.st_mode):
            raise ImageRefused(
                f"{path} is a folder, not an image: name an image file in it", source=str(path), problem="missing"
            )
        if not stat.S_ISREG(found.st_mode):
            raise ImageRefused(
                f"{path} is not a file (a device or a pipe): save the image to a file and name that",
                source=str(path),
                problem="unreadable",
            )
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ImageRefused(
            f"{path}: no such file: check the path to the image", source=str(path), problem="missing"
        ) from None
    except OSError as error:
        raise ImageRefused(
            f"{path} cannot be read ({error.strerror or error}): check the path and the file's permissions",
            source=str(path),
            problem="unreadable",
        ) from None
    if len(data) > MAX_FILE_BYTES:
        said = f"is {format_size(found.st_size)}, over" if found.st_size > MAX_FILE_BYTES else "is over"
        raise ImageRefused(
            f"{name} {said} the {format_size(MAX_FILE_BYTES)} limit for an image: scale it down or save it as JPEG",
            source=name,
            problem="too-large",
        )
    return read_image(data, name, max_pixels=max_pixels)


def describe(image: Image) -> str:
    """What a person is shown of an image: `cat.png · 640×480 · 212 KB`."""
    return f"{image.name} · {image.width}×{image.height} · {human_bytes(image.size)}"


def human_bytes(n_bytes: int) -> str:
    """An image's size as people read file sizes: bytes, KB, MB (powers of 1000, as file managers show them)."""
    if n_bytes < 1000:
        return f"{n_bytes} B"
    if n_bytes < 1_000_000:
        return f"{n_bytes / 1000:.0f} KB"
    return f"{n_bytes / 1_000_000:.1f} MB"


def megapixels(pixels: int) -> str:
    """Pixels in megapixels, to three figures at most: 108, 33.6, 0.3."""
    value = pixels / 1_000_000
    text = f"{value:.0f}" if value >= 100 else f"{value:.1f}"
    return text.removesuffix(".0")


# --- the format, from the first bytes -------------------------------------------------------------------------------

OTHER_FORMATS = {  # recognised, so a person is told what they sent; llama.cpp's decoder reads none of them
    "webp": "WebP",
    "heic": "HEIC",
    "avif": "AVIF",
    "tiff": "TIFF",
    "svg": "SVG (a drawing, not pixels)",
}
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}


def sniff(data: bytes) -> str | None:
    """The format the first bytes say (one of FORMATS or OTHER_FORMATS), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if data[4:8] == b"ftyp":  # ISO media: the major brand, then (past the minor version) the compatible ones
        end = min(int.from_bytes(data[:4], "big"), len(data), 256)
        brands = {data[8:12]} | {data[index : index + 4] for index in range(16, end - 3, 4)}
        if brands & AVIF_BRANDS:
            return "avif"
        if brands & HEIF_BRANDS:
            return "heic"
        return None
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "svg"
    return None


# --- the pixel size, from each format's header ----------------------------------------------------------------------
#
# Each reader gives the width and height its header says, and whether the rest of the file is there (None when it is,
# else the refusal to raise): read_image refuses a size past the limit first, so a header that claims a huge image is
# refused as too large whatever follows it. A header cut short is refused at once.

FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "bmp": "BMP"}
Size = tuple[int, int, ImageRefused | None]


def _truncated(name: str, kind: str, what: str) -> ImageRefused:
    return ImageRefused(f"{name} is a {kind} cut short ({what}): send the whole file", source=name, problem="truncated")


def _damaged(name: str, kind: str, what: str) -> ImageRefused:
    return ImageRefused(
        f"{name} is a damaged {kind} ({what}): send the file again or {CONVERT}", source=name, problem="not-image"
    )


def _png_size(data: bytes, name: str) -> Size:
    """IHDR's width and height; the chunks walked by their lengths to IEND, with pixel data (IDAT) on the way."""
    if len(data) < 8 + 8 + 13 or data[12:16] != b"IHDR":
        raise _truncated(name, "PNG", "its header is missing")
    width, height = struct.unpack(">II", data[16:24])
    offset, seen_data = 8, False
    while True:
        if offset + 8 > len(data):
            return width, height, _truncated(name, "PNG", "its end is missing")
        length = int.from_bytes(data[offset : offset + 4], "big")
        chunk = data[offset + 4 : offset + 8]
        offset += 8 + length + 4
        if offset > len(data):
            return width, height, _truncated(name, "PNG", "its end is missing")
        if chunk == b"IDAT":
            seen_data = True
        elif chunk == b"IEND":
            return width, height, None if seen_data else _truncated(name, "PNG", "it holds no pixel data")


# JPEG frame headers: SOF0 baseline, SOF1 extended, SOF2 progressive (what stb_image decodes); the other SOFn are
# lossless, hierarchical or arithmetic-coded JPEGs, which it does not
JPEG_READ_FRAMES = {0xC0, 0xC1, 0xC2}
JPEG_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length
JPEG_SOS, JPEG_EOI = 0xDA, 0xD9


def _jpeg_segments(data: bytes, name: str) -> Iterator[tuple[int, int, int]]:
    """A JPEG's segments from SOI on, as (marker, where its body starts, its length), each skipped by its length;
    markers without a length (RSTn, TEM) passed over; stops at the end marker."""
    offset = 2
    while True:
        if offset >= len(data):
            raise _truncated(name, "JPEG", "it ends before its image data")
        if data[offset] != 0xFF:
            raise _damaged(name, "JPEG", f"no marker at byte {offset}")
        while offset < len(data) and data[offset] == 0xFF:  # the marker's 0xFF and any fill bytes before it
            offset += 1
        if offset >= len(data):
            raise _truncated(name, "JPEG", "it ends before its image data")
        marker = data[offset]
        offset += 1
        if marker in JPEG_STANDALONE:
            continue
        if marker == JPEG_EOI:
            return
        if offset + 2 > len(data):
            raise _truncated(name, "JPEG", "it ends inside a header")
        length = int.from_bytes(data[offset : offset + 2], "big")
        if length < 2:
            raise _damaged(name, "JPEG", f"a segment of length {length}")
        yield marker, offset, length
        offset += length


def _jpeg_size(data: bytes, name: str) -> Size:
    """The frame header's width and height (SOFn); then the start of the scan and, after it, the end marker."""
    size = None
    try:
        for marker, offset, length in _jpeg_segments(data, name):
            if marker in JPEG_OTHER_FRAMES:
                raise ImageRefused(
                    f"{name} is a lossless or arithmetic-coded JPEG, which llama.cpp cannot decode: {CONVERT}",
                    source=name,
                    problem="format",
                )
            if marker in JPEG_READ_FRAMES:
                if offset + 7 > len(data):
                    raise _truncated(name, "JPEG", "it ends inside its frame header")
                height, width = struct.unpack(">HH", data[offset + 3 : offset + 7])
                size = (width, height)
            elif marker == JPEG_SOS:
                if size is None:
                    raise _damaged(name, "JPEG", "its image data comes before its frame header")
                ended = data.find(b"\xff\xd9", offset + length) >= 0
                return *size, None if ended else _truncated(name, "JPEG", "its end marker is missing")
        raise _truncated(name, "JPEG", "it ends before its image data")
    except ImageRefused as refused:
        if size is None or refused.problem != "truncated":
            raise
        return *size, refused  # the size first: a header claiming too many pixels is refused for that


def _gif_size(data: bytes, name: str) -> Size:
    """The logical screen's width and height (the size stb_image gives every frame); the blocks walked to the first
    image descriptor."""
    if len(data) < 13:
        raise _truncated(name, "GIF", "its header is missing")
    width, height = struct.unpack("<HH", data[6:10])
    flags = data[10]
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # past the global colour table
    while offset < len(data):
        block = data[offset]
        if block == 0x2C:  # image descriptor
            complete = offset + 10 <= len(data)
            return width, height, None if complete else _truncated(name, "GIF", "it ends inside its first image")
        if block != 0x21:  # the trailer, or anything else before an image
            return width, height, _damaged(name, "GIF", "no image in it")
        offset += 2  # an extension: its label, then sub-blocks until an empty one
        while offset < len(data) and data[offset]:
            offset += data[offset] + 1
        offset += 1
    return width, height, _truncated(name, "GIF", "it ends before its first image")


BMP_HEADERS = {12, 40, 52, 56, 108, 124}  # the DIB header sizes stb_image reads (core, info, v2 to v5)


def _bmp_size(data: bytes, name: str) -> Size:
    """The DIB header's width and height (a negative height: rows stored top-down); when uncompressed, the pixel
    rows' length checked against the file's."""
    if len(data) < 14 + 4:
        raise _truncated(name, "BMP", "its header is missing")
    pixels_at, header = struct.unpack("<II", data[10:18])
    if header not in BMP_HEADERS:
        raise ImageRefused(
            f"{name} is a BMP with a {header}-byte header, which llama.cpp cannot read: {CONVERT}",
            source=name,
            problem="format",
        )
    if len(data) < 14 + header:
        raise _truncated(name, "BMP", "its header is cut off")
    if header == 12:
        width, height, _, bits = struct.unpack("<HHHH", data[18:26])
        compression = 0
    else:
        width, height, _, bits, compression = struct.unpack("<iiHHI", data[18:34])
    height = abs(height)
    if compression not in (0, 3):  # BI_RGB, BI_BITFIELDS; run-length, JPEG or PNG inside a BMP are not read
        raise ImageRefused(
            f"{name} is a compressed BMP, which llama.cpp cannot decode: {CONVERT}", source=name, problem="format"
        )
    row = (bits * max(width, 0) + 31) // 32 * 4
    complete = pixels_at + row * height <= len(data)
    return width, height, None if complete else _truncated(name, "BMP", "its pixel rows are missing")


READERS: dict[str, Callable[[bytes, str], Size]] = {
    "png": _png_size,
    "jpeg": _jpeg_size,
    "gif": _gif_size,
    "bmp": _bmp_size,
}
