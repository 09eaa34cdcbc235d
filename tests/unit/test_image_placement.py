"""Where a conversation's images go in its prompt (templates.images) and how a prompt with images is held in the KV
cache (engine.vision's pure parts): no llama.cpp here."""

from __future__ import annotations

from edgellm.engine.vision import image_token, is_image_token, resume_point, text_run
from edgellm.media import MARKER
from edgellm.media.images import read_image
from edgellm.templates.images import BROKEN_MARKER, has_images, last_user_images, place_images
from tests.support import images as make

RED = read_image(make.png(4, 3, (250, 0, 0)), "red.png")
BLUE = read_image(make.png(4, 3, (0, 0, 250)), "blue.png")


def test_images_without_markers_go_before_the_text_in_order() -> None:
    placed, images = place_images([{"role": "user", "content": "which is warmer?", "images": [RED, BLUE]}])
    assert placed == [{"role": "user", "content": f"{MARKER}\n{MARKER}\nwhich is warmer?"}]
    assert images == [RED, BLUE]


def test_a_message_s_own_markers_say_where_its_images_go() -> None:
    content = f"left {MARKER} right {MARKER}"
    placed, images = place_images([{"role": "user", "content": content, "images": [RED, BLUE]}])
    assert placed[0]["content"] == content and images == [RED, BLUE]


def test_typed_markers_are_never_taken_for_images() -> None:
    messages = [
        {"role": "user", "content": f"what does {MARKER} mean?"},  # no image of its own
        {"role": "assistant", "content": f"it marks an image: {MARKER}"},
        {"role": "user", "content": f"{MARKER}{MARKER} and this", "images": [RED]},  # more markers than images
    ]
    placed, images = place_images(messages)
    assert [message["content"].count(MARKER) for message in placed] == [0, 0, 1]
    assert BROKEN_MARKER in placed[0]["content"] and BROKEN_MARKER in placed[1]["content"]
    assert placed[2]["content"] == f"{MARKER}\n{BROKEN_MARKER}{BROKEN_MARKER} and this"
    assert images == [RED]


def test_a_text_only_model_gets_the_text_and_no_image() -> None:
    messages = [{"role": "user", "content": "look", "images": [RED]}, {"role": "assistant", "content": "a red box"}]
    placed, images = place_images(messages, keep=False)
    assert placed == [{"role": "user", "content": "look"}, {"role": "assistant", "content": "a red box"}]
    assert images == [] and has_images(messages) and last_user_images(messages)
    assert not last_user_images([*messages, {"role": "user", "content": "and?"}])  # an old image: left out


def test_image_tokens_are_negative_and_named_by_content() -> None:
    assert image_token(RED.digest) == image_token(RED.digest) < 0
    assert image_token(RED.digest) != image_token(BLUE.digest)
    assert is_image_token(image_token(BLUE.digest)) and not is_image_token(0)


def test_a_kept_prefix_never_ends_inside_an_image() -> None:
    red, blue = image_token(RED.digest), image_token(BLUE.digest)
    prompt = [2, 5, red, red, red, 7, 8]
    assert resume_point(prompt, prompt) == len(prompt)
    assert resume_point([2, 5, red, red, 9], prompt) == 2  # the cache held part of the image: evaluated whole again
    assert resume_point([2, 5, red, red, red, 7, 9], prompt) == 6
    assert resume_point([2, 5, blue, blue, blue], prompt) == 2
    assert resume_point([], prompt) == 0
    assert text_run(prompt) == 2 and text_run([7, 8]) == 2 and text_run([red, 7]) == 0


def test_a_reply_s_timings_say_what_its_images_took() -> None:
    from edgellm.cli.repl import timings_line
    from edgellm.engine.contract import GenerationStats
    from edgellm.session.events import Timings

    seen = Timings(GenerationStats(prompt_tokens=40, prompt_evaluated=40, completion_tokens=5, ttft_ms=900.0,
                                   image_tokens=16, image_ms=812.4), 45, 1024)  # fmt: skip
    assert "images 16 tokens in 812 ms" in timings_line(seen)
    assert seen.parts("image", short=True) == ["image 812 ms"]
    cached = Timings(GenerationStats(prompt_tokens=60, completion_tokens=5, image_tokens=0, image_ms=0.0), 65, 1024)
    assert cached.parts("image") == [] and "image" not in timings_line(cached)  # nothing evaluated, nothing said
