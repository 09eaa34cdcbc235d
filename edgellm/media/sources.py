"""Where a request's images come from: an OpenAI `image_url` (a data URL, or a file:// URL on this machine) and
Ollama's `images` (base64). Each is read into a checked `Image` (edgellm.media.images); remote URLs are refused, since
an edge device may be offline and a server should not fetch what a request names. Pure, except that a file:// URL
reads its file.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgellm.errors import ImageRefused
from edgellm.formatting import size as format_size
from edgellm.media.images import MAX_FILE_BYTES, MAX_PIXELS, Image, read_image, read_image_file

SEND_AS = "send the image as a data URL (data:image/png;base64,…) or a file:// URL"
WHITESPACE = re.compile(rb"\s+")


def request_name(index: int) -> str:
    """How an image sent inside a request is named in messages: `image 2 of the request`."""
    return f"image {index} of the request"


def image_from_url(url: str, *, max_pixels: int = MAX_PIXELS, index: int = 1) -> Image:
    """The image an OpenAI `image_url` names (the `index`-th of its request): a base64 data URL of an image type, or
    an absolute file:// URL on this machine (percent-encoding decoded). ImageRefused: problem `remote` for http(s),
    `url` for any other URL or a malformed one, else read_image's and read_image_file's problems."""
    name = request_name(index)
    text = url.strip()
    scheme = text.partition(":")[0].lower() if ":" in text else ""
    if scheme == "data":
        return _from_data_url(text, name, max_pixels)
    if scheme == "file":
        return read_image_file(_file_path(text, name), max_pixels=max_pixels)
    if scheme in ("http", "https"):
        raise ImageRefused(
            f"{name}: remote image URLs are not fetched (an edge device may be offline): {SEND_AS}",
            source=name,
            problem="remote",
        )
    said = f"a URL edgellm does not read ({scheme}:)" if scheme else "not a URL"
    raise ImageRefused(f"{name} is {said}: {SEND_AS}", source=name, problem="url")


def image_from_base64(text: str, *, index: int = 1, max_pixels: int = MAX_PIXELS) -> Image:
    """The image in one of Ollama's `images` (the `index`-th of its request): the file's bytes in base64 (padding
    optional, whitespace ignored), or a data URL. ImageRefused: problem `not-image` for text that is not base64, else
    read_image's problems."""
    name = request_name(index)
    stripped = text.strip()
    if stripped[:5].lower() == "data:":
        return _from_data_url(stripped, name, max_pixels)
    return read_image(_decode(stripped, name), name, max_pixels=max_pixels)


def _from_data_url(url: str, name: str, max_pixels: int) -> Image:
    """data:image/<type>;base64,<bytes>: the media type must be an image's and the bytes base64."""
    header, comma, payload = url.partition(",")
    if not comma:
        raise ImageRefused(f"{name} is a data URL with no data (no comma): {SEND_AS}", source=name, problem="url")
    media_type, *parameters = header[len("data:") :].split(";")
    if not media_type.strip().lower().startswith("image/"):
        said = media_type.strip() or "no media type"
        raise ImageRefused(f"{name} is a data URL of {said}, not an image: {SEND_AS}", source=name, problem="url")
    if "base64" not in (parameter.strip().lower() for parameter in parameters):
        raise ImageRefused(f"{name} is a data URL that is not base64: {SEND_AS}", source=name, problem="url")
    return read_image(_decode(payload, name), name, max_pixels=max_pixels)


def _decode(text: str, name: str) -> bytes:
    """Base64 to bytes (whitespace ignored, missing padding added); the size bounded before decoding."""
    try:
        clean = WHITESPACE.sub(b"", text.encode("ascii"))
    except UnicodeEncodeError:
        clean = b"!"  # not base64: refused below
    if len(clean) * 3 // 4 > MAX_FILE_BYTES:
        raise ImageRefused(
            f"{name} is over {format_size(MAX_FILE_BYTES)}, the limit for an image: scale it down or save it as JPEG",
            source=name,
            problem="too-large",
        )
    try:
        return base64.b64decode(clean + b"=" * (-len(clean) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused(
            f"{name} is not valid base64: send the image file's bytes base64-encoded", source=name, problem="not-image"
        ) from None


def _file_path(url: str, name: str) -> Path:
    """The local path of an absolute file URL (file:///path, file://localhost/path or file:/path), percent-decoded."""
    parts = urlsplit(url)
    if parts.netloc.lower() not in ("", "localhost"):
        raise ImageRefused(
            f"{name} is a file URL on another machine ({parts.netloc}): use a file:///absolute/path on this one, or "
            "send the image as a data URL",
            source=name,
            problem="url",
        )
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ImageRefused(
            f"{name} is a relative file URL: use file:///absolute/path/to/the/image, or send it as a data URL",
            source=name,
            problem="url",
        )
    if "\x00" in path:
        raise ImageRefused(f"{name} is a file URL with a NUL in its path: {SEND_AS}", source=name, problem="url")
    return Path(path)
