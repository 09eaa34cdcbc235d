"""Images in the chat screen: the path field that completes file names, a pasted path that attaches, the attached
images above the box and in the message (and in a resumed conversation), a refused image as one line, and a model
that reads text only saying so at once. On the real test model with a tiny projector of random weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events
from textual.app import App, ComposeResult

from edgellm import paths
from edgellm.media.images import read_image_file
from edgellm.session.history import History
from edgellm.tui.screens.chat import ChatScreen
from edgellm.tui.widgets.attach import (
    AttachedImage,
    AttachedImages,
    AttachField,
    attached_line,
    completed,
    completions,
    image_path,
)
from edgellm.tui.widgets.message import ChatMessage
from edgellm.tui.widgets.prompt import PromptInput
from tests.support.images import PHOTO, bmp, png
from tests.support.tui import chat_app, loaded, messages, run, settings, until


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """A folder with two images, a text file, a hidden image and a folder of its own."""
    folder = tmp_path / "pictures"
    (folder / "cats").mkdir(parents=True)
    (folder / "cat.png").write_bytes(png(4, 3))
    (folder / "car photo.PNG").write_bytes(png(8, 6, (10, 200, 30)))
    (folder / "cat notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(png())
    return folder


def test_completions_are_folders_then_images_spelled_as_typed(pictures: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    typed = f"{pictures}/ca"
    assert completions(typed) == [f"{pictures}/cats/", f"{pictures}/car photo.PNG", f"{pictures}/cat.png"]
    assert completions(f"{pictures}/.h") == [f"{pictures}/.hidden.png"]  # hidden only when asked for
    assert completions(f"{pictures}/nothing") == [] and completions(f"{pictures}/nowhere/x") == []
    assert completed(typed) == typed  # "car photo.PNG" and "cat…" agree no further
    assert completed(f"{pictures}/cat.") == f"{pictures}/cat.png"
    assert completed(f"{pictures}/pic") == f"{pictures}/pic"  # nothing to complete: as typed
    monkeypatch.setenv("HOME", str(pictures.parent))
    assert completions("~/pictures/cat.") == ["~/pictures/cat.png"]  # the home folder kept as typed
    monkeypatch.chdir(pictures)
    assert completions("c") == ["cats/", "car photo.PNG", "cat.png"]


def test_a_paste_attaches_when_it_is_one_image_file(pictures: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat, car = pictures / "cat.png", pictures / "car photo.PNG"
    assert image_path(str(cat)) == cat
    assert image_path(f"  {cat}\n") == cat  # a paste's trailing newline
    assert image_path(f"'{car}'") == car  # quoted, as a terminal pastes a dropped file
    assert image_path(str(car).replace(" ", "\\ ")) == car  # with the shell's escapes
    assert image_path("file://" + str(car).replace(" ", "%20")) == car
    assert image_path("file://localhost" + str(cat)) == cat
    monkeypatch.setenv("HOME", str(pictures.parent))
    assert image_path("~/pictures/cat.png") == cat
    for text in (
        f"{cat} {car}",  # two paths
        f"{cat}\n{car}",
        f"look at {cat}",
        str(pictures / "cat notes.txt"),  # a file, not an image
        str(pictures / "cats"),  # a folder
        str(pictures / "dog.png"),  # no such file
        "file://elsewhere" + str(cat),  # another machine's
        "",
    ):
        assert image_path(text) is None, text


class Field(App[None]):
    """The attach field, the attached images and a message box, as the chat screen places them."""

    def __init__(self) -> None:
        super().__init__()
        self.said: list[object] = []

    def compose(self) -> ComposeResult:
        yield AttachField()
        yield AttachedImages()
        yield PromptInput()

    def on_attach_field_chosen(self, event: AttachField.Chosen) -> None:
        self.said.append(event.path)

    def on_attach_field_cancelled(self, event: AttachField.Cancelled) -> None:
        self.said.append("cancelled")

    def on_prompt_input_path_pasted(self, event: PromptInput.PathPasted) -> None:
        self.said.append(("pasted", event.path))

    def on_prompt_input_empty_backspace(self, event: PromptInput.EmptyBackspace) -> None:
        self.said.append("backspace")

    def on_attached_image_removed(self, event: AttachedImage.Removed) -> None:
        self.said.append(("removed", event.index))


def test_the_field_completes_lists_and_says_what_was_chosen(pictures: Path) -> None:
    app = Field()

    async def main() -> None:
        async with app.run_test(size=(100, 24)) as pilot:
            field = app.query_one(AttachField)
            assert not field.display
            field.open()
            await pilot.pause()
            path = field.query_one("#attach-path")
            assert field.display and path.has_focus
            await pilot.press(*f"{pictures}/ca")
            listed = str(field.query_one("#attach-matches").content)
            assert "cats/" in listed and "cat.png" in listed and "car photo.PNG" in listed and "notes" not in listed
            await pilot.press(*"t.", "tab")
            assert path.value == f"{pictures}/cat.png"
            await pilot.press("enter")
            await until(pilot, lambda: app.said == [pictures / "cat.png"], what="the chosen path")
            await pilot.press("escape")
            await until(pilot, lambda: app.said[-1] == "cancelled", what="Esc")
            prompt = app.query_one(PromptInput)
            prompt.focus()
            await pilot.pause()
            app.post_message(events.Paste(f"'{pictures}/car photo.PNG'"))
            app.post_message(events.Paste("just text"))
            await until(pilot, lambda: prompt.text == "just text", what="the text pasted")  # typed in
            assert app.said[2:] == [("pasted", pictures / "car photo.PNG")]  # the path was not typed
            await pilot.press("backspace")
            assert prompt.text == "just tex"  # Backspace deletes as ever
            prompt.clear()
            await pilot.press("backspace")
            await until(pilot, lambda: app.said[-1] == "backspace", what="Backspace in the empty box")
            await app.query_one(AttachedImages).show([read_image_file(pictures / "cat.png")])
            await pilot.pause()
            assert await pilot.click(AttachedImage)
            await until(pilot, lambda: app.said[-1] == ("removed", 0), what="a click on the image's line")

    run(main)


def test_attached_images_and_a_message_show_each_image_by_name_and_size(pictures: Path) -> None:
    cat, car = read_image_file(pictures / "cat.png"), read_image_file(pictures / "car photo.PNG")
    assert attached_line(cat) == f"📎 cat.png · 4×3 · {cat.size} B"

    class Shown(App[None]):
        def compose(self) -> ComposeResult:
            yield AttachedImages()
            yield ChatMessage("user", "What are these?", images=(cat, car))

    app = Shown()

    async def main() -> None:
        async with app.run_test(size=(100, 24)):
            attached = app.query_one(AttachedImages)
            assert not attached.display
            await attached.show([cat, car])
            lines = [str(line.render()) for line in attached.query(AttachedImage)]
            assert lines[0] == attached_line(cat) and lines[1].startswith(attached_line(car))
            assert "Backspace" in lines[1]  # how to take one off, said once
            shown = [str(line.content) for line in app.query_one(ChatMessage).query(".image")]
            assert shown == [attached_line(cat), attached_line(car)]
            await attached.show([])
            assert not attached.display

    run(main)


@pytest.fixture(scope="module")
def projector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Gemma 3 projector (random weights) for the test model."""
    from edgellm.convert.tinyprojector import write_projector

    return write_projector(tmp_path_factory.mktemp("projector") / "mmproj-tiny.gguf")


def toasts(app: App[None]) -> list[str]:
    return [str(toast.render()) for toast in app.screen.query("Toast")]


def test_an_image_attached_by_its_path_goes_with_the_message_and_comes_back_with_it(
    test_model: Path, projector: Path, pictures: Path
) -> None:
    app = chat_app(test_model, "--mmproj", str(projector), "-n", "6", "--temp", "0")
    cat = read_image_file(pictures / "cat.png")
    conversation: list[int] = []

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await loaded(pilot)
            assert app.session.vision
            field = screen.query_one(AttachField)
            await pilot.press("ctrl+o")
            await until(pilot, lambda: field.display and field.query_one("#attach-path").has_focus, what="the field")
            await pilot.press(*f"{pictures}/cat.", "tab", "enter")
            await until(pilot, lambda: screen.attached == [cat] and not field.display, what="the image attached")
            attached = screen.query_one(AttachedImages)
            assert [str(line.render()).partition("  ")[0] for line in attached.query(AttachedImage)] == [
                attached_line(cat)
            ]
            assert screen.query_one(PromptInput).has_focus
            await pilot.press(*"What is in this picture?", "enter")
            await until(
                pilot,
                lambda: len(messages(app)) == 2 and not app.session.busy and screen.reply is None,
                what="the reply",
            )
            user, reply = messages(app)
            assert [str(line.content) for line in user.query(".image")] == [attached_line(cat)]
            assert user.content == "What is in this picture?" and reply.content
            assert screen.attached == [] and not attached.display  # sent: nothing left attached
            await pilot.press("ctrl+e")
            screen.query_one(PromptInput).text = "And in this one?"
            await pilot.press("enter")
            await until(
                pilot,
                lambda: messages(app)[0].content == "And in this one?" and not app.session.busy and not screen.reply,
                what="the edited message's answer",
            )
            edited = messages(app)[0]
            assert [str(line.content) for line in edited.query(".image")] == [attached_line(cat)]  # its image kept
            saved = History(paths.history_path()).messages(app.session.conversation_id)
            assert [image.digest for image in saved[0].images] == [cat.digest]
            conversation.append(app.session.conversation_id)

    run(main)
    again = chat_app(test_model, "--mmproj", str(projector), "-n", "6", resume=conversation[0])

    async def resumed() -> None:
        async with again.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            await until(pilot, lambda: len(messages(again)) == 2, what="the resumed conversation")
            shown = [str(line.content) for line in messages(again)[0].query(".image")]
            assert shown == [attached_line(cat)]

    run(resumed)


def test_a_pasted_path_attaches_a_refused_image_is_one_line_and_backspace_takes_one_off(
    test_model: Path, projector: Path, pictures: Path
) -> None:
    broken = pictures / "broken.png"
    broken.write_bytes(png(64, 64)[:40])  # cut short
    app = chat_app(test_model, "--mmproj", str(projector), "-n", "4")
    cat, car = read_image_file(pictures / "cat.png"), read_image_file(pictures / "car photo.PNG")

    async def main() -> None:
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            screen = await loaded(pilot)
            prompt = screen.query_one(PromptInput)
            app.post_message(events.Paste("file://" + str(pictures / "cat.png")))
            app.post_message(events.Paste(f"'{pictures}/car photo.PNG'"))
            await until(pilot, lambda: screen.attached == [cat, car], what="both images attached")
            assert prompt.text == "" and len(screen.query(AttachedImage)) == 2
            app.post_message(events.Paste(str(broken)))
            await until(pilot, lambda: any("broken.png" in toast for toast in toasts(app)), what="the refusal")
            refusal = next(toast for toast in toasts(app) if "broken.png" in toast)
            assert "cut short" in refusal and "\n" not in refusal.strip() and "Traceback" not in refusal
            assert screen.attached == [cat, car] and prompt.text == ""  # nothing attached, nothing typed
            await pilot.press("ctrl+o", *str(broken), "enter")  # the field says the same, and stays open
            await until(pilot, lambda: sum("broken.png" in toast for toast in toasts(app)) == 2, what="the refusal")
            assert screen.query_one(AttachField).display and screen.attached == [cat, car]
            await pilot.press("escape")
            await until(pilot, lambda: prompt.has_focus, what="the box again")
            assert not screen.query_one(AttachField).display
            await pilot.press("backspace")
            await until(pilot, lambda: screen.attached == [cat], what="the last image off")
            await pilot.press("h", "i", "backspace")
            assert prompt.text == "h" and screen.attached == [cat]  # Backspace in text deletes text
            assert app.is_running

    run(main)


def test_a_text_only_model_says_so_at_once(test_model: Path, pictures: Path) -> None:
    app = chat_app(test_model, "-n", "4")

    async def main() -> None:
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            screen = await loaded(pilot)
            assert not app.session.vision
            await pilot.press("ctrl+o")
            await until(pilot, lambda: any("reads text only" in toast for toast in toasts(app)), what="the notice")
            notice = next(toast for toast in toasts(app) if "reads text only" in toast)
            assert "gemma-3-270m" in notice and "--mmproj" in notice and "vision model" in notice
            assert not screen.query_one(AttachField).display
            assert "Chat: attach an image" in [command.title for command in app.get_system_commands(screen)]
            pasted = str(pictures / "cat.png")
            app.post_message(events.Paste(pasted))
            await until(pilot, lambda: screen.query_one(PromptInput).text == pasted, what="the path typed in")
            assert screen.attached == []

    run(main)


@pytest.fixture
def steady(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_model: Path):
    """As test_tui_snapshots has it: the test model alone in the store, no other tools' folders, dates in UTC."""
    import time

    from edgellm.catalog import inventory
    from edgellm.storage import store

    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "user-home" / "hf"))
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "user-home" / "llama.cpp"))
    monkeypatch.setattr(inventory, "dev_models_dir", lambda: None)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    store.import_path(test_model)
    yield
    monkeypatch.undo()
    time.tzset()


def test_snapshot_a_message_with_an_image_and_one_attached(
    snap_compare, steady, test_model: Path, projector: Path, tmp_path: Path
) -> None:
    """A saved conversation whose message carries a photo, resumed on the vision model, and an image attached to the
    next message above the box."""
    from edgellm.hw.builtin import resolve_profile
    from edgellm.session.events import Timings
    from edgellm.tui.app import EdgeApp
    from tests.integration.test_tui_snapshots import CREATED, PROFILE, TIMINGS, frozen

    history = History(paths.history_path())
    conversation = history.new_conversation("gemma-3-270m-Q4_K_M.gguf", {})
    history.add(conversation, "user", "What is in this picture?", (read_image_file(PHOTO),))
    reply = history.start_reply(conversation)
    history.finish_reply(reply, "A **photo**, 640 pixels wide.", "", False, Timings.from_dict(TIMINGS))
    history.db.execute("UPDATE conversations SET created = ?, updated = ?", (CREATED, CREATED + 60))
    history.db.execute("UPDATE messages SET created = ?, updated = ?", (CREATED, CREATED))
    history.close()
    sketch = tmp_path / "sketch.bmp"
    sketch.write_bytes(bmp(64, 48))

    async def attached(pilot) -> None:
        application = pilot.app
        await until(
            pilot,
            lambda: (
                application.session is not None
                and isinstance(application.screen, ChatScreen)
                and application.session.conversation_id == conversation
                and len(application.screen.query(ChatMessage)) == 2
                and application.screen.query_one(PromptInput).has_focus
            ),
            what="the resumed conversation",
        )
        application.post_message(events.Paste(str(sketch)))
        await until(pilot, lambda: len(application.screen.query(AttachedImage)) == 1, what="the image attached")
        prompt = application.screen.query_one(PromptInput)
        prompt.cursor_blink = False  # the cursor always drawn: never caught mid-blink
        prompt.notify_style_update()

    made = EdgeApp(
        settings("-c", "2048", "-ngl", "0", "--mmproj", str(projector)),
        profile=resolve_profile(PROFILE),
        sampler=frozen,
        start="chat",
        history=History(paths.history_path()),
        model=str(test_model),
        resume=conversation,
    )
    made.animation_level = "none"
    assert snap_compare(made, run_before=attached, terminal_size=(80, 24))
