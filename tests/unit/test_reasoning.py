"""Reasoning blocks kept apart from the answer, also when a tag is split across streamed pieces."""

from __future__ import annotations

from edgellm.templates.reasoning import ReasoningSplitter


def run(pieces: list[str], starts_in_reasoning: bool = False) -> tuple[str, str]:
    splitter = ReasoningSplitter(starts_in_reasoning)
    out = [item for piece in pieces for item in splitter.feed(piece)] + splitter.flush()
    reasoning = "".join(text for kind, text in out if kind == "reasoning")
    content = "".join(text for kind, text in out if kind == "content")
    return reasoning, content


def test_whole_tags() -> None:
    assert run(["<think>2+2 is 4</think>The answer is 4."]) == ("2+2 is 4", "The answer is 4.")


def test_tags_split_across_pieces() -> None:
    pieces = ["<th", "ink>plan", "ning</th", "in", "k>\n\nDone", "."]
    assert run(pieces) == ("planning", "\n\nDone.")


def test_text_that_only_looks_like_a_tag_start_is_not_lost() -> None:
    assert run(["a <b>bold</b> <thi", "s is fine"]) == ("", "a <b>bold</b> <this is fine")


def test_reply_that_starts_inside_reasoning() -> None:
    # some templates open <think> in the prompt, so the reply begins mid-reasoning
    assert run(["step one", "</think>answer"], starts_in_reasoning=True) == ("step one", "answer")


def test_unfinished_reasoning_is_kept() -> None:
    assert run(["<think>still thinking"]) == ("still thinking", "")


def test_stop_sequence_split_across_pieces() -> None:
    from edgellm.templates.reasoning import StopMatcher

    matcher = StopMatcher(("\nUser:",))
    shown = [matcher.feed(piece) for piece in ["Sure.", "\nUs", "e", "r: more"]]
    assert "".join(shown) == "Sure." and matcher.stopped
    loose = StopMatcher(("\nUser:",))
    assert "".join(loose.feed(p) for p in ["a\nU", "nrelated"]) + loose.flush() == "a\nUnrelated"
    assert not loose.stopped
