"""Images in API requests, parsed (pure: no server, no model): OpenAI's `image_url` parts (data URLs and file:// URLs;
remote URLs refused) and Ollama's base64 `images` become the messages' `images`, with MARKER where each goes; every
bad image is a 400 in the API's own error shape naming where it is, and text that holds MARKER is never taken for an
image."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from edgellm.api import ollama, openai
from edgellm.api.ollama import OllamaError
from edgellm.api.openai import ApiError
from edgellm.engine.contract import GenerationOptions
from edgellm.media import MARKER
from edgellm.media.images import Image, digest_of
from tests.support.images import jpeg, png, png_header

DEFAULTS = GenerationOptions()
RED, BLUE = png(4, 3, (200, 30, 60)), png(2, 2, (0, 0, 255))


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def image_part(url: Any, **more: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **more} if not isinstance(url, dict) else url}


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def text(words: str) -> dict[str, str]:
    return {"type": "text", "text": words}


def chat(*messages: dict[str, Any], local_files: bool = True, **body: Any) -> list[dict[str, Any]]:
    request = openai.parse_chat({"messages": list(messages), **body}, DEFAULTS, 4096, local_files=local_files)
    assert request.messages is not None
    return request.messages


def refused(*messages: dict[str, Any], local_files: bool = True, **body: Any) -> ApiError:
    with pytest.raises(ApiError) as raised:
        chat(*messages, local_files=local_files, **body)
    assert raised.value.status == 400 and "\n" not in raised.value.message
    assert raised.value.body()["error"]["type"] == "invalid_request_error"
    return raised.value


# --- OpenAI: image_url parts --------------------------------------------------------------------------------------


def test_a_data_url_part_is_the_image_and_a_marker_where_it_stands() -> None:
    (message,) = chat(user(text("What is this?"), image_part(data_url(RED)), text("Be brief.")))
    assert message["content"] == f"What is this?\n{MARKER}\nBe brief."
    (image,) = message["images"]
    assert isinstance(image, Image)
    assert (image.data, image.digest, image.width, image.height, image.format) == (RED, digest_of(RED), 4, 3, "png")


def test_images_keep_their_order_and_each_message_its_own() -> None:
    messages = chat(
        user(image_part(data_url(RED)), image_part(data_url(jpeg(16, 8), "image/jpeg")), text("Compare them.")),
        {"role": "assistant", "content": "Two pictures."},
        user(text("And this?"), image_part(data_url(BLUE))),
    )
    assert messages[0]["content"] == f"{MARKER}\n{MARKER}\nCompare them."
    assert [image.format for image in messages[0]["images"]] == ["png", "jpeg"]
    assert "images" not in messages[1]
    assert messages[2]["content"] == f"And this?\n{MARKER}" and messages[2]["images"][0].data == BLUE


def test_text_only_requests_are_unchanged() -> None:
    assert chat(user(text("a"), text("b"))) == [{"role": "user", "content": "a\nb"}]
    assert chat({"role": "user", "content": "Hi"}) == [{"role": "user", "content": "Hi"}]


def test_the_short_form_and_detail_are_accepted() -> None:
    short = chat(user({"type": "image_url", "image_url": data_url(RED)}))[0]
    detailed = chat(user(image_part(data_url(RED), detail="low")))[0]
    assert short["images"] == detailed["images"] and short["images"][0].data == RED


def test_a_file_url_reads_the_file_on_this_machine(tmp_path: Path) -> None:
    path = tmp_path / "a photo.png"
    path.write_bytes(RED)
    (message,) = chat(user(image_part(path.as_uri())))
    assert message["images"][0].data == RED and message["content"] == MARKER


def test_a_file_url_is_refused_for_a_client_on_another_machine(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(RED)
    error = refused(user(image_part(path.as_uri())), local_files=False)
    assert error.param == "messages[0].content" and error.code == "invalid_image_url"
    assert "data URL" in error.message and str(path) not in error.message
    assert chat(user(image_part(data_url(RED))), local_files=False)[0]["images"][0].data == RED


@pytest.mark.parametrize("url", ["http://example.com/cat.png", "https://example.com/cat.png", "HTTPS://x/y.jpg"])
def test_remote_urls_are_refused(url: str) -> None:
    error = refused(user(text("What is this?"), image_part(url)))
    assert error.code == "remote_image_url" and error.param == "messages[0].content"
    assert error.message.startswith("messages[0].content[1].image_url: ") and "remote" in error.message
    assert "data URL" in error.message  # the way out


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (data_url(b"hello, this is text"), "not an image"),
        (data_url(png_header(100_000, 100_000)), "megapixel"),
        (data_url(RED[:40]), "cut short"),
        (data_url(RED, "text/plain"), "not an image"),
        ("data:image/png;base64,@@@", "base64"),
        ("ftp://host/x.png", "ftp"),
        ("cat.png", "not a URL"),
    ],
)
def test_bad_images_are_refused_naming_where_and_why(url: str, said: str) -> None:
    error = refused(user(text("What is this?"), image_part(url)))
    assert error.param == "messages[0].content" and error.code in ("invalid_image", "invalid_image_url")
    assert error.message.startswith("messages[0].content[1].image_url: image 1 of the request")
    assert said in error.message


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    error = refused(user(image_part((tmp_path / "gone.png").as_uri())))
    assert error.code == "invalid_image" and "no such file" in error.message


def test_images_are_numbered_across_the_request() -> None:
    good, bad = image_part(data_url(RED)), image_part(data_url(b"not an image"))
    error = refused(user(good), {"role": "assistant", "content": "ok"}, user(text("and"), good, bad))
    assert error.message.startswith("messages[2].content[2].image_url: image 3 of the request")


@pytest.mark.parametrize(
    ("part", "said"),
    [
        ({"type": "image_url"}, "must be"),
        ({"type": "image_url", "image_url": {"url": ""}}, "must be"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "size": 3}}, "unrecognized field"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "ultra"}}, "detail"),
        ({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}, '"input_audio"'),
        ({"type": "file", "file": {"file_id": "f"}}, '"file"'),
        ("just a string", "null"),
    ],
)
def test_malformed_parts_are_refused_by_name(part: Any, said: str) -> None:
    error = refused(user(text("What is this?"), part))
    assert error.param == "messages[0].content" and said in error.message
    assert error.message.startswith("messages[0].content[1]")


@pytest.mark.parametrize("role", ["system", "assistant", "developer"])
def test_only_user_messages_carry_images(role: str) -> None:
    error = refused({"role": role, "content": [image_part(data_url(RED))]}, user(text("Hi")))
    assert "only user messages carry images" in error.message and error.param == "messages[0].content"


def test_text_holding_the_marker_is_refused_beside_images() -> None:
    picture = image_part(data_url(RED))
    error = refused(user(text(f"What is {MARKER}?"), picture))
    assert error.code == "image_marker_in_text" and error.param == "messages[0].content[0].text"
    assert MARKER in error.message and "break it up" in error.message
    elsewhere = refused({"role": "system", "content": f"Say {MARKER}."}, user(picture))
    assert elsewhere.param == "messages[0].content"
    tool = {"type": "function", "function": {"name": "see", "description": f"shows {MARKER}", "parameters": {}}}
    assert refused(user(picture), tools=[tool]).param == "tools[0].function.description"


def test_the_marker_in_text_without_images_is_plain_text() -> None:
    assert chat({"role": "user", "content": f"Say {MARKER}"})[0] == {"role": "user", "content": f"Say {MARKER}"}


def test_the_marker_in_a_file_path_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / f"{MARKER}.png"
    path.write_bytes(RED)
    assert chat(user(text("What?"), image_part(path.as_uri())))[0]["content"] == f"What?\n{MARKER}"


def test_max_tokens_is_checked_against_the_models_context_without_reading_again() -> None:
    openai.within_context({"max_tokens": 100}, 100, 512)
    with pytest.raises(ApiError) as raised:
        openai.within_context({"max_completion_tokens": 600}, 600, 512)
    assert raised.value.param == "max_completion_tokens" and raised.value.code == "context_length_exceeded"


# --- Ollama: base64 images ----------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ollama_chat(*messages: dict[str, Any], **body: Any) -> list[dict[str, Any]]:
    request = ollama.parse_chat({"model": "m", "messages": list(messages), **body}, DEFAULTS)
    assert request.completion is not None and request.completion.messages is not None
    return request.completion.messages


def ollama_refused(body: dict[str, Any], parse: Any = ollama.parse_chat) -> OllamaError:
    with pytest.raises(OllamaError) as raised:
        parse({"model": "m", **body}, DEFAULTS)
    assert raised.value.status == 400 and "\n" not in raised.value.message
    assert set(raised.value.body()) == {"error"}
    return raised.value


def test_ollama_images_go_before_the_text_each_on_a_line() -> None:
    (message,) = ollama_chat({"role": "user", "content": "Compare them.", "images": [b64(RED), b64(BLUE)]})
    assert message["content"] == f"{MARKER}\n{MARKER}\nCompare them."
    assert [image.data for image in message["images"]] == [RED, BLUE]


def test_ollama_images_may_be_data_urls_or_unpadded() -> None:
    (message,) = ollama_chat({"role": "user", "content": "?", "images": [data_url(RED), b64(BLUE).rstrip("=")]})
    assert [image.data for image in message["images"]] == [RED, BLUE]


def test_ollama_no_images_leaves_the_message_as_it_was() -> None:
    for images in (None, []):
        assert ollama_chat({"role": "user", "content": "x", "images": images}) == [{"role": "user", "content": "x"}]


def test_ollama_generate_takes_images_as_the_prompts() -> None:
    request = ollama.parse_generate({"model": "m", "prompt": "What is it?", "images": [b64(RED)]}, DEFAULTS)
    assert request.completion is not None and request.images
    (message,) = request.completion.messages or []
    assert message["content"] == f"{MARKER}\nWhat is it?" and message["images"][0].data == RED
    alone = ollama.parse_generate({"model": "m", "images": [b64(RED)], "system": "Be terse."}, DEFAULTS)
    assert alone.completion is not None and alone.completion.messages is not None
    assert alone.completion.messages[1]["content"] == f"{MARKER}\n"
    assert not ollama.parse_generate({"model": "m", "prompt": "Hi"}, DEFAULTS).images


@pytest.mark.parametrize(
    ("image", "said"),
    [
        ("bm90IGFuIGltYWdl", "not an image"),
        ("%%% not base64 %%%", "base64"),
        (b64(png_header(100_000, 100_000)), "megapixel"),
        (b64(RED[:40]), "cut short"),
        ("", "empty"),
    ],
)
def test_ollama_bad_images_are_refused_naming_where(image: str, said: str) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "x", "images": [image]}]}
    error = ollama_refused(body)
    assert error.message.startswith("messages[1].images[0]: image 1 of the request") and said in error.message
    generated = ollama_refused({"prompt": "x", "images": [b64(RED), image]}, ollama.parse_generate)
    assert generated.message.startswith("images[1]: image 2 of the request") and said in generated.message


@pytest.mark.parametrize("images", ["abc", [1], {"a": 1}])
def test_ollama_images_must_be_a_list_of_strings(images: Any) -> None:
    error = ollama_refused({"messages": [{"role": "user", "content": "x", "images": images}]})
    assert error.message.startswith("messages[0].images must be a list")


def test_ollama_only_user_messages_carry_images() -> None:
    error = ollama_refused({"messages": [{"role": "assistant", "content": "x", "images": [b64(RED)]}]})
    assert error.message.startswith("messages[0].images: only user messages carry images")


def test_ollama_images_refuse_raw_and_context() -> None:
    raw = ollama_refused({"prompt": "x", "raw": True, "images": [b64(RED)]}, ollama.parse_generate)
    assert "raw" in raw.message
    context = ollama_refused({"prompt": "x", "context": [2, 3], "images": [b64(RED)]}, ollama.parse_generate)
    assert "context" in context.message and "/api/chat" in context.message


def test_ollama_text_holding_the_marker_is_refused_beside_images() -> None:
    error = ollama_refused({"messages": [{"role": "user", "content": f"a {MARKER}", "images": [b64(RED)]}]})
    assert error.message.startswith("messages[0].content holds the text") and MARKER in error.message
    generated = ollama_refused({"prompt": "x", "system": MARKER, "images": [b64(RED)]}, ollama.parse_generate)
    assert generated.message.startswith("system holds")
    assert ollama_chat({"role": "user", "content": MARKER}) == [{"role": "user", "content": MARKER}]
