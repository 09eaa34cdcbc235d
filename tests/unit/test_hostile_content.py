"""Names from someone who means harm, pure: a Hub listing's file names that climb out of the repo's folder are told
apart from those that stay in it. Refused for real (pull, plan, chat): tests/integration/test_hostile_content.py."""

from __future__ import annotations

import pytest

from edgellm.hub.files import leaves_the_repo


@pytest.mark.parametrize(
    "path, leaves",
    [
        ("model-Q4_K_M.gguf", False),
        ("sub/dir/model.gguf", False),
        ("..model.gguf", False),
        ("../model.gguf", True),
        ("sub/../../model.gguf", True),
        ("/etc/model.gguf", True),
        ("C:/model.gguf", True),
        ("sub\\..\\model.gguf", True),
        ("sub//model.gguf", True),
        ("./model.gguf", True),
        ("", True),
        ("model\n.gguf", True),
    ],
)
def test_names_that_leave_the_repo(path: str, leaves: bool) -> None:
    assert leaves_the_repo(path) == leaves
