"""Every bad input: one line on stderr naming the problem and the way out, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import assert_one_line_error, edgellm


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(
        edgellm("run", "-m", str(tmp_path / "nope.gguf"), "-p", "x"), "no such file", "check the path"
    )


def test_directory(tmp_path: Path) -> None:
    assert_one_line_error(edgellm("run", "-m", str(tmp_path), "-p", "x"), "is a directory")


def test_text_file_named_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("I am not a model\n")
    assert_one_line_error(edgellm("run", "-m", str(fake), "-p", "x"), "not a GGUF file", "pass a GGUF model file")


def test_truncated_gguf(tmp_path: Path, test_model: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with open(test_model, "rb") as handle:
        cut.write_bytes(handle.read(50_000_000))
    assert_one_line_error(edgellm("run", "-m", str(cut), "-p", "x"), "truncated", "download or copy it again")


def test_unknown_architecture(tmp_path: Path) -> None:
    from edgellm.convert.tinymodel import write_tiny_llama

    model = write_tiny_llama(tmp_path / "alien.gguf", architecture="notarealarch")
    assert_one_line_error(edgellm("run", "-m", str(model), "-p", "x"), "architecture 'notarealarch' is not supported")


def test_unknown_flag(test_model: Path) -> None:
    assert_one_line_error(
        edgellm("run", "-m", str(test_model), "-p", "x", "--frobnicate"),
        "unrecognized arguments: --frobnicate",
        "--help",
    )


def test_context_above_trained(test_model: Path) -> None:
    assert_one_line_error(
        edgellm("run", "-m", str(test_model), "-p", "x", "-c", "50000"),
        "-c 50000 is above the model's trained context of 32768",
        "use -c 32768 or less",
    )


@pytest.mark.parametrize(
    "flag, value, needle",
    [
        ("-t", "0", "-t/--threads: '0': must be 1 or more"),
        ("-t", "two", "-t/--threads: 'two': not a number"),
        ("-ngl", "some", "must be auto, all or a layer count"),
        ("--kv", "q5_1", "must be one of f16, q8_0, q4_0"),
        ("--top-p", "1.5", "must be between 0 and 1"),
    ],
)
def test_bad_flag_values(test_model: Path, flag: str, value: str, needle: str) -> None:
    assert_one_line_error(edgellm("run", "-m", str(test_model), "-p", "x", flag, value), needle)


def test_quantized_kv_without_flash_attention(test_model: Path) -> None:
    assert_one_line_error(
        edgellm("run", "-m", str(test_model), "-p", "x", "--kv", "q4_0", "-fa", "off"), "needs flash attention"
    )


def test_no_model_and_no_prompt(test_model: Path) -> None:
    assert_one_line_error(edgellm("run", "-p", "x"), "no model given")
    assert_one_line_error(edgellm("run", "-m", str(test_model)), "no prompt")


def test_prompt_longer_than_context(test_model: Path) -> None:
    assert_one_line_error(
        edgellm("run", "-m", str(test_model), "-c", "64", "-p", "word " * 200), "does not leave room", "raise -c"
    )


@pytest.mark.parametrize(
    "config, needle",
    [
        ("threads = 0\n", "threads = 0: must be 1 or more"),
        ("colour = 'red'\n", "unknown setting 'colour'"),
        ("threads = \n", "is not valid TOML"),
    ],
)
def test_bad_config_file(test_model: Path, edgellm_home: Path, config: str, needle: str) -> None:
    edgellm_home.mkdir(parents=True, exist_ok=True)
    (edgellm_home / "config.toml").write_text(config)
    assert_one_line_error(edgellm("run", "-m", str(test_model), "-p", "x"), needle)
