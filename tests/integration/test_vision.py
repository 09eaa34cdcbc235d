"""Images into a vision model, end to end on the real llama.cpp: the Gemma 3 test model with a projector of Gemma 3's
layout (random weights, tests/conftest.py `projector`), against llama.cpp's own `llama-mtmd-cli` built from the same
source."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgellm.engine.contract import GenerationOptions, Sampling
from edgellm.errors import ImageRefused, NoVision
from edgellm.media import MARKER
from edgellm.media.images import read_image, read_image_file
from edgellm.session.events import AnswerPiece, ReplyDone
from edgellm.session.flags import flags_from
from edgellm.session.history import History
from edgellm.session.host import ModelHost
from tests.support import edgellm
from tests.support import images as make
from tests.support.llama_tools import llama_tool

QUESTION = "Describe the image."
GREEDY = dict(temp=0.0, top_k=1, n_predict=16, ctx_size=1024, threads=2, seed=1)


def host_for(model: Path, projector: Path | None, **given: object) -> ModelHost:
    args = SimpleNamespace(model=str(model), mmproj=str(projector) if projector else None, **{**GREEDY, **given})
    return ModelHost(flags_from(args, {}))


def reply_of(turn) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    text, done = [], None
    for event in turn:
        if isinstance(event, AnswerPiece):
            text.append(event.text)
        elif isinstance(event, ReplyDone):
            done = event.reply
    return "".join(text), done


@pytest.fixture(scope="module")
def mtmd_cli() -> Path:
    return llama_tool("llama-mtmd-cli")


def mtmd_cli_reply(tool: Path, model: Path, projector: Path, image: Path, prompt: str) -> str:
    """llama-mtmd-cli's greedy reply, with llama.cpp's built-in Gemma chat template (edgellm's fallback for the test
    model, which has none of its own)."""
    done = subprocess.run(
        [str(tool), "-m", str(model), "--mmproj", str(projector), "--image", str(image), "-p", prompt, "-n", "16",
         "--temp", "0", "--top-k", "1", "-t", "2", "-c", "1024", "--chat-template", "gemma", "--seed", "1"],
        capture_output=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.decode("utf-8", "replace")


def gradient_png(width: int, height: int) -> bytes:
    """A PNG whose every pixel differs (a flat colour makes the test model answer blank lines only)."""
    import struct
    import zlib

    rows = b"".join(
        b"\x00"
        + bytes(value for x in range(width) for value in (x * 255 // width, y * 255 // height, (x + y) * 7 % 256))
        for y in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.mark.timeout(1800)  # builds llama-mtmd-cli when scripts/install.py has not (minutes, once)
@pytest.mark.parametrize("kind", ["jpeg-photo", "png"])
def test_greedy_tokens_match_llama_mtmd_cli(
    kind: str, test_model: Path, projector: Path, photo: Path, mtmd_cli: Path, tmp_path: Path
) -> None:
    """The chat template, the image's place, its tokens and the engine give llama-mtmd-cli's own greedy reply (its
    stdout is every token's piece, special tokens written out)."""
    if kind == "png":
        image_path = tmp_path / "gradient.png"
        image_path.write_bytes(gradient_png(120, 90))
    else:
        image_path = photo
    expected = mtmd_cli_reply(mtmd_cli, test_model, projector, image_path, MARKER + QUESTION)
    host = host_for(test_model, projector)
    model = host.open()
    messages = [{"role": "user", "content": MARKER + QUESTION, "images": [read_image_file(image_path)]}]
    prepared = model.prepare(messages)
    options = GenerationOptions(sampling=Sampling(temp=0.0, top_k=1), max_tokens=16, seed=1)
    generation = model.model.generation(prepared.tokens, options)
    list(generation)
    text = model.model.detokenize(generation.tokens, special=True).decode("utf-8", "replace")
    host.close()
    assert text.strip(), "the model answered something besides blank lines"
    assert text.strip() == expected.strip()
    assert generation.stats.image_tokens == 16 and generation.stats.image_ms > 0


def test_the_image_is_in_the_kv_cache_for_the_next_turn_and_survives_resume(
    test_model: Path, projector: Path, photo: Path, edgellm_home: Path
) -> None:
    history = History(edgellm_home / "history.db")
    host = host_for(test_model, projector)
    host.open()
    session = host.chat(history)
    _first, reply = reply_of(session.send(QUESTION, [read_image_file(photo)]))
    assert reply.stats.image_tokens == 16
    _, again = reply_of(session.send("And the colours?"))
    assert again.stats.image_tokens == 0, "the image's cells were reused, not evaluated again"
    assert again.stats.prompt_evaluated < again.stats.prompt_tokens - 16
    conversation = session.conversation_id
    host.close()
    stored = list((edgellm_home / "images").rglob("*.jpeg"))
    assert len(stored) == 1 and stored[0].read_bytes() == photo.read_bytes()

    host = host_for(test_model, projector)  # a new process's view: a fresh model, the history on disk
    host.open()
    resumed = host.chat(History(edgellm_home / "history.db"))
    saved = resumed.load(conversation)
    assert [len(message.images) for message in saved] == [1, 0, 0, 0]
    assert saved[0].images[0].name == "test-1.jpeg"
    _, later = reply_of(resumed.send("One more word?"))
    assert later.stats.image_tokens == 16, "the resumed conversation's image went to the model again"
    host.close()


def test_a_resumed_image_conversation_goes_on_with_a_text_only_model(
    test_model: Path, projector: Path, photo: Path, edgellm_home: Path
) -> None:
    history = History(edgellm_home / "history.db")
    host = host_for(test_model, projector)
    host.open()
    session = host.chat(history)
    reply_of(session.send(QUESTION, [read_image_file(photo)]))
    conversation = session.conversation_id
    host.close()
    host = host_for(test_model, None)
    host.open()
    resumed = host.chat(History(edgellm_home / "history.db"))
    resumed.load(conversation)
    _text, reply = reply_of(resumed.send("Go on."))
    assert reply.stats.completion_tokens > 0  # the old image is left out, the chat goes on
    with pytest.raises(NoVision, match="reads text only"):
        resumed.send("And this?", [read_image_file(photo)])
    host.close()


def test_cancel_and_images_in_one_batched_engine(test_model: Path, projector: Path, photo: Path) -> None:
    from edgellm.engine.batched import open_batched
    from edgellm.engine.contract import LoadParams
    from edgellm.engine.llama_log import LlamaLog
    from edgellm.engine.local import load

    image = read_image_file(photo)
    other = read_image(make.png(64, 64, (250, 250, 10)), "yellow.png")
    prompt = f"<start_of_turn>user\n{MARKER}{QUESTION}<end_of_turn>\n<start_of_turn>model\n"
    options = GenerationOptions(sampling=Sampling(temp=0.0, top_k=1), max_tokens=12, seed=1)
    params = LoadParams(test_model, 1024, 2, 2, 0, True, "f16", 1, projector=projector)
    log = LlamaLog(Path("/dev/null"), False)

    single = load(params, log)
    expected = {}
    for picture in (image, other):
        tokens = single.tokenize_with_images("<bos>" + prompt, [picture], add_bos=False)
        expected[picture.digest] = (tokens, "".join(single.generation(tokens, options)))
    cancelled = threading.Event()
    cancelled.set()
    stopped = single.generation(expected[image.digest][0], options, cancel=cancelled)
    assert "".join(stopped) == "" and stopped.stats.stop_reason == "interrupted"
    single.close()

    batched = open_batched(LoadParams(test_model, 1024, 2, 2, 0, True, "f16", 1, parallel=2, projector=projector), log)
    try:
        results: dict[str, str] = {}

        prompts = {
            picture.digest: batched.tokenize_with_images("<bos>" + prompt, [picture], add_bos=False)
            for picture in (image, other)
        }
        assert prompts == {digest: tokens for digest, (tokens, _) in expected.items()}

        drafting = replace(options, speculation="ngram")  # asked for, but an image's ids are never drafted
        drafted: list[object] = []

        def answer(digest: str) -> None:
            generation = batched.generation(prompts[digest], drafting)
            results[digest] = "".join(generation)
            drafted.append(generation.stats.speculation)

        threads = [threading.Thread(target=answer, args=(digest,)) for digest in expected]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert results == {digest: text for digest, (_, text) in expected.items()}  # each slot its own image
        assert drafted == [None, None]
    finally:
        batched.close()


def test_bad_images_and_projectors_are_one_line_exit_2(
    test_model: Path, projector: Path, photo: Path, tmp_path: Path
) -> None:
    from edgellm.convert.tinyprojector import ProjectorShape, write_projector

    huge = tmp_path / "huge.png"
    huge.write_bytes(make.png_header(100_000, 100_000))
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    wrong = write_projector(tmp_path / "mmproj-other.gguf", ProjectorShape(text_embd=512))
    run = ("run", "-m", str(test_model), "-p", "Hi", "-n", "2", "-c", "512")
    cases = {
        "too-large": (*run, "--mmproj", str(projector), "--image", str(huge)),
        "not-image": (*run, "--mmproj", str(projector), "--image", str(text)),
        "missing": (*run, "--mmproj", str(projector), "--image", str(tmp_path / "gone.jpg")),
        "text only": (*run, "--image", str(photo)),
        "mismatch": (*run, "--mmproj", str(wrong), "--image", str(photo)),
        "not a projector": (*run, "--mmproj", str(test_model), "--image", str(photo)),
    }
    said = {}
    for case, args in cases.items():
        done = edgellm(*args)
        assert done.returncode == 2, (case, done.stderr)
        assert done.stdout == "" and "Traceback" not in done.stderr, case
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgellm: error: "), (case, done.stderr)
        said[case] = lines[0]
    assert "100000×100000" in said["too-large"] and "scale it down" in said["too-large"]
    assert "PNG, JPEG, GIF or BMP" in said["not-image"]
    assert "gone.jpg" in said["missing"]
    assert "reads text only" in said["text only"] and "--mmproj" in said["text only"]
    assert "640" in said["mismatch"] and "mmproj-other.gguf" in said["mismatch"]
    assert "not a vision projector" in said["not a projector"]


def test_run_image_json_reports_the_image(test_model: Path, projector: Path, photo: Path) -> None:
    import json

    done = edgellm(
        "run", "-m", str(test_model), "--mmproj", str(projector), "--image", str(photo), "-p", "This picture",
        "-n", "6", "--temp", "0", "-c", "1024", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["image_tokens"] == 16 and record["image_ms"] > 0
    assert record["settings"]["mmproj"] == str(projector)
    assert record["prompt_tokens"] > 16


def test_repl_image_command(test_model: Path, projector: Path, photo: Path) -> None:
    lines = f"/image {photo}\n/image\nWhat is it?\n/image {photo.parent / 'nope.png'}\n"
    done = edgellm(
        "chat", "--headless", "-m", str(test_model), "--mmproj", str(projector), "-n", "6", "--temp", "0",
        "-c", "1024", input=lines,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("attached: test-1.jpeg · 640×488 · 124 KB") == 2
    assert done.stdout.strip(), "the reply went to stdout"
    assert "nope.png: no such file" in done.stderr
    with pytest.raises(ImageRefused):
        read_image_file(photo.parent / "nope.png")


def test_resume_shows_the_images_and_says_which_are_gone(
    test_model: Path, projector: Path, photo: Path, edgellm_home: Path
) -> None:
    chat = ("chat", "--headless", "-m", str(test_model), "--mmproj", str(projector), "-n", "4", "-c", "1024")
    assert edgellm(*chat, input=f"/image {photo}\nWhat is it?\n").returncode == 0
    resumed = edgellm(*chat, "--resume", "1", input="")
    assert resumed.returncode == 0, resumed.stderr
    assert "user: [image: test-1.jpeg · 640×488 · 124 KB]" in resumed.stderr
    for kept in (edgellm_home / "images").rglob("*.jpeg"):
        kept.unlink()  # deleted by hand
    resumed = edgellm(*chat, "--resume", "1", input="")
    assert resumed.returncode == 0, resumed.stderr
    assert "user: [1 image(s) no longer in the image store]" in resumed.stderr


def test_a_chat_decodes_each_image_once_not_every_turn(
    test_model: Path, projector: Path, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgellm.engine.vision import Projector

    decoded: list[str] = []
    original = Projector._bitmap

    def counted(self: Projector, image):  # type: ignore[no-untyped-def]
        decoded.append(image.name)
        return original(self, image)

    monkeypatch.setattr(Projector, "_bitmap", counted)
    host = host_for(test_model, projector)
    model = host.open()
    session = host.chat(None)
    picture = read_image_file(photo)
    reply_of(session.send(QUESTION, [picture]))
    first = len(decoded)
    assert 1 <= first <= 2  # measured once for fitting the history, once in the prompt
    for text in ("And then?", "One more?", "Last one?"):
        reply_of(session.send(text))
    assert len(decoded) == first, "later turns fit and extend the prompt without decoding the image again"
    messages = session.chat_messages()
    exact = len(model.tokenize(*model.rendered(messages)))
    assert abs(model.count(messages) - exact) <= 2  # an image counted by its first tokenization
    host.close()


def test_more_images_than_the_projector_keeps_ready(test_model: Path, projector: Path) -> None:
    """A chat's images outlive the few tokenized images the projector keeps (KEPT_CHUNKS): one needed again is
    tokenized again from its bytes, in a later turn or in one prompt holding many."""
    from edgellm.engine.vision import KEPT_CHUNKS

    pictures = [read_image(gradient_png(40 + 8 * n, 30), f"p{n}.png") for n in range(KEPT_CHUNKS + 3)]
    host = host_for(test_model, projector)
    host.open()
    session = host.chat(None)
    for picture in pictures:
        _, reply = reply_of(session.send("And this one?", [picture]))
        assert reply.stats.image_tokens == 16 and not reply.interrupted
    session.new()  # a new conversation, its first image another: every image of the prompt evaluated
    _, reply = reply_of(session.send("All of them?", pictures[::-1]))
    assert reply.stats.image_tokens == 16 * len(pictures)
    host.close()


def test_cancel_while_an_image_is_decoded_ends_the_reply_as_interrupted(
    test_model: Path, projector: Path, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgellm.engine.vision import Projector

    cancel = threading.Event()
    original = Projector.decode_image

    def stopped_midway(self: Projector, *args):  # type: ignore[no-untyped-def]
        cancel.set()  # as Esc or a client gone would, while llama.cpp decodes the image
        return original(self, *args)

    monkeypatch.setattr(Projector, "decode_image", stopped_midway)
    host = host_for(test_model, projector)
    model = host.open()
    prepared = model.prepare([{"role": "user", "content": QUESTION, "images": [read_image_file(photo)]}])
    generation = model.model.generation(prepared.tokens, GenerationOptions(max_tokens=8), cancel=cancel)
    assert "".join(generation) == ""
    assert generation.stats.stop_reason == "interrupted"
    monkeypatch.setattr(Projector, "decode_image", original)
    again = model.model.generation(prepared.tokens, GenerationOptions(max_tokens=4))
    list(again)
    assert again.stats.image_tokens == 16 and again.stats.completion_tokens == 4  # the model goes on
    host.close()


def test_a_raw_prompt_ending_with_its_image(test_model: Path, projector: Path, photo: Path) -> None:
    done = edgellm(
        "run", "-m", str(test_model), "--mmproj", str(projector), "--image", str(photo), "-p", f"Look: {MARKER}",
        "-n", "4", "--temp", "0", "-c", "1024", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"image_tokens": 16' in done.stdout
