"""Tiny Hugging Face checkpoints made on the spot: tokenizers trained here (byte-level BPE with each pre-tokenizer
llama.cpp names, and SentencePiece), and random transformers models of each architecture the converter reads, saved
with save_pretrained. torch, transformers, tokenizers and sentencepiece (dev dependencies) are imported when used.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from edgellm.convert import vocab as vocab_mod

CHAT_TEMPLATE = "{% for m in messages %}<|start|>{{ m['role'] }}\n{{ m['content'] }}<|end|>\n{% endfor %}"

_PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog. It's a sunny day, isn't it? We'll see what they've done.",
    "Café, naïve, façade, jalapeño, über, Straße, crème brûlée, señor, São Paulo, Zürich, Ærø, Łódź.",
    "Numbers: 12345, 3.14, 2.71828, 1,000,000 and 42; dates like 2024-01-31 and times like 12:30.",
    "def f(x):\n    return x*2\n\nclass Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n// C-style comment\n/* block */\n",
    "Emoji: 😀 🚀 🎉 👍🏽 ❤️ — and symbols: € £ ¥ © ® ™ ± × ÷ → ← ≠ ≤ ≥.",
    "Ελληνικά, русский язык, 日本語のテキスト, 中文文本, 한국어, العربية, हिन्दी.",
    "   leading spaces, trailing spaces   \nmultiple    spaces   here\n\n\nnewlines\r\nCRLF\ttabs\t\tdone",
    "I'M SHOUTING! You're whispering... They'd've known. Don't, won't, can't; O'Neil's DOG'S.",
    "Decomposed accents: cafe\u0301 nin\u0303o u\u0308ber, and 1234567 items at 89.99 each; x86_64 HTTPServer.",
    "Mixed123Case456 camelCase snake_case kebab-case SCREAMING_CASE PascalCase x86_64 v2.0.1",
]
CORPUS = [p for _ in range(12) for p in _PARAGRAPHS]


def split_rule(regex: str) -> dict:
    """A tokenizer.json Split pre-tokenizer on `regex`."""
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def byte_level(use_regex: bool) -> dict:
    """A tokenizer.json ByteLevel pre-tokenizer."""
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


# pre_tokenizer (as tokenizer.json holds it) -> the llama.cpp name edgellm must pick for it
PRE_TOKENIZERS = {
    "gpt-2": byte_level(True),
    "llama-bpe": {"type": "Sequence", "pretokenizers": [split_rule(vocab_mod.LLAMA3), byte_level(False)]},
    "qwen2": {"type": "Sequence", "pretokenizers": [split_rule(vocab_mod.QWEN2), byte_level(False)]},
    "qwen35": {"type": "Sequence", "pretokenizers": [split_rule(vocab_mod.QWEN35), byte_level(False)]},
    "granite-embed-multi-97m": {"type": "Sequence", "pretokenizers": [split_rule(vocab_mod.GPT4O), byte_level(False)]},
    "tekken": {"type": "Sequence", "pretokenizers": [split_rule(vocab_mod.TEKKEN), byte_level(False)]},
    "seed-coder": {"type": "Sequence", "pretokenizers": [split_rule(vocab_mod.SEED_CODER), byte_level(False)]},
    "smollm": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level(True)]},
    "deepseek-v3": {
        "type": "Sequence",
        "pretokenizers": [split_rule(r) for r in vocab_mod.DEEPSEEK3] + [byte_level(False)],
    },
}


def train_bpe(folder: Path, pre_tokenizer: dict, *, ignore_merges: bool = False, vocab_size: int = 800) -> Path:
    """Train a byte-level BPE on CORPUS with `pre_tokenizer` and save it as a checkpoint folder holds it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    # Trained on whole paragraphs (byte-level, no split), so the merges cross every boundary a split could make
    # ("e 1", "lC", " 12345"): once the split under test is put in, it alone decides where tokens end, and any
    # difference between llama.cpp's split and HF's shows in the token ids.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|start|>", "<|end|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_tokens(["<think>"])  # an added token that is not special: user-defined, matched in plain text too
    tok.post_processor = processors.TemplateProcessing(single="<|start|> $A", special_tokens=[("<|start|>", 0)])
    data = json.loads(tok.to_str())
    data["pre_tokenizer"] = pre_tokenizer
    data["model"]["ignore_merges"] = ignore_merges
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<|start|>",
                "eos_token": "<|end|>",
                "pad_token": "<|pad|>",
                "chat_template": CHAT_TEMPLATE,
                "clean_up_tokenization_spaces": False,
            }
        ),
        encoding="utf-8",
    )
    return folder


def train_spm(folder: Path, vocab_size: int = 600) -> Path:
    """Train a SentencePiece BPE with byte fallback, as Llama's and Gemma's are, and save tokenizer.model."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(line for p in CORPUS for line in p.splitlines() if line.strip()), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=0.9995,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
            }
        ),
        encoding="utf-8",
    )
    return folder


# The transformers models: small, random, and at one shape (the tokenizer's 3 special ids first).

N_VOCAB = 832  # more rows than the tokenizer's tokens: the GGUF vocabulary is padded to the embedding rows
SHAPE = dict(
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=N_VOCAB,
    max_position_embeddings=512,
    initializer_range=0.1,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=2,
)


def configs():
    """arch -> a function making its transformers config at SHAPE (transformers is imported on the first call)."""
    import transformers as t

    return {
        "llama": lambda: t.LlamaConfig(**SHAPE, tie_word_embeddings=False),
        "qwen2": lambda: t.Qwen2Config(**SHAPE, tie_word_embeddings=True),
        "qwen3": lambda: t.Qwen3Config(**SHAPE, head_dim=32, tie_word_embeddings=False),
        "gemma3": lambda: t.Gemma3TextConfig(
            **SHAPE, head_dim=64, query_pre_attn_scalar=64, sliding_window=16, tie_word_embeddings=True
        ),
        "phi3": lambda: t.Phi3Config(**SHAPE, original_max_position_embeddings=512, tie_word_embeddings=False),
        # Llama 3.1's rope scaling with a short original context, so that most frequencies are scaled
        "llama3-rope": lambda: t.LlamaConfig(
            **SHAPE,
            tie_word_embeddings=False,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
        # Phi-3's long rope: llama.cpp picks the short factors while its context (64, padded to 256) is within the
        # original 256 positions, as transformers does for 32 tokens; both scale attention by the same factor
        "phi3-longrope": lambda: t.Phi3Config(
            **{**SHAPE, "max_position_embeddings": 1024},
            original_max_position_embeddings=256,
            tie_word_embeddings=False,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "long_factor": factors(1.0, 4.0, 3),
                "short_factor": factors(1.0, 2.0, 4),
            },
        ),
        # q/k/v/o and MLP biases (the q and k biases are permuted with their rows)
        "llama-bias": lambda: t.LlamaConfig(**SHAPE, attention_bias=True, mlp_bias=True),
        "mistral": lambda: t.MistralConfig(**SHAPE, sliding_window=4096, tie_word_embeddings=False),
        # a SentencePiece tokenizer (tokenizer.model), as Llama 2's
        "llama-spm": lambda: t.LlamaConfig(**SHAPE, tie_word_embeddings=True),
        "gemma3-spm": lambda: t.Gemma3TextConfig(**SHAPE, head_dim=32, query_pre_attn_scalar=32, sliding_window=512),
    }


def factors(low: float, high: float, seed: int) -> list[float]:
    """Seeded rope factors, one per rotated pair of a head."""
    return [float(x) for x in np.random.default_rng(seed).uniform(low, high, SHAPE["hidden_size"] // 8)]


MODEL_CLASSES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "llama3-rope": "LlamaForCausalLM",
    "phi3-longrope": "Phi3ForCausalLM",
    "llama-bias": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "llama-spm": "LlamaForCausalLM",
    "gemma3-spm": "Gemma3ForCausalLM",
}


def random_checkpoint(arch: str, folder: Path, tokenizer_dir: Path):
    """A tiny random `arch` model saved as safetensors with the test tokenizer; returns (folder, model)."""
    return folder, random_model(MODEL_CLASSES[arch], configs()[arch](), folder, tokenizer_dir)


def random_model(model_class: str, config, folder: Path, tokenizer_dir: Path):
    """A random transformers `model_class` model of `config` (seeded), saved in `folder` with the tokenizer's files."""
    import torch
    import transformers

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(config).float().eval()
    with torch.no_grad():  # norms start at one and biases at zero: make them random so their mapping is checked
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                param.add_(torch.randn_like(param) * 0.2)
    model.save_pretrained(folder, safe_serialization=True)
    for file in tokenizer_dir.iterdir():
        shutil.copy(file, folder / file.name)
    return model


def llama_cpp_logits(path: Path, ids: list[int], *, f32_cache: bool = False) -> np.ndarray:
    """llama.cpp's logits at every position of `ids` on the CPU, one thread. `f32_cache`: an f32 KV cache (llama.cpp's
    default f16 cache alone costs about 1e-6 of NMSE against transformers)."""
    import llama_cpp

    cache = {"type_k": 0, "type_v": 0} if f32_cache else {}  # GGML_TYPE_F32
    llm = llama_cpp.Llama(
        str(path), n_ctx=max(64, len(ids)), logits_all=True, verbose=False, n_threads=1, n_gpu_layers=0, **cache
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()


def nmse(got: np.ndarray, expected: np.ndarray) -> float:
    """Normalized mean squared error of `got` against `expected`."""
    assert got.shape == expected.shape
    return float(np.sum((got - expected) ** 2) / np.sum(expected**2))


def iter_tensors(checkpoint, out_dtype=None, *, reuse: bool = True, chunk_bytes: int | None = None):
    """Yield (info, array) in file order, one at a time; with `reuse` every array is a view of one buffer (the largest
    tensor's size), valid only until the next step: how the writer walks a checkpoint, as a test reads it."""
    import numpy as np

    buffer = None
    if reuse and checkpoint.tensors:
        largest = max(
            info.n_elements * checkpoint.output_dtype(info, out_dtype).itemsize for info in checkpoint.tensors
        )
        buffer = np.empty(largest, np.uint8)
    for info in checkpoint.tensors:
        yield info, checkpoint.read(info.name, out_dtype, buffer=buffer, chunk_bytes=chunk_bytes)
