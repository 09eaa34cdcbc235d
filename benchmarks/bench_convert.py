"""`edgellm convert` on a synthetic llama checkpoint: MB/s against a plain file copy of the same bytes (the anchor,
measured in the same run) and the converter's peak RSS against the checkpoint's size.

Goal (issue 9): peak RSS under 300 MB whatever the model's size. The checkpoint is bf16, in two shards, with a
trained BPE tokenizer; conversion writes f16 (and, with --quant, times llama.cpp's quantize step too).
Usage: .venv/bin/python benchmarks/bench_convert.py [--layers 5] [--quant Q4_K_M]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO

sys.path.insert(0, str(REPO / "tests"))

HIDDEN, FF, HEADS, KV_HEADS, VOCAB = 2048, 5632, 32, 4, 32000


def bf16(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random bf16 weights as raw uint16 (a tiled block: real sizes without minutes of random numbers)."""
    block = (rng.standard_normal(1 << 20) * 0.02).astype(np.float32).view(np.uint32) >> 16
    count = int(np.prod(shape))
    return np.resize(block.astype(np.uint16), count).reshape(shape)


def write_checkpoint(folder: Path, layers: int) -> int:
    """A llama checkpoint in two safetensors shards with an index; returns its size in bytes."""
    from test_convert_vocab import PRE_TOKENIZERS, _train_bpe

    rng = np.random.default_rng(0)
    head_dim = HIDDEN // HEADS
    tensors: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,),
                                           "lm_head.weight": (VOCAB, HIDDEN)}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors.update({p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
                        p + "self_attn.k_proj.weight": (KV_HEADS * head_dim, HIDDEN),
                        p + "self_attn.v_proj.weight": (KV_HEADS * head_dim, HIDDEN),
                        p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
                        p + "mlp.gate_proj.weight": (FF, HIDDEN), p + "mlp.up_proj.weight": (FF, HIDDEN),
                        p + "mlp.down_proj.weight": (HIDDEN, FF),
                        p + "input_layernorm.weight": (HIDDEN,), p + "post_attention_layernorm.weight": (HIDDEN,)})
    names = list(tensors)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for index, half in enumerate(halves, start=1):
        shard = f"model-{index:05d}-of-00002.safetensors"
        write_bf16_shard(folder / shard, {name: tensors[name] for name in half}, rng)
        weight_map.update({name: shard for name in half})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": FF,
        "num_hidden_layers": layers, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "vocab_size": VOCAB, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 0, "eos_token_id": 1}))
    tokenizer = _train_bpe(Path(tempfile.mkdtemp(prefix="edgellm-tok-")), PRE_TOKENIZERS["llama-bpe"])
    for file in tokenizer.iterdir():
        shutil.copy(file, folder / file.name)
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def write_bf16_shard(path: Path, shapes: dict[str, tuple[int, ...]], rng: np.random.Generator) -> None:
    """A safetensors file of bf16 tensors, written one tensor at a time (numpy has no bf16: raw 16-bit words)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text)
        for name, shape in shapes.items():
            handle.write(bf16(shape, rng).tobytes())


def timed_child(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a child process."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{child.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--quant", default=None, help="also time quantizing to this quant (e.g. Q4_K_M)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-convert-") as tmp:
        source = Path(tmp) / "synthetic-llama"
        source.mkdir()
        size = write_checkpoint(source, options.layers)
        started = time.perf_counter()
        for shard in source.glob("*.safetensors"):
            shutil.copyfile(shard, Path(tmp) / (shard.name + ".copy"))
        copy_s = time.perf_counter() - started
        for copy in Path(tmp).glob("*.copy"):
            copy.unlink()
        env_python = [sys.executable, "-m", "edgellm", "convert", str(source)]
        f16 = Path(tmp) / "out-F16.gguf"
        convert_s, rss = timed_child(env_python + ["-o", str(f16), "--quant", "F16"])
        print(f"synthetic llama, {options.layers} layers, {size / 2**20:,.0f} MiB bf16 in 2 shards -> f16")
        print(f"  plain copy of the same bytes: {size / 2**20 / copy_s:,.0f} MiB/s (the anchor)")
        print(f"  edgellm convert:             {size / 2**20 / convert_s:,.0f} MiB/s, {convert_s:.1f} s, "
              f"ratio to the copy {copy_s / convert_s:.2f}")
        print(f"  peak RSS: {rss / 2**20:,.0f} MiB for a {size / 2**20:,.0f} MiB checkpoint (goal < 300 MiB)")
        if options.quant:
            quantized = Path(tmp) / f"out-{options.quant}.gguf"
            quant_s, quant_rss = timed_child(env_python + ["-o", str(quantized), "--quant", options.quant])
            print(f"  convert + quantize to {options.quant}: {quant_s:.1f} s (quantize alone about "
                  f"{quant_s - convert_s:.1f} s), peak RSS of the parent {quant_rss / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
