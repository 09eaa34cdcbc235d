"""`python -m edgellm` runs the command line."""

import sys

try:
    from edgellm.cli.main import main

    sys.exit(main())
except KeyboardInterrupt:  # Ctrl-C before the command line's own handling starts (while it imports)
    print("\nedgellm: interrupted", file=sys.stderr)
    sys.exit(130)
