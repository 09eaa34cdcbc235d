"""`edgellm serve` as a user runs it: the real server (uvicorn) on a free loopback port with the test model, used
through the official `openai` client and plain HTTP."""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from tests.support import edgellm
from tests.support.server import ServerProcess, status_value, until

KEY = "sk-test-7d41c0ffee"
CTX = 512


@pytest.fixture(scope="module")
def server(test_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """One server for the module: an API key, a small context, a 1 MiB body limit."""
    home = tmp_path_factory.mktemp("serve-home")
    started = ServerProcess(
        "-m", str(test_model), "-c", str(CTX), "--api-key", KEY, "--max-body-mb", "1", env={"EDGELLM_HOME": str(home)}
    )
    try:
        yield started.wait_ready()
    finally:
        started.kill()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_chat_non_streaming_and_streaming_agree(client: openai.OpenAI, test_model: Path) -> None:
    """Greedy chat, whole and streamed: the same text, usage that counts the tokens, the model's id."""
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]
    whole = client.chat.completions.create(
        model="gemma", messages=messages, max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
    )
    assert whole.object == "chat.completion" and whole.model == test_model.stem
    choice = whole.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length" and whole.usage.completion_tokens == 8
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 8 and whole.usage.prompt_tokens > 10

    chunks = list(
        client.chat.completions.create(
            model="gemma",
            messages=messages,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_completion_matches_edgellm_run(client: openai.OpenAI, test_model: Path) -> None:
    """/v1/completions completes the raw prompt exactly as `edgellm run` does; its prompt count is the prompt's
    tokens with BOS."""
    import llama_cpp

    prompt = "The capital of France is"
    done = client.completions.create(
        model="gemma", prompt=prompt, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    ran = edgellm("run", "-m", str(test_model), "-c", str(CTX), "-p", prompt, "-n", "12", "--temp", "0", "--ignore-eos")
    assert ran.returncode == 0, ran.stderr
    assert done.choices[0].text == ran.stdout
    vocab = llama_cpp.Llama(str(test_model), vocab_only=True, verbose=False)
    assert done.usage.prompt_tokens == len(vocab.tokenize(prompt.encode(), add_bos=True))
    assert done.usage.completion_tokens == 12 and done.choices[0].finish_reason == "length"

    echoed = client.completions.create(
        model="gemma", prompt=prompt, max_tokens=12, temperature=0, echo=True, extra_body={"ignore_eos": True}
    )
    assert echoed.choices[0].text == prompt + ran.stdout
    streamed = client.completions.create(
        model="gemma", prompt=prompt, max_tokens=12, temperature=0, stream=True, extra_body={"ignore_eos": True}
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == ran.stdout


def test_models_list(client: openai.OpenAI, test_model: Path) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [test_model.stem]
    assert models.data[0].owned_by == "edgellm"


def test_the_key_is_required_and_never_logged(server: ServerProcess) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        answer = httpx.get(f"{server.url}/v1/models", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"]["code"] == "invalid_api_key"
        assert KEY not in answer.text
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="any", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}  # no key needed to ask whether it is up
    assert KEY not in server.log


@pytest.mark.parametrize(
    "body, status, code",
    [
        pytest.param(b'{"messages": [', 400, "invalid_json", id="bad-json"),
        pytest.param(b"[1, 2]", 400, None, id="not-an-object"),
        pytest.param(
            json.dumps({"messages": [{"role": "user", "content": "Hi"}], "n": 2}).encode(),
            400,
            "unsupported_parameter",
            id="n",
        ),
        pytest.param(
            json.dumps(
                {
                    "messages": [{"role": "user", "content": "Hi"}],
                    "tools": [{"type": "function", "function": {"name": "f", "parameters": ["not", "a", "schema"]}}],
                }
            ).encode(),
            400,
            None,
            id="tools",
        ),
        pytest.param(
            json.dumps({"messages": [{"role": "user", "content": "Hi"}], "temprature": 0}).encode(),
            400,
            "unknown_parameter",
            id="typo",
        ),
        pytest.param(
            json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100000}).encode(),
            400,
            "context_length_exceeded",
            id="max-tokens",
        ),
        pytest.param(json.dumps({"messages": []}).encode(), 400, None, id="no-messages"),
        pytest.param(b"[" * 100_000, 400, "invalid_json", id="nested-too-deep"),
        pytest.param(b'{"messages": [{"role": "user", "content": "\\ud83d"}]}', 400, None, id="lone-surrogate"),
    ],
)
def test_bad_requests_are_400_in_the_api_error_format(
    server: ServerProcess, body: bytes, status: int, code: str | None
) -> None:
    answer = httpx.post(
        f"{server.url}/v1/chat/completions", content=body, headers={**auth(), "Content-Type": "application/json"}
    )
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code


def test_unsupported_parameters_are_named(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "Hi"}], logit_bias={"1": 2})
    # harmless ones pass
    done = client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, n=1, user="someone", logprobs=False
    )
    assert done.choices[0].message.content is not None


def test_an_oversized_body_is_413(server: ServerProcess) -> None:
    big = json.dumps({"prompt": "word " * 300_000}).encode()
    answer = httpx.post(
        f"{server.url}/v1/completions", content=big, headers={**auth(), "Content-Type": "application/json"}
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit holds while the body is read
        for _ in range(40):
            yield b"x" * 65536

    answer = httpx.post(f"{server.url}/v1/completions", content=chunked(), headers=auth())
    assert answer.status_code == 413


def test_a_prompt_longer_than_the_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "word " * 2000}])
    error = raised.value.body
    assert error["code"] == "context_length_exceeded"
    assert f"{CTX}-token context" in error["message"] and "shorten" in error["message"]
    with pytest.raises(openai.BadRequestError, match="prompt is"):
        client.completions.create(model="any", prompt="word " * 2000)
    with pytest.raises(openai.BadRequestError, match="max_tokens") as raised:  # each fits, not both together
        client.completions.create(model="any", prompt="word " * 300, max_tokens=CTX - 100)
    assert raised.value.body["code"] == "context_length_exceeded"


def test_concurrent_streams_each_end_as_asked(client: openai.OpenAI) -> None:
    """16 streaming requests at once, more than the slots: each waits its turn or decodes beside the others, and
    ends with the tokens it asked for. (Batched output is not bit-equal to a request made alone: llama.cpp's batched
    kernels round differently; test_batched_engine checks one sequence through the batched engine is.)"""
    prompts = ["Hi", "Name a fruit.", "Count to five.", "What is the sky's colour?"]

    def ask(index: int) -> tuple[str, int, str | None]:
        stream = client.completions.create(
            model="any",
            prompt=prompts[index % 4],
            max_tokens=4 + index,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        text, usage, finish = "", 0, None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].text
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage.completion_tokens
        return text, usage, finish

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    assert [usage for _, usage, _ in answers] == [4 + index for index in range(16)]
    assert all(text for text, _, _ in answers)
    assert {finish for _, _, finish in answers} == {"length"}


def test_a_client_that_leaves_stops_its_generation(server: ServerProcess, client: openai.OpenAI) -> None:
    """The reply stops at the next token once the client disconnects; the next request is served."""
    before = server.metrics(KEY)["edgellm_completion_tokens_total"]
    body = {"prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=auth(), timeout=60) as answer:
        lines = answer.iter_lines()
        assert sum(1 for _, line in zip(range(8), (line for line in lines if line.startswith("data:")))) == 8
    until(lambda: server.metrics(KEY)["edgellm_requests_running"] == 0, what="the abandoned reply to stop")
    stopped = server.metrics(KEY)["edgellm_completion_tokens_total"]
    assert 3 <= stopped - before < 400
    done = client.completions.create(model="any", prompt="Hello", max_tokens=5, extra_body={"ignore_eos": True})
    assert done.usage.completion_tokens == 5
    assert server.metrics(KEY)["edgellm_completion_tokens_total"] == stopped + 5
    assert until(lambda: "client went away" in server.log, what="the log line")


def test_metrics_are_prometheus_text(server: ServerProcess, client: openai.OpenAI) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client.completions.create(model="any", prompt="Hi", max_tokens=2)
    text = httpx.get(f"{server.url}/metrics", headers=auth()).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {
        "edgellm_requests",
        "edgellm_completion_tokens",
        "edgellm_prompt_tokens",
        "edgellm_tokens_per_second",
        "edgellm_queue_depth",
    } <= set(families)
    requests = {
        tuple(sorted(s.labels.items())): s.value
        for s in families["edgellm_requests"].samples
        if s.name == "edgellm_requests_total"
    }
    assert requests[(("endpoint", "/v1/completions"), ("status", "200"))] >= 1
    assert families["edgellm_tokens_per_second"].samples[0].value > 0


@pytest.mark.slow
def test_rss_stays_flat_over_200_requests(server: ServerProcess, client: openai.OpenAI) -> None:
    """The server's own memory (anonymous RSS) grows under 5% over 200 requests after a warm-up. The mapped model
    file's pages are left out: they are page cache, and grow as each new token reads its embedding row."""

    def one(i: int) -> None:
        if i % 2:
            client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": f"Say {i}"}], max_tokens=3, temperature=0.7
            )
        else:
            list(client.completions.create(model="any", prompt=f"Number {i} is", max_tokens=3, stream=True))

    for i in range(30):  # warm-up: allocator pools, the thread pool, lazily built caches
        one(i)
    warm, warm_total = status_value(server.process.pid), status_value(server.process.pid, "VmRSS")
    for i in range(200):
        one(i)
    grown = status_value(server.process.pid) / warm - 1
    total = status_value(server.process.pid, "VmRSS")
    assert grown < 0.05, (
        f"anonymous RSS grew {grown:.1%} over 200 requests ({warm} KiB after warm-up); "
        f"all RSS {warm_total} -> {total} KiB"
    )


# --- servers of their own --------------------------------------------------------------------------------------


@pytest.fixture
def small_queue(test_model: Path, tmp_path: Path):
    """A server with one slot where one request may wait, no key, the sampler's defaults."""
    started = ServerProcess(
        "-m",
        str(test_model),
        "-c",
        str(CTX),
        "--parallel",
        "1",
        "--queue",
        "1",
        "--temp",
        "0",
        "--cors",
        "http://ui.example",
        env={"EDGELLM_HOME": str(tmp_path / "home")},
    )
    try:
        yield started.wait_ready()
    finally:
        started.kill()


def long_stream(server: ServerProcess, tokens: int):  # type: ignore[no-untyped-def]
    body = {
        "prompt": "Once upon a time",
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=120)


def first_data(answer: httpx.Response):  # type: ignore[no-untyped-def]
    lines = (line for line in answer.iter_lines() if line.startswith("data:"))
    next(lines)
    return lines


def test_a_full_queue_is_503_with_retry_after(small_queue: ServerProcess) -> None:
    waiting = ThreadPoolExecutor(1)
    with long_stream(small_queue, 300) as running:
        rest = first_data(running)  # kept: a generator dropped here would close the stream
        queued = waiting.submit(
            httpx.post, f"{small_queue.url}/v1/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=120
        )
        until(lambda: small_queue.metrics()["edgellm_queue_depth"] == 1, what="the second request to wait")
        refused = httpx.post(f"{small_queue.url}/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
        assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
        assert refused.json()["error"]["code"] == "queue_full"
        assert next(rest)  # the first reply still streams
    assert queued.result().status_code == 200  # served once the first client left
    waiting.shutdown()
    assert small_queue.metrics()["edgellm_queue_depth"] == 0


def test_sigterm_finishes_the_reply_in_flight_and_refuses_the_waiting(small_queue: ServerProcess) -> None:
    waiting = ThreadPoolExecutor(1)
    with long_stream(small_queue, 60) as running:
        rest = first_data(running)
        queued = waiting.submit(
            httpx.post, f"{small_queue.url}/v1/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=120
        )
        until(lambda: small_queue.metrics()["edgellm_queue_depth"] == 1, what="the second request to wait")
        small_queue.process.terminate()
        events = [line.removeprefix("data: ") for line in rest]
    assert events[-1] == "[DONE]"  # the whole reply, to its end
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"]["completion_tokens"] == 60
    refused = queued.result()
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    waiting.shutdown()
    assert small_queue.process.wait(60) == 0
    assert "stopped" in small_queue.log


def test_cors_is_off_unless_an_origin_is_named(server: ServerProcess, small_queue: ServerProcess) -> None:
    preflight = {
        "Origin": "http://ui.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    assert (
        "access-control-allow-origin"
        not in httpx.options(f"{server.url}/v1/chat/completions", headers=preflight).headers
    )
    allowed = httpx.options(f"{small_queue.url}/v1/chat/completions", headers=preflight)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "http://ui.example"
    other = httpx.options(
        f"{small_queue.url}/v1/chat/completions", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert other.headers.get("access-control-allow-origin") != "http://evil.example"


# --- starting ----------------------------------------------------------------------------------------------------


def test_a_non_loopback_bind_without_a_key_is_refused(test_model: Path) -> None:
    done = edgellm("serve", "-m", str(test_model), "--host", "0.0.0.0", env={"EDGELLM_API_KEY": ""}, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--api-key" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--port", "70000"], "must be from 1 to 65535"),
        (["--queue", "-1"], "must be 0 or more"),
        (["--max-body-mb", "0"], "must be 1 or more"),
        (["--port", "http"], "not a number"),
    ],
)
def test_bad_server_flags_are_one_line(flags: list[str], needle: str) -> None:
    done = edgellm("serve", "-m", "model.gguf", *flags, timeout=60)
    assert done.returncode == 2 and needle in done.stderr and done.stderr.count("\n") == 1


def test_a_port_in_use_is_one_line(test_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        done = edgellm("serve", "-m", str(test_model), "--port", str(taken.getsockname()[1]), timeout=60)
    assert done.returncode == 2 and "another --port" in done.stderr and "Traceback" not in done.stderr


def _blocked_models(release: threading.Event, failure: BaseException | None = None, calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Served models whose every load waits for `release`, then fails with `failure` (or an AssertionError); each
    load's thread name goes in `calls` as it starts."""
    from edgellm.cli.main import build_parser
    from edgellm.hw.detect import detect_this_machine
    from edgellm.session.flags import flags_of
    from edgellm.session.served import ServedModels

    class Blocked(ServedModels):
        def acquire(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if calls is not None:
                calls.append(threading.current_thread().name)
            release.wait(60)
            raise failure or AssertionError("the load was waited for")

    return Blocked(flags_of(build_parser().parse_args(["serve"])), detect_this_machine(), default=_preload())


def _preload(path: str = "m.gguf"):  # type: ignore[no-untyped-def]
    from edgellm.session.served import Entry

    return Entry("m", Path(path), 1, 0.0)


def test_a_stop_while_the_model_loads_does_not_wait_for_the_load(tmp_path: Path) -> None:
    """SIGTERM during a long load: the server stops at once and says so (the command then exits 0 without
    waiting for llama.cpp)."""
    import os
    import signal

    from edgellm.engine.contract import GenerationOptions
    from edgellm.server.config import ServerConfig
    from edgellm.server.launch import STOPPED_WHILE_LOADING, Listen, serve

    release, lines = threading.Event(), []

    def stop_once_served() -> None:
        address = until(
            lambda: next((line.split("http://")[1].split("/")[0] for line in lines if "listening" in line), None),
            what="the server to listen",
        )
        until(lambda: _answers(f"http://{address}/health"), what="the server to answer")  # its handlers are set
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_once_served, daemon=True).start()
    try:
        assert (
            serve(
                ServerConfig(GenerationOptions()),
                Listen(port=0),
                _blocked_models(release),
                _preload(),
                log=lines.append,
            )
            == STOPPED_WHILE_LOADING
        )
    finally:
        release.set()
    assert any("stopped while the model was loading" in line for line in lines)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def test_health_says_loading_until_the_model_is_loaded(tmp_path: Path) -> None:
    """Served at once: /health is 503 "loading" while the model loads; a load that fails stops the server and
    raises its error."""
    from edgellm.engine.contract import GenerationOptions
    from edgellm.errors import LoadFailed
    from edgellm.server.config import ServerConfig
    from edgellm.server.launch import Listen, serve

    release, lines, raised, calls = threading.Event(), [], [], []
    failure = LoadFailed("llama.cpp could not load the model", Path("m.gguf"), "other")
    models = _blocked_models(release, failure, calls)

    def run() -> None:
        try:
            serve(ServerConfig(GenerationOptions()), Listen(port=0), models, _preload(), log=lines.append)
        except LoadFailed as error:
            raised.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    address = until(
        lambda: next((line.split("http://")[1].split("/")[0] for line in lines if "listening" in line), None),
        what="the server to listen",
    )
    answer = httpx.get(f"http://{address}/health")
    assert answer.status_code == 503 and answer.json() == {"status": "loading"}
    answers: list[httpx.Response] = []
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    asking = threading.Thread(
        target=lambda: answers.append(httpx.post(f"http://{address}/v1/chat/completions", json=body, timeout=60))
    )
    asking.start()
    until(lambda: len(calls) == 2, what="the request to wait for the load")  # the preload's and the request's
    release.set()
    asking.join(60)
    thread.join(60)
    assert not thread.is_alive() and raised and "could not load" in str(raised[0])
    assert answers[0].status_code == 500 and "could not load" in answers[0].json()["error"]["message"]
