"""The headless chat: a line REPL for SSH and serial consoles, and a pipe filter (one message per line).

A thin driver over one ChatSession: terminal input, Ctrl-C and colours. Imports no Textual. Ctrl-C stops a
reply (the session keeps it, marked interrupted), and a second Ctrl-C at the prompt exits.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from edgellm.cli.words import CLI, explain
from edgellm.errors import EdgellmError, NoSuchConversation
from edgellm.events import Notice
from edgellm.media.images import Image, describe
from edgellm.session.chat import ChatSession, Turn
from edgellm.session.events import AnswerPiece, ReasoningPiece, ReplyDone, Timings
from edgellm.session.history import Conversation, SavedMessage
from edgellm.words import worded

DIM, RESET = "\x1b[2m", "\x1b[0m"
MULTILINE = '"""'
HELP = """commands:
  /help              this list
  /new               start a new conversation
  /history           list saved conversations
  /search TEXT       saved conversations that mention TEXT
  /load ID           continue a saved conversation
  /rename TITLE      rename this conversation
  /retry             answer the last message again
  /edit TEXT         replace the last message with TEXT and answer it
  /system TEXT       set the system prompt of this conversation
  /image FILE        attach an image (PNG, JPEG, GIF, BMP) to the next message (a vision model);
                     /image alone lists what is attached, /image clear drops it
  /set KEY VALUE     temp, top-k, top-p, min-p, repeat-penalty, n-predict, seed, think (show|hide),
                     loop-guard (on|off), json (on|off: every reply a JSON object),
                     stop TEXT (a reply ends where TEXT appears; /set stop alone clears it)
  /stats             timings of the last reply and of this session
  /exit              leave (also Ctrl-D, or Ctrl-C twice)
\"\"\" on a line of its own starts and ends a multi-line message; Ctrl-C stops a reply."""


class Repl:
    def __init__(
        self, session: ChatSession, *, interactive: bool, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr
    ) -> None:
        self.session = session
        self.interactive = interactive
        self.out, self.err = out, err
        self.generating = False
        self.last_interrupt = 0.0
        self.color = interactive and out.isatty()
        self.attached: list[Image] = []  # images going with the next message

    # output

    def say(self, text: str) -> None:
        """A line for the person at the terminal (stderr when piped, so stdout carries replies only)."""
        stream = self.out if self.interactive else self.err
        stream.write((f"{DIM}{text}{RESET}" if self.color else text) + "\n")
        stream.flush()

    def notice(self, notice: Notice) -> None:
        text = worded(notice, CLI)
        self.say(f"({text})" if notice.kind == "note" else f"{notice.kind}: {text}")

    # input

    def read_message(self, lines: Iterator[str]) -> str | None:
        """The next message or command; None at end of input."""
        first = self._read_line(lines, ">>> ")
        if first is None:
            return None
        if first.strip() != MULTILINE:
            return first
        collected: list[str] = []
        while True:
            line = self._read_line(lines, "... ")
            if line is None or line.strip() == MULTILINE:
                return "\n".join(collected)
            collected.append(line)

    def _read_line(self, lines: Iterator[str], prompt: str) -> str | None:
        if self.interactive:
            try:
                return input(prompt)
            except EOFError:
                self.out.write("\n")
                return None
        return next(lines, None)

    # the loop

    def run(self, lines: Iterator[str] | None = None) -> int:
        lines = lines if lines is not None else (line.rstrip("\n") for line in sys.stdin)
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            if self.interactive:
                self.say(
                    f"edgellm chat: {self.session.model_name}, context {self.session.model.n_ctx} tokens. "
                    f"/help for commands, Ctrl-D to leave."
                )
            for notice in self.session.opening_notices():
                self.notice(notice)
            while True:
                try:
                    message = self.read_message(lines)
                except KeyboardInterrupt:
                    if time.monotonic() - self.last_interrupt < 3:
                        self.out.write("\n")
                        return 0
                    self.last_interrupt = time.monotonic()
                    self.out.write("\n")
                    self.say("(Ctrl-C again to leave, or /exit)")
                    continue
                if message is None:
                    return 0
                if not message.strip():
                    continue
                if message.startswith("/") and not message.startswith("//"):
                    if self.command(message) == "exit":
                        return 0
                    continue
                self.send(message.removeprefix("/") if message.startswith("//") else message)
        finally:
            signal.signal(signal.SIGINT, previous)

    def send(self, text: str) -> None:
        """Send a message with the images attached to it (kept for the next one if the turn cannot start)."""
        try:
            turn = self.session.send(text, self.attached)
        except EdgellmError as error:
            self.say(f"error: {explain(error)}")
            return
        self.attached = []
        self.show(turn)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.generating:
            self.session.cancel()
        else:
            raise KeyboardInterrupt

    def show(self, turn: Turn) -> None:
        """Draw one turn's events as they come: the reply on its line(s), then its notices and timings."""
        self.generating = True  # from here Ctrl-C stops this turn instead of leaving the chat
        line = _ReplyLine(self.out, self.color)
        reply = None
        try:
            for event in turn:
                if isinstance(event, (AnswerPiece, ReasoningPiece)):
                    if isinstance(event, AnswerPiece) or self.session.show_reasoning:
                        line.write(event.text, reasoning=isinstance(event, ReasoningPiece))
                elif isinstance(event, ReplyDone):
                    line.end()
                    reply = event.reply
                elif isinstance(event, Notice):
                    if line.started and self.interactive:  # a notice goes on its own line
                        line.end()
                    self.notice(event)
        except EdgellmError as error:  # too long for the context, refused by the template, a split's worker lost
            if line.started:
                line.end()  # what was shown stays, on its own line
            self.say(f"error: {explain(error)}")
            return
        finally:
            self.generating = False
            turn.close()  # saved as interrupted and the model freed, even if drawing failed
        if reply is None or reply.interrupted:
            self.say("[reply stopped]")
        elif self.interactive:
            self.say(timings_line(reply.timings()))

    # commands

    def command(self, line: str) -> str | None:
        name, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        handler = getattr(self, f"cmd_{name.replace('-', '_')}", None)
        if handler is None:
            self.say(f"unknown command /{name}: /help lists the commands")
            return None
        try:
            result: str | None = handler(argument)  # a cmd_ method: "exit" or None
            return result
        except NoSuchConversation as error:
            self.say(f"error: {explain(error)}: /history lists them")
        except EdgellmError as error:
            self.say(f"error: {explain(error)}")
        return None

    def cmd_help(self, argument: str) -> None:
        self.say(HELP)

    def cmd_exit(self, argument: str) -> str:
        return "exit"

    cmd_quit = cmd_exit

    def cmd_new(self, argument: str) -> None:
        self.session.new()
        self.say("new conversation")

    def cmd_history(self, argument: str) -> None:
        self._list(self.session.conversations(), "no saved conversations")

    def cmd_search(self, argument: str) -> None:
        self._list(self.session.search(argument), f"no conversation mentions {argument!r}")

    def _list(self, conversations: list[Conversation], empty: str) -> None:
        if not conversations:
            self.say(empty)
        for conversation in conversations[:20]:
            self.say(
                f"{conversation.id:>5}  {time.strftime('%Y-%m-%d %H:%M', time.localtime(conversation.updated))}"
                f"  {conversation.message_count:>3} messages  {conversation.title or '(untitled)'}"
            )

    def cmd_load(self, argument: str) -> None:
        if not argument.isdigit():
            raise EdgellmError("/load takes a conversation id: /history lists them")
        self.show_loaded(int(argument), self.session.load(int(argument)))

    def show_loaded(self, conversation_id: int, messages: list[SavedMessage]) -> None:
        """A conversation just loaded, message by message."""
        for message in messages:
            mark = " [interrupted]" if message.interrupted else ""
            for image in message.images:
                self.say(f"{message.role}: [image: {describe(image)}]")
            if message.images_lost:
                self.say(f"{message.role}: [{message.images_lost} image(s) no longer in the image store]")
            self.say(f"{message.role}{mark}: {message.content}")
        self.say(f"conversation {conversation_id} loaded: {len(messages)} messages")

    def cmd_image(self, argument: str) -> None:
        if argument == "clear":
            self.attached = []
            self.say("no image attached")
            return
        if argument:
            self.attached.append(self.session.read_image(Path(argument).expanduser()))
        if not self.attached:
            self.say("no image attached: /image FILE attaches one to the next message")
        for image in self.attached:
            self.say(f"attached: {describe(image)}")

    def cmd_rename(self, argument: str) -> None:
        self.session.rename(argument)
        self.say(f"renamed: {' '.join(argument.split())}")

    def cmd_retry(self, argument: str) -> None:
        self.show(self.session.regenerate())

    def cmd_edit(self, argument: str) -> None:
        self.show(self.session.edit_last(argument))

    def cmd_system(self, argument: str) -> None:
        self.session.set_system(argument)
        self.say("system prompt set" if argument else "system prompt cleared")

    def cmd_set(self, argument: str) -> None:
        key, _, value = argument.partition(" ")
        self.say(self.session.set(key, value))

    def cmd_stats(self, argument: str) -> None:
        stats = self.session.stats
        if stats.last is None:
            self.say("no replies yet")
            return
        self.say("last reply: " + timings_line(stats.last))
        rate = stats.mean_tokens_per_s
        self.say(
            f"this session: {len(stats.replies)} replies, {stats.tokens} tokens"
            + (f", {rate:.1f} tokens/s on average" if rate else "")
        )


class _ReplyLine:
    """The reply as it streams: reasoning dimmed on a terminal, ended by exactly one newline (so a piped
    chat gives one line per reply, an empty reply included)."""

    def __init__(self, out: IO[str], color: bool) -> None:
        self.out, self.color = out, color
        self.started = self.ended = self.in_reasoning = False

    def write(self, text: str, reasoning: bool) -> None:
        if reasoning != self.in_reasoning and self.color:
            self.out.write(DIM if reasoning else RESET)
        self.in_reasoning, self.started, self.ended = reasoning, True, False
        self.out.write(text)
        self.out.flush()

    def end(self) -> None:
        if self.ended:
            return
        if self.in_reasoning and self.color:
            self.out.write(RESET)
        self.out.write("\n")
        self.out.flush()
        self.ended = True


def timings_line(timings: Timings) -> str:
    """One reply's timings in a line: tokens, speed, first token, images, prompt reuse, context, drafting."""
    names = ("tokens", "speed", "first_token", "image", "prompt", "context", "drafting")
    return "[" + " · ".join(timings.parts(*names)) + "]"
