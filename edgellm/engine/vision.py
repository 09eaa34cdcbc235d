"""Images into a model through llama.cpp's libmtmd: a projector (`mmproj-*.gguf`) loaded beside the text model.

A prompt with images is one token list: each image stands as a run of `image_token(digest)` ids (negative, so never a
vocabulary id), one per position the image takes in the context. The KV cache and llama-cpp-python's token record
hold the same ids, so a next turn that sends the same image again reuses its cells exactly as it reuses text: only
what follows the common prefix is evaluated. `Projector.evaluate` runs before the text generation: it evaluates the
prompt up to its last image (text through llama-cpp-python, images through libmtmd: encoding, then decoding their
embeddings), leaving the rest of the text to the ordinary generation path, so cancel, the loop guard and the
samplers work as they do for text.
"""

from __future__ import annotations

import ctypes
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgellm.errors import EngineFailed, ImageRefused, LoadFailed, NoVision
from edgellm.media import MARKER
from edgellm.media.images import Image

KEPT_IMAGES = 16  # tokenized images kept for reuse (their pixels preprocessed; a chat re-sends them every turn)


def image_token(digest: str) -> int:
    """The id that stands for an image's positions in a prompt: negative, and the same for the same bytes."""
    return -1 - int(digest[:7], 16)


def is_image_token(token: int) -> bool:
    return token < 0


def resume_point(held: list[int], prompt: list[int]) -> int:
    """How many leading tokens of `prompt` a KV cache holding `held` can keep: their common prefix, cut back to the
    start of an image it would end inside (an image is evaluated whole)."""
    count = 0
    for old, new in zip(held, prompt):
        if old != new:
            break
        count += 1
    while 0 < count < len(prompt) and is_image_token(prompt[count]) and prompt[count] == prompt[count - 1]:
        count -= 1
    return count


def text_run(tokens: list[int]) -> int:
    """How many leading tokens are text (before the first image)."""
    return next((index for index, token in enumerate(tokens) if is_image_token(token)), len(tokens))


class ImageChunk:
    """One image tokenized by libmtmd: its chunk (owned: freed once neither the projector's recent images nor a
    generation still to evaluate it holds it), and how many positions and tokens it takes."""

    def __init__(self, chunk: Any, n_pos: int, n_tokens: int) -> None:
        from llama_cpp import mtmd_cpp

        self.chunk, self.n_pos, self.n_tokens = chunk, n_pos, n_tokens
        self._free = weakref.finalize(self, mtmd_cpp.mtmd_input_chunk_free, chunk)

    def close(self) -> None:
        self._free()


@dataclass
class ImageTimings:
    """What evaluating a prompt's images cost: images evaluated, their positions, and the milliseconds of encoding
    and decoding them (the KV cache's own images are not evaluated again)."""

    images: int = 0
    tokens: int = 0
    ms: float = 0.0


class Projector:
    """libmtmd's context over one loaded text model: tokenizes prompts with images and evaluates their images."""

    def __init__(self, path: Path, llm: Any, *, use_gpu: bool, n_threads: int) -> None:
        from llama_cpp import mtmd_cpp

        from edgellm.engine.llama_log import route_projector_log

        route_projector_log()
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        params.media_marker = MARKER.encode()
        self.path = path
        self.context = mtmd_cpp.mtmd_init_from_file(str(path).encode(), llm.model, params)
        if not self.context:
            raise LoadFailed(
                f"{path}: llama.cpp could not load this projector for the model (its type or its sizes do not match "
                f"the model); use the mmproj file published with this model",
                path,
                "other",
            )
        if not mtmd_cpp.mtmd_support_vision(self.context):
            self.close()
            raise NoVision(
                f"{path.name} is not an image projector (it reads audio): use the model's vision mmproj file",
                "",
                path.name,
                "no vision",
            )
        self._chunks: OrderedDict[str, ImageChunk] = OrderedDict()
        self._lock = threading.Lock()

    def tokenize(self, text: str, images: Sequence[Image], *, add_bos: bool, special: bool = True) -> list[int]:
        """The prompt's tokens, each image (in the order of the MARKERs in `text`) a run of its image token; the text
        tokenized with its special tokens parsed (a chat prompt's) or not (a raw prompt's)."""
        from llama_cpp import mtmd_cpp

        if text.count(MARKER) != len(images):
            raise ValueError(f"{text.count(MARKER)} image markers for {len(images)} images")
        bitmaps = [self._bitmap(image) for image in images]
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        try:
            encoded = text.encode("utf-8")
            given = mtmd_cpp.mtmd_input_text(encoded, len(encoded), add_bos, special)
            array = (mtmd_cpp.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            with self._lock:
                status = mtmd_cpp.mtmd_tokenize(self.context, chunks, ctypes.byref(given), array, len(bitmaps))
            if status != 0:
                raise ImageRefused(
                    f"llama.cpp could not prepare the image for this model (libmtmd status {status})",
                    images[0].name if images else "",
                    "not-image",
                )
            return self._tokens(chunks, images)
        finally:
            mtmd_cpp.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                mtmd_cpp.mtmd_bitmap_free(bitmap)

    def _bitmap(self, image: Image) -> Any:
        """The image decoded by llama.cpp (stb_image), named by its digest."""
        from llama_cpp import mtmd_cpp

        buffer = (ctypes.c_uint8 * len(image.data)).from_buffer_copy(image.data)
        bitmap = mtmd_cpp.mtmd_helper_bitmap_init_from_buf(self.context, buffer, len(image.data), False)
        if not bitmap:
            raise ImageRefused(
                f"{image.name}: llama.cpp could not decode this {image.format.upper()} image (damaged, or a variant "
                f"its decoder does not read): save it again as PNG or JPEG",
                image.name,
                "not-image",
            )
        mtmd_cpp.mtmd_bitmap_set_id(bitmap, image.digest.encode())
        return bitmap

    def _tokens(self, chunks: Any, images: Sequence[Image]) -> list[int]:
        from llama_cpp import mtmd_cpp

        tokens: list[int] = []
        pictures = iter(images)
        for index in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, index)
            if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t()
                found = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                tokens.extend(found[i] for i in range(count.value))
                continue
            image = next(pictures)
            n_pos = int(mtmd_cpp.mtmd_input_chunk_get_n_pos(chunk))
            self._keep(image.digest, chunk, n_pos)
            tokens.extend([image_token(image.digest)] * n_pos)
        return tokens

    def _keep(self, digest: str, chunk: Any, n_pos: int) -> None:
        """Keep the image's chunk (a copy, the chunks list is freed) for `evaluate`, the most recent KEPT_IMAGES."""
        from llama_cpp import mtmd_cpp

        with self._lock:
            if digest in self._chunks:
                self._chunks.move_to_end(digest)
                return
            owned = mtmd_cpp.mtmd_input_chunk_copy(chunk)
            n_tokens = int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk))
            self._chunks[digest] = ImageChunk(owned, n_pos, n_tokens)
            while len(self._chunks) > KEPT_IMAGES:
                self._chunks.popitem(last=False)  # freed once no generation holds it either

    def chunks_for(self, prompt: list[int]) -> dict[int, ImageChunk]:
        """The images of a prompt this projector tokenized, by image token: what its generation holds until it has
        evaluated them. EngineFailed for an image it no longer holds (tokenized long ago, or by another model)."""
        wanted = {token for token in prompt if is_image_token(token)}
        with self._lock:
            found = {
                image_token(digest): chunk for digest, chunk in self._chunks.items() if image_token(digest) in wanted
            }
        if len(found) < len(wanted):
            raise EngineFailed("an image of this prompt is no longer held by the model's projector: send it again")
        return found

    def evaluate(
        self,
        llm: Any,
        prompt: list[int],
        chunks: dict[int, ImageChunk],
        n_batch: int,
        cancel: threading.Event | None = None,
    ) -> ImageTimings:
        """Evaluate `prompt` up to the end of its last image not already in the KV cache (text through
        llama-cpp-python, images through libmtmd), so that the generation evaluates only text after it."""
        timings = ImageTimings()
        last = max((i for i, token in enumerate(prompt) if is_image_token(token)), default=-1)
        if last < 0:
            return timings
        start = resume_point(llm.input_ids[: llm.n_tokens].tolist(), prompt[: last + 1])
        if start > last:
            return timings  # every image is in the KV cache already
        from edgellm.engine import compat

        start = compat.keep_prefix(llm, start)
        position = start
        while position <= last:
            if cancel is not None and cancel.is_set():
                return timings
            token = prompt[position]
            if not is_image_token(token):
                end = position
                while end <= last and not is_image_token(prompt[end]):
                    end += 1
                llm.eval(prompt[position:end])
                position = end
                continue
            image = chunks[token]
            ms = self.decode_image(compat.context_of(llm), image, position, 0, n_batch)
            timings.ms += ms
            timings.images += 1
            timings.tokens += image.n_pos
            compat.record_held(llm, position, [token] * image.n_pos)
            position += image.n_pos
        return timings

    def decode_image(self, context: Any, image: ImageChunk, position: int, sequence: int, n_batch: int) -> float:
        """Encode `image` and decode its embeddings into `sequence` of the llama_context `context` from `position` on;
        the milliseconds it took. EngineFailed when llama.cpp fails."""
        from llama_cpp import llama_cpp as raw
        from llama_cpp import mtmd_cpp

        started = time.perf_counter()
        new_position = raw.llama_pos(0)
        with self._lock:
            status = mtmd_cpp.mtmd_helper_eval_chunk_single(
                self.context, context, image.chunk, position, sequence, n_batch, False, ctypes.byref(new_position)
            )
        if status != 0:
            raise EngineFailed(f"llama.cpp failed to evaluate an image (libmtmd status {status})")
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        from llama_cpp import mtmd_cpp

        for chunk in self._chunks.values():
            chunk.close()  # the model goes: no generation runs on it any more
        self._chunks.clear()
        if self.context:
            mtmd_cpp.mtmd_free(self.context)
            self.context = None
