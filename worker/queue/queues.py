"""The two Huey queues (parcels and periodic jobs) in one storage, and the pausable consumer.

The postmaster consumer checks the persisted pause flag before every dequeue: Huey has no pause
of its own, and `revoke_all` would throw parcels away.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from huey import Huey
from huey.consumer import Consumer, Scheduler, Worker
from huey.storage import BaseStorage, PostgresStorage, SqliteStorage

from worker.layout import Layout
from worker.queue.errors import QueueDamaged, QueueError
from worker.schedules import TICK
from worker.settings import Settings, SettingsError

log = logging.getLogger("seer.queues")

PAUSED_POLL_SECONDS = 0.5


class SeerSqliteStorage(SqliteStorage):
    """Huey's SQLite storage with the same durability setting as the ledger.

    Huey's own `fsync` option knows only FULL or OFF; NORMAL (safe against crashes, not
    power loss) is what SEER_SQLITE_SYNCHRONOUS=normal asks of both databases.
    """

    def __init__(self, *args: Any, synchronous: str = "full", **kwargs: Any) -> None:
        self._synchronous = synchronous
        super().__init__(*args, **kwargs)

    def _create_connection(self) -> Any:  # Huey's sqlite3 connection
        conn = super()._create_connection()
        conn.execute(f"pragma synchronous={self._synchronous.upper()}")
        return conn

    def enqueue_many(self, messages: Iterable[bytes]) -> None:
        """Every message in one transaction: a commit per task would dominate sending a
        batch of parcels."""
        with self.db(commit=True) as cursor:
            cursor.executemany(
                "INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)",
                [(self.name, self.to_blob(m), 0) for m in messages],
            )


@dataclass(frozen=True)
class StorageChoice:
    """Which Huey storage class holds the queues, and how it is opened."""

    storage_class: type[BaseStorage]
    options: dict[str, Any] = field(default_factory=dict)


def check_supported(settings: Settings) -> None:
    """Refuses, as a settings error, the queue connections that are not built yet."""
    if settings.queue_connection == "redis":
        raise SettingsError(
            "QUEUE_CONNECTION='redis' is not allowed yet: Redis is not supported; use sqlite"
        )


# A dequeue waits this long for a doorbell's NOTIFY before it looks at the pause flag again:
# a pause takes effect on every host within it.
POSTGRES_READ_TIMEOUT = 0.5


def queue_storage(settings: Settings, layout: Layout) -> StorageChoice:
    """The one place the queue's storage is chosen from the settings (QUEUE_CONNECTION)."""
    check_supported(settings)
    if settings.queue_connection == "database" and settings.database_url:
        # Huey's own PostgreSQL storage, in the ledger's database: SKIP LOCKED dequeues,
        # NOTIFY doorbells, and a reconnect after a server restart.
        return StorageChoice(
            PostgresStorage,
            {
                "dsn": settings.database_url,
                "read_timeout": POSTGRES_READ_TIMEOUT,
                "connect_timeout": 5,
                "application_name": "seer-queue",
            },
        )
    return StorageChoice(
        SeerSqliteStorage,
        {
            "filename": str(layout.queue_db),
            "synchronous": settings.sqlite_synchronous,
            "timeout": 10,
            # Without AUTOINCREMENT SQLite may reuse a deleted rowid and break FIFO order.
            "strict_fifo": True,
        },
    )


@contextlib.contextmanager
def _translated(address: str | None = None) -> Iterator[None]:
    """Huey's storages raise their drivers' errors; they leave the queue as its own."""
    try:
        yield
    except sqlite3.OperationalError as exc:  # busy, locked, cannot open: not damage
        raise QueueError(str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise QueueDamaged(str(exc)) from exc
    except sqlite3.Error as exc:
        raise QueueError(str(exc)) from exc
    except Exception as exc:
        # psycopg's errors, told by module so that a SQLite deployment never imports it.
        if not type(exc).__module__.startswith("psycopg"):
            raise
        text = str(exc).strip()
        if type(exc).__name__ in ("OperationalError", "InterfaceError") or "connection" in text:
            reason = (text.splitlines() or [type(exc).__name__])[0]
            reason = reason.removeprefix("connection failed: ")
            raise QueueError(f"cannot reach the queue's database at {address}: {reason}") from exc
        raise QueueError(text) from exc


class PausableWorker(Worker):
    """A Huey worker that takes no new task while its Huey's `is_paused()` says so."""

    def loop(self, now: Any = None) -> None:
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

    def create_consumer(self, **options: Any) -> Consumer:
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

    def create_consumer(self, **options: Any) -> Consumer:
        return SchedulerConsumer(self, **options)


class Queues:
    """The parcel queue and the periodic-jobs queue: what the rest of Seer knows of Huey.

    A delivery task is a doorbell carrying one parcel id; the ledger decides what is
    delivered. Any process can ring (the CLI, the console); only a consumer process sets the
    delivery job that runs when a doorbell is taken (worker.queue.tasks.register).
    """

    def __init__(
        self, postmaster: PostmasterHuey, scheduler: SchedulerHuey, address: str | None = None
    ) -> None:
        self.address = address  # host:port of a queue on a server, for its errors
        self.postmaster = postmaster
        self.scheduler = scheduler
        self._delivery: Callable[[str], None] | None = None
        self.jobs_registered = False

        @postmaster.task(name="deliver")
        def deliver(parcel_id: str) -> None:
            if self._delivery is None:
                raise RuntimeError("no delivery job in this process: it only rings")
            self._delivery(parcel_id)

        self._deliver = deliver

    def set_pause_check(self, check: Callable[[], bool]) -> None:
        """What the postmaster consumer asks before every dequeue."""
        self.postmaster.pause_check = check

    def set_delivery(self, job: Callable[[str], None]) -> None:
        self._delivery = job

    def ring(self, parcel_ids: list[str], delay: float | None = None) -> None:
        """One doorbell per parcel id given; with `delay`, each rings that many seconds later.
        Raises QueueError (QueueDamaged if the storage is damaged)."""
        with _translated(self.address):
            self._ring(parcel_ids, delay)

    def _ring(self, parcel_ids: list[str], delay: float | None) -> None:
        if delay:
            for parcel_id in parcel_ids:
                self._deliver.schedule((parcel_id,), delay=delay)
            return
        storage = self.postmaster.storage
        if isinstance(storage, SeerSqliteStorage):
            storage.enqueue_many(
                self.postmaster.serialize_task(self._deliver.s(p)) for p in parcel_ids
            )
            return
        for parcel_id in parcel_ids:
            self._deliver(parcel_id)

    def pending_count(self) -> int:
        """Doorbells waiting on the parcel queue."""
        with _translated(self.address):
            return self.postmaster.pending_count()

    def check(self) -> None:
        """Reads the queue's storage (one task at most): raises QueueError, QueueDamaged if it
        is damaged. Unlike counting, its cost does not grow with the queue (a count of 200,000
        doorbells took 30 ms of every console poll)."""
        with _translated(self.address):
            self.postmaster.storage.enqueued_items(limit=1)

    def initialize(self) -> None:
        """Creates the queue storage's schema (`seer init`); a no-op where there is none."""
        initialize = getattr(self.postmaster.storage, "initialize_schema", None)
        if initialize is not None:
            with _translated(self.address):
                initialize()


def build_queues(settings: Settings, layout: Layout) -> Queues:
    choice = queue_storage(settings, layout)
    storage = {"storage_class": choice.storage_class, **choice.options}
    address = settings.database_address if choice.storage_class is PostgresStorage else None
    # Huey's storage creates its tables when it is built: a damaged file fails here.
    with _translated(address):
        # results=False: outcomes are recorded in the ledger, not in Huey's result store.
        postmaster = PostmasterHuey(settings.postmaster_queue, results=False, **storage)
        # Local time, as cron has it: schedules are read in the server's time zone.
        scheduler = SchedulerHuey(settings.scheduler_queue, results=False, utc=False, **storage)
    return Queues(postmaster, scheduler, address)
