"""The base install leaves the server out (the `server` extra): `edgellm serve` then says what to install, one line,
exit 2, before it plans or loads anything."""

from __future__ import annotations

import importlib.util

import pytest

from edgellm.cli.main import main


def test_serve_without_the_server_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name in ("fastapi", "uvicorn") else real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    code = main(["serve", "-m", "/nonexistent/model.gguf"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "edgellm: error: edgellm serve needs fastapi and uvicorn, which this install leaves out: "
        "pip install 'edgellm[server]' (the user install, scripts/install.py --user, includes them)\n"
    )
