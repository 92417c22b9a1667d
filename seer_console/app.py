"""`seer-console`: the operations console (Textual). Not built yet: see issue 3."""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "seer-console: the console is not built yet; `seer status` shows the same state",
        file=sys.stderr,
    )
    return 1
