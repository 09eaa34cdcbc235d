"""The lines of a batch job (`run --batch`), read as the OpenAI API reads a request; the journal's records."""

from __future__ import annotations

import json
from pathlib import Path

from edgellm.engine.contract import GenerationOptions
from edgellm.session.batch import answered, default_output, journal_path, parse_line

DEFAULTS = GenerationOptions()


def test_a_line_is_a_request_as_the_openai_api_takes_it() -> None:
    text = parse_line(0, json.dumps({"prompt": "Hi", "temperature": 0, "seed": 3}), DEFAULTS, 512)
    assert text.request is not None and text.request.prompt == "Hi" and text.request.options.seed == 3
    assert text.request.options.max_tokens == DEFAULTS.max_tokens  # no 16-token cap: until the model stops, or -n
    chat = parse_line(1, json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}), DEFAULTS, 512)
    assert chat.request is not None and chat.request.messages and chat.request.options.max_tokens == 5
    batch_api = parse_line(2, json.dumps({"custom_id": "a", "method": "POST", "body": {"prompt": "x"}}), DEFAULTS, 512)
    assert batch_api.custom_id == "a" and batch_api.request is not None


def test_a_bad_line_carries_its_error() -> None:
    assert "not valid JSON" in (parse_line(0, "{", DEFAULTS, 512).error or "")
    assert "JSON object" in (parse_line(0, "[1]", DEFAULTS, 512).error or "")
    assert "no prompt and no messages" in (parse_line(0, "{}", DEFAULTS, 512).error or "")
    assert "max_tokens" in (parse_line(0, '{"prompt": "x", "max_tokens": 9999}', DEFAULTS, 512).error or "")
    assert "unrecognized" in (parse_line(0, '{"prompt": "x", "colour": 1}', DEFAULTS, 512).error or "")


def test_the_same_text_has_the_same_hash_an_edited_line_another() -> None:
    first, again = parse_line(0, '{"prompt": "x"}', DEFAULTS, 512), parse_line(5, ' {"prompt": "x"} ', DEFAULTS, 512)
    assert first.digest == again.digest != parse_line(0, '{"prompt": "y"}', DEFAULTS, 512).digest


def test_answers_are_read_from_the_output_and_the_journal_a_cut_line_skipped(tmp_path: Path) -> None:
    output = default_output(tmp_path / "job.jsonl")
    assert output.name == "job.out.jsonl"
    output.write_text(json.dumps({"index": 0, "hash": "a", "text": "old"}) + "\n")
    journal_path(output).write_text(
        json.dumps({"index": 0, "hash": "b", "text": "new"}) + "\n" + json.dumps({"index": 1, "hash": "c"})[:-3]
    )
    found = answered(output)
    assert found == {0: {"index": 0, "hash": "b", "text": "new"}}


def test_a_line_a_kill_cut_short_is_dropped_before_the_next_answer(tmp_path: Path) -> None:
    from edgellm.session.batch import mend_torn_tail

    journal = tmp_path / "out.jsonl.partial"
    journal.write_text('{"index": 0, "hash": "a"}\n{"index": 1, "ha')
    mend_torn_tail(journal)
    assert journal.read_text() == '{"index": 0, "hash": "a"}\n'
    mend_torn_tail(journal)  # whole lines: nothing cut
    assert journal.read_text() == '{"index": 0, "hash": "a"}\n'
    mend_torn_tail(tmp_path / "none.partial")  # no journal yet: nothing to do


def test_an_empty_prompt_on_a_model_with_no_bos_is_empty_prompt_and_too_long_a_request_says_both_numbers() -> None:
    import pytest

    from edgellm.errors import ContextOverflow, EmptyPrompt
    from edgellm.session.completion import ChatModel
    from tests.support.scripted import ScriptedModel

    class NoBos(ScriptedModel):
        def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
            return super().tokenize(text, add_bos=False, special=special)

    model = ChatModel.for_model(NoBos(["x"], n_ctx=64), "llama")
    with pytest.raises(EmptyPrompt, match="empty"):
        model.prepare_request(None, "", DEFAULTS)
    with pytest.raises(ContextOverflow, match="asks for 60 more") as raised:
        model.prepare_request(None, "0123456789", GenerationOptions(max_tokens=60))
    assert raised.value.reason is not None and raised.value.reason.code == "prompt_and_reply_too_long"
