"""The chat screen on the real test model, driven through Textual's Pilot: streaming, Esc, the history sidebar,
restarts, regenerate and edit, settings, copying, errors shown in the app."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, Input, Static

from edgellm import paths
from edgellm.engine.contract import GenerationStats
from edgellm.session.events import Timings
from edgellm.session.history import History
from edgellm.tui.clipboard import code_blocks
from edgellm.tui.messages import ReplyPieces
from edgellm.tui.screens.chat import ChatScreen
from edgellm.tui.screens.error import ErrorScreen
from edgellm.tui.screens.settings import SettingsScreen
from edgellm.tui.widgets.conversations import ConversationList
from edgellm.tui.widgets.status import StatusLine, status_text
from tests.support.tui import chat_app, loaded, long_reply_started, messages, run, say, until


def test_a_message_streams_a_reply_in_batches_and_shows_its_timings(test_model: Path) -> None:
    batches: dict[int, ReplyPieces] = {}  # the hook sees a message once per pump it passes through
    app = chat_app(test_model, "-n", "48", "--ignore-eos", "--temp", "0")

    async def main() -> None:
        async with app.run_test(
            size=(120, 40), message_hook=lambda m: batches.setdefault(id(m), m) if isinstance(m, ReplyPieces) else None
        ) as pilot:
            screen = await loaded(pilot)
            await say(pilot, "The capital of France is")
            user, reply = messages(app)[-2:]
            assert (user.role, user.content) == ("user", "The capital of France is")
            assert reply.role == "assistant" and reply.content.strip()
            assert "48 tokens" in reply.meta and "tokens/s" in reply.meta
            status = str(screen.query_one(StatusLine).content)
            assert "gemma-3-270m" in status and "TTFT" in status and "tok/s" in status
            assert f"ctx {screen.context_used}/" in status and screen.context_used > 48
            saved = History(paths.history_path()).messages(app.session.conversation_id)
            assert [m.content for m in saved if m.role == "assistant"] == [reply.content]
            streamed = "".join(batch.answer for batch in batches.values())
            assert streamed == reply.content  # every piece reached the screen, in order, once
            assert 1 <= len(batches) <= 48

    run(main)


def test_escape_stops_the_reply_and_keeps_what_was_written(test_model: Path) -> None:
    app = chat_app(test_model, "-c", "2048", "-n", "1500", "--ignore-eos")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await long_reply_started(pilot, 20)
            await pilot.press("escape")
            await until(pilot, lambda: not app.session.busy and app.screen.reply is None, what="the stop")
            reply = messages(app)[-1]
            assert reply.has_class("interrupted") and "stopped" in reply.meta
            saved = History(paths.history_path()).messages(app.session.conversation_id)[-1]
            assert saved.interrupted and saved.content == reply.content and reply.content.strip()
            assert "stopped" in str(app.screen.query_one(StatusLine).content)

    run(main)


def test_conversations_switch_and_survive_a_restart(test_model: Path) -> None:
    first = chat_app(test_model, "-n", "8")
    ids: list[int] = []

    async def chat_twice() -> None:
        async with first.run_test(size=(120, 40)) as pilot:
            screen = await loaded(pilot)
            await say(pilot, "apples are")
            ids.append(first.session.conversation_id)
            await pilot.press("ctrl+n")
            await until(pilot, lambda: not messages(first), what="a new conversation")
            await say(pilot, "bananas are")
            ids.append(first.session.conversation_id)
            sidebar = screen.query_one(ConversationList)
            await until(pilot, lambda: len(sidebar.query("ConversationItem")) == 2, what="two conversations listed")
            screen.post_message(ConversationList.Chosen(ids[0]))
            await until(
                pilot,
                lambda: (
                    first.session.conversation_id == ids[0]
                    and messages(first)
                    and messages(first)[0].content == "apples are"
                ),
                what="the first conversation",
            )

    run(chat_twice)
    assert ids[0] != ids[1]
    again = chat_app(test_model, "-n", "8", resume=ids[1])

    async def restarted() -> None:
        async with again.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            await until(pilot, lambda: again.session.conversation_id == ids[1], what="the resumed conversation")
            shown = messages(again)
            assert [m.role for m in shown] == ["user", "assistant"] and shown[0].content == "bananas are"
            assert shown[1].meta  # the saved timings come back with the reply
            await until(pilot, lambda: len(again.screen.query("ConversationItem")) == 2, what="both conversations")

    run(restarted)


def test_regenerate_and_edit_the_last_message(test_model: Path) -> None:
    app = chat_app(test_model, "-n", "8")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            await say(pilot, "one two three")
            await pilot.press("ctrl+r")
            await until(
                pilot,
                lambda: (
                    not app.session.busy
                    and app.screen.reply is None
                    and len(messages(app)) == 2
                    and messages(app)[-1].content
                ),
                what="the new answer",
            )
            assert [m.role for m in messages(app)] == ["user", "assistant"]
            await pilot.press("ctrl+e")
            assert app.screen.query_one("#prompt").text == "one two three"
            app.screen.query_one("#prompt").text = "four five six"
            await pilot.press("enter")
            await until(
                pilot,
                lambda: (
                    not app.session.busy
                    and app.screen.reply is None
                    and messages(app)[0].content == "four five six"
                    and messages(app)[-1].content
                ),
                what="the edited message's answer",
            )
            assert len(messages(app)) == 2
            saved = History(paths.history_path()).messages(app.session.conversation_id)
            assert [m.content for m in saved if m.role == "user"] == ["four five six"]

    run(main)


def test_settings_are_checked_and_kept_with_the_conversation(test_model: Path) -> None:
    app = chat_app(test_model, "-n", "4")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            await say(pilot, "hello")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings")
            app.screen.query_one("#set-temp", Input).value = "hot"
            app.screen.query_one("#apply", Button).press()
            await until(
                pilot,
                lambda: "temp" in str(app.screen.query_one("#settings-error").content),
                what="the error under the fields",
            )
            app.screen.query_one("#set-temp", Input).value = "0.3"
            app.screen.query_one("#set-top-k", Input).value = "7"
            app.screen.query_one("#apply", Button).press()
            await until(pilot, lambda: isinstance(app.screen, ChatScreen), what="the settings to close")
            assert app.session.options.sampling.temp == 0.3 and app.session.options.sampling.top_k == 7
            saved = History(paths.history_path()).conversation(app.session.conversation_id)
            assert saved.settings["temp"] == 0.3 and saved.settings["top_k"] == 7
            await pilot.press("ctrl+n")
            app.session.set("temp", "0.9")
            app.session.load(saved.id)  # the conversation comes back with its own sampling
            assert app.session.options.sampling.temp == 0.3

    run(main)


def test_copy_the_reply_and_its_code_block(test_model: Path) -> None:
    app = chat_app(test_model, "-n", "4")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            await say(pilot, "hi")
            reply = messages(app)[-1]
            await pilot.press("ctrl+y")
            assert app.clipboard == reply.content
            await reply.finish("Use this:\n```python\nprint('hi')\n```\n", "", interrupted=False, meta="")
            await pilot.press("ctrl+k")
            assert app.clipboard == "print('hi')"

    run(main)


def test_code_blocks_are_found_between_fences() -> None:
    text = "a\n```sh\nls -l\n```\nb\n~~~\nx = 1\ny = 2\n~~~\n```\nunclosed"
    assert code_blocks(text) == ["ls -l", "x = 1\ny = 2"]


def test_status_line_says_what_is_known() -> None:
    assert status_text(None, None, None, None, None, None).startswith("no model loaded")
    line = status_text(
        "m.gguf", 99, 18, 120, 4096, Timings(GenerationStats(ttft_ms=41.6, tokens_per_s=30.04)), "stopped"
    )
    assert line == "m.gguf · ngl 18/18 · ctx 120/4096 · TTFT 42 ms · 30.0 tok/s · stopped"
    assert "CPU" in status_text("m.gguf", 0, 18, None, 4096, None)


def test_a_broken_model_is_shown_with_the_way_out_and_the_app_goes_on(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 20)
    app = chat_app(broken)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(
                pilot,
                lambda: isinstance(app.screen, ErrorScreen) and app.screen.query("#error-text"),
                what="the error on screen",
            )  # pushed, and drawn
            text = str(app.screen.query_one("#error-text").content)
            assert "broken.gguf" in text and "Traceback" not in text
            assert app.screen.query_one("#way-models", Button)
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, ChatScreen), what="the chat again")
            assert app.is_running and app.session is None
            await pilot.press(*"hello", "enter")  # no model: a notice, not a crash
            assert not messages(app)

    run(main)


@pytest.mark.slow
def test_old_turns_left_out_are_noticed(test_model: Path) -> None:
    app = chat_app(test_model, "-c", "256", "-n", "24", "--ignore-eos")
    long_line = "the quick brown fox jumps over the lazy dog " * 6

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            for _ in range(4):
                await say(pilot, long_line)
            notes = [str(note.content) for note in app.screen.query(".notice, .note")]
            assert any("left out" in note for note in notes), notes

    run(main)


def test_every_chat_action_is_in_the_palette_and_help_and_theme_work(test_model: Path) -> None:
    from edgellm.tui.screens.help import HelpScreen

    app = chat_app(test_model, "-n", "4")

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await loaded(pilot)
            titles = [command.title for command in app.get_system_commands(screen)]
            for title in (
                "Home",
                "Models",
                "Convert",
                "Chat: stop the reply",
                "Chat: new conversation",
                "Chat: answer again",
                "Chat: edit the last message",
                "Chat: copy the reply",
                "Chat: settings",
                "Chat: delete the conversation",
                "Toggle light/dark theme",
            ):
                assert title in titles
            await pilot.press("f1")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, ChatScreen), what="the chat")
            dark = app.theme
            await pilot.press("ctrl+t")
            assert app.theme != dark

    run(main)


def test_a_message_too_long_for_the_context_is_given_back(test_model: Path) -> None:
    app = chat_app(test_model, "-c", "256", "-n", "8")
    too_long = "lighthouse " * 400

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            await say(pilot, "hello")
            app.screen.query_one("#prompt").text = too_long
            await pilot.press("enter")
            await until(
                pilot,
                lambda: isinstance(app.screen, ErrorScreen) and app.screen.query("#error-text"),
                what="the error on screen",
            )  # pushed, and drawn
            assert "tokens" in str(app.screen.query_one("#error-text").content)
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, ChatScreen), what="the chat")
            assert app.screen.query_one("#prompt").text == too_long  # nothing typed is lost
            assert [m.content for m in messages(app)][0] == "hello" and len(messages(app)) == 2

    run(main)


def test_quitting_during_a_reply_stops_it(test_model: Path) -> None:
    app = chat_app(test_model, "-c", "2048", "-n", "1800", "--ignore-eos")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await long_reply_started(pilot, 10)
            await pilot.press("ctrl+q")
            await until(pilot, lambda: not app.is_running, what="the app to end")
        assert not app.session.busy
        saved = History(paths.history_path()).messages(app.session.conversation_id)[-1]
        assert saved.interrupted and saved.content  # what was written is kept

    run(main)


def test_a_second_model_replaces_the_first(test_model: Path) -> None:
    from edgellm.tui.messages import ChatWith

    app = chat_app(test_model, "-n", "4")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            first = (await loaded(pilot)).session
            app.post_message(ChatWith(str(test_model)))
            app.post_message(ChatWith(str(test_model)))  # a second ask while loading is refused, not a second model
            await until(
                pilot,
                lambda: (
                    app.session is not None
                    and app.session is not first
                    and app.screen.session is app.session
                    and not app.loading_model
                ),
                what="the new model",
            )
            assert first.model.model.closed  # the first model was freed before the second loaded
            await say(pilot, "hi")
            assert messages(app)[-1].content

    run(main)


def test_a_reply_streams_its_whole_lines_as_markdown_and_the_last_as_text() -> None:
    """While a reply is written, its whole lines are Markdown and the unfinished one plain text; a new line is drawn
    at most every GROW_EVERY_S (held back meanwhile, never lost); the whole reply is rendered once at the end."""
    from textual.app import App, ComposeResult
    from textual.widgets import Markdown

    from edgellm.tui.widgets.message import ChatMessage, UnfinishedLine

    class OneReply(App[None]):
        def compose(self) -> ComposeResult:
            yield ChatMessage("assistant")

    app = OneReply()

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            reply = app.query_one(ChatMessage)
            line = reply.query_one(UnfinishedLine)
            await reply.append("The capital is **Par", "")
            assert line.text == "The capital is **Par" and not reply.query(Markdown)
            await reply.append("is**.\nIt lies on the", "")
            await reply.append(" Seine.", "")
            await until(  # the Markdown takes the whole line, then the last line is drawn: one growth, two steps
                pilot,
                lambda: (
                    [m.source for m in reply.query(Markdown)] == ["The capital is **Paris**.\n"]
                    and line.text == "It lies on the Seine."
                ),
                what="the whole line, and the last one apart",
            )
            markdown = reply.query_one(Markdown)
            assert reply.content == "The capital is **Paris**.\nIt lies on the Seine."
            await reply.finish(reply.content + "\n", "", interrupted=False, meta="3 tokens")
            assert markdown.source == "The capital is **Paris**.\nIt lies on the Seine.\n"
            assert not reply.query(UnfinishedLine)
            assert str(reply.query_one(".meta", Static).content) == "3 tokens"

    run(main)
