"""When periodic jobs run: every N seconds, or once a minute, at most once per slot.

Huey checks periodic tasks once a minute and its crontab matches whole minutes. The scheduler
consumer checks every TICK seconds instead, and each rule here fires at the first check that
falls in a new slot (an interval, or a matching minute), so a job runs once per slot however
the checks drift. A slot missed while the consumer was down is not replayed.
"""

from __future__ import annotations

import datetime as dt

TICK = 5  # seconds between checks of the periodic jobs


class Every:
    """Every `seconds`, aligned to the clock: 15 s runs in the slots :00, :15, :30, :45."""

    def __init__(self, seconds: int) -> None:
        if seconds < TICK:
            raise ValueError(f"an interval must be at least {TICK} seconds")
        self.seconds = seconds
        self._last_slot: int | None = None

    def slot(self, when: dt.datetime) -> int:
        return int(when.timestamp()) // self.seconds

    def __call__(self, when: dt.datetime) -> bool:
        slot = self.slot(when)
        if slot == self._last_slot:
            return False
        self._last_slot = slot
        return True

    def next_after(self, when: dt.datetime) -> dt.datetime:
        return dt.datetime.fromtimestamp((self.slot(when) + 1) * self.seconds, tz=when.tzinfo)

    def describe(self) -> str:
        return f"every {self.seconds}s"
