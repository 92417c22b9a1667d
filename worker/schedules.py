"""When periodic jobs run: every N seconds, or once a minute, at most once per slot.

Huey checks periodic tasks once a minute and its crontab matches whole minutes. The scheduler
consumer checks every second instead (PERIODIC_CHECK_SECONDS), and each rule here fires at the
first check that falls in a new slot (an interval of TICK seconds or more, or a matching
minute), so a job runs once per slot however the checks drift, within a second of its slot's
start. A slot missed while the consumer was down is not replayed.
"""

from __future__ import annotations

import datetime as dt

from cronsim import CronSim, CronSimError

TICK = 5  # the shortest interval of a periodic job (the reaper's)
PERIODIC_CHECK_SECONDS = 1  # between the scheduler's checks of the periodic jobs


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

    cronsim (as cron(8) reads it: a day-of-month and a weekday both given means either) parses
    and finds the next run in one step. Huey's crontab() silently dropped a piece it could not
    read ('5,abc' ran at minute 5) and finding the next run meant trying up to 527,040 minutes.
    A bad piece refuses the whole expression, naming the field; so does a range that goes down
    (5-1) and a day that never comes (31 February).
    """

    FIELDS = ("minute", "hour", "day", "month", "day_of_week")
    # cronsim's words for its fields, in its messages.
    _CRONSIM_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")

    def __init__(self, expression: str) -> None:
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(
                "a crontab of 5 fields (minute hour day month weekday), e.g. '0 */6 * * *'"
            )
        self.expression = " ".join(parts)
        try:
            CronSim(self.expression, dt.datetime(2026, 1, 1))
        except CronSimError as exc:
            said = str(exc)
            index = next(
                (n for n, word in enumerate(self._CRONSIM_FIELDS) if said.endswith(word)), None
            )
            if index is None:
                raise ValueError(f"a valid crontab, e.g. '0 */6 * * *' ({said})") from None
            name = self.FIELDS[index].replace("_", " ")
            hint = " (or it names no day that exists, as 31 February)" if index == 2 else ""
            raise ValueError(
                "a crontab of 5 valid fields (minute hour day month weekday), e.g. "
                f"'0 */6 * * *'; its {name} field {parts[index]!r} is not valid{hint}"
            ) from None
        self._last_slot: int | None = None

    def matches_minute(self, when: dt.datetime) -> bool:
        minute = when.replace(second=0, microsecond=0)
        return self.next_after(minute - dt.timedelta(minutes=1)) == minute

    def slot(self, when: dt.datetime) -> int:
        return int(when.timestamp()) // 60

    def __call__(self, when: dt.datetime) -> bool:
        slot = self.slot(when)
        if slot == self._last_slot or not self.matches_minute(when):
            return False
        self._last_slot = slot
        return True

    def next_after(self, when: dt.datetime) -> dt.datetime | None:
        """The next matching minute after `when` (None if there is none)."""
        return next(iter(CronSim(self.expression, when.replace(microsecond=0))), None)

    def describe(self) -> str:
        return f"cron {self.expression}"
