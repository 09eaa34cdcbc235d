"""The TUI against `edgellm run`, same model, same threads, in the same run (fresh processes, alternating rounds).

1. Decode tokens/s inside the TUI / `edgellm run --json` (goal >= 0.95).
2. Enter to the first token on screen vs run's TTFT (goal <= 1.1 x run's TTFT + 50 ms).
3. Delay before a key press during generation is handled, 95th percentile (goal <= 100 ms).
4. Start-up to the first frame of the home screen (goal <= 1 s; `python -c pass` as the anchor).
Each at 2 threads and at 1 (the UI keeping a core of its own), on this machine's cores (--threads-list 2 for 2 only).
Usage: .venv/bin/python benchmarks/bench_tui.py [--rounds 3] [--tokens 256] [--threads-list 2,1] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from _common import TEST_MODEL, Findings, add_json_flag, median, spread

PROMPT = "Write a long story about a lighthouse keeper and the sea."
RUN_PROMPT = PROMPT + " Tell it slowly, in short parts."  # as many tokens as PROMPT in the chat template
KEY_EVERY_S = 0.1  # a key press this often while the reply streams


def child(threads: int, tokens: int) -> None:
    """In a fresh process: open the chat on the test model headless, send PROMPT, measure, print one JSON line."""
    from textual import events

    from edgellm import paths
    from edgellm.cli.main import build_parser
    from edgellm.session.events import Timings
    from edgellm.session.flags import flags_of
    from edgellm.session.history import History
    from edgellm.tui.app import EdgeApp
    from edgellm.tui.screens.chat import ChatScreen
    from edgellm.tui.widgets.prompt import PromptInput

    enter_at: list[float] = []
    first_on_screen: list[float] = []
    key_delays: list[float] = []
    sent: dict[str, float] = {}
    original_key = PromptInput._on_key
    original_pieces = ChatScreen.on_reply_pieces

    async def timed_key(self, event: events.Key) -> None:
        if event.key == "enter" and not enter_at:
            enter_at.append(time.perf_counter())
        elif event.character in sent:
            key_delays.append(time.perf_counter() - sent.pop(event.character))
            event.stop()
            event.prevent_default()
            return
        await original_key(self, event)

    async def timed_pieces(self, message) -> None:
        await original_pieces(self, message)
        if not first_on_screen and self.reply is not None and self.reply.content:
            first_on_screen.append(time.perf_counter())

    PromptInput._on_key = timed_key  # type: ignore[method-assign]
    ChatScreen.on_reply_pieces = timed_pieces  # type: ignore[method-assign]
    settings = flags_of(
        build_parser().parse_args(
            ["chat", "-n", str(tokens), "--ignore-eos", "-t", str(threads), "-c", "2048", "--temp", "0"]
        )
    )
    app = EdgeApp(settings, history=History(paths.history_path()), model=str(TEST_MODEL), start="chat")

    def press_keys() -> None:
        """The terminal's input thread: a key now and then, posted as the driver posts them."""
        letters = iter("abcdefghijklmnopqrstuvwxyz" * 50)
        while app.session is not None and app.session.busy:
            letter = next(letters)
            sent[letter] = time.perf_counter()
            app.post_message(events.Key(letter, letter))  # as the driver's input thread posts them
            time.sleep(KEY_EVERY_S)

    async def drive() -> Timings:
        async with app.run_test(size=(120, 40)) as pilot:
            while app.session is None or not isinstance(app.screen, ChatScreen) or app.screen.session is None:
                await pilot.pause(0.05)
            prompt = app.screen.query_one(PromptInput)
            prompt.text = PROMPT
            await pilot.press("enter")
            while not app.session.busy and app.screen.reply is None and not app.session.stats.replies:
                await pilot.pause(0.01)
            presser = threading.Thread(target=press_keys, daemon=True)
            presser.start()
            while app.session.busy or app.screen.reply is not None:
                await pilot.pause(0.25)  # seldom: the bench's own polling is work the app would not do
            presser.join()
            return app.session.stats.replies[-1]

    timings = asyncio.run(drive()).as_dict()
    print(
        json.dumps(
            {
                "tokens_per_s": timings["tokens_per_s"],
                "ttft_ms": timings["ttft_ms"],
                "prompt_tokens": timings["prompt_tokens"],
                "enter_to_screen_ms": (first_on_screen[0] - enter_at[0]) * 1000,
                "key_delays_ms": [delay * 1000 for delay in key_delays],
            }
        )
    )


def measure_tui(threads: int, tokens: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(threads), "--tokens", str(tokens)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "EDGELLM_HOME": home},
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_run(threads: int, tokens: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgellm",
                "run",
                "-m",
                str(TEST_MODEL),
                "-p",
                RUN_PROMPT,
                "-n",
                str(tokens),
                "--ignore-eos",
                "-t",
                str(threads),
                "-c",
                "2048",
                "--temp",
                "0",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "EDGELLM_HOME": home},
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def first_frame_s() -> float:
    """From starting the process to the home screen's first frame (Textual's Ready), headless."""
    code = (
        "import edgellm.cli.main\n"
        "from edgellm.tui.app import EdgeApp\n"
        "from edgellm.session.flags import flags_of\n"
        "class FirstFrame(EdgeApp):\n"
        "    def on_ready(self):\n"
        "        self.exit()\n"
        "FirstFrame(flags_of(edgellm.cli.main.build_parser().parse_args([]))).run(headless=True, size=(120, 40))\n"
    )
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, env={**os.environ, "EDGELLM_HOME": home}
        )
        return time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def thread_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of thread counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of thread counts: {text!r}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument(
        "--threads-list",
        type=thread_counts,
        default=[2, 1],
        metavar="N[,N...]",
        help="the thread counts to measure at, in this order (default 2,1)",
    )
    parser.add_argument("--child", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    add_json_flag(parser)
    options = parser.parse_args()
    if options.child:
        child(options.child, options.tokens)
        return
    findings = Findings("tui", "The TUI against edgellm run: decode, first token, key presses, start-up")
    print(f"TUI vs edgellm run: {options.tokens} tokens, {options.rounds} rounds, {os.cpu_count()} CPUs")
    for threads in options.threads_list:
        tui, run = [], []
        for _ in range(options.rounds):
            run.append(measure_run(threads, options.tokens))
            tui.append(measure_tui(threads, options.tokens))
        decode_ratio = median([t["tokens_per_s"] for t in tui]) / median([r["tokens_per_s"] for r in run])
        run_ttft = median([r["ttft_ms"] for r in run])
        enter = median([t["enter_to_screen_ms"] for t in tui])
        delays = [d for t in tui for d in t["key_delays_ms"]]
        p95 = percentile(delays, 0.95) if delays else None
        print(f"{threads} thread(s):")
        print(
            f"  decode t/s   run: {spread([r['tokens_per_s'] for r in run])}   "
            f"TUI: {spread([t['tokens_per_s'] for t in tui])}"
        )
        print(
            f"  decode TUI/run (medians): {decode_ratio:.3f}  "
            f"(goal >= 0.95: {'ok' if decode_ratio >= 0.95 else 'MISSED'})"
        )
        tui_ttft = median([t["ttft_ms"] for t in tui])
        print(
            f"  Enter to first token on screen: {enter:.0f} ms vs run's TTFT {run_ttft:.0f} ms "
            f"(prompt {tui[-1]['prompt_tokens']} vs {run[-1]['prompt_tokens']} tokens); goal <= "
            f"{1.1 * run_ttft + 50:.0f} ms: {'ok' if enter <= 1.1 * run_ttft + 50 else 'MISSED'}; "
            f"the TUI's own TTFT {tui_ttft:.0f} ms, so {enter - tui_ttft:.0f} ms between Enter and the screen"
        )
        if delays:
            print(
                f"  key press handled during generation: {len(delays)} presses, median {median(delays):.1f} ms, "
                f"p95 {p95:.1f} ms, max {max(delays):.1f} ms  (goal p95 <= 100 ms: "
                f"{'ok' if p95 <= 100 else 'MISSED'})"
            )
        else:
            print("  key press handled during generation: no press landed while the reply streamed (more --tokens)")
            findings.note(f"{threads} thread(s): no key press landed while the reply streamed; use more --tokens")
        at = f"{threads} thread{'s' if threads > 1 else ''}"
        run_label = f"decode, edgellm run ({at})"
        ttft_label = f"TTFT, edgellm run ({at})"
        findings.figure(run_label, median([r["tokens_per_s"] for r in run]), "tokens/s")
        findings.figure(f"decode, TUI ({at})", median([t["tokens_per_s"] for t in tui]), "tokens/s")
        findings.figure(f"decode TUI / run ({at})", decode_ratio, "ratio", anchor=run_label)
        findings.figure(ttft_label, run_ttft, "ms")
        findings.figure(f"TTFT, TUI's own ({at})", tui_ttft, "ms")
        findings.figure(f"Enter to first token on screen ({at})", enter, "ms")
        findings.figure(
            f"key press delay during generation, median ({at}, {len(delays)} presses)",
            median(delays) if delays else None,
            "ms",
        )
        findings.figure(f"key press delay during generation, p95 ({at})", p95, "ms")
        findings.goal(f"decode TUI / run ≥ 0.95 ({at})", decode_ratio, ">=", 0.95)
        findings.goal(
            f"Enter to first token on screen ≤ 1.1 × run's TTFT + 50 ms = {1.1 * run_ttft + 50:.0f} ms ({at})",
            enter,
            "<=",
            1.1 * run_ttft + 50,
        )
        findings.goal(f"key press delay during generation, p95 ≤ 100 ms ({at})", p95, "<=", 100)
    python = []
    for _ in range(options.rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        python.append(time.perf_counter() - started)
    frames = [first_frame_s() for _ in range(options.rounds)]
    print(
        f"start-up to the home screen's first frame: {spread(frames)} s ({median(frames) / median(python):.1f}x "
        f"python -c pass; goal <= 1 s: {'ok' if median(frames) <= 1 else 'MISSED'})"
    )
    findings.figure("start-up, python -c pass", median(python), "s")
    findings.figure("start-up to the home screen's first frame", median(frames), "s")
    findings.figure(
        "start-up to first frame / python -c pass",
        median(frames) / median(python),
        "ratio",
        anchor="start-up, python -c pass",
    )
    findings.goal("start-up to the home screen's first frame ≤ 1 s", median(frames), "<=", 1)
    findings.note(
        f"medians of {options.rounds} round(s), {options.tokens} tokens, thread counts "
        f"{', '.join(map(str, options.threads_list))}, {os.cpu_count()} CPUs; run and TUI alternate in "
        f"fresh processes; a key press every {KEY_EVERY_S * 1000:.0f} ms while the reply streams"
    )
    findings.save(options.json)


if __name__ == "__main__":
    main()
