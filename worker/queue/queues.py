"""The two Huey queues (parcels and periodic jobs) in one storage, and the pausable consumer.

The postmaster consumer checks the persisted pause flag before every dequeue: Huey has no pause
of its own, and `revoke_all` would throw parcels away.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from worker.lean_imports import hidden

with hidden("redis", "psycopg"):
    import huey.storage as huey_storage
    from huey import Huey
    from huey.consumer import Consumer, Scheduler, Worker, WorkerRecycle
    from huey.exceptions import HueyException
    from huey.storage import BaseStorage, PostgresStorage, RedisStorage, SqliteStorage

from worker.doorbells import QueueProbe, backend_of
from worker.layout import Layout
from worker.queue.errors import QueueDamaged, QueueError
from worker.schedules import PERIODIC_CHECK_SECONDS
from worker.settings import Settings

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


class SeerRedisStorage(RedisStorage):
    """Huey's Redis storage on a connection pool of our making: bounded connect and read
    times (a partition must not hang a consumer or `seer status`), TCP keepalives, TLS for
    rediss://, and keys named after the queue exactly (Huey would drop '.' and '-' from the
    name, so "seer-a" and "seera" would share a queue)."""

    def __init__(self, name: str, *, url: str, read_timeout: float, **kwargs: Any) -> None:
        import redis

        _bind_redis()
        options: dict[str, Any] = {
            "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
            # Longer than a BRPOP's wait, which the server ends itself.
            "socket_timeout": read_timeout + REDIS_CONNECT_TIMEOUT,
            "health_check_interval": 30,
        }
        if not url.startswith("unix:"):
            options["socket_keepalive"] = True  # a TCP option: a unix socket refuses it
        pool = redis.ConnectionPool.from_url(url, **options)
        super().__init__(
            name, read_timeout=read_timeout, connection_pool=pool, clean_name=False, **kwargs
        )

    def enqueue_many(self, messages: Iterable[bytes]) -> None:
        """Every message in one LPUSH: one round trip for a batch of doorbells."""
        batch = list(messages)
        if batch:
            self.conn.lpush(self.queue_key, *batch)

    def close(self) -> None:
        self.pool.disconnect()


def _bind_redis() -> None:
    """What huey.storage would have bound of redis, had it been imported with it
    (worker.lean_imports): its Redis storage checks and catches these names."""
    import redis
    import redis.exceptions

    huey_storage.ConnectionPool = redis.ConnectionPool
    huey_storage.Redis = redis.Redis
    huey_storage.ConnectionError = redis.exceptions.ConnectionError
    huey_storage.TimeoutError = redis.exceptions.TimeoutError
    RedisStorage.redis_client = redis.Redis  # bound when the class was made


class SeerPostgresStorage(PostgresStorage):
    """Huey's PostgreSQL storage, given the psycopg that huey.storage was imported without."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import psycopg

        huey_storage.psycopg = psycopg
        super().__init__(*args, **kwargs)


# How long a connection to Redis may take before the queue counts as unreachable.
REDIS_CONNECT_TIMEOUT = 3.0
# A BRPOP waits this long for a doorbell before the worker looks at the pause flag again.
REDIS_READ_TIMEOUT = 0.5


@dataclass(frozen=True)
class StorageChoice:
    """Which Huey storage class holds the queues, and how it is opened."""

    storage_class: type[BaseStorage]
    options: dict[str, Any] = field(default_factory=dict)


# A dequeue waits this long for a doorbell's NOTIFY before it looks at the pause flag again:
# a pause takes effect on every host within it.
POSTGRES_READ_TIMEOUT = 0.5


def queue_storage(settings: Settings, layout: Layout) -> StorageChoice:
    """The one place the queue's storage is chosen from the settings (QUEUE_CONNECTION)."""
    backend = backend_of(settings)
    if backend == "redis":
        return StorageChoice(
            SeerRedisStorage, {"url": settings.redis_url, "read_timeout": REDIS_READ_TIMEOUT}
        )
    if backend == "postgresql":
        # Huey's own PostgreSQL storage, in the ledger's database: SKIP LOCKED dequeues,
        # NOTIFY doorbells, and a reconnect after a server restart.
        return StorageChoice(
            SeerPostgresStorage,
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
        module = type(exc).__module__
        if module.startswith("redis"):
            # redis-py's errors, told by module so that a SQLite deployment never imports it.
            raise QueueError(_redis_reason(exc, address)) from exc
        # psycopg's errors, told by module so that a SQLite deployment never imports it.
        if not module.startswith("psycopg"):
            raise
        text = str(exc).strip()
        if type(exc).__name__ in ("OperationalError", "InterfaceError") or "connection" in text:
            reason = (text.splitlines() or [type(exc).__name__])[0]
            reason = reason.removeprefix("connection failed: ")
            raise QueueError(f"cannot reach the queue's database at {address}: {reason}") from exc
        raise QueueError(text) from exc


def _redis_reason(exc: BaseException, address: str | None) -> str:
    """One line for a redis-py error; it names the server, never the URL's password."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    name = type(exc).__name__
    if name == "AuthenticationError" or text.startswith(("NOAUTH", "WRONGPASS")):
        return (
            f"cannot reach the queue at {address}: Redis refused the password of REDIS_URL "
            "(or wants one)"
        )
    if name in ("ConnectionError", "TimeoutError", "BusyLoadingError", "AuthenticationError"):
        return f"cannot reach the queue at {address}: {text or name}"
    return f"the queue at {address} refused a command: {text or name}"


class QueueHealth:
    """Whether this process's queue answers, as its consumers' reads and writes find it.

    A Redis that is down fails every poll of every thread: this logs one line when the queue
    stops answering and one when it answers again, not one per poll, and knows since when
    (time.time()). `on_change(down_since, reason)` runs at each change (reason None: back).
    """

    def __init__(self, address: str | None) -> None:
        import threading

        self.address = address
        self.down_since: float | None = None
        self.reason: str | None = None
        self.on_change: Callable[[float | None, str | None], None] | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        import time

        reason = str(exc) if isinstance(exc, QueueError) else _describe(exc, self.address)
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since, self.reason = time.time(), reason
        log.warning("queue unreachable: %s; consumers keep retrying", reason)
        self._changed()

    def answered(self) -> None:
        import time

        with self._lock:
            if self.down_since is None:
                return
            since, self.down_since, self.reason = self.down_since, None, None
        log.warning(
            "queue reachable again: %s, after %.0f s unreachable", self.address, time.time() - since
        )
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.down_since, self.reason)
            except Exception as exc:  # the ledger may be down too: the log line stands
                log.error("cannot record the queue's state: %s", exc)


def _describe(exc: BaseException, address: str | None) -> str:
    """A driver's error as QueueError says it (through _translated), else its first line."""
    try:
        with _translated(address):
            raise exc
    except QueueError as translated:
        return str(translated)
    except BaseException:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class HealthWorker(Worker):
    """Huey's worker loop, with a queue that does not answer reported to the Huey's
    QueueHealth (one line per change, not a traceback per poll) and backed off as Huey
    does."""

    def loop(self, now: Any = None) -> None:
        health: QueueHealth = self.huey.health
        try:
            task = self.huey.dequeue()
        except HueyException as exc:
            # The storage answered with a task this process does not know (another release, or
            # another deployment on the same queue name): not an outage. It is dropped, as
            # Huey would; a doorbell it was costs only delay.
            health.answered()
            self._logger.error("dropped a task this consumer does not know: %s", exc)
            return
        except Exception as exc:
            health.failed(exc)
            self.sleep()
            return
        health.answered()
        if task is None:
            if not self.huey.storage.blocking:
                self.sleep()
            return
        self.delay = self.default_delay
        self.task_count += 1
        try:
            self.huey.execute(task, now)
        except Exception:
            self._logger.exception("Unhandled error during execution of task %s.", task.id)
        if self.max_tasks and self.task_count >= self.max_tasks:
            self._logger.info("Worker reached max tasks (%d), exiting.", self.max_tasks)
            raise WorkerRecycle()


class PausableWorker(HealthWorker):
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


class HealthScheduler(Scheduler):
    """Huey's scheduler loop (delayed doorbells, and the periodic jobs where enabled), with
    a queue that does not answer reported to QueueHealth instead of a traceback a second."""

    _next_loop: float  # Huey's, set in its __init__
    _next_periodic: float

    def loop(self, now: Any = None) -> None:
        current = self._next_loop
        self._next_loop += self.interval
        if self._next_loop < time.monotonic():
            self._next_loop = time.monotonic()
            return
        health: QueueHealth = self.huey.health
        try:
            for task in self.huey.read_schedule(now):
                self.huey.enqueue(task)
        except HueyException as exc:  # a task of another release: not an outage
            self._logger.error("dropped a scheduled task this consumer does not know: %s", exc)
        except Exception as exc:
            # A task popped from the schedule and not enqueued is a lost doorbell: its
            # parcel is rung again by the check for due parcels without one.
            health.failed(exc)
        if self.periodic and self._next_periodic <= time.monotonic():
            # Skip checks missed during a stall (e.g. suspend) to avoid dupes, as Huey does.
            while self._next_periodic <= time.monotonic():
                self._next_periodic += self.periodic_task_seconds
            self.enqueue_periodic_tasks(now)
        self.sleep_for_interval(current, self.interval)

    def enqueue_periodic_tasks(self, now: Any) -> None:
        health: QueueHealth = self.huey.health
        for task in self.huey.read_periodic(now):
            try:
                self.huey.enqueue(task)
            except Exception as exc:
                health.failed(exc)
                return  # the rest would fail alike; the next check tries again


class SignalsFirstConsumer(Consumer):
    """Huey's consumer with its signal handlers set before its threads start, not after.

    A worker thread's start-up hook registers the consumer while Huey is still starting the
    others: a SIGINT (a graceful stop) in that window was a KeyboardInterrupt, an exit with a
    traceback and no shutdown hooks, and a registration left behind. The handlers only note
    the signal; the consumer's loop acts on it once the start is done.
    """

    def start(self) -> None:
        self._set_signal_handlers()
        super().start()


class PausableConsumer(SignalsFirstConsumer):
    worker_class = PausableWorker
    scheduler_class = HealthScheduler


class PostmasterHuey(Huey):
    """Huey for the parcel queue: its consumer's workers honour the pause flag."""

    pause_check: Callable[[], bool] | None = None
    health: QueueHealth

    def is_paused(self) -> bool:
        return self.pause_check() if self.pause_check else False

    def create_consumer(self, **options: Any) -> Consumer:
        return PausableConsumer(self, **options)


class TickingScheduler(HealthScheduler):
    """Checks the periodic jobs every second instead of Huey's 60 s.

    A rule fires at the first check in a new slot (TICK seconds at the shortest). Checking
    only every TICK seconds put checks near the slot boundaries, where jitter made two checks
    fall in one slot and skip the next: a 5 s job (the reaper, which re-rings lost doorbells)
    then ran 10 s apart. A repeat check within a slot costs no ledger read."""

    periodic_task_seconds = PERIODIC_CHECK_SECONDS


class QuietRoutineLines(logging.Filter):
    """Drops Huey's routine INFO lines: the two per task ("Executing", "executed in") and the
    scheduler's "Enqueueing periodic task" at every check (tens of KB an hour).
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


class SchedulerConsumer(SignalsFirstConsumer):
    worker_class = HealthWorker
    scheduler_class = TickingScheduler


class SchedulerHuey(Huey):
    """Huey for the periodic jobs; its rules (worker.schedules) fire once per slot."""

    health: QueueHealth

    def create_consumer(self, **options: Any) -> Consumer:
        return SchedulerConsumer(self, **options)


class Queues:
    """The parcel queue and the periodic-jobs queue: what the rest of Seer knows of Huey.

    A delivery task is a doorbell carrying one parcel id; the ledger decides what is
    delivered. Any process can ring (the CLI, the console); only a consumer process sets the
    delivery job that runs when a doorbell is taken (worker.queue.tasks.register).
    """

    def __init__(
        self,
        postmaster: PostmasterHuey,
        scheduler: SchedulerHuey,
        address: str | None = None,
        *,
        backend: str = "sqlite",
        shown_as: str = "",
    ) -> None:
        self.address = address  # what the storage's errors name: host:port, redis://host:port
        self.backend = backend  # "sqlite", "postgresql" or "redis"
        self.shown_as = shown_as or address or ""  # Settings.queue_address
        self.postmaster = postmaster
        self.scheduler = scheduler
        # One per process, shared by both Hueys' consumers (a process runs one of them).
        self.health = QueueHealth(address)
        postmaster.health = scheduler.health = self.health
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
        if isinstance(storage, (SeerSqliteStorage, SeerRedisStorage)):
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

    def scheduler_pending_count(self) -> int:
        """Periodic jobs enqueued and not yet taken by a scheduler consumer."""
        with _translated(self.address):
            return self.scheduler.pending_count()

    def probe(self, *, depths: bool = True) -> QueueProbe:
        """One look at the queue's storage: reachable or why not, one round trip's latency,
        both queues' depths (`depths`; a count of a SQLite queue grows with it), and on Redis
        how it persists. Never raises for the storage's errors."""
        try:
            with _translated(self.address):
                if isinstance(self.postmaster.storage, RedisStorage):
                    # The first PING of a fresh pool pays the TCP (and TLS) connect: the
                    # latency an operator wants is a round trip's.
                    self._round_trip()
                started = time.perf_counter()
                self._round_trip()
                latency = time.perf_counter() - started
                counted = (
                    {
                        self.postmaster.name: self.postmaster.pending_count(),
                        self.scheduler.name: self.scheduler.pending_count(),
                    }
                    if depths
                    else {}
                )
                persistence, warnings = self._persistence()
        except QueueError as exc:
            return QueueProbe(self.backend, self.shown_as, False, error=str(exc))
        return QueueProbe(
            self.backend,
            self.shown_as,
            True,
            latency=latency,
            depths=counted,
            persistence=persistence,
            warnings=warnings,
        )

    def _round_trip(self) -> None:
        storage = self.postmaster.storage
        if isinstance(storage, RedisStorage):
            storage.conn.ping()
        else:
            storage.enqueued_items(limit=1)

    def _persistence(self) -> tuple[str | None, tuple[str, ...]]:
        storage = self.postmaster.storage
        if not isinstance(storage, RedisStorage):
            return "disk", ()
        return redis_persistence(storage.conn)

    def close(self) -> None:
        """Lets go of the storage's connections (Redis's pool); the queues stay usable."""
        storage = self.postmaster.storage
        if isinstance(storage, SeerRedisStorage):
            storage.close()

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


def redis_persistence(conn: Any) -> tuple[str | None, tuple[str, ...]]:
    """How a Redis keeps its keys across a restart, and what an operator should be told:
    ("aof" | "rdb" | "aof+rdb" | "none" | None when it cannot be told, warnings)."""
    import redis

    warnings: list[str] = []
    try:
        config = conn.config_get("appendonly") | conn.config_get("save")
        config |= conn.config_get("maxmemory") | conn.config_get("maxmemory-policy")
    except redis.exceptions.ResponseError:
        # CONFIG is often disabled on managed Redis: INFO tells about AOF at least.
        info = conn.info("persistence")
        aof = bool(info.get("aof_enabled"))
        return ("aof" if aof else None), (
            () if aof else ("cannot tell whether Redis persists the queue (CONFIG is not allowed)",)
        )
    aof = config.get("appendonly") == "yes"
    rdb = bool(str(config.get("save", "")).strip())
    kept = "aof+rdb" if aof and rdb else "aof" if aof else "rdb" if rdb else "none"
    if kept == "none":
        warnings.append(
            "Redis persists nothing (appendonly no, save ''): a restart loses the doorbells; "
            "delivery is delayed, never lost"
        )
    elif not aof:
        warnings.append(
            "Redis keeps only snapshots (no appendonly): a restart loses the doorbells since "
            "the last one; delivery is delayed, never lost"
        )
    policy = str(config.get("maxmemory-policy", "noeviction"))
    if str(config.get("maxmemory", "0")) != "0" and policy != "noeviction":
        warnings.append(
            f"Redis evicts keys when full (maxmemory-policy {policy}): doorbells may be "
            "evicted; delivery is delayed, never lost"
        )
    return kept, tuple(warnings)


def build_queues(settings: Settings, layout: Layout) -> Queues:
    choice = queue_storage(settings, layout)
    storage = {"storage_class": choice.storage_class, **choice.options}
    backend = backend_of(settings)
    address = {
        "postgresql": settings.database_address,
        "redis": settings.queue_address,
    }.get(backend)
    # Huey's storage creates its tables when it is built: a damaged file fails here.
    with _translated(address):
        # results=False: outcomes are recorded in the ledger, not in Huey's result store.
        postmaster = PostmasterHuey(settings.postmaster_queue, results=False, **storage)
        # Local time, as cron has it: schedules are read in the server's time zone.
        scheduler = SchedulerHuey(settings.scheduler_queue, results=False, utc=False, **storage)
    return Queues(postmaster, scheduler, address, backend=backend, shown_as=settings.queue_address)
