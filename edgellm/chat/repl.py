"""The headless chat: a line REPL for SSH and serial consoles, and a pipe filter (one message per line).

Imports no Textual. Every reply is written to the history before it is shown; Ctrl-C stops a reply
(kept, marked interrupted), and a second Ctrl-C at the prompt exits.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field, replace
from typing import IO, Any, Iterator

from edgellm.chat.engine import ChatEngine, Reply
from edgellm.chat.history import History
from edgellm.errors import UserError

DIM, RESET = "\x1b[2m", "\x1b[0m"
MULTILINE = '"""'
HELP = """commands:
  /help              this list
  /new               start a new conversation
  /history           list saved conversations
  /load ID           continue a saved conversation
  /system TEXT       set the system prompt of this conversation
  /set KEY VALUE     temp, top-k, top-p, min-p, repeat-penalty, n-predict, seed, think (show|hide),
                     stop TEXT (a reply ends where TEXT appears; /set stop alone clears it)
  /stats             timings of the last reply and of this session
  /exit              leave (also Ctrl-D, or Ctrl-C twice)
\"\"\" on a line of its own starts and ends a multi-line message; Ctrl-C stops a reply."""
SETTABLE = {"temp": "temp", "top-k": "top_k", "top-p": "top_p", "min-p": "min_p", "repeat-penalty": "repeat_penalty",
            "n-predict": "n_predict", "seed": "seed"}


@dataclass
class Session:
    """The conversation in memory and where it is saved (conversation_id None until its first message)."""

    model: str
    settings: dict[str, Any]
    system_prompt: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    conversation_id: int | None = None
    replies: list[dict[str, Any]] = field(default_factory=list)

    def chat_messages(self) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + self.messages


class Repl:
    def __init__(self, engine: ChatEngine, history: History | None, session: Session, *, interactive: bool,
                 out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> None:
        self.engine = engine
        self.history = history
        self.session = session
        self.interactive = interactive
        self.out, self.err = out, err
        self.show_reasoning = interactive
        self.generating = False
        self.last_interrupt = 0.0
        self.color = interactive and out.isatty()

    # output

    def say(self, text: str) -> None:
        """A line for the person at the terminal (stderr when piped, so stdout carries replies only)."""
        stream = self.out if self.interactive else self.err
        stream.write((f"{DIM}{text}{RESET}" if self.color else text) + "\n")
        stream.flush()

    # input

    def read_message(self, lines: Iterator[str]) -> str | None:
        """The next message or command; None at end of input."""
        first = self._read_line(lines, ">>> ")
        if first is None:
            return None
        if first.strip() != MULTILINE:
            return first
        collected = []
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
                self.say(f"edgellm chat: {self.session.model}, context {self.engine.n_ctx} tokens. /help for commands, "
                         f"Ctrl-D to leave.")
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
                self.chat(message.removeprefix("/") if message.startswith("//") else message)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.generating:
            self.engine.cancel()
        else:
            raise KeyboardInterrupt

    # one exchange

    def chat(self, text: str) -> None:
        session = self.session
        session.messages.append({"role": "user", "content": text})
        self.generating = True  # from here Ctrl-C stops this turn instead of leaving the chat
        try:
            try:
                prepared = self.engine.prepare(session.chat_messages())
            except UserError as error:  # too long for the context, or refused by the chat template
                session.messages.pop()
                self.say(f"error: {error}")
                return
            reply_id = self._save("_user_message", text)
            reply = Reply()
            self._stream(prepared, reply, reply_id)
        finally:
            self.generating = False
        session.replies.append(reply.timings())
        if reply.dropped_messages:
            self.say(f"(the {reply.dropped_messages} oldest messages no longer fit the {self.engine.n_ctx}-token "
                     f"context and were left out)")
        if reply.interrupted or reply.stats is None:
            self.say("[reply stopped]")
        elif self.interactive:
            self.say(stats_line(reply.timings()))

    def _stream(self, prepared, reply: Reply, reply_id: int | None) -> None:
        in_reasoning = False
        try:
            for kind, piece in self.engine.stream(prepared, reply):
                if reply_id is not None:
                    self._save("update_reply", reply_id, reply.content, reply.reasoning)  # saved before shown
                if kind == "reasoning" and not self.show_reasoning:
                    continue
                if (kind == "reasoning") != in_reasoning and self.color:
                    self.out.write(DIM if kind == "reasoning" else RESET)
                in_reasoning = kind == "reasoning"
                self.out.write(piece)
                self.out.flush()
        finally:
            if in_reasoning and self.color:
                self.out.write(RESET)
            self.out.write("\n")
            self.out.flush()
            answer = {"role": "assistant", "content": reply.content}
            if reply.reasoning:
                answer["reasoning_content"] = reply.reasoning  # for templates that replay or drop it themselves
            self.session.messages.append(answer)
            if reply_id is not None:
                interrupted = reply.stats is None or reply.interrupted
                self._save("finish_reply", reply_id, reply.content, reply.reasoning, interrupted, reply.timings())

    def _save(self, write: str, *args):
        """A history write (a History method, or _user_message); if the database fails (disk full, locked,
        deleted), say so and go on without it."""
        if not self.history:
            return None
        try:
            return getattr(self, write)(*args) if write.startswith("_") else getattr(self.history, write)(*args)
        except sqlite3.Error as error:
            self.history = None
            self.say(f"error: the history could not be saved ({error}); this session goes on without it")
            return None

    def _user_message(self, text: str) -> int:
        session = self.session
        if session.conversation_id is None:
            session.conversation_id = self.history.new_conversation(session.model, session.settings)
            if session.system_prompt:
                self.history.set_system(session.conversation_id, session.system_prompt)
        self.history.add(session.conversation_id, "user", text)
        return self.history.start_reply(session.conversation_id)

    # commands

    def command(self, line: str) -> str | None:
        name, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        handler = getattr(self, f"cmd_{name.replace('-', '_')}", None)
        if handler is None:
            self.say(f"unknown command /{name}: /help lists the commands")
            return None
        try:
            return handler(argument)
        except UserError as error:
            self.say(f"error: {error}")
            return None

    def cmd_help(self, argument: str) -> None:
        self.say(HELP)

    def cmd_exit(self, argument: str) -> str:
        return "exit"

    cmd_quit = cmd_exit

    def cmd_new(self, argument: str) -> None:
        self.session = replace(self.session, messages=[], conversation_id=None, replies=[])
        self.say("new conversation")

    def cmd_history(self, argument: str) -> None:
        if not self.history:
            raise UserError("history is off (--no-history)")
        conversations = self.history.conversations()
        if not conversations:
            self.say("no saved conversations")
        for conversation in conversations[:20]:
            self.say(f"{conversation.id:>5}  {time.strftime('%Y-%m-%d %H:%M', time.localtime(conversation.updated))}"
                     f"  {conversation.message_count:>3} messages  {conversation.title or '(untitled)'}")

    def cmd_load(self, argument: str) -> None:
        if not self.history:
            raise UserError("history is off (--no-history)")
        if not argument.isdigit():
            raise UserError("/load takes a conversation id: /history lists them")
        conversation_id = int(argument)
        if self.history.conversation(conversation_id) is None:
            raise UserError(f"no conversation {conversation_id}: /history lists them")
        messages = self.history.messages(conversation_id)
        system = next((m.content for m in messages if m.role == "system"), None)
        self.session = replace(self.session, conversation_id=conversation_id, system_prompt=system, replies=[],
                               messages=[m.as_chat() for m in messages if m.role != "system"])
        # reasoning is kept in the history but only its answer goes back to the model, as chat templates expect
        for message in messages:
            mark = " [interrupted]" if message.interrupted else ""
            self.say(f"{message.role}{mark}: {message.content}")
        self.say(f"conversation {conversation_id} loaded: {len(messages)} messages")

    def cmd_system(self, argument: str) -> None:
        self.session.system_prompt = argument or None
        if self.history and self.session.conversation_id is not None:
            self.history.set_system(self.session.conversation_id, argument)
        self.say("system prompt set" if argument else "system prompt cleared")

    def cmd_set(self, argument: str) -> None:
        from edgellm.options import MODEL_FLAGS

        key, _, value = argument.partition(" ")
        value = value.strip()
        if key == "stop":
            stop = value.replace("\\n", "\n").replace("\\t", "\t")  # \n and \t may be typed as escapes
            self.engine.stop = (stop,) if stop else ()
            self.say(f"stop = {stop!r}" if stop else "stop cleared")
            return
        if key == "think":
            if value not in ("show", "hide"):
                raise UserError("/set think takes show or hide")
            self.show_reasoning = value == "show"
            self.say(f"reasoning {'shown' if self.show_reasoning else 'hidden'}")
            return
        if key not in SETTABLE:
            raise UserError(f"/set knows {', '.join(list(SETTABLE) + ['think', 'stop'])}")
        flag = next(flag for flag in MODEL_FLAGS if flag.dest == SETTABLE[key])
        try:
            parsed = flag.parse(value)
        except ValueError as error:
            raise UserError(f"/set {key} {value}: {error}") from None
        engine = self.engine
        if key == "n-predict":
            engine.max_tokens = parsed
        elif key == "seed":
            engine.loaded.llm.set_seed(parsed if parsed >= 0 else 0xFFFFFFFF)
        else:
            engine.sampling = replace(engine.sampling, **{SETTABLE[key]: parsed})
        self.session.settings[SETTABLE[key]] = parsed
        self.say(f"{key} = {parsed}")

    def cmd_stats(self, argument: str) -> None:
        replies = self.session.replies
        if not replies:
            self.say("no replies yet")
            return
        self.say("last reply: " + stats_line(replies[-1]))
        tokens = sum(r.get("completion_tokens", 0) for r in replies)
        rates = [r["tokens_per_s"] for r in replies if r.get("tokens_per_s")]
        self.say(f"this session: {len(replies)} replies, {tokens} tokens"
                 + (f", {sum(rates) / len(rates):.1f} tokens/s on average" if rates else ""))


def stats_line(timings: dict[str, Any]) -> str:
    parts = [f"{timings.get('completion_tokens', 0)} tokens"]
    if timings.get("tokens_per_s"):
        parts.append(f"{timings['tokens_per_s']:.1f} tokens/s")
    if timings.get("ttft_ms") is not None:
        parts.append(f"first token {timings['ttft_ms']:.0f} ms")
    parts.append(f"prompt {timings.get('prompt_evaluated', 0)} new of {timings.get('prompt_tokens', 0)}")
    parts.append(f"context {timings.get('context_used', 0)}/{timings.get('n_ctx', 0)}")
    return "[" + " · ".join(parts) + "]"
