"""Chat templates: the model's own (from the GGUF), or a fallback for its architecture when it has none.

Rendering goes through edgellm.templates.sandbox: Jinja's immutable sandbox with the same extensions as Hugging
Face's, and bounds on time and size (a template is code from whoever made the GGUF). A base model without a template
(the Gemma 3 test model) still chats
in its family's turn format rather than llama-2's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edgellm.templates.sandbox import BoundedTemplate

# Fallback templates, written for edgellm. Each keeps an assistant message verbatim (no trim), so that the
# rendered history extends the previous prompt and the KV cache is reused across turns.
GEMMA = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\\n\\n' %}"
    "{% elif m['role'] == 'user' %}{{ '<start_of_turn>user\\n' + ns.system + m['content'] + '<end_of_turn>\\n' }}"
    "{% set ns.system = '' %}"
    "{% else %}{{ '<start_of_turn>model\\n' + m['content'] + '<end_of_turn>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
PHI3 = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% set ns = namespace(system='') %}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\\n\\n' %}"
    "{% elif m['role'] == 'user' %}{{ '[INST] ' + ns.system + m['content'] + ' [/INST]' }}{% set ns.system = '' %}"
    "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"
)
FALLBACKS = {
    "gemma": (GEMMA, "<end_of_turn>"),
    "chatml": (CHATML, "<|im_end|>"),
    "llama3": (LLAMA3, "<|eot_id|>"),
    "phi3": (PHI3, "<|end|>"),
    "mistral": (MISTRAL, "</s>"),
}
ARCH_FAMILIES = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3n": "gemma",
    "phi3": "phi3",
    "llama": "llama3",
    "mistral": "mistral",
    "mistral3": "mistral",
}


@dataclass(frozen=True)
class ChatTemplate:
    name: str  # "model" for the GGUF's own template, else the fallback family
    source: str
    stop: tuple[str, ...]  # text that ends a reply, besides the model's end-of-generation tokens

    def render(
        self,
        messages: list[dict[str, Any]],
        bos_token: str,
        eos_token: str,
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The prompt text. Reasoning goes back to the model by the template's own rule: every earlier reply
        carries it as `reasoning_content`, which a template uses or ignores (live or loaded alike). `tools`: the
        functions the model may call, as the OpenAI API gives them."""
        compiled = self.compile(bos_token, eos_token, add_generation_prompt)
        return compiled.render(messages, tools=tools) if tools else compiled.render(messages)

    def compile(self, bos_token: str, eos_token: str, add_generation_prompt: bool = True) -> BoundedTemplate:
        """The template compiled (once: compiling costs ~8 ms, and every turn renders it several times)."""
        return _formatter(self.source, eos_token, bos_token, add_generation_prompt)


@functools.lru_cache(maxsize=8)
def _formatter(source: str, eos_token: str, bos_token: str, add_generation_prompt: bool) -> BoundedTemplate:
    """One template compiled in the bounded sandbox, with its special tokens."""
    return BoundedTemplate(source, bos_token, eos_token, add_generation_prompt)


def fallback_family(architecture: str, has_llama3_tokens: bool) -> str:
    family = ARCH_FAMILIES.get(architecture, "chatml")
    if family == "llama3" and not has_llama3_tokens:
        return "mistral"  # llama-2 era models: [INST] turns
    return family


def choose(model_template: str | None, architecture: str, has_llama3_tokens: bool = False) -> ChatTemplate:
    """The model's own template when the GGUF has one, else the fallback for its architecture."""
    if model_template:
        return ChatTemplate("model", model_template, ())
    family = fallback_family(architecture, has_llama3_tokens)
    source, stop = FALLBACKS[family]
    return ChatTemplate(family, source, (stop,))


TUNED_WORD = re.compile(r"(?<![a-z0-9])(it|instruct|chat)(?![a-z0-9])", re.IGNORECASE)


def looks_like_base_model(has_template: bool, names: Iterable[str]) -> bool:
    """A base model: no chat template of its own, and no `it`, `instruct` or `chat` as a whole word in any of its
    names (file name, general.name, basename, finetune). It continues text instead of answering."""
    return not has_template and not any(TUNED_WORD.search(name or "") for name in names)
