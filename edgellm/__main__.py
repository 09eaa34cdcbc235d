"""`python -m edgellm` runs the command line."""

import sys

from edgellm.cli import main

sys.exit(main())
