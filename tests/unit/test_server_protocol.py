"""The server's pure parts: request bodies checked into options, answers shaped as the OpenAI API's, the metrics
text, the exposure check and the scheduler's turn-taking."""

from __future__ import annotations

import asyncio
import threading

import pytest

from edgellm.api import openai as protocol
from edgellm.api.openai import ApiError, parse_chat, parse_text
from edgellm.engine.contract import GenerationOptions, GenerationStats, Sampling
from edgellm.errors import EdgellmError
from edgellm.server.launch import check_exposure, is_loopback
from edgellm.server.metrics import Metrics, render
from edgellm.session.scheduler import Ended, Job, QueueFull, Scheduler, ShuttingDown, Started

DEFAULTS = GenerationOptions(sampling=Sampling(temp=0.8, top_k=40), seed=-1)
HI = [{"role": "user", "content": "Hi"}]


def refused(body: object, parse=parse_chat, n_ctx: int = 4096) -> ApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as raised:
        parse(body, DEFAULTS, n_ctx)
    assert raised.value.status == 400
    return raised.value


def test_request_values_override_the_server_defaults() -> None:
    request = parse_chat(
        {
            "messages": HI,
            "temperature": 0,
            "top_p": 0.5,
            "max_tokens": 7,
            "stop": "END",
            "seed": 3,
            "frequency_penalty": 0.5,
            "top_k": 5,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        DEFAULTS,
        4096,
    )
    options = request.options
    assert options.sampling.temp == 0 and options.sampling.top_p == 0.5 and options.sampling.top_k == 5
    assert options.sampling.frequency_penalty == 0.5 and options.sampling.min_p == DEFAULTS.sampling.min_p
    assert options.max_tokens == 7 and options.stop == ("END",) and options.seed == 3
    assert request.stream and request.include_usage and request.messages == HI
    assert options.cache_prompt  # a slot's cached prefix is reused, as llama-server does by default
    assert not parse_chat({"messages": HI, "cache_prompt": False}, DEFAULTS, 4096).options.cache_prompt


def test_what_the_request_leaves_out_comes_from_the_server() -> None:
    options = parse_chat({"messages": HI}, DEFAULTS, 4096).options
    assert options.sampling == DEFAULTS.sampling and options.max_tokens == -1 and options.seed == -1
    assert parse_text({"prompt": "x"}, DEFAULTS, 4096).options.max_tokens == 16  # the OpenAI API's default
    assert (
        parse_chat({"messages": HI, "max_completion_tokens": 9, "max_tokens": 3}, DEFAULTS, 4096).options.max_tokens
        == 9
    )
    assert not parse_chat({"messages": HI, "stream_options": {"include_usage": True}}, DEFAULTS, 4096).include_usage


@pytest.mark.parametrize(
    "extra, named",
    [
        ({"n": 2}, "n"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"functions": [{"name": "f"}]}, "functions"),
    ],
)
def test_unsupported_parameters_that_change_the_result_are_refused_by_name(extra: dict, named: str) -> None:
    error = refused({"messages": HI, **extra})
    assert error.param == named and named in error.message and error.code == "unsupported_parameter"


def test_neutral_and_harmless_parameters_are_accepted() -> None:
    request = parse_chat(
        {
            "messages": HI,
            "n": 1,
            "tools": [],
            "logprobs": False,
            "user": "u",
            "model": "x",
            "response_format": {"type": "text"},
            "store": False,
            "tool_choice": "none",
        },
        DEFAULTS,
        4096,
    )
    assert request.messages == HI


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": HI, "temprature": 1}, "temprature"),
        ({"messages": HI, "temperature": "hot"}, "temperature"),
        ({"messages": HI, "temperature": 3}, "temperature"),
        ({"messages": HI, "max_tokens": 0}, "max_tokens"),
        ({"messages": HI, "max_tokens": True}, "max_tokens"),
        ({"messages": HI, "max_tokens": 5000}, "max_tokens"),
        ({"messages": HI, "stop": ["a", ""]}, "stop"),
        ({"messages": HI, "stream": "yes"}, "stream"),
        ({"messages": "Hi"}, "messages"),
        ({"messages": [{"role": "robot", "content": "Hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
        ({"messages": HI, "tools": [{"type": "function"}]}, "tools[0]"),
        ({"messages": HI, "tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
        ({"messages": HI, "tool_choice": "required"}, "tool_choice"),
        ({"messages": HI, "top_logprobs": 2}, "top_logprobs"),
        ({"messages": HI, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"messages": HI, "response_format": {"type": "xml"}}, "response_format"),
        (
            {"messages": HI, "response_format": {"type": "json_schema", "json_schema": {"schema": {"not": {}}}}},
            "response_format.json_schema.schema",
        ),
        ({"messages": HI, "response_format": {"type": "json_object"}, "grammar": "root ::= x"}, "grammar"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ],
)
def test_bad_values_name_the_parameter(body: dict, param: str) -> None:
    error = refused(body)
    assert error.param == param and error.message


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "\ud83d"}]}, "messages[0].content"),
        ({"messages": HI, "stop": ["\udc00"]}, "stop"),
    ],
)
def test_text_that_is_not_unicode_is_refused(body: dict, param: str) -> None:
    """JSON lets a lone surrogate escape through; the tokenizer cannot encode it: a 400, not a 500."""
    assert refused(body).param == param
    assert refused({"prompt": "a\ud800"}, parse_text).param == "prompt"


def test_an_assistant_message_without_content_is_empty() -> None:
    request = parse_chat({"messages": [*HI, {"role": "assistant", "content": None}, *HI]}, DEFAULTS, 4096)
    assert request.messages[1] == {"role": "assistant", "content": ""}


def test_log_lines_cannot_be_forged() -> None:
    from edgellm.server.turns import printable

    assert printable("GET /x\n12:00:00 edgellm serve: fake 200") == "GET /x\\n12:00:00 edgellm serve: fake 200"
    assert printable("café ✓") == "café ✓"


def test_max_tokens_is_bounded_by_the_context() -> None:
    error = refused({"messages": HI, "max_tokens": 600}, n_ctx=512)
    assert error.code == "context_length_exceeded" and "512" in error.message


def test_message_content_parts_and_roles() -> None:
    request = parse_chat(
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "name": "x",
                },
                {"role": "assistant", "content": "ok", "reasoning_content": "thought"},
                {"role": "user", "content": "c"},
            ]
        },
        DEFAULTS,
        4096,
    )
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "ok", "reasoning_content": "thought"},
        {"role": "user", "content": "c"},
    ]


def test_completion_prompts() -> None:
    assert parse_text({"prompt": ["one"]}, DEFAULTS, 4096).prompt == "one"
    assert parse_text({"prompt": "x", "echo": True}, DEFAULTS, 4096).echo
    assert refused({"prompt": ["one", "two"]}, parse_text).param == "prompt"
    assert refused({"prompt": 5}, parse_text).param == "prompt"
    assert refused({"prompt": "x", "suffix": "y"}, parse_text).param == "suffix"
    assert refused({"prompt": "x", "messages": HI}, parse_text).param == "messages"


def test_answers_have_the_api_shape() -> None:
    stats = GenerationStats(prompt_tokens=5, completion_tokens=2, stop_reason="length")
    answer = protocol.Answer.start(chat=True, model="m")
    whole = answer.whole("Hello", "", stats, dropped_messages=1, n_ctx=2048)
    assert whole["object"] == "chat.completion" and whole["id"].startswith("chatcmpl-")
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    assert whole["choices"][0]["finish_reason"] == "length"
    assert whole["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert (whole["timings"]["stop_reason"], whole["timings"]["dropped_messages"], whole["timings"]["n_ctx"]) == (
        "length",
        1,
        2048,
    )
    assert answer.chunk(first=True)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert answer.chunk(reasoning="hm")["choices"][0]["delta"] == {"reasoning_content": "hm"}
    assert answer.usage_chunk(stats)["choices"] == []
    text = protocol.Answer.start(chat=False, model="m").whole("Hello", "", stats)
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "Hello"
    assert [protocol.finish_reason(r) for r in ("eos", "stop", "length", "context", "repetition")] == [
        "stop",
        "stop",
        "length",
        "length",
        "stop",
    ]
    assert protocol.sse("[DONE]") == b"data: [DONE]\n\n"


def test_metrics_render_as_prometheus_text() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics(started=100.0)
    metrics.answered("/v1/chat/completions", 200)
    metrics.answered("/v1/chat/completions", 200)
    metrics.answered("/v1/completions", 503)
    metrics.replied(10, 20, 50.0, 40.0)
    text = render(metrics, waiting=3, running=1, running_tokens=7, loaded=True, now=lambda: 160.0)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("edgellm_requests_total", (("endpoint", "/v1/chat/completions"), ("status", "200")))] == 2
    assert samples[("edgellm_requests_total", (("endpoint", "/v1/completions"), ("status", "503")))] == 1
    assert samples[("edgellm_completion_tokens_total", ())] == 27  # the running reply's 7 count live
    assert samples[("edgellm_decode_seconds_total", ())] == pytest.approx(19 / 40)
    assert samples[("edgellm_queue_depth", ())] == 3 and samples[("edgellm_uptime_seconds", ())] == 60


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("no-such-host.invalid", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) == loopback


def test_listening_beyond_this_machine_needs_a_key() -> None:
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", "key")
    with pytest.raises(EdgellmError, match="--api-key"):
        check_exposure("0.0.0.0", None)


def test_the_scheduler_runs_jobs_in_order_bounds_the_queue_and_drains() -> None:
    """One job at a time, first come first served; past the bound QueueFull; drain ends the waiting ones."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        scheduler = Scheduler(waiting_limit=2)
        gate, order = threading.Event(), []

        def work(name: str):  # type: ignore[no-untyped-def]
            def run(cancel: threading.Event):  # type: ignore[no-untyped-def]
                order.append(name)
                if name == "first":
                    gate.wait(10)
                yield name

            return run

        jobs = {name: Job(work(name), loop) for name in ("first", "second", "third", "fourth")}
        scheduler.submit(jobs["first"])
        assert isinstance(await jobs["first"].events.get(), Started)
        scheduler.submit(jobs["second"])
        scheduler.submit(jobs["third"])
        with pytest.raises(QueueFull):
            scheduler.submit(jobs["fourth"])
        assert scheduler.waiting == 2 and scheduler.busy
        scheduler.withdraw(jobs["third"])  # its client left while it waited
        assert isinstance(await jobs["third"].events.get(), Ended) and scheduler.waiting == 1
        scheduler.drain()
        with pytest.raises(ShuttingDown):
            scheduler.submit(jobs["fourth"])
        gate.set()
        assert await jobs["first"].events.get() == "first"
        assert isinstance(await jobs["first"].events.get(), Ended)
        refused = await jobs["second"].events.get()
        assert isinstance(refused, Ended) and isinstance(refused.error, ShuttingDown)
        scheduler.join(10)
        assert order == ["first"]

    asyncio.run(scenario())


def test_a_job_that_breaks_ends_its_request_and_the_model_thread_goes_on() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        scheduler = Scheduler(waiting_limit=4)

        def broken(cancel: threading.Event):  # type: ignore[no-untyped-def]
            raise RuntimeError("no generator at all")

        def fine(cancel: threading.Event):  # type: ignore[no-untyped-def]
            yield "ok"

        first, second = Job(broken, loop), Job(fine, loop)
        scheduler.submit(first)
        scheduler.submit(second)
        assert isinstance(await first.events.get(), Started)
        ended = await first.events.get()
        assert isinstance(ended, Ended) and isinstance(ended.error, RuntimeError)
        assert [await second.events.get() for _ in range(2)][1] == "ok"
        scheduler.drain()
        scheduler.join(10)

    asyncio.run(scenario())


def test_the_scheduler_runs_as_many_jobs_at_once_as_the_model_has_slots() -> None:
    """Two runners: two jobs run together, the third waits and is the only one counted against the queue's bound."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        scheduler = Scheduler(waiting_limit=1, parallel=2)
        gate, both = threading.Event(), threading.Barrier(2, timeout=10)

        def work(cancel: threading.Event):  # type: ignore[no-untyped-def]
            both.wait()  # only returns once the two jobs run at the same time
            gate.wait(10)
            yield "done"

        jobs = [Job(work, loop) for _ in range(4)]
        for job in jobs[:3]:
            scheduler.submit(job)
        for job in jobs[:2]:
            assert isinstance(await job.events.get(), Started)
        assert scheduler.busy == 2 and scheduler.waiting == 1
        with pytest.raises(QueueFull):
            scheduler.submit(jobs[3])
        scheduler.drain()  # the third, still waiting, is refused (never run: alone it would wait on the barrier)
        gate.set()
        for job in jobs[:2]:
            assert await job.events.get() == "done"
        assert isinstance(await jobs[2].events.get(), Ended) and scheduler.waiting == 0
        scheduler.join(10)

    asyncio.run(scenario())


def test_the_batch_metrics_render_as_prometheus_text() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from edgellm.server.metrics import Batching

    metrics = Metrics()
    metrics.replied(10, 20, 100.0, 50.0, queue_s=0.5)
    text = render(
        metrics, 1, 2, 0, True, batching=Batching(slots=4, busy=2, steps=10, step_tokens=35, step_sequences=25)
    )
    found = {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}
    assert found["edgellm_slots"] == 4 and found["edgellm_slots_busy"] == 2
    assert found["edgellm_busy_slots_per_decode"] == 2.5 and found["edgellm_batch_tokens_total"] == 35
    assert found["edgellm_queue_seconds_total"] == 0.5


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_tools_and_tool_choice_are_read() -> None:
    request = parse_chat({"messages": HI, "tools": [TOOL]}, DEFAULTS, 4096)
    assert [tool.name for tool in request.tools] == ["get_weather"] and request.tool_choice.mode == "auto"
    named = {"type": "function", "function": {"name": "get_weather"}}
    request = parse_chat({"messages": HI, "tools": [TOOL], "tool_choice": named}, DEFAULTS, 4096)
    assert (request.tool_choice.mode, request.tool_choice.name) == ("function", "get_weather")
    assert parse_chat({"messages": HI}, DEFAULTS, 4096).tool_choice.mode == "none"
    assert not parse_chat({"messages": HI, "parallel_tool_calls": False}, DEFAULTS, 4096).parallel_tool_calls


def test_past_calls_and_tool_results_are_kept() -> None:
    call = {"id": "abcdefghi", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "abcdefghi", "content": "sunny"},
    ]
    found = parse_chat({"messages": messages, "tools": [TOOL]}, DEFAULTS, 4096).messages
    assert found is not None
    assert found[1] == {"role": "assistant", "content": "", "tool_calls": [call]}
    assert found[2] == {"role": "tool", "content": "sunny", "tool_call_id": "abcdefghi"}


def test_response_format_and_logprobs_are_read() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    request = parse_chat({"messages": HI, "response_format": body}, DEFAULTS, 4096)
    assert request.response_format is not None and request.response_format.schema == schema
    request = parse_chat({"messages": HI, "response_format": {"type": "json_object"}}, DEFAULTS, 4096)
    assert request.response_format is not None and request.response_format.schema is None
    assert parse_chat({"messages": HI, "logprobs": True}, DEFAULTS, 4096).logprobs == 0
    assert parse_chat({"messages": HI, "logprobs": True, "top_logprobs": 5}, DEFAULTS, 4096).logprobs == 5
    assert parse_text({"prompt": "x", "logprobs": 3}, DEFAULTS, 4096).logprobs == 3
    assert parse_text({"prompt": "x", "grammar": 'root ::= "a"'}, DEFAULTS, 4096).grammar == 'root ::= "a"'
