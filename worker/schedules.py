"""When periodic jobs run: every N seconds, or once a minute, at most once per slot.

Huey checks periodic tasks once a minute and its crontab matches whole minutes. The scheduler
consumer checks every TICK seconds instead, and each rule here fires at the first check that
falls in a new slot (an interval, or a matching minute), so a job runs once per slot however
the checks drift. A slot missed while the consumer was down is not replayed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

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


class Cron:
    """A crontab (minute hour day month weekday) read strictly, in the server's local time.

    Huey's crontab() silently drops a piece it cannot read ('5,abc' runs at minute 5); this
    refuses the whole expression instead, saying which piece is wrong.
    """

    FIELDS = ("minute", "hour", "day", "month", "day_of_week")

    def __init__(self, expression: str) -> None:
        from huey import crontab

        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(
                "a crontab of 5 fields (minute hour day month weekday), e.g. '0 */6 * * *'"
            )
        for name, part in zip(self.FIELDS, parts, strict=True):
            try:
                crontab(**{name: part}, strict=True)
            except ValueError:
                raise ValueError(
                    "a crontab of 5 valid fields (minute hour day month weekday), e.g. "
                    f"'0 */6 * * *'; its {name.replace('_', ' ')} field {part!r} is not valid"
                ) from None
            for low, high in re.findall(r"(\d+)-(\d+)", part):
                if int(low) > int(high):
                    # Huey wraps it round (5-1: 5 to 59, then 0 to 1); cron(8) refuses it.
                    # Taken as a typo: say what it would mean.
                    raise ValueError(
                        f"a crontab whose ranges go up; its {name.replace('_', ' ')} field "
                        f"{part!r} has {low}-{high}, which goes down (write two ranges, such "
                        "as 5-59,0-1, if a wrap-around is meant)"
                    )
        self.expression = " ".join(parts)
        self._matches = crontab(*parts, strict=True)
        self._last_slot: int | None = None
        if not self._any_day(crontab("0", "0", *parts[2:], strict=True)):
            raise ValueError(
                f"a crontab that fires: '{self.expression}' names no day that exists "
                "(day 31 of a 30-day month, 30 February…)"
            )

    @staticmethod
    def _any_day(matches: Callable[[dt.datetime], bool]) -> bool:
        # 28 years hold every (date, weekday) pair, leap days included: 10,227 checks.
        day = dt.datetime(2024, 1, 1)
        for _ in range(28 * 366):
            if matches(day):
                return True
            day += dt.timedelta(days=1)
        return False

    def matches_minute(self, when: dt.datetime) -> bool:
        return bool(self._matches(when.replace(second=0, microsecond=0)))

    def slot(self, when: dt.datetime) -> int:
        return int(when.timestamp()) // 60

    def __call__(self, when: dt.datetime) -> bool:
        slot = self.slot(when)
        if slot == self._last_slot or not self.matches_minute(when):
            return False
        self._last_slot = slot
        return True

    def next_after(self, when: dt.datetime) -> dt.datetime | None:
        """The next matching minute after `when`, within a year (None if there is none)."""
        minute = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if self.matches_minute(minute):
                return minute
            minute += dt.timedelta(minutes=1)
        return None

    def describe(self) -> str:
        return f"cron {self.expression}"
