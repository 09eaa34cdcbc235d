"""Where a conversation's images go in its prompt: each message's images as markers in its text, for the chat
template to render and libmtmd to replace with the images' tokens. Pure."""

from __future__ import annotations

from typing import Any

from edgellm.media import MARKER
from edgellm.media.images import Image

BROKEN_MARKER = "<__media\u200b__>"  # the marker typed as text, kept from being taken for an image

Messages = list[dict[str, Any]]


def place_images(messages: Messages, keep: bool = True) -> tuple[Messages, list[Image]]:
    """The messages with each one's `images` as MARKERs in its content, and every image in prompt order.

    A message's own markers say where its images go, in order; images without one go before its text, each on a line
    of its own. Markers in a text with no image of their own (typed, or more markers than images) are broken, so text
    is never taken for an image. Without `keep`, images are left out (a model that reads text only: its history
    may hold images from another model)."""
    placed: Messages = []
    images: list[Image] = []
    for message in messages:
        carried = list(message.get("images") or ()) if keep else []
        content = message.get("content")
        if not isinstance(content, str):
            placed.append({key: value for key, value in message.items() if key != "images"})
            continue
        marked = content.count(MARKER)
        if marked != len(carried) or not carried:
            content = content.replace(MARKER, BROKEN_MARKER)
            marked = 0
        content = "".join(f"{MARKER}\n" for _ in range(len(carried) - marked)) + content
        placed.append({**{key: value for key, value in message.items() if key != "images"}, "content": content})
        images.extend(carried)
    return placed, images


def has_images(messages: Messages) -> bool:
    return any(message.get("images") for message in messages)


def last_user_images(messages: Messages) -> bool:
    """The newest user message carries images."""
    user = next((message for message in reversed(messages) if message.get("role") == "user"), None)
    return bool(user and user.get("images"))
