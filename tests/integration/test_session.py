"""The chat session as front ends drive it: from a worker thread, cancelled from another, on the real model."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edgellm.engine.contract import GenerationOptions, LoadParams, Sampling
from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import load
from edgellm.errors import EdgellmError, InvalidSetting, NoSuchConversation
from edgellm.events import Notice
from edgellm.session.chat import ChatSession
from edgellm.session.completion import ChatModel
from edgellm.session.events import AnswerPiece, ReasoningPiece, Reply, ReplyDone
from edgellm.session.history import History

GREEDY = GenerationOptions(sampling=Sampling(temp=0.0), seed=0)


@pytest.fixture(scope="module")
def chat_model(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> ChatModel:
    log = LlamaLog(tmp_path_factory.mktemp("log") / "llama.log", False)
    return ChatModel.for_model(load(LoadParams(test_model, 2048, 2, 2, 0, True, "f16", 0), log), "gemma3")


def session_on(chat_model: ChatModel, history: History | None, **options) -> ChatSession:
    from dataclasses import replace

    return ChatSession(chat_model, history, model_name="test", options=replace(GREEDY, **options))


def answer(turn) -> tuple[str, list]:
    events = list(turn)
    return "".join(e.text for e in events if isinstance(e, AnswerPiece)), events


def test_a_worker_thread_streams_the_main_thread_cancels_and_history_is_read_elsewhere(
    chat_model: ChatModel, tmp_path: Path
) -> None:
    history = History(tmp_path / "history.db")  # opened on this (the main) thread
    session = session_on(chat_model, history, ignore_eos=True)
    turn = session.send("Write a long story about the sea.")
    pieces: list[str] = []
    enough, finished = threading.Event(), threading.Event()
    done: list[ReplyDone] = []
    errors: list[BaseException] = []

    def worker() -> None:  # what a Textual worker does: iterate the turn, post each event to the UI
        try:
            for event in turn:
                if isinstance(event, AnswerPiece):
                    pieces.append(event.text)
                    if len(pieces) >= 10:
                        enough.set()
                elif isinstance(event, ReplyDone):
                    done.append(event)
        except BaseException as error:
            errors.append(error)
        finally:
            finished.set()

    threading.Thread(target=worker).start()
    assert enough.wait(120), "the reply started streaming"
    session.cancel()  # from the main thread, mid-reply
    assert finished.wait(120) and not errors
    reply = done[0].reply
    assert reply.interrupted and reply.stop_reason == "interrupted" and reply.content == "".join(pieces)

    read: list = []
    reader = threading.Thread(target=lambda: read.extend(history.messages(session.conversation_id)))
    reader.start()
    reader.join()
    assert [m.role for m in read] == ["user", "assistant"]
    assert read[1].interrupted and read[1].content == reply.content  # saved, as shown, from the worker's writes
    assert read[1].timings.stats.stop_reason == "interrupted"


def test_a_cancel_before_streaming_is_kept_but_never_carries_over(chat_model: ChatModel, tmp_path: Path) -> None:
    session = session_on(chat_model, History(tmp_path / "history.db"), max_tokens=8)
    first = session.send("Hello")
    session.cancel()  # before the first event: the turn still stops
    text, events = answer(first)
    assert text == "" and events[-1].reply.interrupted and events[-1].reply.stats.prompt_evaluated == 0
    second = session.send("Hello again")
    session.cancel(turn_id=first.id)  # names the old turn: the new one is not touched
    text, events = answer(second)
    assert not events[-1].reply.interrupted and events[-1].reply.stats.completion_tokens > 0


def complete(chat_model: ChatModel, messages: list[dict[str, str]], options: GenerationOptions) -> Reply:
    """One stateless completion, as the server makes it: the messages prepared, then streamed into a reply."""
    reply = Reply()
    for _ in chat_model.stream(chat_model.prepare(messages, options), reply, options):
        pass
    return reply


def test_two_calls_with_different_options_each_get_their_own(chat_model: ChatModel) -> None:
    messages = [{"role": "user", "content": "Write a poem about a cat."}]
    hot = GenerationOptions(sampling=Sampling(temp=1.5, top_k=0, top_p=1.0, min_p=0.0), max_tokens=24, seed=7)
    greedy = GenerationOptions(sampling=Sampling(temp=0.0), max_tokens=24, seed=0)

    def text(options: GenerationOptions) -> str:
        return complete(chat_model, messages, options).content

    first_greedy, first_hot = text(greedy), text(hot)
    assert first_hot != first_greedy  # its own sampling, not the other call's
    assert text(greedy) == first_greedy  # the hot call left nothing behind
    assert text(hot) == first_hot  # and its seed came with it
    short = complete(chat_model, messages, GenerationOptions(sampling=Sampling(temp=0.0), max_tokens=3))
    assert short.stats.completion_tokens == 3


def test_the_stateless_completion_writes_no_history(chat_model: ChatModel, edgellm_home: Path) -> None:
    reply = complete(chat_model, [{"role": "user", "content": "Hi"}], GenerationOptions(max_tokens=4))
    assert reply.stats is not None and not reply.interrupted
    assert not (edgellm_home / "history.db").exists()


def test_regenerate_edit_rename_search_delete(chat_model: ChatModel, tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    session = session_on(chat_model, history, max_tokens=6)
    answer(session.send("Name a fruit."))
    conversation = session.conversation_id
    hot = session.set("temp", "1.5")
    assert hot == "temp = 1.5"
    session.set("seed", "3")
    regenerated, _ = answer(session.regenerate())
    saved = history.messages(conversation)
    assert [m.role for m in saved] == ["user", "assistant"] and saved[1].content == regenerated
    answer(session.edit_last("Name a vegetable."))
    saved = history.messages(conversation)
    assert [(m.role, m.content) for m in saved][0] == ("user", "Name a vegetable.") and len(saved) == 2
    assert [e.role for e in session.entries] == ["user", "assistant"]
    session.rename("Greens")
    assert history.conversation(conversation).title == "Greens"
    assert [c.id for c in session.search("vegetable")] == [conversation]
    assert session.search("fruit") == []  # the edited message is gone
    assert [c.id for c in session.search("greens")] == [conversation]  # titles too, any case
    session.delete(conversation)
    assert session.conversation_id is None and history.conversation(conversation) is None
    with pytest.raises(NoSuchConversation):
        session.delete(conversation)
    with pytest.raises(EdgellmError, match="no reply to regenerate"):
        session.regenerate()


def test_settings_are_checked_in_one_place(chat_model: ChatModel) -> None:
    session = session_on(chat_model, None)
    with pytest.raises(InvalidSetting, match="must be between 0 and 1") as bad:
        session.set("top-p", "7")
    assert (bad.value.key, bad.value.value) == ("top-p", "7")
    with pytest.raises(InvalidSetting, match="not a number"):
        session.set("temp", "warm")
    with pytest.raises(InvalidSetting, match="unknown setting 'tmp'"):
        session.set("tmp", "1")
    with pytest.raises(InvalidSetting, match="on or off"):
        session.set("loop-guard", "maybe")
    assert session.set("n-predict", "5") == "n-predict = 5" and session.options.max_tokens == 5
    assert session.set("loop-guard", "on") == "loop-guard = on" and session.options.loop_guard
    assert session.set("stop", "\\n") == "stop = '\\n'" and session.options.stop == ("\n",)
    assert session.set("think", "hide") == "reasoning hidden" and not session.show_reasoning
    assert session.options.sampling.temp == 0.0  # a bad value changed nothing


def test_the_base_model_loop_is_stopped_with_a_notice(chat_model: ChatModel) -> None:
    assert chat_model.base_model and chat_model.opening_notices()[0].kind == "warning"
    session = session_on(chat_model, None, loop_guard=True)  # chat's default without -n or --ignore-eos
    _text, events = answer(session.send("Tell me about the sea."))
    reply = events[-1].reply
    assert reply.stop_reason == "repetition"
    assert reply.stats.completion_tokens < 1000  # long before the 2048-token context is full
    notices = [e for e in events if isinstance(e, Notice)]
    assert any("repeating" in notice.text for notice in notices)


REASONING_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}"
    "{{ m['content'] }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|><think>{% endif %}"
)


@pytest.mark.parametrize(
    "template, replayed",
    [
        (REASONING_TEMPLATE, True),
        (REASONING_TEMPLATE.replace("reasoning_content", "thoughts"), False),
    ],
)
def test_reasoning_goes_back_by_the_templates_rule_live_and_resumed(
    tmp_path: Path, template: str, replayed: bool
) -> None:
    from edgellm.convert.tinymodel import Shape, write_model

    path = write_model(tmp_path / "thinker.gguf", Shape(chat_template=template))
    loaded = load(LoadParams(path, 512, 2, 2, 0, True, "f16", 0), LlamaLog(tmp_path / "llama.log", False))
    model = ChatModel.for_model(loaded, "llama")
    history = History(tmp_path / "history.db")
    live = session_on(model, history, max_tokens=6, ignore_eos=True)
    events = list(live.send("Think first."))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningPiece))
    assert reasoning and live.entries[-1].reasoning == reasoning  # the prompt opened <think>: all of it is reasoning
    resumed = session_on(model, history)
    resumed.load(live.conversation_id)
    live_prompt, resumed_prompt = model.render(live.chat_messages()), model.render(resumed.chat_messages())
    assert live_prompt == resumed_prompt
    assert (f"<think>{reasoning}</think>" in live_prompt) == replayed


def test_a_history_failure_mid_reply_is_a_notice_and_the_chat_goes_on(chat_model: ChatModel, tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    session = session_on(chat_model, history, max_tokens=12, ignore_eos=True)
    events = []
    for event in session.send("Hello"):
        events.append(event)
        if sum(isinstance(e, AnswerPiece) for e in events) == 3:
            history.db.close()  # the database goes away under the reply (a disk pulled, a file deleted)
    warnings = [e for e in events if isinstance(e, Notice) and e.kind == "warning"]
    assert len(warnings) == 1 and "could not be saved" in warnings[0].text
    assert events[-1].reply.stats.completion_tokens == 12 and session.history is None
    text, events = answer(session.send("Again"))  # the session goes on without its history
    assert events[-1].reply.stats.completion_tokens == 12 and session.entries[-1].content == text


def test_the_conversation_cannot_change_under_a_turn_and_a_closed_turn_frees_the_model(
    chat_model: ChatModel, tmp_path: Path
) -> None:
    history = History(tmp_path / "history.db")
    session = session_on(chat_model, history, ignore_eos=True, max_tokens=200)
    session.set_system("Be brief.")
    answer(session.send("Hi"))
    turn = session.send("Tell me a story.")
    pieces = iter(turn)
    next(pieces)  # streaming
    for change in (
        lambda: session.edit_last("x"),
        session.regenerate,
        session.new,
        lambda: session.send("y"),
        lambda: session.load(session.conversation_id),
    ):
        with pytest.raises(EdgellmError, match="still being written"):
            change()
    turn.close()  # a front end that stops early: the reply is saved as interrupted and the model is free
    saved = history.messages(session.conversation_id)
    assert saved[-1].interrupted and saved[-1].role == "assistant"
    _text, events = answer(session.regenerate())  # the next turn runs
    assert not events[-1].reply.interrupted
    roles = [m.role for m in history.messages(session.conversation_id)]
    assert roles == ["system", "user", "assistant", "user", "assistant"]  # the system prompt survived the retry


def test_an_edit_that_does_not_fit_changes_nothing(chat_model: ChatModel, tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    session = session_on(chat_model, history, max_tokens=4)
    answer(session.send("Hi"))
    before = [(m.role, m.content) for m in history.messages(session.conversation_id)]
    with pytest.raises(EdgellmError, match="shorten it"):
        list(session.edit_last("word " * 5000))
    assert [(m.role, m.content) for m in history.messages(session.conversation_id)] == before
    assert [(e.role, e.content) for e in session.entries] == before


def test_a_system_prompt_set_mid_conversation_survives_an_edit(chat_model: ChatModel, tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    session = session_on(chat_model, history, max_tokens=4)
    answer(session.send("Hi"))
    session.set_system("Answer in French.")  # saved after the first exchange: the newest row of the conversation
    answer(session.edit_last("Hello"))
    roles = [(m.role, m.content) for m in history.messages(session.conversation_id)][:2]
    assert roles == [("system", "Answer in French."), ("user", "Hello")]
    resumed = session_on(chat_model, history)
    resumed.load(session.conversation_id)
    assert resumed.system_prompt == "Answer in French." and [e.role for e in resumed.entries] == ["user", "assistant"]
