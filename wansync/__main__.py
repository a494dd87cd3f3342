"""`python -m wansync` runs the CLI (the tests start the daemon this way)."""

import sys

from .cli import main

sys.exit(main())
