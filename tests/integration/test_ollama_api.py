"""The Ollama API and models by name on a real `edgellm serve`: the official `ollama` and `openai` clients over
127.0.0.1, the real test model (imported into the store under two names), real loads and unloads."""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import jsonschema
import ollama
import openai
import pytest

from tests.support.server import ServerProcess, status_value, until

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "people": {"type": "integer"}},
    "required": ["city", "people"],
}


def stored(home: Path, source: Path, name: str) -> str:
    """`source` in the store under `name` (a hard link: one file on disk, one model to the server)."""
    from edgellm.storage import store

    folder = home / "files"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / f"{name.replace('/', '-').replace(':', '-')}.gguf"
    if not link.exists():
        os.link(source, link)
    return store.import_path(link, name=name).name


@pytest.fixture
def two_models(edgellm_home: Path, test_model: Path) -> tuple[str, str]:
    return stored(edgellm_home, test_model, "tests/gemma-a:Q4_K_M"), stored(
        edgellm_home, test_model, "tests/gemma-b:Q4_K_M"
    )


@pytest.fixture
def server(two_models: tuple[str, str]) -> Iterator[ServerProcess]:
    process = ServerProcess("-c", "1024", "--parallel", "2", "--temp", "0")
    yield process
    process.stop()


def ndjson_lines(url: str, body: dict) -> list[dict]:
    """Every line of a streamed answer, each checked to be one JSON object (never blank)."""
    with httpx.stream("POST", url, json=body, timeout=120) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/x-ndjson")
        raw = "".join(answer.iter_text())
    assert raw.endswith("\n")
    lines = raw[:-1].split("\n")
    assert all(line.strip() for line in lines), "no blank line"
    return [json.loads(line) for line in lines]


def test_the_ollama_client_lists_shows_chats_and_generates(server: ServerProcess, two_models: tuple[str, str]) -> None:
    client = ollama.Client(host=server.url)
    listed = {model.model: model for model in client.list().models}
    first, _ = two_models
    assert set(two_models) <= set(listed)
    assert listed[first].details.family == "gemma3" and listed[first].details.quantization_level == "Q4_K_M"
    assert listed[first].size > 200_000_000 and listed[first].modified_at is not None
    shown = client.show(first)
    assert shown.modelinfo["general.architecture"] == "gemma3" and "completion" in (shown.capabilities or [])
    assert re.search(r"^temperature\s+0$", shown.parameters or "", re.MULTILINE)

    whole = client.chat(
        model=first,
        messages=[{"role": "user", "content": "Name a city."}],
        options={"num_predict": 12, "temperature": 0, "mirostat": 2, "tfs_z": 1.0, "num_ctx": 4096},
    )
    assert whole.done and whole.done_reason in ("stop", "length") and whole.message.content
    assert whole.eval_count and whole.eval_count <= 12 and whole.prompt_eval_count
    assert isinstance(whole.total_duration, int) and whole.total_duration >= (whole.eval_duration or 0) > 0

    pieces = list(
        client.chat(
            model=first,
            messages=[{"role": "user", "content": "Name a city."}],
            options={"num_predict": 12},
            stream=True,
        )
    )
    assert pieces[-1].done and not any(piece.done for piece in pieces[:-1])
    assert "".join(piece.message.content for piece in pieces) == whole.message.content  # temperature 0 both times

    shaped = client.chat(
        model=first,
        messages=[{"role": "user", "content": "A city and its people, as JSON."}],
        format=SCHEMA,
        options={"num_predict": 60},
    )
    jsonschema.validate(json.loads(shaped.message.content), SCHEMA)

    said = client.generate(model=first, prompt="The capital of France is", options={"num_predict": 6})
    assert said.done and said.response and said.context
    more = client.generate(model=first, prompt=" And of Italy:", context=said.context, options={"num_predict": 6})
    assert more.prompt_eval_count and more.prompt_eval_count > len(said.context)  # the earlier exchange came first
    raw = client.generate(model=first, prompt="1, 2, 3,", raw=True, options={"num_predict": 4})
    templated = client.generate(model=first, prompt="1, 2, 3,", options={"num_predict": 1})
    assert raw.response and (raw.prompt_eval_count or 0) < (templated.prompt_eval_count or 0)  # no template around it

    loaded = client.ps().models
    assert [model.model for model in loaded] == [first] and loaded[0].context_length == 1024
    assert loaded[0].size and loaded[0].expires_at is not None


def test_every_streamed_line_is_json_and_the_last_has_the_stats(
    server: ServerProcess, two_models: tuple[str, str]
) -> None:
    first, _ = two_models
    for path, body in (
        ("/api/chat", {"model": first, "messages": [{"role": "user", "content": "Hi"}], "options": {"num_predict": 8}}),
        ("/api/generate", {"model": first, "prompt": "Once upon a time", "options": {"num_predict": 8}}),
    ):
        lines = ndjson_lines(server.url + path, body)
        assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"]
        last = lines[-1]
        for key in (
            "total_duration",
            "load_duration",
            "prompt_eval_count",
            "prompt_eval_duration",
            "eval_count",
            "eval_duration",
        ):
            assert isinstance(last[key], int), key
        assert last["done_reason"] == "length" and last["eval_count"] == 8


def test_bad_requests_are_refused_in_ollamas_words(server: ServerProcess, two_models: tuple[str, str]) -> None:
    first, _ = two_models
    client = ollama.Client(host=server.url)
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="nobody/nothing", messages=[{"role": "user", "content": "Hi"}])
    assert missing.value.status_code == 404 and missing.value.error == "model 'nobody/nothing' not found"
    for extra, word in (({"images": ["aGVsbG8="]}, "images"), ({"template": "{{ .Prompt }}"}, "template")):
        answer = httpx.post(f"{server.url}/api/generate", json={"model": first, "prompt": "Hi", **extra}, timeout=60)
        assert answer.status_code == 400 and word in answer.json()["error"]
    answer = httpx.post(f"{server.url}/api/chat", content=b"{not json", timeout=60)
    assert answer.status_code == 400 and set(answer.json()) == {"error"}
    assert httpx.get(f"{server.url}/api/version").json()["version"].count(".") == 2
    assert httpx.get(f"{server.url}/").text == "Ollama is running"
    assert httpx.head(f"{server.url}/").status_code == 200


def test_copy_and_delete(server: ServerProcess, two_models: tuple[str, str]) -> None:
    first, _ = two_models
    client = ollama.Client(host=server.url)
    client.copy(first, "my-gemma")
    listed = {model.model for model in client.list().models}
    assert "my-gemma:latest" in listed
    assert client.generate(model="my-gemma", prompt="Hi", options={"num_predict": 2}).done
    client.delete("my-gemma:latest")
    assert "my-gemma:latest" not in {model.model for model in client.list().models}
    assert first in {model.model for model in client.list().models}, "the original stays"
    assert client.generate(model=first, prompt="Hi", options={"num_predict": 2}).done
    with pytest.raises(ollama.ResponseError) as gone:
        client.delete("my-gemma")
    assert gone.value.status_code == 404


def cosine(first: list[float], second: list[float]) -> float:
    """Of two normalised vectors."""
    return sum(a * b for a, b in zip(first, second))


def test_embeddings_through_both_apis(server: ServerProcess, two_models: tuple[str, str]) -> None:
    first, _ = two_models
    texts = ["The cat sat on the mat.", "A dog barked at the mailman.", "The cat sat on the mat."]
    found = ollama.Client(host=server.url).embed(model=first, input=texts)
    vectors = found.embeddings
    assert len(vectors) == 3 and len(vectors[0]) == 640
    assert all(abs(sum(v * v for v in vector) - 1) < 1e-4 for vector in vectors), "normalised"
    # the same text in other rows of one batch: near, not bit for bit (llama.cpp's CPU kernels take other paths for
    # some rows of a batch on some CPUs; tests/integration/test_embed.py pins down how near)
    assert cosine(vectors[0], vectors[2]) > 0.999 and cosine(vectors[0], vectors[1]) < 0.99
    legacy = httpx.post(f"{server.url}/api/embeddings", json={"model": first, "prompt": texts[0]}, timeout=60).json()
    assert len(legacy["embedding"]) == 640

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    answer = client.embeddings.create(model=first, input=texts[:2])
    assert [item.index for item in answer.data] == [0, 1] and answer.usage.prompt_tokens > 0
    assert cosine(answer.data[0].embedding, vectors[0]) > 0.999
    encoded = client.embeddings.create(model=first, input=texts[0], encoding_format="base64")
    packed = base64.b64decode(encoded.data[0].embedding)  # type: ignore[arg-type]  # asked for: left as sent
    assert cosine(list(struct.unpack(f"<{len(packed) // 4}f", packed)), vectors[0]) > 0.999
    refused = httpx.post(
        f"{server.url}/v1/embeddings", json={"model": first, "input": "x", "dimensions": 8}, timeout=60
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "dimensions"


def test_the_openai_client_chats_with_two_models_in_turn(server: ServerProcess, two_models: tuple[str, str]) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    assert set(two_models) <= {model.id for model in client.models.list().data}
    for name in (*two_models, two_models[0]):
        answer = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
        assert answer.model == name and answer.choices[0].message.content is not None
    loaded = {model.model for model in ollama.Client(host=server.url).ps().models}
    assert loaded == set(two_models), "both fit together: both stay"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nobody/nothing", messages=[{"role": "user", "content": "Hi"}])


def test_keep_alive_unloads_and_gives_the_memory_back(two_models: tuple[str, str]) -> None:
    first, _ = two_models
    server = ServerProcess("-c", "1024", "--parallel", "1")
    try:
        client = ollama.Client(host=server.url)
        before = status_value(server.process.pid, "VmRSS")
        client.generate(model=first, prompt="Hello", options={"num_predict": 4}, keep_alive=1)
        loaded = status_value(server.process.pid, "VmRSS")
        until(lambda: not client.ps().models, timeout=30, what="the model to unload after its keep_alive")
        after = until(
            lambda: (rss := status_value(server.process.pid, "VmRSS")) <= before + 0.2 * (loaded - before) and rss,
            timeout=30,
            what="the memory to fall back",
        )
        assert loaded - after >= 0.8 * (loaded - before) and loaded - before > 100_000  # KiB: the model was there
        client.generate(model=first, prompt="Hello", options={"num_predict": 2})
        assert client.ps().models
        done = client.generate(model=first, prompt="", keep_alive=0)
        assert done.done_reason == "unload" and not client.ps().models, "keep_alive 0 unloads at once"
        load = client.generate(model=first, prompt="")
        assert load.done_reason == "load" and client.ps().models
    finally:
        server.stop()


def test_models_that_do_not_fit_together_swap_least_recently_used_first(
    two_models: tuple[str, str], edgellm_home: Path, test_model: Path
) -> None:
    first, second = two_models
    third = stored(edgellm_home, test_model, "tests/gemma-c:Q4_K_M")
    probe = ServerProcess("-c", "1024", "--parallel", "1")
    try:
        client = ollama.Client(host=probe.url)
        client.generate(model=first, prompt="")
        size = client.ps().models[0].size
    finally:
        probe.stop()
    room = int(2.5 * size / 2**20)  # MiB: two fit, not three
    server = ServerProcess("-c", "1024", "--parallel", "1", "--models-memory", str(room))
    try:
        client = ollama.Client(host=server.url)
        for name in (first, second, first, third):  # first is used after second: second is the least recent
            assert client.generate(model=name, prompt="Hi", options={"num_predict": 2}).done
        assert {model.model for model in client.ps().models} == {first, third}
        assert re.search(rf"unloading {re.escape(second)} to make room", server.log)
    finally:
        server.stop()
    one = ServerProcess("-c", "1024", "--parallel", "1", "--models-memory", str(int(1.5 * size / 2**20)))
    try:  # room for one: concurrent requests for two models take turns, each waiting for the other's to end
        answers = ask_together(one, [first, second] * 3)
        assert all(isinstance(answer, ollama.GenerateResponse) and answer.done for answer in answers), answers
        assert len(ollama.Client(host=one.url).ps().models) == 1, "never two, never half of one"
    finally:
        one.stop()
    small = ServerProcess("-c", "1024", "--parallel", "1", "--models-memory", str(max(1, room // 10)))
    try:
        answer = httpx.post(f"{small.url}/api/generate", json={"model": first, "prompt": "Hi"}, timeout=60)
        assert answer.status_code == 500 and re.search(r"\d+(\.\d+)? [GM]iB", answer.json()["error"]), answer.text
    finally:
        small.stop()


def ask_together(server: ServerProcess, names: list[str]) -> list[ollama.GenerateResponse | BaseException]:
    """One short generation per name, all sent at once; each answer, or what it raised."""
    answers: list[ollama.GenerateResponse | BaseException] = []

    def ask(name: str) -> None:
        try:
            client = ollama.Client(host=server.url, timeout=300)
            answers.append(client.generate(model=name, prompt="Hi", options={"num_predict": 4}))
        except BaseException as error:
            answers.append(error)

    threads = [threading.Thread(target=ask, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(answers) == len(names), "every request ended"
    return answers


def test_requests_during_a_load_wait_for_the_one_load(two_models: tuple[str, str]) -> None:
    """Concurrent requests for two models that fit together: every one is answered and each model is loaded once (the
    requests for a model being loaded wait for that load)."""
    first, second = two_models
    server = ServerProcess("-c", "1024", "--parallel", "2")
    try:
        answers = ask_together(server, [first, second] * 4)
        assert len(answers) == 8 and all(
            isinstance(answer, ollama.GenerateResponse) and answer.done for answer in answers
        ), answers
        assert server.log.count(f"{first} loaded in") == 1 and server.log.count(f"{second} loaded in") == 1
        assert {model.model for model in ollama.Client(host=server.url).ps().models} == {first, second}
    finally:
        server.stop()


def test_pull_from_the_hub_with_progress_lines(hub, edgellm_home: Path) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess()
    try:
        client = ollama.Client(host=server.url)
        progress = list(client.pull("hf.co/tests/tiny-GGUF", stream=True))
        statuses = [line.status for line in progress]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        sized = [line for line in progress if line.total]
        assert sized and sized[-1].completed == sized[-1].total and all(line.digest for line in sized)
        assert "tests/tiny-GGUF:Q8_0" in {model.model for model in client.list().models}
        again = client.pull("tests/tiny-GGUF:Q8_0")  # stored: nothing to download
        assert again.status == "success"
        with pytest.raises(ollama.ResponseError):
            client.pull("tests/no-such-GGUF")
    finally:
        server.stop()


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tool_calls_come_in_ollamas_shape_and_go_back_as_tool_messages(
    server: ServerProcess, two_models: tuple[str, str]
) -> None:
    """The test model has no template of its own, so it calls in the generic JSON format, held by the grammar: a call
    or an answer. A call comes back with its arguments as an object; sent back with a tool result, it is rendered."""
    first, _ = two_models
    client = ollama.Client(host=server.url)
    ask = [{"role": "user", "content": "What is the weather in Paris? Call the tool."}]
    calls = []
    for seed in range(4):
        answer = client.chat(
            model=first,
            messages=ask,
            tools=[WEATHER_TOOL],
            options={"seed": seed, "temperature": 0.7, "num_predict": 60},
        )
        calls += answer.message.tool_calls or []
    assert calls, "four tries made no call"
    for call in calls:
        assert call.function.name == "get_weather"
        jsonschema.validate(call.function.arguments, WEATHER_TOOL["function"]["parameters"])  # an object, not a string
    streamed = ndjson_lines(
        f"{server.url}/api/chat",
        {"model": first, "messages": ask, "tools": [WEATHER_TOOL], "options": {"seed": 0, "temperature": 0.7}},
    )
    with_calls = [line for line in streamed if line["message"].get("tool_calls")]
    assert all(not line["done"] for line in with_calls) and streamed[-1]["done"]
    call = {"function": {"name": calls[0].function.name, "arguments": dict(calls[0].function.arguments)}}
    history = [
        *ask,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": '{"temperature": 21}', "tool_name": "get_weather"},
    ]
    answered = client.chat(model=first, messages=history, options={"num_predict": 4})
    alone = client.chat(model=first, messages=ask, options={"num_predict": 1})
    assert (answered.prompt_eval_count or 0) > (alone.prompt_eval_count or 0) + 10  # the call and its result are in it
