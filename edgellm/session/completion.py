"""A loaded model that completes conversations: template, context, streaming. Shared by every front end.

It renders messages with the model's chat template, keeps them inside the context by dropping the oldest
turns, reuses the KV cache across calls (a next turn processes only its new tokens), and streams the reply
with reasoning kept apart. Options come with each call; as many calls run at once as the model decodes together
(`Model.parallel`: one for a chat's model, the slots of a batched server's), the rest wait their turn, so a server's
requests and a chat's turns can share one model. It writes no history: the session does that.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from edgellm.engine.contract import Generation, GenerationOptions, Grammar, Model, text_only
from edgellm.errors import ContextOverflow, EmptyPrompt, TemplateRefused
from edgellm.events import Notice
from edgellm.grammar.gbnf import after_reasoning
from edgellm.grammar.json_schema import JSON_OBJECT_GRAMMAR, schema_grammar
from edgellm.media import MARKER
from edgellm.media.images import Image
from edgellm.reasons import reason
from edgellm.session.events import AnswerPiece, ReasoningPiece, Reply, ToolCallPiece
from edgellm.templates.chat import ChatTemplate, choose, looks_like_base_model
from edgellm.templates.images import has_images, last_user_images, place_images
from edgellm.templates.reasoning import ReasoningSplitter, StopMatcher
from edgellm.templates.sandbox import TemplateLimit
from edgellm.templates.tools import (
    Delta,
    Tool,
    ToolChoice,
    ToolFormat,
    ToolParser,
    detect_format,
    generic_messages,
    native_messages,
    tool_grammar,
)

if TYPE_CHECKING:
    from edgellm.api.openai import TokenChoice

MIN_REPLY_ROOM = 64
MAX_PIECES = 65536  # tokens whose text is remembered for log-probabilities (six a token with top_logprobs 5)
RECENT_CALLS = 16  # prompts + replies remembered as tokens, so a client re-sending its conversation hits its cache
Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class ReplyShape:
    """What a reply must be besides free text: calls to `tools` (as `tool_choice` says), JSON (`json`; matching
    `schema` when given), or what a GBNF `grammar` allows; and `logprobs`, the top log-probabilities to report with
    each token (None: none)."""

    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice("none")
    parallel_tool_calls: bool = True
    json: bool = False
    schema: dict[str, Any] | None = None
    grammar: str | None = None
    logprobs: int | None = None

    @property
    def calls_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice.mode != "none"


@dataclass(frozen=True)
class Prepared:
    text: str
    tokens: list[int]
    dropped: int  # old messages left out to fit the context
    chat: bool = True  # rendered from messages by the template; False: a raw text prompt, completed as it is
    options: GenerationOptions = GenerationOptions()  # the call's options, with the grammar its shape asks for
    shape: ReplyShape = ReplyShape()
    tool_format: ToolFormat | None = None  # the format calls are written in, when the reply may call tools

    @property
    def starts_in_reasoning(self) -> bool:
        """The template opened the reasoning block in the prompt itself (DeepSeek-R1 distills): the reply starts in
        it."""
        return self.chat and self.text.rstrip().endswith("<think>")


@dataclass
class ChatModel:
    """A model that completes conversations (and raw prompts), `model.parallel` calls at a time."""

    model: Model  # the engine's
    template: ChatTemplate
    base_model: bool = False  # no chat template and no instruct-style name: it will ramble, not chat
    _turns: threading.Semaphore = field(init=False)  # one per call the model runs at once
    _recent: list[tuple[str, list[int]]] = field(default_factory=list)  # recent calls' prompt + reply, as text and
    # as tokens, the latest first
    _special: tuple[str, str] | None = None  # BOS and EOS as text
    _tool_format: ToolFormat | None = None
    _pieces: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # tokens' text, for log-probabilities
    _image_lengths: dict[str, int] = field(default_factory=dict)  # tokens each image takes, by digest

    def __post_init__(self) -> None:
        self._turns = threading.Semaphore(max(1, self.model.parallel))

    @classmethod
    def for_model(cls, engine: Model, architecture: str) -> ChatModel:
        metadata = engine.metadata
        own = metadata.get("tokenizer.chat_template")
        llama3 = len(engine.tokenize("<|start_header_id|>", add_bos=False, special=True)) == 1
        names = [engine.params.path.name] + [
            metadata.get(key, "") for key in ("general.name", "general.basename", "general.finetune")
        ]
        model = cls(engine, choose(own, architecture, llama3), looks_like_base_model(bool(own), names))
        try:
            model.template.compile(*model.special_tokens())  # now, not in the first turn's time to first token
        except Exception:
            pass
        return model

    def close(self) -> None:
        """Free llama.cpp's model and context, once no call is running on them."""
        for _ in range(max(1, self.model.parallel)):
            self._turns.acquire()
        self.model.close()

    @property
    def n_ctx(self) -> int:
        return self.model.n_ctx

    def opening_notices(self) -> list[Notice]:
        """What a person should know before the first message."""
        if not self.base_model:
            return []
        return [
            Notice(
                "this looks like a base model (no chat template, not instruction-tuned): it continues "
                "text rather than answering, and may repeat itself",
                "warning",
            )
        ]

    def special_tokens(self) -> tuple[str, str]:
        """The model's BOS and EOS tokens as text, for the template (read once: each llama.cpp call hands the GIL
        over, which a busy UI thread makes slow)."""
        if self._special is None:
            model = self.model
            bos, eos = model.token_bos, model.token_eos
            self._special = (
                model.detokenize([bos], special=True).decode(errors="replace") if bos >= 0 else "",
                model.detokenize([eos], special=True).decode(errors="replace") if eos >= 0 else "",
            )
        return self._special

    @property
    def tool_format(self) -> ToolFormat:
        """The format this model writes tool calls in (its template probed once); `generic` without tool support."""
        if self._tool_format is None:
            source = self.template.source if self.template.name == "model" else None
            self._tool_format = detect_format(source, lambda messages, tools: self.render(messages, tools))
        return self._tool_format

    @property
    def vision(self) -> bool:
        """The model reads images (a projector is loaded with it)."""
        return self.model.vision

    def render(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text of `messages`, each image a MARKER where it goes."""
        return self.rendered(messages, tools)[0]

    def rendered(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> tuple[str, list[Image]]:
        """The prompt text of `messages` and its images, in the order of their MARKERs."""
        placed, images = place_images(messages)
        return self._render(placed, tools), images

    def _render(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> str:
        bos, eos = self.special_tokens()
        try:
            return self.template.render(messages, bos_token=bos, eos_token=eos, tools=tools)
        except TemplateLimit as error:
            raise TemplateRefused(
                f"the model's chat template was stopped: {error}; the template in this GGUF is "
                f"broken or hostile: use another GGUF of this model"
            ) from None
        except Exception as error:  # raise_exception() in the template, a Jinja error, RecursionError
            raise TemplateRefused(f"the model's chat template refused this conversation: {error}") from None

    def tokenize(self, text: str, images: Sequence[Image] = ()) -> list[int]:
        """A prompt text's tokens (its special tokens parsed), with `images` where its MARKERs are."""
        if images:
            return self.model.tokenize_with_images(text, images, add_bos=False)
        return self.model.tokenize(text, add_bos=False, special=True)

    def count(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> int:
        """The tokens `messages` take. An image counts as the tokens it took the first time it was tokenized, so a
        conversation is fitted without llama.cpp decoding its images again each time it is measured."""
        text, images = self.rendered(messages, tools)
        if not images:
            return len(self.tokenize(text))
        return len(self.tokenize(text.replace(MARKER, ""))) + sum(self._image_length(image) for image in images)

    def _image_length(self, image: Image) -> int:
        """The tokens `image` takes in a prompt, its model's own markers around it included (measured once)."""
        found = self._image_lengths.get(image.digest)
        if found is None:
            found = len(self.model.tokenize_with_images(MARKER, [image], add_bos=False))
            if len(self._image_lengths) >= MAX_PIECES:
                self._image_lengths.clear()
            self._image_lengths[image.digest] = found
        return found

    def reply_room(self, max_tokens: int = -1) -> int:
        """Tokens kept free for the reply when the history is trimmed."""
        wanted = max_tokens if max_tokens > 0 else self.n_ctx // 4
        return max(MIN_REPLY_ROOM, min(wanted, self.n_ctx // 2))

    def prompt_tokens(self, text: str, images: Sequence[Image] = ()) -> list[int]:
        """The prompt's tokens, extending a recent call's exactly when the text extends it (the longest such): the
        KV cache then holds every token but the new ones. `images`: the prompt's, in the order of its MARKERs."""
        found: tuple[str, list[int]] = ("", [])
        for previous_text, previous_tokens in list(self._recent):  # a copy: another thread may change it meanwhile
            if len(previous_text) > len(found[0]) and text.startswith(previous_text):
                found = (previous_text, previous_tokens)
        if found[0]:
            rest = text[len(found[0]) :]
            new_images = rest.count(MARKER)
            return found[1] + self.tokenize(rest, images[len(images) - new_images :] if new_images else ())
        return self.tokenize(text, images)

    def _remember(self, text: str, tokens: list[int]) -> None:
        recent = [(text, tokens)] + [call for call in self._recent if call[0] != text]
        self._recent = recent[:RECENT_CALLS]

    def prepare(
        self,
        messages: Messages,
        options: GenerationOptions = GenerationOptions(),
        tools: list[dict[str, Any]] | None = None,
    ) -> Prepared:
        """Fit the conversation into the context and tokenize it; ContextOverflow if one message is too long."""
        if has_images(messages) and not self.vision:
            if last_user_images(messages):
                raise text_only(self.model.params.path)
            messages = place_images(messages, keep=False)[0]  # a resumed history's images: this model reads text
        budget = self.n_ctx - self.reply_room(options.max_tokens)
        kept, dropped = fit_history(messages, lambda found: self.count(found, tools), budget)
        text, images = self.rendered(kept, tools)
        tokens = self.prompt_tokens(text, images) if options.cache_prompt else self.tokenize(text, images)
        if len(tokens) >= self.n_ctx:
            raise ContextOverflow(
                f"the conversation needs {len(tokens)} tokens but the context holds {self.n_ctx}",
                len(tokens),
                self.n_ctx,
            )
        return Prepared(text, tokens, dropped)

    def prepare_request(
        self,
        messages: Messages | None,
        prompt: str | None,
        options: GenerationOptions,
        shape: ReplyShape = ReplyShape(),
    ) -> Prepared:
        """A request's prompt (messages through the template, else a raw text), checked to leave room for the
        `max_tokens` it asks: ContextOverflow (its `available` the room left), TemplateRefused or EmptyPrompt. With a
        `shape`, the prompt says what the reply must be and the options carry the grammar that enforces it."""
        with_tools = messages is not None and (shape.tools or any(_is_tool_turn(m) for m in messages))
        tool_format = self.tool_format if with_tools else None
        if messages is not None and shape.json:
            messages = json_messages(messages, shape.schema)
        if messages is None:
            prepared = self.prepare_text(prompt or "")
        elif tool_format is not None and tool_format.native:
            tools = [tool.as_openai() for tool in shape.tools] or None
            prepared = self.prepare(native_messages(messages), options, tools)
        elif tool_format is not None:
            prepared = self.prepare(generic_messages(messages, list(shape.tools), shape.tool_choice), options)
        else:
            prepared = self.prepare(messages, options)
        prepared = self.constrain(prepared, shape, options, tool_format if shape.calls_tools else None)
        wanted = options.max_tokens
        if wanted > 0 and len(prepared.tokens) + wanted > self.n_ctx:
            raise ContextOverflow(
                reason("prompt_and_reply_too_long", prompt=len(prepared.tokens), wanted=wanted, n_ctx=self.n_ctx),
                len(prepared.tokens) + wanted,
                self.n_ctx,
            )
        return prepared

    def constrain(
        self, prepared: Prepared, shape: ReplyShape, options: GenerationOptions, tool_format: ToolFormat | None = None
    ) -> Prepared:
        """`prepared` with `options` carrying what `shape` asks: the grammar (calls in `tool_format`, JSON, GBNF), the
        special tokens written as text, the log-probabilities."""
        grammar, special = self._grammar(prepared, shape, tool_format)
        options = replace(options, grammar=grammar, special_text=special, logprobs=shape.logprobs)
        return replace(prepared, options=options, shape=shape, tool_format=tool_format)

    def _grammar(
        self, prepared: Prepared, shape: ReplyShape, tool_format: ToolFormat | None
    ) -> tuple[Grammar | None, tuple[int, ...]]:
        """The grammar the reply's shape asks for, and the special tokens its markers are (written out as text)."""
        thinking = prepared.chat and "<think>" in self.template.source
        starts_in_reasoning = prepared.starts_in_reasoning
        reasoning = "open" if starts_in_reasoning else "may" if thinking else "none"
        if tool_format is not None:
            special = self._marker_tokens(tool_format.marker)
            found = tool_grammar(
                tool_format, list(shape.tools), shape.tool_choice, shape.parallel_tool_calls, reasoning
            )
            if found is None:
                return None, special
            tokens = special if found.trigger_words else ()  # a marker that is one token wakes the grammar itself
            lazy = bool(found.trigger_patterns)
            gbnf = found.gbnf if lazy or not thinking else after_reasoning(found.gbnf, starts_in_reasoning)
            return Grammar(gbnf, found.trigger_patterns, tokens), special
        if shape.grammar is not None:
            return Grammar(shape.grammar), ()
        if shape.json:
            gbnf = schema_grammar(shape.schema) if shape.schema is not None else JSON_OBJECT_GRAMMAR
            return Grammar(after_reasoning(gbnf, starts_in_reasoning) if thinking else gbnf), ()
        return None, ()

    def _marker_tokens(self, marker: str) -> tuple[int, ...]:
        """The marker as one special token, when it is one (Qwen's <tool_call>, Mistral's [TOOL_CALLS])."""
        if not marker:
            return ()
        tokens = self.model.tokenize(marker, add_bos=False, special=True)
        return tuple(tokens) if len(tokens) == 1 else ()

    def after_context(self, prepared: Prepared, context: tuple[int, ...], max_tokens: int = -1) -> Prepared:
        """The prompt continuing an earlier exchange given as its tokens (Ollama's `context`): those tokens, then the
        prompt's without its BOS (the context starts with one); the oldest context tokens after its BOS are left out
        when they would not leave the reply its room. UnknownToken for an id outside the vocabulary."""
        if not context:
            return prepared
        bos = self.model.tokenize("", add_bos=True, special=False)[:1]
        head = bos if bos and context[:1] == tuple(bos) else []
        tokens = prepared.tokens[len(head) :] if head and prepared.tokens[:1] == head else prepared.tokens
        room = self.n_ctx - len(head) - len(tokens) - self.reply_room(max_tokens)
        kept = head + (list(context[len(head) :][-room:]) if room > 0 else [])
        text = self.model.detokenize(kept, special=True).decode("utf-8", "replace")  # checks every id
        return replace(prepared, text=text + prepared.text, tokens=kept + tokens)

    def exchange(self, prepared: Prepared, reply: Reply) -> list[int]:
        """A finished exchange as tokens (Ollama's `context`, for a next request to continue from): the prompt's, then
        the reply's text tokenized again."""
        return prepared.tokens + self.model.tokenize(reply.content, add_bos=False, special=False)

    def prepare_text(self, prompt: str, images: Sequence[Image] = ()) -> Prepared:
        """A raw prompt, completed as it is (no template): BOS and its tokens; ContextOverflow if no room is left.
        `images` go where the prompt has MARKERs, else before its text."""
        if images:
            if not self.vision:
                raise text_only(self.model.params.path)
            prompt = place_images([{"role": "user", "content": prompt, "images": images}])[0][0]["content"]
            if prompt.endswith(MARKER):  # text after the last image: the prompt's last token is sampled from
                prompt += "\n"
        return Prepared(prompt, text_prompt_tokens(self.model, prompt, images), 0, chat=False)

    def stream(
        self,
        prepared: Prepared,
        reply: Reply,
        options: GenerationOptions = GenerationOptions(),
        cancel: threading.Event | None = None,
    ) -> Generator[AnswerPiece | ReasoningPiece | ToolCallPiece, None, None]:
        """Yield the reply's pieces, filling `reply` as they come; `cancel` stops it, even before it starts."""
        with self._turns:
            yield from self._stream(prepared, reply, options, cancel)

    def _stream(
        self, prepared: Prepared, reply: Reply, options: GenerationOptions, cancel: threading.Event | None
    ) -> Generator[AnswerPiece | ReasoningPiece | ToolCallPiece, None, None]:
        reply.dropped_messages, reply.n_ctx = prepared.dropped, self.n_ctx
        generation = self.model.generation(prepared.tokens, options, cancel=cancel)
        reply.stats = generation.stats  # its counts grow as tokens come (a server's metrics read them live)
        splitter = ReasoningSplitter(starts_in_reasoning=prepared.starts_in_reasoning) if prepared.chat else PlainText()
        stops = StopMatcher(options.stop + (self.template.stop if prepared.chat else ()))
        tools = (
            ToolParser(prepared.tool_format, list(prepared.shape.tools)) if prepared.tool_format is not None else None
        )
        raw = []
        pieces = iter(generation)
        try:
            for piece in pieces:
                raw.append(piece)
                self._take_logprobs(reply, generation)
                yield from _collect(reply, splitter.feed(stops.feed(piece)), tools)
                if stops.stopped:
                    pieces.close()
                    generation.stats.stop_reason = "stop"
                    break
            self._take_logprobs(reply, generation)
            yield from _collect(reply, splitter.feed(stops.flush()) + splitter.flush(), tools)
            if tools is not None:
                cut = generation.stats.stop_reason in ("length", "context")
                yield from _tool_pieces(reply, tools.finish(cut=cut))
                reply.tool_calls = tools.calls
        finally:
            pieces.close()  # ends llama.cpp's generation and completes the timings, also when closed early
            reply.stats = generation.stats
            reply.context_used = len(prepared.tokens) + len(generation.tokens)
            self._remember(prepared.text + "".join(raw), prepared.tokens + generation.tokens)

    def _take_logprobs(self, reply: Reply, generation: Generation) -> None:
        """The log-probabilities of the tokens sampled since the last piece, with their text."""
        found = generation.logprobs
        for item in found[len(reply.logprobs) : len(generation.tokens)]:
            reply.logprobs.append((self._choice(item.token, item.logprob), [self._choice(t, p) for t, p in item.top]))

    def _choice(self, token: int, logprob: float) -> TokenChoice:
        found = self._pieces.get(token)
        if found is None:
            if len(self._pieces) > MAX_PIECES:
                self._pieces.clear()
            raw = self.model.detokenize([token], special=True)
            found = self._pieces[token] = (raw.decode("utf-8", errors="replace"), raw)
        return found[0], found[1], logprob


class PlainText:
    """The splitter of a raw text completion: everything is answer, `<think>` included."""

    def feed(self, text: str) -> list[tuple[str, str]]:
        return [("answer", text)] if text else []

    def flush(self) -> list[tuple[str, str]]:
        return []


def text_prompt_tokens(model: Model, prompt: str, images: Sequence[Image] = ()) -> list[int]:
    """A raw prompt's tokens, BOS first (`images` where its MARKERs are), as `run` and the server's /v1/completions
    evaluate it; ContextOverflow when it leaves no room for a reply, EmptyPrompt when it has no token at all (an empty
    text, a model with no BOS)."""
    if images:
        tokens = model.tokenize_with_images(prompt, images, add_bos=True, special=False)
    else:
        tokens = model.tokenize(prompt, add_bos=True, special=False)
    if not tokens:
        raise EmptyPrompt("the prompt is empty and this model starts no text on its own: give it some text")
    n_ctx = model.n_ctx
    if len(tokens) >= n_ctx:
        raise ContextOverflow(reason("prompt_too_long", needed=len(tokens), n_ctx=n_ctx), len(tokens), n_ctx)
    return tokens


def reply_notices(reply: Reply) -> list[Notice]:
    """What a finished reply tells the person besides its text."""
    notices = []
    if reply.dropped_messages:
        notices.append(
            Notice(
                f"the {reply.dropped_messages} oldest messages no longer fit the {reply.n_ctx}-token "
                f"context and were left out"
            )
        )
    if reply.stop_reason == "repetition":
        notices.append(
            Notice(
                "the reply kept repeating the same text and was stopped by the loop guard "
                "(setting loop-guard off lets it run)",
                "warning",
            )
        )
    return notices


def _collect(
    reply: Reply, pieces: list[tuple[str, str]], tools: ToolParser | None = None
) -> Iterator[AnswerPiece | ReasoningPiece | ToolCallPiece]:
    for kind, text in pieces:
        if kind == "reasoning":
            reply.reasoning += text
            yield ReasoningPiece(text)
        elif tools is not None:  # the answer goes through the calls' parser: markers inside reasoning never count
            yield from _tool_pieces(reply, tools.feed(text))
        else:
            reply.content += text
            yield AnswerPiece(text)


def _tool_pieces(reply: Reply, deltas: list[Delta]) -> Iterator[AnswerPiece | ToolCallPiece]:
    for delta in deltas:
        if delta.index < 0:
            reply.content += delta.content
            yield AnswerPiece(delta.content)
        else:
            yield ToolCallPiece(delta)


def _is_tool_turn(message: dict[str, Any]) -> bool:
    return message["role"] == "tool" or bool(message.get("tool_calls"))


def json_messages(messages: Messages, schema: dict[str, Any] | None) -> Messages:
    """The conversation with the reply's JSON shape said in its system message (llama.cpp enforces a schema without
    showing it; the model writes better JSON when it knows the fields and their descriptions)."""
    said = "Answer with a JSON object only."
    if schema is not None:
        said = f"Answer with JSON only, matching this JSON schema:\n{json.dumps(schema)}"
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{said}"}, *messages[1:]]
    return [{"role": "system", "content": said}, *messages]


def fit_history(messages: Messages, count: Callable[[Messages], int], budget: int) -> tuple[Messages, int]:
    """Drop the oldest turns until the conversation fits `budget` tokens; the system prompt and the last
    user message always stay. Returns the kept messages and how many were dropped.

    A kept history starts with a user turn (or is the last message alone); the first start that fits is found by
    bisection, so a long conversation costs a few renders, not one per message."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system) :]
    starts = sorted({0, max(0, len(turns) - 1)} | {i for i, m in enumerate(turns) if i and m["role"] == "user"})
    low, high = 0, len(starts) - 1  # the answer is the first start that fits, or the last one
    if count(system + turns) > budget:
        low = 1
        while low < high:
            middle = (low + high) // 2
            if count(system + turns[starts[middle] :]) <= budget:
                high = middle
            else:
                low = middle + 1
    dropped = starts[min(low, len(starts) - 1)]
    turns = turns[dropped:]
    needed = count(system + turns)
    if needed > budget:
        raise ContextOverflow(reason("message_too_long", needed=needed, available=budget), needed, budget)
    return system + turns, dropped
