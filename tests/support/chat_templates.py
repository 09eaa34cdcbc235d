"""Chat templates and messages the template tests share: a conversation, and a template in the style of today's
instruct models."""

from __future__ import annotations

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "x" * 300},
]

# A template in the style of today's instruct models: tools as JSON, a namespace, loop state, a refusal.
TOOLS_STYLE = (
    "{%- if tools %}{{ '<|sys|>' }}{% for tool in tools %}{{ tool | tojson }}{% if not loop.last %},{% endif %}"
    "{% endfor %}{{ '<|end|>' }}{% endif %}"
    "{%- set ns = namespace(last_user=-1) %}"
    "{%- for m in messages %}{% if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor %}"
    "{%- for m in messages %}"
    "{%- if m.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role ' ~ m.role) }}{% endif %}"
    "{{ '<|' ~ m.role ~ '|>' }}{{ m.content | trim }}{% if loop.index0 == ns.last_user %}{{ ' (last)' }}{% endif %}"
    "{{ '<|end|>\n' }}{% generation %}{% endgeneration %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    "{{ '%s/%d' % (messages | length, loop_count | default(2)) }}{{ '{}-{}'.format(bos_token, eos_token) }}"
    "{{ messages | map(attribute='role') | join(',') }}{{ (messages[-1].content | truncate(20)) | center(30) }}"
)
