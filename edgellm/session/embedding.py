"""Embeddings for the front ends: the model -m names, opened in embedding mode on this machine (`open_embedding`).
Front ends word the rest (and scale vectors to length 1 with `api.openai.normalize` where their API asks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgellm import paths
from edgellm.engine.llama_log import LlamaLog
from edgellm.hw.detect import detect_this_machine
from edgellm.session.flags import Flags
from edgellm.session.opening import local_model
from edgellm.storage import store
from edgellm.storage.specs import read_spec

if TYPE_CHECKING:
    from edgellm.engine.embed import Embedder


def gpu_layer_count(asked: str | int) -> int:
    """The layers put on the GPU for an embedding model: all of them (-1) unless a count is asked. Nothing is planned:
    embedding models are small, and where there is no GPU llama.cpp puts none there."""
    return -1 if asked in ("auto", "all") else int(asked)


def open_embedding(flags: Flags, n_ctx: int | None = None) -> Embedder:
    """The model `flags.model` names (a GGUF file or a stored model's name), checked (ModelFileError in one line for
    a missing or bad file, before llama.cpp is asked) and opened in embedding mode with `flags.threads` (default:
    this machine's performance cores) and a context of `n_ctx` tokens (None: the engine chooses)."""
    from edgellm.engine.embed import open_embedder

    assert flags.model is not None, "the front end asks for a model first"
    path, stored = local_model(flags.model)
    read_spec(path)
    if stored is not None:
        store.touch(stored)
    threads = flags.threads or detect_this_machine().cpu.performance_cores
    log = LlamaLog(paths.log_path(), echo=flags.verbose)
    return open_embedder(path, threads, gpu_layer_count(flags.gpu_layers), log, n_ctx)
