"""How the command line opens a model: through the model host, with the plan's notices on stderr (and the budget
table with -v) and download progress on a line of its own; stdout stays for the model's text."""

from __future__ import annotations

import sys

from edgellm.cli.progress import ProgressLine
from edgellm.cli.words import CLI
from edgellm.session.flags import Flags
from edgellm.session.host import ModelHost
from edgellm.session.opening import PlannedModel


def open_host(flags: Flags) -> tuple[ModelHost, PlannedModel]:
    """A host for the flags' model, planned (pulled with a progress line if -hf names one not stored) and told."""
    host = ModelHost(flags, report=ProgressLine())
    planned = host.plan()
    if flags.verbose:
        print(planned.budget_table(CLI), file=sys.stderr)
    for notice in planned.notices:
        host.report(notice)
    return host, planned
