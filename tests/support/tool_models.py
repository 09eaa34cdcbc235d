"""Copies of the test model that speak a tool-call format: the same weights with another chat template written into
their GGUF metadata, in the style of Qwen 2.5 (Hermes `<tool_call>`), Qwen 3.5 (XML parameters), Llama 3.x (bare
JSON, `ipython` results) and Mistral Nemo (`[TOOL_CALLS]`, 9-character ids). The templates are written for these
tests."""

from __future__ import annotations

import struct
from pathlib import Path

from edgellm.gguf.header import read_header

QWEN = """{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

You may call one or more functions. Their signatures are within <tools></tools>:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each call, write a JSON object with the function's name and arguments within <tool_call></tool_call> tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{% for m in messages %}
{% if m.role == 'system' %}{% continue %}{% endif %}
{% if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant
{% if m.content %}{{ m.content }}
{% endif %}
{% for call in m.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% if not loop.last %}
{% endif %}{% endfor %}<|im_end|>
{% elif m.role == 'tool' %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{% endfor %}
{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

LLAMA3 = """{{ bos_token }}{% if tools %}<|start_header_id|>system<|end_header_id|>

Environment: ipython
To call a function, answer with JSON {"name": function name, "parameters": its arguments}. The functions:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}<|eot_id|>{% endif %}
{% for m in messages %}
{% if m.role == 'assistant' and m.tool_calls %}
{% if m.tool_calls | length > 1 %}{{ raise_exception('only single tool-calls at once!') }}{% endif %}
<|start_header_id|>assistant<|end_header_id|>

{{ {"name": m.tool_calls[0].function.name, "parameters": m.tool_calls[0].function.arguments} | tojson }}<|eot_id|>
{% elif m.role == 'tool' %}<|start_header_id|>ipython<|end_header_id|>

{{ m.content }}<|eot_id|>
{% else %}<|start_header_id|>{{ m.role }}<|end_header_id|>

{{ m.content }}<|eot_id|>
{% endif %}
{% endfor %}
{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>

{% endif %}"""

MISTRAL = """{{ bos_token }}{% for m in messages %}
{% if m.role == 'user' %}
{% if loop.last and tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}
[INST]{{ m.content }}[/INST]
{% elif m.role == 'assistant' and m.tool_calls %}[TOOL_CALLS][
{% for call in m.tool_calls %}
{% if call.id | length != 9 %}{{ raise_exception('Tool call IDs must have 9 characters') }}{% endif %}
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}, "id": "{{ call.id }}"}
{% if not loop.last %}, {% endif %}
{% endfor %}]{{ eos_token }}
{% elif m.role == 'tool' %}
[TOOL_RESULTS]{"content": {{ m.content | tojson }}, "call_id": "{{ m.tool_call_id }}"}[/TOOL_RESULTS]
{% elif m.role == 'assistant' %}{{ m.content }}{{ eos_token }}
{% endif %}
{% endfor %}"""

QWEN_XML = """{%- if tools %}<|im_start|>system
# Tools

You have access to the following functions:

<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

To call a function, reply in the following format:
<tool_call>
<function=example_function_name>
<parameter=example_parameter>
value
</parameter>
</function>
</tool_call><|im_end|>
{% endif %}
{% for m in messages %}
{% if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant
{% for call in m.tool_calls %}<tool_call>
<function={{ call.function.name }}>
{% for key, value in call.function.arguments.items() %}<parameter={{ key }}>
{{ value if value is string else value | tojson }}
</parameter>
{% endfor %}</function>
</tool_call>{% endfor %}<|im_end|>
{% elif m.role == 'tool' %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{% endfor %}
{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

TEMPLATES = {"hermes": QWEN, "qwen-xml": QWEN_XML, "llama3": LLAMA3, "mistral": MISTRAL}
STRING = 8  # GGUF's string type


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _entry(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", STRING) + _string(value)


def with_chat_template(source: Path, target: Path, template: str) -> Path:
    """A copy of `source` (a GGUF with no chat template) whose metadata holds `template`: the entry goes first, padded
    with a second entry to a whole number of alignment units, so the tensor data keeps its alignment unmoved."""
    header = read_header(source)
    assert "tokenizer.chat_template" not in header.metadata
    alignment = int(header.metadata.get("general.alignment", 32))
    added = _entry("tokenizer.chat_template", template)
    padding = _entry("edgellm.test.padding", "")
    short = -(len(added) + len(padding)) % alignment
    added += _entry("edgellm.test.padding", " " * short)
    data = source.read_bytes()
    n_tensors, n_metadata = struct.unpack_from("<QQ", data, 8)
    target.write_bytes(
        data[:8]
        + struct.pack("<QQ", n_tensors, n_metadata + 2)
        + added
        + data[24 : header.data_offset]
        + data[header.data_offset :]
    )
    return target
