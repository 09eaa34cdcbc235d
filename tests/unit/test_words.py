"""What edgellm says: reasons are data, and each front end words their ways out in its own terms; no sentence of the
pure core or the session layer names a flag."""

from __future__ import annotations

import ast

import pytest

from edgellm.cli.words import CLI
from edgellm.errors import ContextOverflow, DoesNotFit, EdgellmError, ModelFileError
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import PlanError, Wishes, plan
from edgellm.plan.spec import ModelSpec
from edgellm.reasons import Reason, reason
from edgellm.tui.words import TUI
from edgellm.words import PLAIN, SENTENCES, say
from tests.support import REPO

PACKAGE = REPO / "edgellm"
GIB = 2**30


def spec(layer_bytes: int = 132 * 2**20, n_layers: int = 32, trained_ctx: int = 131072) -> ModelSpec:
    return ModelSpec(
        path="/models/llama-Q4_K_M.gguf",
        architecture="llama",
        n_layers=n_layers,
        layer_bytes=(layer_bytes,) * n_layers,
        token_embd_bytes=500 * 2**20,
        output_bytes=500 * 2**20,
        tied_embeddings=False,
        n_embd=4096,
        n_ff=14336,
        n_head=32,
        n_head_kv=(8,) * n_layers,
        key_length=128,
        value_length=128,
        swa_layers=(False,) * n_layers,
        sliding_window=0,
        trained_ctx=trained_ctx,
        n_vocab=128256,
        file_type="Q4_K_M",
        has_chat_template=True,
        file_bytes=layer_bytes * n_layers + 2**30,
        n_tensors=291,
    )


def refusal(wishes: Wishes, profile: str = "raspberry-pi-4-4gb") -> Reason:
    with pytest.raises(PlanError) as refused:
        plan(resolve_profile(profile), spec(layer_bytes=30 * 2**20, n_layers=16), wishes)
    return refused.value.reason


def test_a_context_that_does_not_fit_is_worded_by_each_front_end() -> None:
    why = refusal(Wishes(ctx=131072))
    cli, tui, plain = say(why, CLI), say(why, TUI), say(why, PLAIN)
    fit = why["fit_ctx"]
    assert cli.startswith("the model needs ") and "with -c 131072 --kv f16 but raspberry-pi-4-4gb has" in cli
    assert cli.endswith(f"; -c {fit} fits (or --force)")
    assert "ctx-size 131072" in tui and tui.endswith(f"; ctx-size {fit} fits (or force)")
    assert f"a {fit}-token context fits" in plain and "-c" not in plain.split("; ")[-1]


def test_every_reason_the_code_makes_has_its_sentence() -> None:
    """Each reason("code", ...) written anywhere in edgellm is one `say` knows; a typo would print the bare code."""
    made = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "reason"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                made.add(node.args[0].value)
    assert made and made <= set(SENTENCES), made - set(SENTENCES)


def test_no_message_below_the_front_ends_names_a_flag() -> None:
    """The pure core, the services and the session layer say what went wrong and what would fit; the flag that
    changes it is the command line's to name (cli/words.py), the setting the TUI's (tui/words.py)."""
    flags = (
        "-c ",
        "-ngl",
        "--kv",
        "--force",
        "-fa ",
        "pass -c",
        "raise -c",
        "--offline",
        "--rpc",
        "-m PATH",
        "--profile",
        "--outtype",
        "--quant",
        "pass -o",
    )
    front_ends = ("cli", "tui", "server")
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in front_ends or path == PACKAGE / "session" / "flags.py":
            continue  # session/flags.py is the flags' own table: their names, parsers and config.toml keys
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found += [
                    f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}" for flag in flags if flag in node.value
                ]
    # bench's own request (--pp, --tg, --depth) has no other front end; everything else is worded by terms
    assert not [line for line in found if "--depth" not in line], found


def test_errors_carry_their_reason_and_say_it_plainly() -> None:
    why = refusal(Wishes(ctx=131072))
    error = DoesNotFit(reason("about", subject="model.gguf", reason=why), "model.gguf")
    assert str(error) == "model.gguf: " + say(why) and error.explain(CLI) == "model.gguf: " + say(why, CLI)
    assert error.as_reason().code == "about"
    plain = EdgellmError("a plain message")
    assert plain.explain(CLI) == "a plain message" and plain.as_reason() == reason("text", text="a plain message")
    overflow = ContextOverflow(reason("message_too_long", needed=900, available=400), 900, 400)
    assert overflow.explain(CLI).endswith("shorten it, or raise -c")
    assert overflow.explain(TUI).endswith("shorten it, or raise ctx-size")


def test_a_model_file_names_its_way_out_in_each_front_ends_terms() -> None:
    missing = ModelFileError("/nowhere.gguf: no such file", "/nowhere.gguf", "missing", way_out="model_missing")
    assert missing.explain(CLI) == (
        "/nowhere.gguf: no such file; check the path (-m takes a .gguf file or a store name: `edgellm ls`)"
    )
    assert missing.explain(TUI).endswith("pick a model on Home (F2) or Models (F3)")
    checkpoint = ModelFileError("config.json: missing: download the checkpoint again", "config.json", "missing")
    assert checkpoint.explain(CLI) == str(checkpoint)  # a checkpoint's message names its own way out


def test_the_plan_report_words_its_reasons_in_the_terms_given() -> None:
    from edgellm.plan import report

    pi = resolve_profile("raspberry-pi-5-8gb")
    chosen = plan(pi, spec(layer_bytes=30 * 2**20, n_layers=16), Wishes(ctx=2048, threads=2))
    cli = report.render(chosen, spec(layer_bytes=30 * 2**20, n_layers=16), pi, terms=CLI)
    assert "-c as asked (trained context 131072)" in cli and "-t as asked" in cli
    assert "ctx-size as asked" in report.render(chosen, spec(layer_bytes=30 * 2**20, n_layers=16), pi, terms=TUI)
    data = report.to_dict(chosen, spec(layer_bytes=30 * 2**20, n_layers=16), pi, terms=CLI)
    assert data["reason_codes"]["n_ctx"] == {"code": "ctx_asked", "trained": 131072}
    assert data["reasons"]["n_ctx"] == "-c as asked (trained context 131072)"


def test_reasons_are_data_that_compare_and_nest() -> None:
    inner = reason("kv_quantized", kv="q8_0", n_ctx=4096)
    outer = reason("about", subject="m.gguf", reason=inner)
    assert outer == reason("about", subject="m.gguf", reason=reason("kv_quantized", kv="q8_0", n_ctx=4096))
    assert {outer, outer} == {outer}  # hashable: notices are deduplicated
    assert outer.as_dict() == {
        "code": "about",
        "subject": "m.gguf",
        "reason": {"code": "kv_quantized", "kv": "q8_0", "n_ctx": 4096},
    }
    assert outer["reason"]["kv"] == "q8_0" and outer.get("missing") is None
