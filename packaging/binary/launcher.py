"""The single binary's entry point: edgellm's command line, or one of its child modules when started as one."""

import sys

from edgellm_unpacked import settle  # the one-file binary's unpacked folder (standard library only)

settle(sys.executable)

from edgellm.engine.child import run_if_child  # noqa: E402

run_if_child(sys.argv)

from edgellm.cli.main import main  # noqa: E402  (a child never loads the command line)

sys.exit(main())
