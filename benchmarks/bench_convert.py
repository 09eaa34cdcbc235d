"""`edgellm convert` on a synthetic llama checkpoint: MB/s against a plain file copy of the same bytes (the anchor,
measured in the same run) and the converter's peak RSS against the checkpoint's size.

A second anchor, in the same run on the same input: llama.cpp's own convert_hf_to_gguf.py (from llama-cpp-python's
sdist, unpacked by the install: `buildconfig.llama_cpp_source`), run in its folder with this environment's python,
torch and transformers and its own gguf-py; its MiB/s and peak RSS are printed beside edgellm's, with ratios.

Goal (issue 9): peak RSS under 300 MB whatever the model's size. The checkpoint is bf16, in two shards, about 1 GB
(9 layers), with a trained SentencePiece tokenizer (or --tokenizer bpe); conversion writes f16, and the quantize step
to Q4_K_M is timed too (--quant none skips it).
Without torch and transformers in this environment (or without llama.cpp's source), the llama.cpp anchor is skipped
with a note. Fewer layers run shorter: --layers 3 is about 530 MB of bf16, still above the 300 MB goal.
Usage: .venv/bin/python benchmarks/bench_convert.py [--layers 9] [--tokenizer spm|bpe] [--quant Q4_K_M|none]
           [--no-llama-cpp] [--json PATH]
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
from _common import REPO, Findings, add_json_flag

sys.path.insert(0, str(REPO))

HIDDEN, FF, HEADS, KV_HEADS, VOCAB = 2048, 5632, 32, 4, 32000
RSS_GOAL_MIB = 300
ANCHOR_PYTHON = REPO / ".venv" / "bin" / "python"


def bf16(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random bf16 weights as raw uint16 (a tiled block: real sizes without minutes of random numbers)."""
    block = (rng.standard_normal(1 << 20) * 0.02).astype(np.float32).view(np.uint32) >> 16
    count = int(np.prod(shape))
    return np.resize(block.astype(np.uint16), count).reshape(shape)


def write_checkpoint(folder: Path, layers: int, tokenizer_kind: str = "spm") -> int:
    """A llama checkpoint in two safetensors shards with an index; returns its size in bytes."""
    from tests.support.checkpoints import PRE_TOKENIZERS, train_bpe, train_spm

    rng = np.random.default_rng(0)
    head_dim = HIDDEN // HEADS
    tensors: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (VOCAB, HIDDEN),
        "model.norm.weight": (HIDDEN,),
        "lm_head.weight": (VOCAB, HIDDEN),
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors.update(
            {
                p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
                p + "self_attn.k_proj.weight": (KV_HEADS * head_dim, HIDDEN),
                p + "self_attn.v_proj.weight": (KV_HEADS * head_dim, HIDDEN),
                p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
                p + "mlp.gate_proj.weight": (FF, HIDDEN),
                p + "mlp.up_proj.weight": (FF, HIDDEN),
                p + "mlp.down_proj.weight": (HIDDEN, FF),
                p + "input_layernorm.weight": (HIDDEN,),
                p + "post_attention_layernorm.weight": (HIDDEN,),
            }
        )
    names = list(tensors)
    halves = [names[: len(names) // 2], names[len(names) // 2 :]]
    weight_map = {}
    for index, half in enumerate(halves, start=1):
        shard = f"model-{index:05d}-of-00002.safetensors"
        write_bf16_shard(folder / shard, {name: tensors[name] for name in half}, rng)
        weight_map.update({name: shard for name in half})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": HIDDEN,
                "intermediate_size": FF,
                "num_hidden_layers": layers,
                "num_attention_heads": HEADS,
                "num_key_value_heads": KV_HEADS,
                "vocab_size": VOCAB,
                "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-5,
                "rope_theta": 10000.0,
                "tie_word_embeddings": False,
                "torch_dtype": "bfloat16",
                "bos_token_id": 0,
                "eos_token_id": 1,
            }
        )
    )
    scratch = Path(tempfile.mkdtemp(prefix="edgellm-tok-"))
    if tokenizer_kind == "spm":
        tokenizer = train_spm(scratch)
    else:
        tokenizer = train_bpe(scratch, PRE_TOKENIZERS["llama-bpe"])
    for file in tokenizer.iterdir():
        shutil.copy(file, folder / file.name)
    shutil.rmtree(scratch, ignore_errors=True)
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
        for shape in shapes.values():
            handle.write(bf16(shape, rng).tobytes())


def timed_child(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a child process, measured by /usr/bin/time: a child forked from this
    process would count this process's own memory (the written checkpoint) in its peak. Its stderr goes to a file,
    so a chatty child never blocks on a full pipe."""
    with tempfile.TemporaryFile() as log, tempfile.NamedTemporaryFile("r") as rss:
        started = time.perf_counter()
        status = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=cwd,
            env=env,
        ).returncode
        elapsed = time.perf_counter() - started
        if status != 0:
            log.seek(0)
            raise SystemExit(f"failed: {' '.join(argv)}\n{log.read().decode(errors='replace')[-4000:]}")
        peak_kib = int(rss.read().split()[-1])
    return elapsed, peak_kib * 1024


def anchor_convert(source: Path, out: Path) -> tuple[float, int]:
    """llama.cpp's convert_hf_to_gguf.py on `source` to f16, run from its own folder with this environment's
    python (torch, transformers) and its own gguf-py: wall seconds and peak RSS, measured as for edgellm."""
    from edgellm.hw.buildconfig import llama_cpp_source

    folder = llama_cpp_source()
    env = dict(os.environ, PYTHONPATH=str(folder / "gguf-py"))
    env.pop("NO_LOCAL_GGUF", None)
    argv = [str(ANCHOR_PYTHON), "convert_hf_to_gguf.py", str(source), "--outtype", "f16", "--outfile", str(out)]
    return timed_child(argv, cwd=folder, env=env)


def anchor_missing() -> str | None:
    """Why llama.cpp's converter can't run here (its python lacks torch or transformers, or its source can't be
    fetched), or None when it can; fetches the source once, before anything is timed."""
    probe = subprocess.run([str(ANCHOR_PYTHON), "-c", "import torch, transformers"], capture_output=True, text=True)
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or ["import failed"]
        return f"{ANCHOR_PYTHON} can't import torch and transformers ({lines[-1]})"
    try:
        from edgellm.hw.buildconfig import llama_cpp_source

        llama_cpp_source()
    except (Exception, SystemExit) as error:
        return f"llama.cpp's source could not be fetched: {error}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--layers",
        type=int,
        default=9,
        help="decoder layers (9: about 1 GB of bf16; each layer about 88 MB, plus 262 MB)",
    )
    parser.add_argument(
        "--tokenizer",
        choices=("spm", "bpe"),
        default="spm",
        help="a trained SentencePiece tokenizer.model (default) or a byte-level BPE tokenizer.json",
    )
    parser.add_argument("--quant", default="Q4_K_M", help="also time quantizing to this quant ('none' to skip)")
    parser.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp convert_hf_to_gguf.py anchor")
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("convert", "edgellm convert: MiB/s against a file copy and llama.cpp's converter, peak RSS")
    skip_anchor = "--no-llama-cpp given" if options.no_llama_cpp else anchor_missing()
    if skip_anchor:
        findings.note(f"llama.cpp convert_hf_to_gguf.py anchor skipped: {skip_anchor}")
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-convert-") as tmp:
        source = Path(tmp) / "synthetic-llama"
        source.mkdir()
        size = write_checkpoint(source, options.layers, options.tokenizer)
        started = time.perf_counter()
        for shard in source.glob("*.safetensors"):
            shutil.copyfile(shard, Path(tmp) / (shard.name + ".copy"))
        copy_s = time.perf_counter() - started
        for copy in Path(tmp).glob("*.copy"):
            copy.unlink()
        env_python = [sys.executable, "-m", "edgellm", "convert", str(source)]
        f16 = Path(tmp) / "out-F16.gguf"
        convert_s, rss = timed_child(env_python + ["-o", str(f16), "--quant", "F16"])
        f16.unlink()
        anchor_s = anchor_rss = None
        if not skip_anchor:
            try:
                anchor_s, anchor_rss = anchor_convert(source, Path(tmp) / "anchor-F16.gguf")
            except SystemExit as error:  # the anchor failing is a note, not the end of the benchmark
                findings.note(f"llama.cpp convert_hf_to_gguf.py anchor failed: {str(error.code)[-600:]}")
                print(f"  llama.cpp convert_hf_to_gguf.py failed: {error.code}")
            (Path(tmp) / "anchor-F16.gguf").unlink(missing_ok=True)
        mib = size / 2**20
        setting = (
            f"synthetic llama, {options.layers} layers, {mib:,.0f} MiB bf16 in 2 shards, {options.tokenizer} "
            f"tokenizer -> f16"
        )
        print(setting)
        findings.note(f"{setting}; one run of each")
        print(f"  plain copy of the same bytes:     {mib / copy_s:7,.0f} MiB/s")
        print(
            f"  edgellm convert:                  {mib / convert_s:7,.0f} MiB/s, {convert_s:6.1f} s, "
            f"peak RSS {rss / 2**20:6,.0f} MiB (goal < {RSS_GOAL_MIB} MiB)"
        )
        copy_label = "plain copy of the same bytes"
        findings.figure("checkpoint size (bf16)", mib, "MiB")
        findings.figure(copy_label, mib / copy_s, "MiB/s")
        findings.figure("edgellm convert to f16", mib / convert_s, "MiB/s")
        findings.figure("edgellm convert to f16, wall time", convert_s, "s")
        findings.figure("edgellm convert to f16, peak RSS", rss / 2**20, "MiB")
        findings.figure("edgellm convert / plain copy, MiB/s", copy_s / convert_s, "ratio", anchor=copy_label)
        if anchor_s is not None and anchor_rss is not None:
            print(
                f"  llama.cpp convert_hf_to_gguf.py:  {mib / anchor_s:7,.0f} MiB/s, {anchor_s:6.1f} s, "
                f"peak RSS {anchor_rss / 2**20:6,.0f} MiB (the anchor)"
            )
            print(
                f"  ratios: edgellm / llama.cpp MiB/s {anchor_s / convert_s:.2f}, peak RSS "
                f"{rss / anchor_rss:.2f}; edgellm / plain copy MiB/s {copy_s / convert_s:.2f}"
            )
            theirs_label = "llama.cpp convert_hf_to_gguf.py to f16"
            theirs_rss_label = f"{theirs_label}, peak RSS"
            findings.figure(theirs_label, mib / anchor_s, "MiB/s")
            findings.figure(f"{theirs_label}, wall time", anchor_s, "s")
            findings.figure(theirs_rss_label, anchor_rss / 2**20, "MiB")
            findings.figure("edgellm / llama.cpp, MiB/s", anchor_s / convert_s, "ratio", anchor=theirs_label)
            findings.figure("edgellm / llama.cpp, peak RSS", rss / anchor_rss, "ratio", anchor=theirs_rss_label)
        else:
            print(f"  llama.cpp convert_hf_to_gguf.py:  skipped ({skip_anchor or 'failed'})")
            print(f"  ratio: edgellm / plain copy MiB/s {copy_s / convert_s:.2f}")
        findings.goal(f"edgellm convert peak RSS under {RSS_GOAL_MIB} MiB", rss / 2**20, "<=", RSS_GOAL_MIB)
        if options.quant and options.quant.lower() != "none":
            quantized = Path(tmp) / f"out-{options.quant}.gguf"
            quant_s, quant_rss = timed_child(env_python + ["-o", str(quantized), "--quant", options.quant])
            print(
                f"  convert + quantize to {options.quant}: {quant_s:.1f} s (quantize alone about "
                f"{quant_s - convert_s:.1f} s), peak RSS {quant_rss / 2**20:,.0f} MiB"
            )
            findings.figure(f"convert + quantize to {options.quant}, wall time", quant_s, "s")
            findings.figure(f"convert + quantize to {options.quant}, peak RSS", quant_rss / 2**20, "MiB")
    findings.save(options.json)


if __name__ == "__main__":
    main()
