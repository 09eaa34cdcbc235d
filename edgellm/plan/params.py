"""A plan carried out: the llama.cpp load parameters that a plan (or a split) chose. Pure; written once for every
command that loads a model."""

from __future__ import annotations

from pathlib import Path

from edgellm.engine.contract import LoadParams
from edgellm.plan.planner import Plan
from edgellm.plan.split import SplitPlan


def load_params(path: Path, plan: Plan, seed: int = -1) -> LoadParams:
    """The llama.cpp parameters that carry a single-machine plan out."""
    return LoadParams(
        path=path,
        n_ctx=plan.n_ctx,
        n_threads=plan.n_threads,
        n_threads_batch=plan.n_threads_batch,
        n_gpu_layers=plan.n_gpu_layers,
        flash_attn=plan.flash_attn,
        kv=plan.kv,
        seed=seed,
        n_batch=plan.n_ubatch,
        use_mmap=plan.use_mmap,
        use_mlock=plan.use_mlock,
        parallel=plan.parallel,
    )


def split_load_params(
    path: Path, split: SplitPlan, workers: tuple[str, ...], threads: int, flash_attn: bool, seed: int = -1
) -> LoadParams:
    """The llama.cpp parameters that carry a split across RPC `workers` (HOST:PORT, in order) out: this machine's
    `threads`, the output layer kept here."""
    return LoadParams(
        path=path,
        n_ctx=split.n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=split.n_gpu_layers,
        flash_attn=flash_attn,
        kv=split.kv,
        seed=seed,
        rpc_servers=workers,
        tensor_split=split.tensor_split,
        output_here=True,
    )
