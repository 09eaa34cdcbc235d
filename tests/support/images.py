"""Small valid images written here, byte by byte (no imaging library): a PNG, a baseline JPEG, a GIF and a BMP of any
size and one colour, which llama.cpp's decoder (stb_image) reads; their headers alone, for sizes no test should
allocate; and the first bytes of the formats llama.cpp cannot decode. A real photograph (a JPEG from llama.cpp's
own tests) is FIXTURES/images/test-1.jpeg, 640×488 pixels (`PHOTO`, `PHOTO_SIZE`)."""

from __future__ import annotations

import struct
import zlib

from tests.support import FIXTURES

PHOTO = FIXTURES / "images" / "test-1.jpeg"
PHOTO_SIZE = (640, 488)

Colour = tuple[int, int, int]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR (8-bit RGB) alone: no pixel data, no end."""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def png(width: int = 4, height: int = 3, colour: Colour = (200, 30, 60)) -> bytes:
    """A complete 8-bit RGB PNG of one colour."""
    row = b"\x00" + bytes(colour) * width  # filter type 0, then the pixels
    return png_header(width, height) + _chunk(b"IDAT", zlib.compress(row * height)) + _chunk(b"IEND", b"")


def bmp(width: int = 4, height: int = 3, colour: Colour = (200, 30, 60), *, top_down: bool = False) -> bytes:
    """A 24-bit uncompressed BMP (BITMAPINFOHEADER) of one colour; `top_down`: a negative height, rows stored from
    the top."""
    row = bytes(reversed(colour)) * width  # BGR
    row += bytes(-len(row) % 4)  # rows padded to 4 bytes
    pixels = row * height
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, -height if top_down else height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0
    )
    header = struct.pack("<2sIHHI", b"BM", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return header + info + pixels


def gif(width: int = 4, height: int = 3, colour: Colour = (200, 30, 60)) -> bytes:
    """A GIF89a of one colour: a 4-colour palette, one image, LZW codes of 3 bits (a clear code every two pixels, so
    the code width never grows)."""
    screen = struct.pack("<6sHHBBB", b"GIF89a", width, height, 0x80 | 0x01, 0, 0)  # global palette of 4 colours
    palette = bytes(colour) + bytes(9)
    descriptor = struct.pack("<BHHHHB", 0x2C, 0, 0, width, height, 0)
    clear, end = 4, 5
    codes = []
    for index in range(width * height):
        if index % 2 == 0:
            codes.append(clear)
        codes.append(0)
    codes.append(end)
    stream, buffer, n_bits = bytearray(), 0, 0
    for code in codes:  # packed from the least significant bit up
        buffer |= code << n_bits
        n_bits += 3
        while n_bits >= 8:
            stream.append(buffer & 0xFF)
            buffer >>= 8
            n_bits -= 8
    if n_bits:
        stream.append(buffer)
    blocks = b"".join(
        bytes([len(part)]) + part for part in (stream[at : at + 255] for at in range(0, len(stream), 255))
    )
    return screen + palette + descriptor + b"\x02" + blocks + b"\x00" + b"\x3b"


def jpeg_header(width: int, height: int, *, frame: int = 0xC0) -> bytes:
    """A JPEG's start, JFIF segment and frame header (SOFn `frame`, one grey component) alone: no tables, no scan."""
    jfif = b"\xff\xe0" + struct.pack(">H5sBBBHHBB", 16, b"JFIF\x00", 1, 1, 0, 1, 1, 0, 0)
    return b"\xff\xd8" + jfif + bytes([0xFF, frame]) + struct.pack(">HBHHBBBB", 11, 8, height, width, 1, 1, 0x11, 0)


def jpeg(width: int = 16, height: int = 8) -> bytes:
    """A complete baseline JPEG, grey (one component, every block's DC and AC zero), that stb_image decodes: one
    quantisation table, a DC and an AC Huffman table of one 1-bit code each, and two bits of scan per 8×8 block."""
    tables = b"\xff\xdb" + struct.pack(">HB", 67, 0) + bytes([1] * 64)
    one_code = bytes([1] + [0] * 15)  # one code of length 1
    tables += b"\xff\xc4" + struct.pack(">HB", 20, 0x00) + one_code + b"\x00"  # DC: category 0
    tables += b"\xff\xc4" + struct.pack(">HB", 20, 0x10) + one_code + b"\x00"  # AC: end of block
    scan_header = b"\xff\xda" + struct.pack(">HBBBBBB", 8, 1, 1, 0x00, 0, 63, 0)
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    n_bits = 2 * blocks
    scan = ((1 << (-n_bits % 8)) - 1).to_bytes(1, "big") if n_bits % 8 else b""  # all codes 0, padded with 1s
    scan = bytes(n_bits // 8) + scan
    return jpeg_header(width, height) + tables + scan_header + scan + b"\xff\xd9"


# the first bytes of formats llama.cpp's decoder does not read, by the name a refusal gives them
OTHER_FORMATS = {
    "WebP": b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00" + bytes(24),
    "HEIC": struct.pack(">I4s4sI", 24, b"ftyp", b"heic", 0) + b"mif1heic",
    "AVIF": struct.pack(">I4s4sI", 24, b"ftyp", b"avif", 0) + b"mif1miaf",
    "TIFF": b"II*\x00\x08\x00\x00\x00" + bytes(16),
    "SVG": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>\n',
}
