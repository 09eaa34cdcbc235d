"""How the command line opens a model: the opener's choice and notices on stderr, the budget table with -v."""

from __future__ import annotations

import sys

from edgellm.session import opening
from edgellm.cli.progress import ProgressLine
from edgellm.session.flags import ModelSettings


def plan_and_tell(settings: ModelSettings) -> opening.PlannedModel:
    """Plan the model the flags name (pulling it with a progress line if -hf names one not stored) and tell
    the person what the plan says; stdout stays for the model's text."""
    tell = ProgressLine()
    planned = opening.plan_model(settings, tell)
    if settings.verbose:
        print(planned.budget_table(), file=sys.stderr)
    for notice in planned.notices:
        tell(notice)
    return planned
