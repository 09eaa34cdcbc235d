"""The image store (EDGELLM_HOME/images): an image kept by its content is read back whole, is kept once however often
it is put, and is never left half-written."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from edgellm import paths
from edgellm.errors import ImageRefused
from edgellm.media.images import read_image
from edgellm.storage.images import ImageStore
from tests.support.images import PHOTO, bmp, gif, jpeg, png


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize("maker", [png, jpeg, gif, bmp])
def test_round_trip(tmp_path: Path, maker: Callable[[int, int], bytes]) -> None:
    image = read_image(maker(10, 6), "holiday")
    store = ImageStore(tmp_path)
    kept = store.put(image)
    assert kept == tmp_path / image.digest[:2] / f"{image.digest}.{image.format}"
    assert kept.read_bytes() == image.data
    assert store.path(image.digest) == kept
    again = store.get(image.digest, name="holiday")
    assert again == image


def test_get_names_the_image_by_its_file_unless_told(tmp_path: Path) -> None:
    image = read_image(PHOTO.read_bytes(), "test-1.jpeg")
    store = ImageStore(tmp_path)
    store.put(image)
    back = store.get(image.digest)
    assert back is not None and back.name == f"{image.digest}.jpeg" and back.data == image.data


def test_default_root_is_under_edgellm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELLM_HOME", str(tmp_path / "home"))
    assert paths.images_dir() == tmp_path / "home" / "images"
    image = read_image(png(), "a.png")
    kept = ImageStore().put(image)
    assert kept.is_relative_to(tmp_path / "home" / "images")


def test_no_duplicate(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    data = png(5, 5)
    first = store.put(read_image(data, "one.png"))
    modified = first.stat().st_mtime_ns
    os.utime(first, ns=(modified - 10**9, modified - 10**9))  # so a rewrite would show
    second = store.put(read_image(data, "the same picture, renamed.png"))
    assert second == first
    assert files_under(tmp_path) == [first]
    assert first.stat().st_mtime_ns == modified - 10**9  # not written again
    other = store.put(read_image(png(5, 6), "other.png"))
    assert files_under(tmp_path) == sorted([first, other])


def test_missing(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    digest = read_image(png(), "a.png").digest
    assert store.get(digest) is None and store.path(digest) is None
    assert ImageStore(tmp_path / "never-made").get(digest) is None


@pytest.mark.parametrize("digest", ["", "../../etc/passwd", "ABC", "g" * 64, "0" * 63, "../" + "0" * 61])
def test_only_digests_name_images(tmp_path: Path, digest: str) -> None:
    store = ImageStore(tmp_path)
    assert store.path(digest) is None and store.get(digest) is None


def test_damaged_file_is_refused(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    image = read_image(png(8, 8), "a.png")
    kept = store.put(image)
    kept.write_bytes(png(8, 9))
    with pytest.raises(ImageRefused) as caught:
        store.get(image.digest)
    assert caught.value.problem == "unreadable" and str(kept) in str(caught.value)
    assert "delete it" in str(caught.value)


def test_stored_images_are_read_back_whatever_the_pixel_limit(tmp_path: Path) -> None:
    """An image was checked when it was put; reading it back applies no limit, so a resumed conversation keeps it."""
    store = ImageStore(tmp_path)
    small = gif(1, 1)
    wide = small[:6] + struct.pack("<HH", 10_000, 4_000) + small[10:]  # a 40-megapixel screen with one pixel drawn
    with pytest.raises(ImageRefused):
        read_image(wide, "wide.gif")
    image = read_image(wide, "wide.gif", max_pixels=50_000_000)
    store.put(image)
    back = store.get(image.digest)
    assert back is not None and (back.width, back.height) == (10_000, 4_000)


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes go to a temporary file in the image's folder, renamed when complete: when the write fails (here the
    disk refuses the fsync), no file, partial or whole, is left under the store."""
    store = ImageStore(tmp_path)
    image = read_image(png(20, 20), "a.png")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        store.put(image)
    assert files_under(tmp_path) == []
    assert store.get(image.digest) is None
    monkeypatch.undo()
    assert store.put(image).read_bytes() == image.data


def test_a_partial_file_is_never_taken_for_the_image(tmp_path: Path) -> None:
    """A temporary file left by a process that died mid-write is not the image: the store finds no image, and the next
    put writes it whole."""
    store = ImageStore(tmp_path)
    image = read_image(png(4, 4), "a.png")
    folder = tmp_path / image.digest[:2]
    folder.mkdir()
    (folder / f".{image.digest[:8]}-dead.part").write_bytes(image.data[:20])
    assert store.get(image.digest) is None
    kept = store.put(image)
    assert kept.read_bytes() == image.data and store.get(image.digest) == read_image(image.data, kept.name)
