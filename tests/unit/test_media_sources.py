"""Where a request's images come from: data URLs and file:// URLs (OpenAI's image_url), base64 (Ollama's images);
remote URLs refused; each refusal's problem code and a message naming the image and the way out."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import pytest

from edgellm.errors import ImageRefused
from edgellm.media.images import MAX_FILE_BYTES, read_image
from edgellm.media.sources import image_from_base64, image_from_url
from tests.support.images import PHOTO, PHOTO_SIZE, bmp, gif, jpeg, png, png_header


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def refused_url(url: str, index: int = 1) -> ImageRefused:
    with pytest.raises(ImageRefused) as caught:
        image_from_url(url, index=index)
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    "media_type, data",
    [("image/png", png(7, 5)), ("image/jpeg", jpeg(7, 5)), ("image/gif", gif(7, 5)), ("image/bmp", bmp(7, 5))],
)
def test_data_url(media_type: str, data: bytes) -> None:
    image = image_from_url(f"data:{media_type};base64,{b64(data)}", index=2)
    assert image == read_image(data, "image 2 of the request")
    assert (image.width, image.height) == (7, 5)


def test_data_url_format_comes_from_the_bytes() -> None:
    """The media type a client declares is not trusted: the bytes say the format."""
    image = image_from_url(f"data:image/png;base64,{b64(jpeg(8, 8))}")
    assert image.format == "jpeg"


def test_data_url_tolerates_parameters_whitespace_and_missing_padding() -> None:
    text = b64(png(3, 3)).rstrip("=")
    wrapped = "\n".join(text[at : at + 60] for at in range(0, len(text), 60))
    image = image_from_url(f"  DATA:Image/PNG;charset=binary;base64,{wrapped}  ")
    assert image.width == 3


def test_bad_base64_is_not_an_image() -> None:
    error = refused_url("data:image/png;base64,this is not base64!!", index=3)
    assert error.problem == "not-image" and error.source == "image 3 of the request"
    assert str(error) == "image 3 of the request is not valid base64: send the image file's bytes base64-encoded"


@pytest.mark.parametrize(
    "url, said",
    [
        ("data:text/plain;base64,aGVsbG8=", "data URL of text/plain, not an image"),
        ("data:;base64,aGVsbG8=", "data URL of no media type, not an image"),
        ("data:image/png,rawbytes", "data URL that is not base64"),
        ("data:image/png;base64", "data URL with no data"),
    ],
)
def test_data_url_that_is_not_an_image_url(url: str, said: str) -> None:
    error = refused_url(url)
    assert error.problem == "url"
    assert str(error).startswith(f"image 1 of the request is a {said}")
    assert "data:image/png;base64,…" in str(error)


def test_data_url_of_a_refused_image_keeps_its_problem() -> None:
    assert refused_url(f"data:image/png;base64,{b64(png(9, 9)[:-12])}").problem == "truncated"
    assert refused_url(f"data:image/png;base64,{b64(png_header(100_000, 100_000))}").problem == "too-large"
    assert refused_url("data:image/png;base64,").problem == "empty"
    webp = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(28)
    error = refused_url(f"data:image/webp;base64,{b64(webp)}", index=2)
    assert error.problem == "format"
    assert str(error) == "image 2 of the request is WebP, which llama.cpp cannot decode: convert it to PNG or JPEG"


def test_data_url_pixel_limit_is_a_parameter() -> None:
    with pytest.raises(ImageRefused) as caught:
        image_from_url(f"data:image/png;base64,{b64(png(10, 10))}", max_pixels=99)
    assert caught.value.problem == "too-large"


def test_oversized_base64_refused_before_decoding() -> None:
    text = "A" * (MAX_FILE_BYTES // 3 * 4 + 8)
    assert refused_url(f"data:image/png;base64,{text}").problem == "too-large"


def test_file_url(tmp_path: Path) -> None:
    folder = tmp_path / "my pictures ü"
    folder.mkdir()
    path = folder / "cat #1.png"
    path.write_bytes(png(6, 4))
    image = image_from_url("file://" + quote(str(path)))
    assert (image.name, image.width, image.height) == ("cat #1.png", 6, 4)
    assert image_from_url("file://localhost" + quote(str(path))) == image
    assert image_from_url(f"file:{quote(str(path))}") == image


def test_file_url_to_a_real_photograph() -> None:
    image = image_from_url(PHOTO.as_uri())
    assert (image.width, image.height) == PHOTO_SIZE


def test_file_url_missing(tmp_path: Path) -> None:
    error = refused_url((tmp_path / "gone.png").as_uri())
    assert error.problem == "missing" and str(tmp_path / "gone.png") in str(error)


@pytest.mark.parametrize(
    "url, said",
    [
        ("file://camera-host/pictures/cat.png", "a file URL on another machine (camera-host)"),
        ("file:pictures/cat.png", "a relative file URL"),
    ],
)
def test_file_url_not_local_and_absolute(url: str, said: str) -> None:
    error = refused_url(url, index=2)
    assert error.problem == "url" and str(error).startswith(f"image 2 of the request is {said}")
    assert "data URL" in str(error)


@pytest.mark.parametrize("url", ["http://example.com/cat.png", "HTTPS://example.com/cat.png?size=large"])
def test_remote_refused(url: str) -> None:
    error = refused_url(url, index=4)
    assert error.problem == "remote" and error.source == "image 4 of the request"
    assert str(error) == (
        "image 4 of the request: remote image URLs are not fetched (an edge device may be offline): "
        "send the image as a data URL (data:image/png;base64,…) or a file:// URL"
    )


@pytest.mark.parametrize(
    "url, said",
    [("ftp://host/cat.png", "a URL edgellm does not read (ftp:)"), ("cat.png", "not a URL"), ("", "not a URL")],
)
def test_other_urls(url: str, said: str) -> None:
    error = refused_url(url)
    assert error.problem == "url" and said in str(error) and str(error).endswith("or a file:// URL")


# --- Ollama's images: base64 --------------------------------------------------------------------------------------


def test_base64() -> None:
    data = gif(12, 8)
    image = image_from_base64(b64(data), index=2)
    assert image == read_image(data, "image 2 of the request")


def test_base64_accepts_a_data_url_prefix() -> None:
    assert image_from_base64(f"data:image/jpeg;base64,{b64(jpeg(9, 9))}").width == 9


def test_base64_of_a_photograph() -> None:
    assert image_from_base64(b64(PHOTO.read_bytes())).format == "jpeg"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "empty"),
        ("@@@@", "not-image"),
        ("héllo", "not-image"),
        (b64(b"just some text"), "not-image"),
        (b64(bmp(5, 5)[:-4]), "truncated"),
    ],
)
def test_base64_refused(text: str, problem: str) -> None:
    with pytest.raises(ImageRefused) as caught:
        image_from_base64(text, index=5)
    assert caught.value.problem == problem and caught.value.source == "image 5 of the request"
    assert "image 5 of the request" in str(caught.value)


def test_base64_pixel_limit_is_a_parameter() -> None:
    with pytest.raises(ImageRefused) as caught:
        image_from_base64(b64(png(10, 10)), max_pixels=99)
    assert caught.value.problem == "too-large"
