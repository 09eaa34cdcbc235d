"""`edgellm serve --parallel N` as a real process with the official openai client: streams decoding together, each
with its own options; /slots and the batch metrics; a client that leaves frees its slot; a growing conversation hits
its slot's cache; SIGTERM lets every running reply finish and refuses the waiting."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from tests.support.server import ServerProcess, until

CTX = 1024


@pytest.fixture(scope="module")
def server(test_model: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("serve-home")
    started = ServerProcess(
        "-m", str(test_model), "-c", str(CTX), "--parallel", "3", "--queue", "1", env={"EDGELLM_HOME": str(home)}
    )
    try:
        yield started.wait_ready()
    finally:
        started.kill()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=120)


def slots(server: ServerProcess) -> list[dict]:
    return httpx.get(f"{server.url}/slots").json()


def test_slots_show_each_sequence_place(server: ServerProcess) -> None:
    found = slots(server)
    assert [slot["id"] for slot in found] == [0, 1, 2]
    assert all(slot["n_ctx"] == CTX and not slot["is_processing"] for slot in found)
    assert "3 slots of 1024-token context" in server.log and "3 slots: as asked" in server.log


def test_streams_with_their_own_options_decode_together(server: ServerProcess, client: openai.OpenAI) -> None:
    """Three streams at once, different max_tokens, stop, seed and temperature: each ends as it asked, the slots
    were busy together, and a seeded sampled request gives the same text when repeated in the same company."""

    def three() -> list[tuple[str, str | None, int]]:
        asks = [
            {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "extra_body": {"ignore_eos": True}},
            {"prompt": "1, 2, 3, 4,", "max_tokens": 200, "temperature": 0, "stop": [","]},
            {"prompt": "The sea", "max_tokens": 25, "temperature": 1.0, "seed": 5, "extra_body": {"ignore_eos": True}},
        ]

        def ask(body: dict) -> tuple[str, str | None, int]:
            stream = client.completions.create(model="any", stream=True, stream_options={"include_usage": True}, **body)
            text, finish, tokens = "", None, 0
            for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].text
                    finish = chunk.choices[0].finish_reason or finish
                if chunk.usage:
                    tokens = chunk.usage.completion_tokens
            return text, finish, tokens

        with ThreadPoolExecutor(3) as pool:
            return list(pool.map(ask, asks))

    before = server.metrics()
    first = three()
    assert first[0][1:] == ("length", 40)
    assert first[1][1] == "stop" and "," not in first[1][0] and first[1][2] < 200
    assert first[2][1:] == ("length", 25)
    after = server.metrics()
    steps = after["edgellm_decode_steps_total"] - before["edgellm_decode_steps_total"]
    assert steps < 40 + 25 + first[1][2]  # fewer decode calls than tokens: they shared steps
    assert after["edgellm_busy_slots_per_decode"] > 1.0 and after["edgellm_slots"] == 3


def test_a_client_that_leaves_frees_its_slot_and_the_others_go_on(server: ServerProcess, client: openai.OpenAI) -> None:
    body = {"prompt": "A long tale", "max_tokens": 600, "ignore_eos": True, "stream": True}
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(
            client.completions.create,
            model="any",
            prompt="Meanwhile",
            max_tokens=60,
            extra_body={"ignore_eos": True},
        )
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as answer:
            lines = (line for line in answer.iter_lines() if line.startswith("data:"))
            for _ in range(5):
                next(lines)
            until(lambda: sum(slot["is_processing"] for slot in slots(server)) == 2, what="both to run")
        assert other.result().usage.completion_tokens == 60
    until(lambda: not any(slot["is_processing"] for slot in slots(server)), what="the left reply's slot to free")
    assert "client went away" in server.log


def test_a_growing_conversation_evaluates_only_its_new_tokens(server: ServerProcess, client: openai.OpenAI) -> None:
    """Ten turns of one chat re-sent whole, with another client in between: each turn after the first evaluates
    only what is new (edgellm's `timings.prompt_evaluated`), however long the conversation grows."""
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    evaluated = []
    for turn in range(10):
        reply = client.chat.completions.with_raw_response.create(
            model="any", messages=messages, max_tokens=12, temperature=0
        )
        body = json.loads(reply.text)
        evaluated.append((body["timings"]["prompt_evaluated"], body["usage"]["prompt_tokens"]))
        client.completions.create(model="any", prompt=f"Unrelated {turn}", max_tokens=3)
        messages += [
            {"role": "assistant", "content": body["choices"][0]["message"]["content"]},
            {"role": "user", "content": f"And then, part {turn}?"},
        ]
    assert evaluated[-1][1] > 3 * evaluated[0][1]  # the conversation grew
    assert all(new < 40 for new, _ in evaluated[1:]), evaluated  # yet each turn read only its new tokens


@pytest.fixture
def two_slots(test_model: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    started = ServerProcess(
        "-m", str(test_model), "-c", "512", "--parallel", "2", "--queue", "2", env={"EDGELLM_HOME": str(tmp_path)}
    )
    try:
        yield started.wait_ready()
    finally:
        started.kill()


def test_sigterm_lets_the_running_replies_finish_and_refuses_the_waiting(two_slots: ServerProcess) -> None:
    def stream(prompt: str) -> list[str]:
        body = {"prompt": prompt, "max_tokens": 80, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", f"{two_slots.url}/v1/completions", json=body, timeout=120) as answer:
            return [line.removeprefix("data: ") for line in answer.iter_lines() if line.startswith("data:")]

    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(stream, prompt) for prompt in ("First", "Second")]
        until(lambda: sum(slot["is_processing"] for slot in httpx.get(f"{two_slots.url}/slots").json()) == 2)
        waiting = pool.submit(httpx.post, f"{two_slots.url}/v1/completions", json={"prompt": "Hi"}, timeout=120)
        until(lambda: two_slots.metrics()["edgellm_queue_depth"] == 1, what="the third to wait")
        two_slots.process.terminate()
        for reply in running:
            events = reply.result()
            assert events[-1] == "[DONE]"
            assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
        refused = waiting.result()
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    assert two_slots.process.wait(60) == 0


def test_an_empty_prompt_is_a_400_and_the_server_goes_on(server: ServerProcess, client: openai.OpenAI) -> None:
    """A model with a BOS has a token even for "", so the empty prompt completes; one without would get a 400
    (`empty_prompt`), never a decode of nothing that fails the other replies (tests/unit covers the wording)."""
    done = client.completions.create(model="any", prompt="", max_tokens=3, extra_body={"ignore_eos": True})
    assert done.usage.completion_tokens == 3
    assert client.completions.create(model="any", prompt="Hi", max_tokens=2).usage.completion_tokens >= 1
