"""A failure that repeats, said once, and its end said once: a loop that retries every few
seconds through an outage (a ledger, a queue, an object store) would otherwise write a line
at every try."""

from __future__ import annotations

import logging


class SaidOnce:
    """`failed(exc)` at each failed try, `worked()` at each good one: a warning at the first
    failure, an info line at the first success after it, nothing in between."""

    def __init__(self, log: logging.Logger, failing: str, again: str) -> None:
        self.log = log
        self.failing_text = failing
        self.again_text = again
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        if not self.failing:
            self.log.warning("%s: %s", self.failing_text, exc)
        self.failing = True

    def worked(self) -> None:
        if self.failing:
            self.log.info("%s", self.again_text)
        self.failing = False
