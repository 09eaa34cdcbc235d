"""The chat session's own logic on a scripted model, in milliseconds: turns, history, cancel, the context, settings,
reasoning and stops. The same behaviours run end to end on the real model in test_session.py and test_repl.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edgellm.engine.contract import GenerationOptions
from edgellm.errors import ContextOverflow, EdgellmError, InvalidSetting, NoSuchConversation
from edgellm.events import Notice
from edgellm.session.chat import ChatSession
from edgellm.session.completion import ChatModel
from edgellm.session.events import AnswerPiece, ReasoningPiece, ReplyDone
from edgellm.session.history import History
from tests.support.scripted import ScriptedModel


def session_on(model: ScriptedModel, history: History | None = None, **options: object) -> ChatSession:
    return ChatSession(
        ChatModel.for_model(model, "llama"), history, model_name="scripted", options=GenerationOptions(**options)
    )  # type: ignore[arg-type]


def answer(turn) -> tuple[str, list]:
    events = list(turn)
    return "".join(e.text for e in events if isinstance(e, AnswerPiece)), events


@pytest.fixture
def history(tmp_path: Path) -> History:
    opened = History(tmp_path / "history.db")
    yield opened
    opened.close()


def test_a_turn_streams_the_reply_and_saves_it_with_its_timings(history: History) -> None:
    model = ScriptedModel(["Paris."])
    session = session_on(model, history)
    text, events = answer(session.send("The capital of France?"))
    assert text == "Paris." and isinstance(events[-1], ReplyDone)
    reply = events[-1].reply
    assert (reply.stop_reason, reply.stats.completion_tokens) == ("eos", 6)
    saved = history.messages(session.conversation_id)
    assert [(m.role, m.content) for m in saved] == [("user", "The capital of France?"), ("assistant", "Paris.")]
    assert saved[1].timings == reply.timings() and not saved[1].interrupted
    assert "<|im_start|>user\nThe capital of France?<|im_end|>" in model.prompts[0]  # the model's own template


def test_the_next_turn_evaluates_only_its_new_tokens(history: History) -> None:
    model = ScriptedModel(["One.", "Two."])
    session = session_on(model, history)
    first = answer(session.send("Count."))[1][-1].reply.stats
    second = answer(session.send("Again."))[1][-1].reply.stats
    assert second.prompt_evaluated == second.prompt_tokens - first.prompt_tokens - first.completion_tokens


def test_a_reply_cancelled_from_another_thread_is_saved_as_shown(history: History) -> None:
    model = ScriptedModel(["A long story about the sea, and the boats on it."])
    model.hold_after(8)
    session = session_on(model, history)
    turn = session.send("A story?")
    events: list = []
    worker = threading.Thread(target=lambda: events.extend(turn))
    worker.start()
    assert model.holding.wait(5), "the reply is being written"
    session.cancel()
    worker.join(5)
    reply = events[-1].reply
    assert reply.interrupted and reply.content == "A long s"
    saved = history.messages(session.conversation_id)[-1]
    assert saved.interrupted and saved.content == "A long s" and saved.timings.stats.stop_reason == "interrupted"


def test_a_cancel_before_the_turn_starts_stops_that_turn_only(history: History) -> None:
    model = ScriptedModel(["Hello."])
    session = session_on(model, history)
    first = session.send("Hi")
    first.cancel()
    text, events = answer(first)
    assert text == "" and events[-1].reply.interrupted and events[-1].reply.stats.prompt_evaluated == 0
    second = session.send("Hi again")
    session.cancel(turn_id=first.id)  # the old turn's id: the new turn is not touched
    text, events = answer(second)
    assert text == "Hello." and not events[-1].reply.interrupted


def test_the_conversation_cannot_change_under_a_turn(history: History) -> None:
    session = session_on(ScriptedModel(["A reply that takes a while."]), history)
    turn = session.send("Hi")
    pieces = iter(turn)
    next(pieces)
    for change in (
        lambda: session.edit_last("x"),
        session.regenerate,
        session.new,
        lambda: session.send("y"),
        lambda: session.set_system("z"),
        lambda: session.load(session.conversation_id),
    ):
        with pytest.raises(EdgellmError, match="still being written"):
            change()
    turn.close()  # stopped early by its front end: saved as interrupted, the model free again
    assert history.messages(session.conversation_id)[-1].interrupted
    text, _ = answer(session.regenerate())
    assert text == "A reply that takes a while."


def test_regenerate_edit_rename_search_delete(history: History) -> None:
    session = session_on(ScriptedModel(["Apple.", "Pear.", "Carrot."]), history)
    answer(session.send("Name a fruit."))
    conversation = session.conversation_id
    assert answer(session.regenerate())[0] == "Pear."
    assert [(m.role, m.content) for m in history.messages(conversation)] == [
        ("user", "Name a fruit."),
        ("assistant", "Pear."),
    ]
    assert answer(session.edit_last("Name a vegetable."))[0] == "Carrot."
    assert [m.content for m in history.messages(conversation)] == ["Name a vegetable.", "Carrot."]
    session.rename("Greens")
    assert [c.id for c in session.search("vegetable")] == [conversation] and session.search("fruit") == []
    assert [c.id for c in session.search("GREENS")] == [conversation]
    session.delete(conversation)
    assert session.conversation_id is None and history.conversation(conversation) is None
    with pytest.raises(NoSuchConversation):
        session.delete(conversation)
    with pytest.raises(EdgellmError, match="no reply to regenerate"):
        session.regenerate()


def test_old_turns_leave_a_small_context_with_a_notice(history: History) -> None:
    session = session_on(ScriptedModel(["x" * 40], n_ctx=256), history, max_tokens=40)
    notices = []
    for n in range(6):
        _, events = answer(session.send(f"message {n} " + "y" * 20))
        notices += [e for e in events if isinstance(e, Notice)]
    assert any("oldest messages no longer fit the 256-token context" in notice.text for notice in notices)
    assert events[-1].reply.dropped_messages > 0 and len(session.entries) == 12  # memory keeps them all


def test_a_message_longer_than_the_context_changes_nothing(history: History) -> None:
    session = session_on(ScriptedModel(["Hi."], n_ctx=128), history)
    answer(session.send("Hello"))
    before = [(m.role, m.content) for m in history.messages(session.conversation_id)]
    with pytest.raises(ContextOverflow) as overflow:
        list(session.edit_last("word " * 100))
    assert overflow.value.reason.code == "message_too_long" and overflow.value.needed > overflow.value.available
    assert [(m.role, m.content) for m in history.messages(session.conversation_id)] == before
    assert [(e.role, e.content) for e in session.entries] == before


def test_settings_are_checked_in_one_place() -> None:
    session = session_on(ScriptedModel(["ok"]))
    with pytest.raises(InvalidSetting, match="must be between 0 and 1") as bad:
        session.set("top-p", "7")
    assert (bad.value.key, bad.value.value) == ("top-p", "7")
    with pytest.raises(InvalidSetting, match="unknown setting 'tmp'"):
        session.set("tmp", "1")
    assert session.set("n-predict", "5") == "n-predict = 5" and session.options.max_tokens == 5
    assert session.set("stop", "\\n") == "stop = '\\n'" and session.options.stop == ("\n",)
    assert session.set("think", "hide") == "reasoning hidden" and not session.show_reasoning


def test_a_stop_sequence_ends_the_reply_before_it() -> None:
    session = session_on(ScriptedModel(["First line.\nSecond line."]))
    session.set("stop", "\\n")
    text, events = answer(session.send("Two lines?"))
    assert text == "First line." and events[-1].reply.stop_reason == "stop"


def test_reasoning_is_kept_apart_from_the_answer() -> None:
    session = session_on(ScriptedModel(["<think>Paris is the capital.</think>Paris."]))
    _, events = answer(session.send("Capital?"))
    assert "".join(e.text for e in events if isinstance(e, ReasoningPiece)) == "Paris is the capital."
    assert events[-1].reply.content == "Paris." and session.entries[-1].reasoning == "Paris is the capital."


def test_a_reply_that_repeats_itself_is_stopped_with_a_notice() -> None:
    session = session_on(ScriptedModel(["la " * 200]), loop_guard=True)
    _, events = answer(session.send("Sing."))
    assert events[-1].reply.stop_reason == "repetition" and events[-1].reply.stats.completion_tokens < 600
    assert any(isinstance(e, Notice) and "repeating" in e.text for e in events)


def test_a_history_failure_mid_reply_is_a_notice_and_the_chat_goes_on(history: History) -> None:
    session = session_on(ScriptedModel(["Twelve chars", "Again reply"]), history)
    events = []
    for event in session.send("Hello"):
        events.append(event)
        if sum(isinstance(e, AnswerPiece) for e in events) == 3:
            history.db.close()  # the database goes away under the reply
    warnings = [e for e in events if isinstance(e, Notice) and e.kind == "warning"]
    assert len(warnings) == 1 and "could not be saved" in warnings[0].text
    assert events[-1].reply.content == "Twelve chars" and session.history is None
    assert answer(session.send("Again"))[0] == "Again reply"


def test_a_system_prompt_survives_an_edit_and_a_resume(history: History) -> None:
    model = ScriptedModel(["Bonjour."])
    session = session_on(model, history)
    answer(session.send("Hi"))
    session.set_system("Answer in French.")
    answer(session.edit_last("Hello"))
    assert [(m.role, m.content) for m in history.messages(session.conversation_id)][:2] == [
        ("system", "Answer in French."),
        ("user", "Hello"),
    ]
    resumed = session_on(model, history)
    resumed.load(session.conversation_id)
    assert resumed.system_prompt == "Answer in French." and [e.role for e in resumed.entries] == ["user", "assistant"]
    assert "<|im_start|>system\nAnswer in French.<|im_end|>" in model.prompts[-1]


def test_a_base_model_is_said_before_the_first_message() -> None:
    base = ChatModel.for_model(ScriptedModel(["..."], template=None, name="tiny-base"), "gemma3")
    assert base.base_model and base.opening_notices()[0].kind == "warning"
    assert not ChatModel.for_model(ScriptedModel(["..."]), "llama").opening_notices()
