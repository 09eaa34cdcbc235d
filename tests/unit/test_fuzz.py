"""Property-based fuzzing (hypothesis, seeded and bounded) of every parser of outside input: any input gives the
parser's own typed error or a value, never another exception. The longer run is `scripts/fuzz.py`."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgellm.api.openai import ApiError, parse_chat, parse_text
from edgellm.convert.safetensors import _read_header as read_safetensors_header
from edgellm.convert.tinymodel import write_tiny_llama
from edgellm.engine.contract import GenerationOptions
from edgellm.errors import EdgellmError, ModelFileError
from edgellm.gguf.header import GGUFError, parse
from edgellm.gguf.quants import parse_quant, rank
from edgellm.hub.files import RemoteFile, choosable, group_quants, leaves_the_repo
from edgellm.hw.profile import ProfileError, from_dict
from edgellm.session.flags import load_config

LONG_RUN = int(os.environ.get("EDGELLM_FUZZ_EXAMPLES", "0"))  # set by scripts/fuzz.py: many more, not seeded
FUZZ = settings(
    max_examples=LONG_RUN or 300,
    deadline=None,
    derandomize=not LONG_RUN,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_llama(tmp_path_factory.mktemp("fuzz") / "tiny.gguf").read_bytes()


@FUZZ
@given(data=st.data())
def test_gguf_header_reader_on_mutated_files(tiny_gguf: bytes, data: st.DataObject) -> None:
    """A real header with bytes changed, cut short or grown: a GGUFError or a header, nothing else."""
    blob = bytearray(tiny_gguf[:8192])
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(4, len(blob)))
    blob = blob[:cut]
    try:
        parse(bytes(blob), Path("fuzz.gguf"), len(blob))
    except GGUFError as error:
        assert error.problem


@FUZZ
@given(st.binary(max_size=256), st.integers(0, 3), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_gguf_header_reader_on_made_up_headers(tail: bytes, version: int, tensors: int, entries: int) -> None:
    blob = b"GGUF" + struct.pack("<IQQ", version, tensors, entries) + tail
    try:
        parse(blob, Path("fuzz.gguf"), len(blob))
    except GGUFError:
        pass


@FUZZ
@given(header=JSON, declared_extra=st.integers(-8, 64), data_size=st.integers(0, 512))
def test_safetensors_header_reader(
    tmp_path_factory: pytest.TempPathFactory, header: object, declared_extra: int, data_size: int
) -> None:
    raw = json.dumps(header).encode()
    length = max(0, len(raw) + declared_extra)
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    path.write_bytes(struct.pack("<Q", length) + raw + bytes(data_size))
    try:
        read_safetensors_header(path)
    except ModelFileError as error:
        assert error.problem


@FUZZ
@given(st.text(max_size=80))
def test_quant_names_in_file_names(name: str) -> None:
    quant = parse_quant(name)
    if quant is not None:
        assert rank(quant) >= 0


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=40), st.integers(0, 2**40)), max_size=12))
def test_hub_listings(entries: list[tuple[str, int]]) -> None:
    files = [RemoteFile(path, size, None) for path, size in entries]
    groups = choosable(group_quants(files))
    assert all(group.files for group in groups)
    assert all(isinstance(leaves_the_repo(path), bool) for path, _ in entries)


@FUZZ
@given(st.text(max_size=200))
def test_config_toml(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("config") / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except EdgellmError as error:
        assert "\n" not in str(error).strip()


@FUZZ
@given(JSON)
def test_device_profile_json(data: object) -> None:
    try:
        from_dict(data)
    except ProfileError as error:
        assert str(error)


@FUZZ
@given(body=JSON, n_ctx=st.integers(1, 8192))
def test_server_request_bodies(body: object, n_ctx: int) -> None:
    for parse_body in (parse_chat, parse_text):
        try:
            request = parse_body(body, GenerationOptions(), n_ctx)
        except ApiError as error:
            assert error.status == 400 and error.message
        else:
            assert request.options.max_tokens <= n_ctx


@FUZZ
@given(
    st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", "x"]), "content": JSON}),
        max_size=6,
    ),
    JSON,
)
def test_server_chat_messages(messages: list, extra: object) -> None:
    body = {"messages": messages, "stop": extra}
    try:
        parse_chat(body, GenerationOptions(), 4096)
    except ApiError as error:
        assert error.status == 400
