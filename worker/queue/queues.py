"""The two Huey queues (parcels and periodic jobs) in one storage, and the pausable consumer.

This module and worker/queue/tasks.py are the only ones that know Huey. The postmaster consumer
checks the persisted pause flag before every dequeue: Huey has no pause of its own, and
`revoke_all` would throw parcels away.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from huey import Huey
from huey.consumer import Consumer, Scheduler, Worker
from huey.storage import SqliteStorage

from worker.layout import Layout
from worker.schedules import TICK
from worker.settings import Settings

log = logging.getLogger("seer.queues")

PAUSED_POLL_SECONDS = 0.5


class SeerSqliteStorage(SqliteStorage):
    """Huey's SQLite storage with the same durability setting as the ledger.

    Huey's own `fsync` option knows only FULL or OFF; NORMAL (safe against crashes, not
    power loss) is what SEER_SQLITE_SYNCHRONOUS=normal asks of both databases.
    """

    def __init__(self, *args, synchronous: str = "full", **kwargs) -> None:
        self._synchronous = synchronous
        super().__init__(*args, **kwargs)

    def _create_connection(self) -> sqlite3.Connection:
        conn = super()._create_connection()
        conn.execute(f"pragma synchronous={self._synchronous.upper()}")
        return conn


class PausableWorker(Worker):
    """A Huey worker that takes no new task while its Huey's `is_paused()` says so."""

    def loop(self, now=None):
        try:
            paused = self.huey.is_paused()
        except Exception:
            # An unreadable flag must neither stop delivery for good nor take parcels blindly.
            self._logger.exception("cannot read the pause flag; waiting")
            paused = True
        if paused:
            self.stop_flag.wait(PAUSED_POLL_SECONDS)
            return
        super().loop(now)


class PausableConsumer(Consumer):
    worker_class = PausableWorker


class PostmasterHuey(Huey):
    """Huey for the parcel queue: its consumer's workers honour the pause flag."""

    pause_check: Callable[[], bool] | None = None

    def is_paused(self) -> bool:
        return self.pause_check() if self.pause_check else False

    def create_consumer(self, **options) -> Consumer:
        return PausableConsumer(self, **options)


class TickingScheduler(Scheduler):
    """Checks the periodic jobs every TICK seconds instead of Huey's 60."""

    periodic_task_seconds = TICK


class QuietRoutineLines(logging.Filter):
    """Drops Huey's routine INFO lines: the two per task ("Executing", "executed in") and the
    scheduler's "Enqueueing periodic task" at every check (TICK seconds: tens of KB an hour).
    Warnings and errors, and the consumer's start and stop lines, stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if record.name == "huey":
            return False
        return not (
            record.name == _SCHEDULER_LOGGER
            and str(record.msg).startswith("Enqueueing periodic task")
        )


_SCHEDULER_LOGGER = f"huey.consumer.{TickingScheduler.process_name}"


def quiet_huey_logging() -> None:
    """Installs QuietRoutineLines on the loggers Huey writes those lines to (once).

    A logger's filter sees only the records made on that logger, not its children's, so each
    gets its own; huey_consumer configures the "huey" logger later, and a filter survives that.
    """
    for name in ("huey", _SCHEDULER_LOGGER):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietRoutineLines) for f in logger.filters):
            logger.addFilter(QuietRoutineLines())


class SchedulerConsumer(Consumer):
    scheduler_class = TickingScheduler


class SchedulerHuey(Huey):
    """Huey for the periodic jobs; its rules (worker.schedules) fire once per slot."""

    def create_consumer(self, **options) -> Consumer:
        return SchedulerConsumer(self, **options)


@dataclass(frozen=True)
class Queues:
    postmaster: PostmasterHuey
    scheduler: SchedulerHuey


def build_queues(settings: Settings, layout: Layout) -> Queues:
    if settings.queue_connection == "redis":
        raise NotImplementedError(
            "QUEUE_CONNECTION=redis is not supported yet: use sqlite (the default)"
        )
    storage = {
        "storage_class": SeerSqliteStorage,
        "filename": str(layout.queue_db),
        "synchronous": settings.sqlite_synchronous,
        "timeout": 10,
        # Without AUTOINCREMENT SQLite may reuse a deleted rowid and break FIFO order.
        "strict_fifo": True,
    }
    # results=False: outcomes are recorded in the ledger, not in Huey's result store.
    postmaster = PostmasterHuey(settings.postmaster_queue, results=False, **storage)
    # Local time, as cron has it: schedules are read in the server's time zone.
    scheduler = SchedulerHuey(settings.scheduler_queue, results=False, utc=False, **storage)
    return Queues(postmaster, scheduler)
