"""The checks on an image before llama.cpp decodes it, on real bytes: each format's pixel size read from its header,
each refusal with its problem code and a one-line message naming the image and the way out, the pixel limit applied
to what a header claims (before any pixel exists)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from edgellm.errors import ImageRefused
from edgellm.media.images import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    describe,
    digest_of,
    megapixels,
    read_image,
    read_image_file,
    sniff,
)
from tests.support.images import (
    OTHER_FORMATS,
    PHOTO,
    PHOTO_SIZE,
    bmp,
    gif,
    jpeg,
    jpeg_header,
    png,
    png_header,
)


def refusal(data: bytes, name: str = "cat.png", **options: int) -> ImageRefused:
    with pytest.raises(ImageRefused) as caught:
        read_image(data, name, **options)
    error = caught.value
    message = str(error)
    assert error.source == name
    assert name in message, message
    assert "\n" not in message
    assert ": " in message.rpartition(name)[2], f"no way out after the problem: {message}"
    return error


@pytest.mark.parametrize(
    "maker, kind",
    [(png, "png"), (jpeg, "jpeg"), (gif, "gif"), (bmp, "bmp")],
)
@pytest.mark.parametrize("width, height", [(1, 1), (13, 5), (640, 480)])
def test_each_format_size_from_its_header(
    maker: Callable[[int, int], bytes], kind: str, width: int, height: int
) -> None:
    data = maker(width, height)
    image = read_image(data, f"picture.{kind}")
    assert (image.width, image.height, image.format) == (width, height, kind)
    assert image.digest == digest_of(data) and image.data == data and image.size == len(data)
    assert image.name == f"picture.{kind}"


def test_top_down_bmp_has_a_positive_height() -> None:
    image = read_image(bmp(7, 2, top_down=True), "screen.bmp")
    assert (image.width, image.height) == (7, 2)


def test_a_real_photograph() -> None:
    image = read_image_file(PHOTO)
    assert (image.width, image.height) == PHOTO_SIZE
    assert image.format == "jpeg" and image.name == "test-1.jpeg"


def test_jpeg_frame_header_found_past_large_segments() -> None:
    """APPn segments (EXIF with an embedded thumbnail, whose own end marker must not be taken for the file's) are
    skipped by their lengths to reach the frame header."""
    data = jpeg(24, 16)
    thumbnail = jpeg(8, 8)
    exif = b"Exif\x00\x00" + thumbnail + bytes(60_000)
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    comment = b"\xff\xfe\x00\x07hello"
    data = data[:2] + app1 + comment + data[2:]
    image = read_image(data, "photo.jpg")
    assert (image.width, image.height) == (24, 16)
    cut = data[: data.index(b"\xff\xda")] + b"\xff\xda\x00\x08" + bytes(6)  # scan begun, end marker never came
    assert refusal(cut, "photo.jpg").problem == "truncated"


def test_progressive_jpeg_frame_is_read() -> None:
    data = jpeg(30, 20)
    progressive = data.replace(b"\xff\xc0", b"\xff\xc2", 1)
    assert read_image(progressive, "p.jpg").width == 30


def test_describe() -> None:
    image = read_image(png(4, 3), "cat.png")
    assert image.size < 1000
    assert describe(image) == f"cat.png · 4×3 · {image.size} B"
    assert describe(read_image_file(PHOTO)) == "test-1.jpeg · 640×488 · 124 KB"


def test_empty() -> None:
    error = refusal(b"", "blank.png")
    assert error.problem == "empty"


@pytest.mark.parametrize(
    "data",
    [b"hello, this is a text file\n", bytes(range(256)), b"%PDF-1.7\n", b"\x89PN"],
)
def test_not_an_image_lists_the_formats_read(data: bytes) -> None:
    error = refusal(data, "notes.txt")
    assert error.problem == "not-image"
    assert "PNG, JPEG, GIF or BMP" in str(error)


@pytest.mark.parametrize("name", sorted(OTHER_FORMATS))
def test_formats_llama_cpp_cannot_decode_are_named(name: str) -> None:
    error = refusal(OTHER_FORMATS[name], "upload")
    assert error.problem == "format"
    message = str(error)
    assert f"upload is {name}" in message and "llama.cpp cannot decode" in message
    assert message.endswith("convert it to PNG or JPEG")


def test_other_jpeg_codings_refused_as_format() -> None:
    lossless = jpeg_header(10, 10, frame=0xC3)
    assert refusal(lossless, "scan.jpg").problem == "format"
    arithmetic = jpeg(10, 10).replace(b"\xff\xc0", b"\xff\xc9", 1)
    assert refusal(arithmetic, "scan.jpg").problem == "format"


def test_compressed_bmp_refused_as_format() -> None:
    data = bytearray(bmp(4, 4))
    data[30:34] = (1).to_bytes(4, "little")  # BI_RLE8
    assert refusal(bytes(data), "old.bmp").problem == "format"


@pytest.mark.parametrize(
    "maker, cut",
    [
        (png, 20),  # inside IHDR
        (png, -12),  # no IEND
        (png, -20),  # inside IDAT
        (jpeg, 10),  # inside the JFIF segment
        (jpeg, -2),  # no end marker
        (gif, 12),  # inside the logical screen
        (gif, 20),  # before the image descriptor
        (bmp, 20),  # inside the DIB header
        (bmp, -3),  # pixel rows missing
    ],
)
def test_truncated(maker: Callable[[int, int], bytes], cut: int) -> None:
    data = maker(40, 30)[:cut]
    error = refusal(data, "half.img")
    assert error.problem == "truncated"
    assert "cut short" in str(error) and str(error).endswith("send the whole file")


def test_png_without_pixel_data() -> None:
    data = png(4, 4)
    start = data.index(b"IDAT") - 4
    end = start + 12 + int.from_bytes(data[start : start + 4], "big")
    assert refusal(data[:start] + data[end:], "empty.png").problem == "truncated"


def test_jpeg_scan_before_frame_header_is_damaged() -> None:
    data = jpeg(8, 8)
    frame_at = data.index(b"\xff\xc0")
    frame_end = frame_at + 2 + 11
    moved = data[:frame_at] + data[frame_end:]
    assert refusal(moved, "bad.jpg").problem == "not-image"


def test_gif_with_no_image_is_not_an_image() -> None:
    data = gif(4, 4)
    header_end = 13 + 12  # screen and a 4-colour palette
    assert refusal(data[:header_end] + b"\x3b", "nothing.gif").problem == "not-image"


@pytest.mark.parametrize(
    "data",
    [png(0, 5), png(5, 0), bmp(0, 3), gif(0, 2), jpeg_header(0, 8) + b"\xff\xda\x00\x08" + bytes(6) + b"\xff\xd9"],
)
def test_zero_width_or_height(data: bytes) -> None:
    error = refusal(data, "zero.img")
    assert error.problem == "not-image" and "holds no picture" in str(error)


def test_pixel_limit_refuses_what_a_header_claims() -> None:
    """A PNG header that claims 100000×100000 with no pixel data behind it: refused for its size, not read further
    (10^10 pixels would be 30 GB once decoded)."""
    error = refusal(png_header(100_000, 100_000), "huge.png")
    assert error.problem == "too-large"
    assert str(error) == (
        "huge.png: 100000×100000 pixels (10000 megapixels) is over the 33.6-megapixel limit: scale it down"
    )


def test_pixel_limit_for_each_format() -> None:
    claims = {
        "png": png_header(12_000, 9_000),
        "jpeg": jpeg_header(12_000, 9_000),
        "gif": b"GIF89a" + struct.pack("<HHBBB", 12_000, 9_000, 0, 0, 0),
        "bmp": bmp(1, 1)[:18]
        + (12_000).to_bytes(4, "little")
        + (-9_000).to_bytes(4, "little", signed=True)
        + bmp(1, 1)[26:54],
    }
    for kind, data in claims.items():
        error = refusal(data, f"big.{kind}")
        assert error.problem == "too-large", kind
        assert "12000×9000 pixels (108 megapixels) is over the 33.6-megapixel limit: scale it down" in str(error)


def test_pixel_limit_is_a_parameter() -> None:
    assert read_image(png(100, 100), "a.png", max_pixels=10_000).width == 100
    assert refusal(png(100, 101), "a.png", max_pixels=10_000).problem == "too-large"
    assert MAX_PIXELS == 32 * 2**20


def test_megapixels() -> None:
    assert [megapixels(n) for n in (108_000_000, MAX_PIXELS, 300_000, 40_000_000)] == ["108", "33.6", "0.3", "40"]


def test_too_many_bytes() -> None:
    data = png(1, 1) + bytes(MAX_FILE_BYTES)
    error = refusal(data, "big.png")
    assert error.problem == "too-large" and "64.0 MiB limit" in str(error)


def test_sniff_ignores_what_is_only_a_prefix() -> None:
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # RIFF, but audio
    assert sniff(b"\x00\x00\x00\x18ftypisom") is None  # an MP4
    assert sniff(b"<html><body>no drawing</body></html>") is None


# --- files ----------------------------------------------------------------------------------------------------------


def test_file(tmp_path: Path) -> None:
    path = tmp_path / "cat.gif"
    path.write_bytes(gif(9, 7))
    image = read_image_file(path)
    assert (image.name, image.width, image.height, image.format) == ("cat.gif", 9, 7, "gif")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.png"
    with pytest.raises(ImageRefused) as caught:
        read_image_file(path)
    assert caught.value.problem == "missing" and str(path) in str(caught.value)
    assert str(caught.value).endswith("check the path to the image")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageRefused) as caught:
        read_image_file(tmp_path)
    assert caught.value.problem == "missing" and "is a folder" in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(png())
    path.chmod(0)
    with pytest.raises(ImageRefused) as caught:
        read_image_file(path)
    assert caught.value.problem == "unreadable" and "permissions" in str(caught.value)


def test_unreadable_path(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 300 + ".png")  # longer than a file name may be
    with pytest.raises(ImageRefused) as caught:
        read_image_file(path)
    assert caught.value.problem == "unreadable" and "cannot be read (File name too long)" in str(caught.value)


def test_file_over_the_byte_limit_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge.bmp"
    with path.open("wb") as file:
        file.write(bmp(2, 2))
        file.truncate(MAX_FILE_BYTES + 5 * 2**20)  # sparse: no disk used
    with pytest.raises(ImageRefused) as caught:
        read_image_file(path)
    assert caught.value.problem == "too-large"
    assert str(caught.value).startswith("huge.bmp is 69.0 MiB, over the 64.0 MiB limit")


def test_not_a_regular_file(tmp_path: Path) -> None:
    """A pipe is refused without being opened (opening it would wait for a writer)."""
    fifo = tmp_path / "camera.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageRefused) as caught:
        read_image_file(fifo)
    assert caught.value.problem == "unreadable" and "is not a file (a device or a pipe)" in str(caught.value)


def test_file_errors_from_read_image_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("not a picture")
    with pytest.raises(ImageRefused) as caught:
        read_image_file(path)
    assert caught.value.problem == "not-image" and caught.value.source == "fake.png"
