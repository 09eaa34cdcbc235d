"""Offline batch jobs: one request per JSON line, answered by the model's slots together, results kept as they come.

Each input line is a request as the OpenAI API takes it (`{"prompt": ...}` or `{"messages": [...]}`, with its own
sampling and max_tokens; an OpenAI batch file's `{"custom_id": ..., "body": {...}}` too). Each answer is appended to a
journal beside the output the moment it is written (`OUT.partial`), so a Ctrl-C or a kill -9 loses only the answers
still being written (a line a kill cut short is dropped); run again, the job skips the lines already answered (matched
by their place and their text's hash, so an edited line is answered again) and goes on. When every line is answered,
the output is written whole in input order (a temporary name, renamed) and the journal removed. A bad line gets its
error in the output; the job goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgellm.api import openai
from edgellm.api.openai import ApiError, CompletionRequest
from edgellm.engine.batched import PoolTooSmall
from edgellm.engine.contract import GenerationOptions
from edgellm.errors import ContextOverflow, EdgellmError, EmptyPrompt, TemplateRefused
from edgellm.events import Progress, Report, ignore
from edgellm.session.completion import ChatModel
from edgellm.session.events import Reply

JOURNAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class Line:
    """One input line: its place (0-based), its text's hash, and its request or what is wrong with it."""

    index: int
    digest: str
    custom_id: Any = None
    request: CompletionRequest | None = None
    error: str | None = None


@dataclass
class Tally:
    """How far the job is: lines answered (this run and before), tokens written this run, time this run."""

    total: int
    done: int = 0
    skipped: int = 0  # answered by an earlier run
    failed: int = 0  # bad lines and failed replies, this run
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    answered_now: int = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def requests_per_s(self) -> float:
        return self.answered_now / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        left = self.total - self.done
        rate = self.requests_per_s
        return left / rate if rate > 0 and self.answered_now else None


def default_output(source: Path) -> Path:
    """Where the answers go when no -o is given: beside the input, `NAME.out.jsonl`."""
    stem = source.name.removesuffix(".jsonl").removesuffix(".json")
    return source.with_name(f"{stem}.out.jsonl")


def read_lines(source: Path, defaults: GenerationOptions, n_ctx: int) -> list[Line]:
    """Every non-blank line of `source`, parsed as a request; a bad one carries its error."""
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise EdgellmError(
            f"cannot read the batch file {source}: {getattr(error, 'strerror', None) or error}; pass a JSON-lines "
            f"file, one request per line"
        ) from None
    lines = []
    for number, raw in enumerate(text.splitlines()):
        if raw.strip():
            lines.append(parse_line(number, raw, defaults, n_ctx))
    if not lines:
        raise EdgellmError(f"the batch file {source} has no requests: put one JSON request per line")
    return lines


def parse_line(index: int, raw: str, defaults: GenerationOptions, n_ctx: int) -> Line:
    digest = hashlib.sha256(raw.strip().encode()).hexdigest()[:16]
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:
        return Line(index, digest, error=f"not valid JSON: {error}")
    if not isinstance(body, dict):
        return Line(index, digest, error="a line must be a JSON object with a prompt or messages")
    custom_id = body.get("custom_id")
    if isinstance(body.get("body"), dict):  # an OpenAI batch file's line: the request is its body
        body = body["body"]
    body = {key: value for key, value in body.items() if key not in ("custom_id", "method", "url", "stream")}
    try:
        if "messages" in body:
            request = openai.parse_chat(body, defaults, n_ctx)
        elif "prompt" in body:
            request = openai.parse_text(body, defaults, n_ctx, default_max_tokens=defaults.max_tokens)
        else:
            return Line(index, digest, custom_id, error="no prompt and no messages: give one of them")
    except ApiError as error:
        return Line(index, digest, custom_id, error=error.message)
    return Line(index, digest, custom_id, request=request)


def answered(output: Path) -> dict[int, dict[str, Any]]:
    """The results already written for this job, by line: the finished output's and the journal's (a line cut short
    by a kill is skipped)."""
    found: dict[int, dict[str, Any]] = {}
    for path in (output, journal_path(output)):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for raw in text.splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if (
                isinstance(record, dict)
                and isinstance(record.get("index"), int)
                and isinstance(record.get("hash"), str)
            ):
                found[record["index"]] = record
    return found


def journal_path(output: Path) -> Path:
    return output.with_name(output.name + JOURNAL_SUFFIX)


def mend_torn_tail(journal: Path) -> None:
    """Cut a last line a kill left half-written, so the next answer starts a line of its own."""
    try:
        with open(journal, "rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass


class BatchJob:
    """Answers `lines` into `output` with up to `model.model.parallel` requests at once; `report` hears the progress
    after each answer (from the worker threads)."""

    def __init__(self, model: ChatModel, lines: list[Line], output: Path, report: Report = ignore) -> None:
        self.model = model
        self.output = output
        self.report = report
        earlier = answered(output)
        self.kept = {
            line.index: earlier[line.index]
            for line in lines
            if line.index in earlier and earlier[line.index]["hash"] == line.digest
        }
        self.todo = [line for line in lines if line.index not in self.kept]
        self.digests = {line.index: line.digest for line in lines}
        self.progress = Tally(total=len(lines), done=len(self.kept), skipped=len(self.kept))
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._journal: Any = None
        self._error: BaseException | None = None

    def run(self) -> Tally:
        """Answer every line not yet answered; then write the output whole. Returns the progress; `cancel` set (or a
        KeyboardInterrupt) stops it with the answers so far kept in the journal."""
        if self.kept and not journal_path(self.output).exists() and not self.todo:
            return self.progress  # answered already, output whole
        with self._writing(journal_path(self.output)):
            self.output.parent.mkdir(parents=True, exist_ok=True)
            mend_torn_tail(journal_path(self.output))
            journal = open(journal_path(self.output), "a", encoding="utf-8")
        with journal:
            self._journal = journal
            lines = iter(self.todo)
            workers = [
                threading.Thread(target=self._work, args=(lines,), name=f"edgellm-batch-{n}", daemon=True)
                for n in range(max(1, self.model.model.parallel))
            ]
            for worker in workers:
                worker.start()
            try:
                for worker in workers:
                    while worker.is_alive():
                        worker.join(0.2)
            except KeyboardInterrupt:
                self.cancel.set()
                for worker in workers:
                    worker.join()
                raise
        if self._error is not None:
            raise self._error
        if not self.cancel.is_set():
            self._finish()
            self._tell(finished=True)
        return self.progress

    def _tell(self, finished: bool = False) -> None:
        """The progress as the event every front end shows: requests done of all, their rate and the time left."""
        tally = self.progress
        task = f"batch ({tally.requests_per_s:.2f} requests/s, {tally.tokens_per_s:.1f} tokens/s)"
        self.report(
            Progress(task, tally.done, tally.total, tally.requests_per_s, tally.seconds_left, finished, "requests")
        )

    @contextlib.contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        """A disk that refuses the answers (full, read-only, no such folder) is one line, not a traceback."""
        try:
            yield
        except OSError as error:
            raise EdgellmError(
                f"cannot write the answers to {path}: {error.strerror or error}; free some space or write them "
                f"elsewhere"
            ) from None

    def _work(self, lines: Iterator[Line]) -> None:
        while not self.cancel.is_set():
            with self._lock:
                line = next(lines, None)
            if line is None:
                return
            try:
                record = self._answer(line)
            except BaseException as error:  # a bug or a broken model: the job stops, its answers kept
                self._error = error
                self.cancel.set()
                return
            if record is None:  # stopped mid-reply: answered again next time
                return
            with self._lock:
                self._append(record)
                progress = self.progress
                progress.done += 1
                if "error" in record:
                    progress.failed += 1
                else:
                    progress.answered_now += 1
                    progress.prompt_tokens += record["usage"]["prompt_tokens"]
                    progress.completion_tokens += record["usage"]["completion_tokens"]
            self._tell()

    def _answer(self, line: Line) -> dict[str, Any] | None:
        head: dict[str, Any] = {"index": line.index, "hash": line.digest}
        if line.custom_id is not None:
            head["custom_id"] = line.custom_id
        request = line.request
        if request is None:
            return {**head, "error": line.error}
        model = self.model
        try:
            prepared = model.prepare_request(request.messages, request.prompt, request.options)
        except (ContextOverflow, TemplateRefused, EmptyPrompt) as error:
            return {**head, "error": str(error)}
        reply = Reply()
        pieces = model.stream(prepared, reply, request.options, self.cancel)
        try:
            for _ in pieces:
                pass
        except PoolTooSmall as error:  # this request can never be answered here: said in its line
            return {**head, "error": str(error)}
        finally:
            pieces.close()
        stats = reply.stats
        if stats is None or stats.stop_reason == "interrupted":
            return None
        text = (request.prompt or "") + reply.content if request.echo else reply.content
        record = {
            **head,
            "text": text,
            "stop_reason": stats.stop_reason,
            "finish_reason": openai.finish_reason(stats.stop_reason),
            "usage": openai.usage(stats),
            "timings": stats.as_dict(),
        }
        if reply.reasoning:
            record["reasoning"] = reply.reasoning
        return record

    def _append(self, record: dict[str, Any]) -> None:
        journal = self._journal
        with self._writing(journal_path(self.output)):
            journal.write(json.dumps(record, ensure_ascii=False) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def _finish(self) -> None:
        """Every line answered: the output written whole in input order, then the journal removed."""
        records = {
            index: record
            for index, record in answered(self.output).items()
            if self.digests.get(index) == record["hash"]  # not a line since edited or removed
        }
        missing = sorted(set(self.digests) - set(records))
        if missing:  # never a whole output with a line left out: the journal stays for the next run
            raise EdgellmError(
                f"{len(missing)} requests have no answer in {journal_path(self.output)} (the first: line "
                f"{missing[0] + 1}); run the same command again to answer them"
            )
        partial = self.output.with_name(f".{self.output.name}.{os.getpid()}.tmp")
        try:
            with self._writing(self.output), open(partial, "w", encoding="utf-8") as out:
                for index in sorted(records):
                    out.write(json.dumps(records[index], ensure_ascii=False) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.output)
        finally:
            partial.unlink(missing_ok=True)
        journal_path(self.output).unlink(missing_ok=True)
