"""Images through `edgellm serve` as clients send them: the official `openai` and `ollama` clients over 127.0.0.1,
the real test model with a tiny Gemma 3 projector (random weights, the real layout libmtmd loads). A data URL and
Ollama's base64 are answered, the same image sent again is not evaluated again, every bad image is a 400 in the
API's own shape naming the problem, images to a text-only server are a 400, and the server answers the next request
after each refusal."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import ollama
import openai
import pytest

from edgellm.convert.tinyprojector import write_projector
from tests.support.images import png, png_header
from tests.support.server import ServerProcess

PICTURE = png(64, 48, (30, 120, 200))


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def asking(url: str, words: str = "What is in the picture?") -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": [{"type": "text", "text": words}, {"type": "image_url", "image_url": {"url": url}}]}
    ]


@pytest.fixture(scope="module")
def projector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_projector(tmp_path_factory.mktemp("projector") / "mmproj-tiny.gguf")


@pytest.fixture(scope="module")
def vision(test_model: Path, projector: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The test model served with the tiny projector: one slot, so a request finds the previous one's cells."""
    home = tmp_path_factory.mktemp("vision-home")
    started = ServerProcess(
        "-m", str(test_model), "--mmproj", str(projector), "-c", "1024", "--parallel", "1", "--temp", "0",
        env={"EDGELLM_HOME": str(home)},
    )  # fmt: skip
    try:
        yield started.wait_ready()
    finally:
        started.kill()


@pytest.fixture(scope="module")
def text_only(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("text-home")
    started = ServerProcess("-m", str(test_model), "-c", "512", "--parallel", "1", env={"EDGELLM_HOME": str(home)})
    try:
        yield started.wait_ready()
    finally:
        started.kill()


def client_of(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=300)


def still_answers(server: ServerProcess) -> None:
    """The server answers a plain request after a refusal."""
    answer = client_of(server).chat.completions.create(
        model="any", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, extra_body={"ignore_eos": True}
    )
    assert answer.usage is not None and answer.usage.completion_tokens == 2


def refused(server: ServerProcess, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The 400 error object a chat request with these messages gets (raised by the openai client as the API's)."""
    with pytest.raises(openai.BadRequestError) as raised:
        client_of(server).chat.completions.create(model="any", messages=messages, max_tokens=2)  # type: ignore[arg-type]
    assert raised.value.status_code == 400
    error = raised.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error" and "\n" not in error["message"]
    return error


def test_a_data_url_is_answered_and_the_same_image_again_reuses_its_cells(vision: ServerProcess) -> None:
    client = client_of(vision)

    def ask(cache_prompt: bool) -> Any:
        return client.chat.completions.create(
            model="any",
            messages=asking(data_url(PICTURE)),  # type: ignore[arg-type]
            max_tokens=6,
            extra_body={"ignore_eos": True, "cache_prompt": cache_prompt},
        )

    first = ask(cache_prompt=False)  # evaluated whole, whatever the slot held
    assert first.choices[0].message.content and first.usage is not None and first.usage.completion_tokens == 6
    timings = (first.model_extra or {})["timings"]
    assert timings["image_tokens"] > 0 and timings["image_ms"] >= 0
    assert timings["prompt_evaluated"] == first.usage.prompt_tokens > timings["image_tokens"]

    again = ask(cache_prompt=True)
    assert again.choices[0].message.content == first.choices[0].message.content  # greedy: the same reply
    assert again.usage is not None and again.usage.prompt_tokens == first.usage.prompt_tokens
    reused = (again.model_extra or {})["timings"]
    assert reused["prompt_evaluated"] < timings["image_tokens"]  # the image's cells were kept: not evaluated again
    assert reused.get("image_tokens", 0) == 0


def test_a_file_url_on_this_machine_is_read(vision: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "snapshot.png"
    path.write_bytes(PICTURE)
    answer = client_of(vision).chat.completions.create(
        model="any", messages=asking(path.as_uri()), max_tokens=2, extra_body={"ignore_eos": True}
    )  # type: ignore[arg-type]
    assert (answer.model_extra or {})["timings"]["prompt_evaluated"] > 0 and answer.choices[0].message.content


@pytest.mark.parametrize(
    ("url", "code", "said"),
    [
        ("https://example.com/cat.png", "remote_image_url", "remote image URLs are not fetched"),
        (data_url(b"GIF? no: plain text"), "invalid_image", "not an image"),
        (data_url(png_header(60_000, 60_000)), "invalid_image", "megapixel"),
        (data_url(PICTURE[: len(PICTURE) // 2]), "invalid_image", "cut short"),
    ],
)
def test_bad_images_are_a_400_naming_the_problem(vision: ServerProcess, url: str, code: str, said: str) -> None:
    error = refused(vision, asking(url))
    assert error["code"] == code and error["param"] == "messages[0].content"
    assert (
        error["message"].startswith("messages[0].content[1].image_url: image 1 of the request")
        and said in error["message"]
    )
    still_answers(vision)


def test_ollama_images_are_answered_on_chat_and_generate(vision: ServerProcess, test_model: Path) -> None:
    client = ollama.Client(host=vision.url, timeout=300)
    chat = client.chat(
        model=test_model.stem,
        messages=[{"role": "user", "content": "What is this?", "images": [PICTURE]}],
        options={"num_predict": 3},
    )
    plain = client.chat(
        model=test_model.stem, messages=[{"role": "user", "content": "What is this?"}], options={"num_predict": 1}
    )
    assert chat.done and chat.eval_count and chat.prompt_eval_count and plain.prompt_eval_count
    assert chat.prompt_eval_count > plain.prompt_eval_count + 1  # the image's positions count as prompt tokens
    generated = client.generate(
        model=test_model.stem, prompt="Describe it.", images=[PICTURE], options={"num_predict": 3}
    )
    assert generated.done and generated.context is None  # its tokens cannot carry the image
    streamed = "".join(
        part.response
        for part in client.generate(
            model=test_model.stem, prompt="Describe it.", images=[PICTURE], options={"num_predict": 3}, stream=True
        )
    )
    assert streamed == generated.response


@pytest.mark.parametrize(
    ("image", "said"),
    [
        (base64.b64encode(b"not an image at all").decode(), "not an image"),
        (base64.b64encode(png_header(60_000, 60_000)).decode(), "megapixel"),
        ("@@ not base64 @@", "not valid base64"),
    ],
)
def test_ollama_bad_images_are_a_400_naming_the_problem(
    vision: ServerProcess, test_model: Path, image: str, said: str
) -> None:
    body = {
        "model": test_model.stem,
        "messages": [{"role": "user", "content": "?", "images": [image]}],
        "stream": False,
    }
    answer = httpx.post(f"{vision.url}/api/chat", json=body, timeout=60)
    assert answer.status_code == 400 and set(answer.json()) == {"error"}
    assert answer.json()["error"].startswith("messages[0].images[0]: image 1 of the request") and said in answer.text
    generated = httpx.post(
        f"{vision.url}/api/generate",
        json={"model": test_model.stem, "prompt": "?", "images": [image], "stream": False},
        timeout=60,
    )
    assert (
        generated.status_code == 400 and generated.json()["error"].startswith("images[0]: ") and said in generated.text
    )
    if said != "not valid base64":  # the ollama client itself refuses to send text that is not base64
        with pytest.raises(ollama.ResponseError) as raised:  # as the ollama client reports it
            ollama.Client(host=vision.url).generate(model=test_model.stem, prompt="?", images=[image])
        assert raised.value.status_code == 400 and raised.value.error == generated.json()["error"]
    still_answers(vision)


def test_the_vision_capability_is_reported(vision: ServerProcess, text_only: ServerProcess, test_model: Path) -> None:
    (listed,) = client_of(vision).models.list().data
    assert (listed.model_extra or {}).get("capabilities") == ["completion", "vision"]
    (plain,) = client_of(text_only).models.list().data
    assert "capabilities" not in (plain.model_extra or {})
    assert "vision" in (ollama.Client(host=vision.url).show(test_model.stem).capabilities or [])
    assert "vision" not in (ollama.Client(host=text_only.url).show(test_model.stem).capabilities or [])


def test_images_to_a_text_only_server_are_a_400(text_only: ServerProcess, test_model: Path) -> None:
    error = refused(text_only, asking(data_url(PICTURE)))
    assert error["code"] == "model_not_vision" and error["param"] == "messages"
    assert "mmproj" in error["message"]  # the way out: a projector
    still_answers(text_only)
    with pytest.raises(ollama.ResponseError) as raised:
        ollama.Client(host=text_only.url).chat(
            model=test_model.stem, messages=[{"role": "user", "content": "?", "images": [PICTURE]}]
        )
    assert raised.value.status_code == 400 and "mmproj" in raised.value.error
    still_answers(text_only)
