"""Attaching images to the next message: a path field that completes file names, the attached images as lines above
the message box, and what a pasted text must be to attach instead of being typed (one image file's path or URL).

The images themselves are read and checked by edgellm.media.images; these widgets only find and show them."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input, Label, Static

from edgellm.media.images import Image, describe

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")  # what llama.cpp's image decoder reads
LISTED = 6  # the completions listed under the field; the rest are counted
PAPERCLIP = "📎"


def completions(typed: str) -> list[str]:
    """The directories (with a trailing "/") and image files whose path starts with `typed`, spelled as typed
    (a leading "~" kept); hidden ones only when the name typed so far starts with a dot. Sorted, directories
    first."""
    if typed == "~":
        return ["~/"]
    prefix = typed.rpartition("/")[2]
    head = typed[: len(typed) - len(prefix)]  # the folder, as typed ("" for the current one)
    folder = Path(os.path.expanduser(head)) if head else Path(".")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    folders, images = [], []
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
            continue
        try:
            is_dir = entry.is_dir()  # follows a link, as opening it would
        except OSError:
            continue
        if is_dir:
            folders.append(head + name + "/")
        elif name.lower().endswith(IMAGE_SUFFIXES):
            images.append(head + name)
    return sorted(folders) + sorted(images)


def completed(typed: str) -> str:
    """`typed` taken as far as every completion agrees (the whole path when there is one)."""
    found = completions(typed)
    if not found:
        return typed
    common = found[0]
    for other in found[1:]:
        while not other.startswith(common):
            common = common[:-1]
    return common if len(common) > len(typed) else typed


def image_path(text: str) -> Path | None:
    """The image file `text` names when it is exactly one existing file with an image's extension: a path (quoted, or
    with backslash-escaped spaces, as terminals paste a file dropped on them) or a file:// URL; else None."""
    one = text.strip()
    if not one or "\n" in one:
        return None
    if len(one) >= 2 and one[0] == one[-1] and one[0] in "'\"":
        one = one[1:-1]
    if one.startswith("file://"):
        url = urlparse(one)
        if url.netloc not in ("", "localhost"):
            return None
        candidates = [unquote(url.path)]
    else:
        candidates = [one, re.sub(r"\\(.)", r"\1", one)]  # as written, then with the shell's escapes undone
    for candidate in candidates:
        path = Path(os.path.expanduser(candidate))
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            return path
    return None


def attached_line(image: Image) -> str:
    """How an attached image is shown: "📎 cat.png · 640×480 · 212 KB"."""
    return f"{PAPERCLIP} {describe(image)}"


class PathSuggester(Suggester):
    """Suggests the first completion of the path typed (→ takes it)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        found = completions(value) if value else []
        return found[0] if found else None


class AttachField(Vertical):
    """A path field: Tab completes the file name (directories and images), Enter attaches, Esc cancels. Hidden until
    `open` is called."""

    DEFAULT_CSS = """
    AttachField { height: auto; display: none; padding: 0 1; }
    AttachField Input { border: round $accent; height: 3; }
    AttachField .attach-title { color: $text-muted; }
    AttachField #attach-matches { color: $text-muted; height: auto; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("tab", "complete", "Complete", show=False),
    ]

    class Chosen(Message):
        """Enter on `typed`, the path `path` (an image or not: reading it says)."""

        def __init__(self, field: AttachField, path: Path, typed: str) -> None:
            super().__init__()
            self.field, self.path, self.typed = field, path, typed

    class Cancelled(Message):
        """Esc: no image attached."""

    def compose(self) -> ComposeResult:
        yield Label("Attach an image: its path (Tab completes, Enter attaches, Esc cancels)", classes="attach-title")
        yield Input(placeholder="path/to/image.png", suggester=PathSuggester(), id="attach-path")
        yield Static("", id="attach-matches", markup=False)

    def open(self) -> None:
        """Show the field, emptied, with the focus."""
        self.display = True
        field = self.query_one(Input)
        field.value = ""
        self._list("")
        field.focus()

    def close(self) -> None:
        self.display = False

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._list(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        typed = event.value.strip()
        if not typed:
            self.post_message(self.Cancelled())
            return
        named = image_path(typed)
        self.post_message(self.Chosen(self, named or Path(os.path.expanduser(typed)), typed))

    def action_complete(self) -> None:
        field = self.query_one(Input)
        longer = completed(field.value)
        if longer != field.value:
            field.value = longer
            field.cursor_position = len(longer)

    def action_cancel(self) -> None:
        self.post_message(self.Cancelled())

    def _list(self, typed: str) -> None:
        """The names the path typed so far may go on to, under the field."""
        found = [Path(name).name + ("/" if name.endswith("/") else "") for name in completions(typed)]
        shown = "  ".join(found[:LISTED])
        if len(found) > LISTED:
            shown += f"  … and {len(found) - LISTED} more"
        self.query_one("#attach-matches", Static).update(shown or "no folder or image file here starts so")


class AttachedImage(Static):
    """One attached image's line; a click takes it off."""

    class Removed(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, image: Image, index: int, hint: str = "") -> None:
        line = Content(attached_line(image))
        if hint:
            line = line + Content.styled(f"  {hint}", "dim")
        super().__init__(line, classes="attached-image")
        self.index = index

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(self.Removed(self.index))


class AttachedImages(Vertical):
    """The images that go with the next message, one line each, above the message box (hidden when there are none)."""

    DEFAULT_CSS = """
    AttachedImages { height: auto; display: none; padding: 0 1; }
    AttachedImages .attached-image { color: $text; }
    """

    async def show(self, images: Sequence[Image]) -> None:
        """Show `images` (the last with how to take it off)."""
        with self.app.batch_update():
            await self.remove_children()
            last = len(images) - 1
            await self.mount_all(
                AttachedImage(image, index, "Backspace in an empty box removes it" if index == last else "")
                for index, image in enumerate(images)
            )
            self.display = bool(images)
