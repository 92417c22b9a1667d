"""Shared test helpers: wait by polling with a deadline, never by a fixed sleep; the ledger's
backends and the few questions about the schema that only a dialect can answer."""

from __future__ import annotations

import io
import itertools
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.ledger import Ledger
    from worker.runtime import Runtime


def poll(predicate: Callable[[], Any], timeout: float, step: float | None = None) -> Any:
    """Calls `predicate` until it returns something true or `timeout` passes; returns its last
    value either way. Without `step`, quickly at first and then every 0.1 s: most predicates
    query a ledger, and four test processes polling it every 20 ms through a long wait cost a
    core between them (the suite runs on two)."""
    deadline = time.monotonic() + timeout
    pause = step if step is not None else 0.005
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(pause)
        if step is None:
            pause = min(pause * 1.5, 0.1)


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    step: float | None = None,
) -> Any:
    """`poll`, failing the test when `timeout` passes first."""
    value = poll(predicate, timeout, step)
    if not value:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
    return value


def parcel(agent: str = "agent-1", n: int = 0, attachment: str | None = None) -> dict:
    body = {
        "to_agent_id": agent,
        "task_id": f"task-{n}",
        "stream": "command.delegation",
        "type": "pm.task.created",
        "envelope": {"body": f"parcel {n}", "metadata": {"n": n}},
    }
    if attachment is not None:
        body["attachments"] = {"notes.txt": {"content": attachment, "mime_type": "text/plain"}}
    return body


# -- the backends: ledger and queue --------------------------------------------------------------
# Every fixture that builds a storage root takes `ledger_backend` (tests/conftest.py): which
# ledger and which queue it runs on. A backend is added here, once, with what it needs to know.
# Only these helpers know a dialect.
#   sqlite            the SQLite ledger, its queue in queue.db (the embedded default)
#   postgresql        the ledger on PostgreSQL, the queue in the same database
#   redis             the SQLite ledger, the queue on Redis (queue-facing tests)
#   postgresql+redis  the ledger on PostgreSQL, the queue on Redis (the task card's production)

KNOWN_BACKENDS = ("sqlite", "postgresql", "redis", "postgresql+redis")
# What a test runs on when it says nothing (`@pytest.mark.backends` names others); a test
# marked `queue_facing` runs on Redis's queue too.
DEFAULT_BACKENDS = ("sqlite", "postgresql")
QUEUE_BACKENDS = ("redis",)


def _backends() -> tuple[str, ...]:
    # All by default: a run that leaves a server out says so (SEER_TEST_BACKENDS=sqlite).
    raw = os.environ.get("SEER_TEST_BACKENDS", ",".join(KNOWN_BACKENDS))
    chosen = tuple(b.strip() for b in raw.split(",") if b.strip())
    unknown = [b for b in chosen if b not in KNOWN_BACKENDS]
    if unknown or not chosen:
        raise SystemExit(
            f"SEER_TEST_BACKENDS={raw!r}: expected a comma-separated list of "
            + ", ".join(KNOWN_BACKENDS)
        )
    return chosen


LEDGER_BACKENDS: tuple[str, ...] = _backends()

# The PostgreSQL server the tests use (trust auth on this project's machines), and the
# throwaway database of this test run (tests/conftest.py creates and drops it).
PG_ADMIN_URL = os.environ.get("SEER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_schemas = itertools.count(1)


def pg_run_database() -> str:
    """This run's database: one per pytest process (xdist worker), dropped at its end."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"seer_test_{os.getpid()}_{worker}"


_created: list[str] = []


def ensure_run_database() -> str:
    """Creates this run's database on first use; an unreachable server fails the test (a
    PostgreSQL test never silently skips)."""
    import psycopg

    database = pg_run_database()
    if not _created:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        _created.append(database)
    return database


def drop_run_database() -> None:
    import psycopg

    for database in _created:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _created.clear()


def pg_url(database: str, schema: str | None = None) -> str:
    """A URL on the tests' server; with `schema`, every connection's search_path is it."""
    from urllib.parse import quote, urlsplit

    base = urlsplit(PG_ADMIN_URL)._replace(path="/" + database, query="").geturl()
    if schema is None:
        return base
    return base + "?options=" + quote(f"-csearch_path={schema}")


def backend_environment(
    backend: str, tmp_path: Path | None, *, initialised: bool = False
) -> dict[str, str]:
    """The environment variables that point a storage root's ledger and queue at `backend`.
    `initialised`: the test runs `seer init` first thing, so a PostgreSQL schema that another
    test left, reset to what `seer init` makes (recycle_schema), will do."""
    if backend == "sqlite":
        return {}  # the default: ledger.db under the storage root
    if backend == "redis":
        return {"QUEUE_CONNECTION": "redis", "REDIS_URL": fresh_redis_database()}
    if backend == "postgresql+redis":
        return backend_environment("postgresql", tmp_path) | backend_environment("redis", tmp_path)
    if backend == "postgresql":
        # A schema of its own per test in the run's database: as isolated as a database of
        # its own, made in a millisecond instead of a CREATE DATABASE's hundreds.
        import psycopg

        if initialised and _recycled:
            return {"SEER_DATABASE_URL": pg_url(ensure_run_database(), _recycled.pop())}
        schema = f"t{next(_schemas)}"
        database = ensure_run_database()
        with psycopg.connect(pg_url(database), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        return {"SEER_DATABASE_URL": pg_url(database, schema)}
    raise ValueError(f"unknown ledger backend {backend!r}")


# PostgreSQL schemas of this process's finished tests, reset to what `seer init` makes: a test
# that starts with `seer init` takes one instead of having 120-odd statements of DDL run for it
# (a fifth of a second a test, and the server's CPU, hundreds of times a run).
_recycled: list[str] = []
_TEMPLATE = "template_init"
_template_shape: list[str] = []


def _schema_shape(conn, schema: str) -> str:
    """Every table, column, index, trigger and function of `schema`, with its name left out."""
    (shape,) = conn.execute(
        """SELECT md5(coalesce(string_agg(replace(x, %(s)s || '.', ''), ',' ORDER BY x), ''))
        FROM (
          SELECT 'c:' || c.relname || ':' || c.relkind::text AS x FROM pg_class c
            WHERE c.relnamespace = %(s)s::regnamespace
          UNION ALL
          SELECT 'a:' || c.relname || '.' || a.attnum::text || a.attname || ':'
              || format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull::text || ':'
              || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relnamespace = %(s)s::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
          UNION ALL
          SELECT 'i:' || pg_get_indexdef(i.indexrelid) FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = %(s)s::regnamespace
          UNION ALL
          SELECT 't:' || c.relname || '.' || t.tgname || ':' || pg_get_triggerdef(t.oid)
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE c.relnamespace = %(s)s::regnamespace AND NOT t.tgisinternal
          UNION ALL
          SELECT 'o:' || conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint
            WHERE connamespace = %(s)s::regnamespace
          UNION ALL
          SELECT 'p:' || proname || ':' || md5(prosrc) FROM pg_proc
            WHERE pronamespace = %(s)s::regnamespace
        ) parts""",
        {"s": schema},
    ).fetchone()
    return shape


def _ensure_template(conn) -> str:
    """The shape of this process's schema just as `seer init` leaves it (made once, by
    `seer init`)."""
    import contextlib
    import tempfile

    from seer_console.cli import main
    from worker.settings import SPECS

    if _template_shape:
        return _template_shape[0]
    made = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (_TEMPLATE,)).fetchone()
    if not made:
        conn.execute(f"CREATE SCHEMA {_TEMPLATE}")
        saved = dict(os.environ)
        try:
            with tempfile.TemporaryDirectory() as root:
                for name in [spec.name for spec in SPECS] + ["SEER_ENV_FILE"]:
                    os.environ.pop(name, None)
                os.environ["SEER_STORAGE_PATH"] = str(Path(root) / "storage")
                os.environ["SEER_DATABASE_URL"] = pg_url(ensure_run_database(), _TEMPLATE)
                with contextlib.redirect_stdout(io.StringIO()):
                    assert main(["init"]) == 0
        finally:
            os.environ.clear()
            os.environ.update(saved)
    _template_shape.append(_schema_shape(conn, _TEMPLATE))
    return _template_shape[0]


def _sessions_left(conn) -> int:
    """Sessions of this process's database other than `conn`: a pool the test dropped without
    closing it is closed by the garbage collector, and its sessions end soon after."""
    import gc

    import psutil

    def others() -> int:
        # An idle session of this process is one the test left behind in a thread-local (Huey's
        # connection per thread): nothing uses it again.
        ours = [c.laddr.port for c in psutil.Process().net_connections("tcp") if c.laddr]
        (count,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND NOT (state = 'idle' AND client_port = ANY(%s))",
            (ours,),
        ).fetchone()
        return count

    counts: list[int] = []

    def none_left() -> bool:
        counts.append(others())
        return counts[-1] == 0

    if none_left():
        return 0
    # Only now: a full collection of a test process's heap costs ~60 ms, most tests leave
    # nothing, and it is what ends the sessions of a pool dropped without closing.
    gc.collect()
    poll(none_left, 0.5)
    return counts[-1]


def recycle_schema(url: str) -> None:
    """After a test: its schema is reset to `seer init`'s state and kept for another, if it
    still has init's shape and nothing is connected to this process's database (a process of
    the test still running could write into the next test's ledger); else it is dropped."""
    import psycopg

    schema = schema_of(url)
    if schema is None:
        return
    with psycopg.connect(pg_url(ensure_run_database()), autocommit=True) as conn:
        others = _sessions_left(conn)
        if others == 0 and _schema_shape(conn, schema) == _ensure_template(conn):
            tables = [
                name
                for (name,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
                ).fetchall()
            ]
            with conn.transaction():
                # The rows init writes come back as init wrote them, its triggers not run again.
                conn.execute("SET LOCAL session_replication_role = replica")
                listed = ", ".join(f'{schema}."{t}"' for t in tables)
                conn.execute(f"TRUNCATE {listed} RESTART IDENTITY")
                for table in tables:
                    conn.execute(
                        f'INSERT INTO {schema}."{table}" SELECT * FROM {_TEMPLATE}."{table}"'
                    )
                conn.execute(
                    f"UPDATE {schema}.schema_migrations"
                    " SET applied_at = extract(epoch FROM clock_timestamp())"
                )
                # A sequence init moved is where init left it.
                for seq, value in conn.execute(
                    "SELECT sequencename, last_value FROM pg_sequences"
                    " WHERE schemaname = %s AND last_value IS NOT NULL",
                    (_TEMPLATE,),
                ).fetchall():
                    conn.execute("SELECT setval(%s, %s)", (f"{schema}.{seq}", value))
            _recycled.append(schema)
        elif others == 0:  # with a session left, a DROP would wait for its locks
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def schema_of(url: str) -> str | None:
    """The schema of a URL of pg_url's, or None."""
    from urllib.parse import parse_qs, urlsplit

    options = parse_qs(urlsplit(url).query).get("options", [""])[0]
    prefix = "-csearch_path="
    return options[len(prefix) :] if options.startswith(prefix) else None


# The machine's Redis (trust, no persistence); each pytest process (xdist worker) has a database
# number of its own, emptied before each test that uses it and at the end of the run.
REDIS_ADMIN_URL = os.environ.get("SEER_TEST_REDIS_URL", "redis://127.0.0.1:6379")
_flushed: list[str] = []


_claimed_db: list[int] = []
# A claim outlives a run killed without its cleanup for at most this long; each test that
# uses the database renews it.
_CLAIM_SECONDS = 1800


def redis_run_database() -> int:
    """This process's Redis database number, 1 to 15 (0 is left to whoever else uses it):
    claimed in database 0 with SET NX, so that test runs side by side on one machine (xdist
    workers, two developers' suites) never flush each other's doorbells."""
    if _claimed_db:
        return _claimed_db[0]
    import redis

    client = redis.Redis.from_url(
        f"{REDIS_ADMIN_URL.rstrip('/')}/0", socket_connect_timeout=5, socket_timeout=10
    )
    try:
        owner = f"{socket.gethostname()}:{os.getpid()}"
        for db in range(1, 16):
            if client.set(f"seer-test-db:{db}", owner, nx=True, ex=_CLAIM_SECONDS):
                _claimed_db.append(db)
                return db
    finally:
        client.close()
    raise RuntimeError(
        "all 15 Redis test databases of 127.0.0.1:6379 are claimed by other test runs "
        "(keys seer-test-db:N in database 0)"
    )


def release_redis_database() -> None:
    import redis

    if not _claimed_db:
        return
    client = redis.Redis.from_url(
        f"{REDIS_ADMIN_URL.rstrip('/')}/0", socket_connect_timeout=5, socket_timeout=10
    )
    try:
        client.delete(f"seer-test-db:{_claimed_db.pop()}")
    finally:
        client.close()


def redis_url(db: int | None = None, base: str = REDIS_ADMIN_URL) -> str:
    return f"{base.rstrip('/')}/{redis_run_database() if db is None else db}"


def fresh_redis_database() -> str:
    """REDIS_URL of this process's database, emptied first; an unreachable Redis fails the test
    (a Redis test never silently skips)."""
    import redis

    url = redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        client.flushdb()
        client.execute_command("SELECT", 0)
        client.expire(f"seer-test-db:{redis_run_database()}", _CLAIM_SECONDS)
    finally:
        client.close()
    if url not in _flushed:
        _flushed.append(url)
    return url


def flush_run_redis() -> None:
    import redis

    for url in _flushed:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        try:
            client.flushdb()
        finally:
            client.close()
    _flushed.clear()
    release_redis_database()


def other_ledger(runtime: Runtime, lock_timeout: float | None = None) -> Ledger:
    """A second, independent connection to the runtime's ledger (another process, as far as
    the database can tell); `lock_timeout` shortens how long its writes wait for the lock."""
    from worker.ledger.postgresql import PostgresLedger
    from worker.ledger.sqlite import SqliteLedger

    if isinstance(runtime.ledger, SqliteLedger):
        if lock_timeout is None:
            return SqliteLedger(runtime.ledger.path)
        return SqliteLedger(runtime.ledger.path, lock_timeout=lock_timeout)
    if isinstance(runtime.ledger, PostgresLedger):
        if lock_timeout is None:
            return PostgresLedger(runtime.ledger.url)
        return PostgresLedger(runtime.ledger.url, lock_timeout=lock_timeout)
    raise TypeError(f"no second connection for {type(runtime.ledger).__name__}")


def ledger_tables(ledger: Ledger) -> list[str]:
    """The names of the ledger's tables."""
    return [name for kind, name, _ in ledger_schema(ledger) if kind == "table"]


def ledger_schema(ledger: Ledger) -> list[tuple]:
    """The ledger's schema as (type, name, definition) rows in a stable order: two equal
    schemas give equal lists."""
    from worker.ledger.postgresql import PostgresLedger
    from worker.ledger.sqlite import SqliteLedger

    if isinstance(ledger, SqliteLedger):
        return [tuple(r.values()) for r in ledger.rows(_SQLITE_SCHEMA)]
    if isinstance(ledger, PostgresLedger):
        return [tuple(r.values()) for r in ledger.rows(_PG_SCHEMA)]
    raise TypeError(f"no schema listing for {type(ledger).__name__}")


def sqlite_file_schema(path: Path) -> list[tuple]:
    """The schema of a SQLite file that is no ledger (Huey's queue.db), as `ledger_schema`."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(_SQLITE_SCHEMA).fetchall()
    finally:
        conn.close()


# Tables (with their columns), indexes, triggers and functions of the current schema, Huey's
# queue tables left out as SQLite's listing leaves out queue.db.
_PG_SCHEMA = """
    SELECT 'table' AS type, c.relname AS name,
           string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                      ORDER BY a.attnum) AS sql
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
     WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
       AND c.relname NOT LIKE 'huey%' AND NOT a.attisdropped
     GROUP BY c.relname
    UNION ALL
    SELECT 'index', indexname, indexdef FROM pg_indexes
     WHERE schemaname = current_schema() AND tablename NOT LIKE 'huey%'
    UNION ALL
    SELECT 'trigger', tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
    UNION ALL
    SELECT 'function', p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
     WHERE p.pronamespace = current_schema()::regnamespace
    ORDER BY 1, 2"""

_SQLITE_SCHEMA = (
    "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
)


def lock_waiters(ledger: Ledger) -> int | None:
    """How many sessions of the ledger's database wait for a lock now (a `Ledger.lock`, a row);
    None on SQLite, where a writer waits for the write lock in a way nothing can count."""
    from worker.ledger.postgresql import PostgresLedger

    if isinstance(ledger, PostgresLedger):
        return ledger.scalar(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    return None


def in_flight_in_a_batch(runtime: Runtime) -> int:
    # Not a parcel claimed alone (after a crash): a death is blamed on such a parcel, and
    # killing it again and again would fail it on purpose (POSTMASTER_MAX_CRASHES).
    return runtime.ledger.scalar(
        "SELECT count(*) FROM parcels WHERE state = 'in_flight' AND claim_size > 1"
    )


def kill_while_holding_batches(
    runtime: Runtime, start: Callable[[], Any], thresholds: list[int], timeout: float
) -> Any:
    """Starts a consumer (`start()`, a conftest Consumer), and for each threshold, once that
    many parcels are delivered, SIGKILLs it while it holds a batch and starts another; returns
    the last one. The moments come from what the ledger shows, not from the clock: a kill that
    finds the batch already committed (none in flight once the consumer is dead) does not
    count, and the next batch in flight is killed instead, so every kill lands on any machine."""
    missed = 0
    consumer = start()
    for threshold in thresholds:
        wait_for(
            lambda t=threshold: runtime.ledger.counter("parcels_delivered") >= t,
            timeout,
            f"{threshold} deliveries",
        )
        while True:
            wait_for(lambda: in_flight_in_a_batch(runtime), timeout, "a batch in flight", 0.001)
            consumer.kill()
            held = in_flight_in_a_batch(runtime)  # the dead consumer's: none other runs
            consumer = start()
            if held:
                break
            missed += 1
            assert missed < 50, "the batches commit before a kill lands, 50 times over"
    return consumer
