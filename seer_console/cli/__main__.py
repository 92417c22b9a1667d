"""`python -m seer_console.cli`: the `seer` command without its script."""

import sys

from seer_console.cli import main

sys.exit(main())
