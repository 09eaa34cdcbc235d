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
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgellm.errors import EngineFailed, ImageRefused, LoadFailed, NoVision
from edgellm.media import MARKER
from edgellm.media.images import Image

KEPT_CHUNKS = 4  # tokenized images kept ready (each holds its preprocessed pixels: ~10 MB for Gemma 3's 896 px)
KEPT_IMAGES = 256  # images whose bytes are kept to tokenize again when their chunk is needed and was let go


def image_token(digest: str, tile: int = 0) -> int:
    """The id that stands for the positions of an image's chunk (its `tile`: a model that cuts an image into several
    has one chunk each) in a prompt: negative, and the same for the same bytes."""
    key = hashlib.sha256(f"{digest}#{tile}".encode()).hexdigest()
    return -1 - (int(key[:8], 16) & 0x7FFFFFFF)


def is_image_token(token: int) -> bool:
    return token < 0


def resume_point(held: list[int], prompt: list[int]) -> int:
    """How many leading tokens of `prompt` a KV cache holding `held` can keep: their common prefix, cut back to the
    start of an image it would end inside (an image is evaluated whole)."""
    count = 0  # engine.generate.common_prefix, written again: generate imports this module
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
    """One image (or one tile of it) tokenized by libmtmd: its chunk, owned and freed by `close`, and how many context
    positions it takes."""

    def __init__(self, chunk: Any, n_pos: int) -> None:
        self.chunk, self.n_pos = chunk, n_pos

    def close(self) -> None:
        from llama_cpp import mtmd_cpp

        if self.chunk is not None:
            mtmd_cpp.mtmd_input_chunk_free(self.chunk)
            self.chunk = None


@dataclass
class ImageTimings:
    """What evaluating a prompt's images cost: the positions they take, and the milliseconds of encoding
    and decoding them (the KV cache's own images are not evaluated again)."""

    tokens: int = 0
    ms: float = 0.0


class Projector:
    """libmtmd's context over one loaded text model: tokenizes prompts with images and evaluates their images."""

    def __init__(self, path: Path, llm: Any, *, use_gpu: bool, n_threads: int) -> None:
        from llama_cpp import mtmd_cpp

        from edgellm.engine.llama_log import route_projector_log

        route_projector_log()
        self._chunks: OrderedDict[int, ImageChunk] = OrderedDict()  # by image token, the most recent last
        self._images: OrderedDict[int, tuple[Image, int]] = OrderedDict()  # by image token: the image, its tile
        self._lock = threading.Lock()  # the two tables
        self._encoding = threading.Lock()  # one image encoded at a time (the encoder's buffers are one)
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
        if mtmd_cpp.mtmd_decode_use_mrope(self.context):
            self.close()
            raise NoVision(
                f"{path.name} places an image's tokens in two dimensions (M-RoPE: the Qwen2-VL family), which edgellm "
                f"does not support yet: use a model of another family (Gemma 3, SmolVLM), or --no-mmproj",
                "",
                path.name,
                "M-RoPE",
            )

    def tokenize(self, text: str, images: Sequence[Image], *, add_bos: bool, special: bool = True) -> list[int]:
        """The prompt's tokens, each image (in the order of the MARKERs in `text`) a run of its image token; the text
        tokenized with its special tokens parsed (a chat prompt's) or not (a raw prompt's)."""
        from llama_cpp import mtmd_cpp

        if text.count(MARKER) != len(images):
            raise ValueError(f"{text.count(MARKER)} image markers for {len(images)} images")
        bitmaps: list[Any] = []
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        try:
            for image in images:
                bitmaps.append(self._bitmap(image))
            encoded = text.encode("utf-8")
            given = mtmd_cpp.mtmd_input_text(encoded, len(encoded), add_bos, special)
            array = (mtmd_cpp.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
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
        """The chunks as tokens: text chunks their tokens, each image chunk (an image, or a tile of one: a model may
        cut an image in several, with text between) a run of its own image token, one per position."""
        from llama_cpp import mtmd_cpp

        by_digest = {image.digest: image for image in images}
        tiles: dict[str, int] = {}
        tokens: list[int] = []
        for index in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, index)
            if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t()
                found = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                tokens.extend(found[i] for i in range(count.value))
                continue
            digest = (mtmd_cpp.mtmd_input_chunk_get_id(chunk) or b"").decode()
            if digest not in by_digest:
                raise EngineFailed(f"libmtmd returned an image chunk of no image of this prompt ({digest[:12]!r})")
            tile = tiles[digest] = tiles.get(digest, -1) + 1
            token = image_token(digest, tile)
            n_pos = int(mtmd_cpp.mtmd_input_chunk_get_n_pos(chunk))
            self._keep(token, by_digest[digest], tile, chunk, n_pos)
            tokens.extend([token] * n_pos)
        return tokens

    def _keep(self, token: int, image: Image, tile: int, chunk: Any, n_pos: int) -> None:
        """Keep the chunk (a copy: the chunks list is freed) ready for evaluation, the most recent KEPT_CHUNKS, and
        the image's bytes longer, to tokenize it again when its chunk is needed after it was let go."""
        from llama_cpp import mtmd_cpp

        with self._lock:
            self._images[token] = (image, tile)
            self._images.move_to_end(token)
            while len(self._images) > KEPT_IMAGES:
                self._images.popitem(last=False)
            if token in self._chunks:
                self._chunks.move_to_end(token)
                return
            self._chunks[token] = ImageChunk(mtmd_cpp.mtmd_input_chunk_copy(chunk), n_pos)
            while len(self._chunks) > KEPT_CHUNKS:
                self._chunks.popitem(last=False)[1].close()

    def chunk(self, token: int) -> ImageChunk:
        """The chunk an image token stands for, tokenized again from the image's bytes when it was let go;
        EngineFailed when this projector never saw the image (or saw KEPT_IMAGES others since)."""
        with self._lock:
            found = self._chunks.get(token)
            if found is not None:
                self._chunks.move_to_end(token)
                return found
            known = self._images.get(token)
        if known is None:
            raise EngineFailed("an image of this prompt is no longer held by the model's projector: send it again")
        self.tokenize(MARKER, [known[0]], add_bos=False)
        with self._lock:
            found = self._chunks.get(token)
        if found is None:
            raise EngineFailed("libmtmd tokenized an image differently the second time: send it again")
        return found

    def evaluate(
        self, llm: Any, prompt: list[int], n_batch: int, cancel: threading.Event | None = None
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
            image = self.chunk(token)
            ms = self.decode_image(compat.context_of(llm), image, position, 0, n_batch)
            timings.ms += ms
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
        with self._encoding:
            status = mtmd_cpp.mtmd_helper_eval_chunk_single(
                self.context, context, image.chunk, position, sequence, n_batch, False, ctypes.byref(new_position)
            )
        if status != 0:
            raise EngineFailed(f"llama.cpp failed to evaluate an image (libmtmd status {status})")
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        from llama_cpp import mtmd_cpp

        with self._lock:
            for chunk in self._chunks.values():
                chunk.close()  # the model goes: no generation runs on it any more
            self._chunks.clear()
        if self.context:
            mtmd_cpp.mtmd_free(self.context)
            self.context = None
