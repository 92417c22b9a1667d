"""The PostgreSQL ledger: many consumers on many hosts, one database.

- Connections come from a `psycopg_pool.ConnectionPool` (bounded per process, checked before
  use when idle for a second or more, replaced when a server restart broke them), so a
  consumer outlives a restart of its database without being restarted itself. A statement
  outside a transaction borrows a connection for that statement; `write()` and `read()` hold
  one for their block.
- Writers do not take one lock for the whole database as SQLite's do: a claim takes its rows
  with `FOR UPDATE SKIP LOCKED`, and writers that must not interleave across hosts take a
  named advisory lock (`lock()`), held until their transaction ends.
- Counters are appended as deltas by statement-level triggers (worker/ledger/pg_schema.py) and
  folded now and then: deliveries on many hosts never queue on one hot row.
- `now()` is the database's clock, through an offset measured now and then: a host whose
  clock is minutes off still stamps leases and claims on the same clock as every other host.
- Placeholders are SQLite's (`?`, `:name`), rewritten once per statement text to psycopg's.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from worker.ledger.base import ClaimedParcel, Cursor, Ledger, Params, ParcelHead, batch_of
from worker.ledger.errors import (
    LedgerBusy,
    LedgerCorrupt,
    LedgerDiskFull,
    LedgerError,
    LedgerUnavailable,
)
from worker.ledger.history import APPEND, event_line
from worker.settings import server_address

__all__ = ["PostgresLedger"]

log = logging.getLogger("seer.ledger")

CONNECT_TIMEOUT_SECONDS = 5
LOCK_TIMEOUT_SECONDS = 10
STATEMENT_TIMEOUT_SECONDS = 300
# A consumer frozen inside a transaction (SIGSTOP, a partition) must not hold its row locks
# for ever: the server ends such a session, and the frozen consumer's commit then fails.
IDLE_IN_TRANSACTION_SECONDS = 60
CLOCK_REFRESH_SECONDS = 30.0
FOLD_EVERY_SECONDS = 5.0
POOL_MAX = 8
CLOSED_RETRIES = 10
# A connection back in the pool for less than this is lent again unchecked: checking costs a
# round trip per statement, and a server that restarted has kept them idle for longer.
CHECK_AFTER_IDLE_SECONDS = 1.0

_BUSY = (
    pg_errors.LockNotAvailable,
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
    pg_errors.QueryCanceled,
    pg_errors.TooManyConnections,
)
_CORRUPT = (pg_errors.DataCorrupted, pg_errors.IndexCorrupted)


def _url_without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


# -- placeholders ---------------------------------------------------------------------------------

_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|\$\$.*?\$\$|::|%|\?|(?<![:\w]):([A-Za-z_]\w*)""",
    re.DOTALL,
)


@lru_cache(maxsize=2048)
def _psycopg_sql(sql: str) -> str:
    """`?` to `%s`, `:name` to `%(name)s`, `%` to `%%`; quoted text left alone."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        if match.group(1):
            return f"%({match.group(1)})s"
        return token

    return _TOKENS.sub(swap, sql)


class _IntFromBool(Dumper):
    """The schema keeps flags as integers (as SQLite has them): True is 1, not boolean."""

    oid = postgres.types["int2"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


@dataclass
class _Result:
    """A statement's outcome, read whole before its connection goes back to the pool."""

    rowcount: int
    found: list[Any]
    description: list[str]

    def fetchone(self) -> Any:
        return self.found[0] if self.found else None

    def fetchall(self) -> list[Any]:
        return self.found


class PostgresLedger(Ledger):
    """The ledger in one PostgreSQL database (its schema is the URL's search_path)."""

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = LOCK_TIMEOUT_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        pool_max: int = POOL_MAX,
    ) -> None:
        self.url = url
        self.address = server_address(url)
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout
        self._pool_max = pool_max
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._local = threading.local()
        self._offset: float | None = None
        self._offset_at = 0.0
        self._returned: weakref.WeakKeyDictionary[psycopg.Connection, float] = (
            weakref.WeakKeyDictionary()
        )
        self._last_fold = time.monotonic()
        self._writes_since_fold = 0

    def __repr__(self) -> str:
        return f"PostgresLedger({_url_without_password(self.url)!r})"

    # -- connections -----------------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": max(1, round(self.connect_timeout)),
            "application_name": "seer",
            # A peer that vanished (a partition, a host powered off) is noticed in seconds.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.adapters.register_dumper(bool, _IntFromBool)
        conn.execute(
            f"SET statement_timeout = {int(STATEMENT_TIMEOUT_SECONDS * 1000)}; "
            f"SET lock_timeout = {int(self.lock_timeout * 1000)}; "
            "SET idle_in_transaction_session_timeout = "
            f"{int(IDLE_IN_TRANSACTION_SECONDS * 1000)}"
        )

    def _open_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is not None:
                return self._pool
            # One connection made here, in this thread, first: an unreachable server is then
            # its own error at once ("connection refused"), not a pool timeout later.
            probe = self._direct_connect()
            try:
                self._measure_clock(probe)
            finally:
                probe.close()
            pool = ConnectionPool(
                self.url,
                kwargs=self._connect_kwargs(),
                min_size=1,
                max_size=self._pool_max,
                configure=self._configure,
                check=self._check,
                timeout=self.connect_timeout,
                reconnect_timeout=365 * 86400.0,  # a consumer waits out any outage
                num_workers=1,
                name="seer-ledger",
                open=False,
            )
            pool.open(wait=False)
            self._pool = pool
            return pool

    def _check(self, conn: psycopg.Connection) -> None:
        returned = self._returned.get(conn)
        if returned is not None and time.monotonic() - returned < CHECK_AFTER_IDLE_SECONDS:
            return
        ConnectionPool.check_connection(conn)

    def _direct_connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, **self._connect_kwargs())
        except psycopg.Error as exc:
            raise self._unreachable(exc) from None
        self._configure(conn)
        return conn

    def _unreachable(self, exc: BaseException | str) -> LedgerUnavailable:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # libpq's text names the host in its own words; the password is never in it.
        reason = re.sub(r"^connection failed: ", "", reason)
        return LedgerUnavailable(f"cannot reach the ledger's database at {self.address}: {reason}")

    @contextmanager
    def _borrowed(self) -> Iterator[psycopg.Connection]:
        """This thread's connection inside a transaction, else one lent for a statement."""
        held = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        pool = self._pool or self._open_pool()
        try:
            for _ in range(CLOSED_RETRIES):
                try:
                    conn = pool.getconn()
                    break
                except PoolClosed:
                    # Another thread's close() meanwhile: the ledger opens another pool.
                    pool = self._pool or self._open_pool()
            else:
                conn = pool.getconn()
        except PoolTimeout:
            raise self._pool_timeout() from None
        except PoolClosed as exc:
            raise LedgerError(f"the ledger at {self.address} was closed while in use") from exc
        try:
            yield conn
        finally:
            self._returned[conn] = time.monotonic()
            pool.putconn(conn)

    def _pool_timeout(self) -> LedgerError:
        # Either the server is down (say why, as libpq says it) or every connection is busy.
        try:
            self._direct_connect().close()
        except LedgerUnavailable as exc:
            return exc
        return LedgerBusy(
            f"all {self._pool_max} connections of this process to {self.address} are in use"
        )

    # -- errors ----------------------------------------------------------------------------

    def _translated(self, exc: BaseException, conn: psycopg.Connection | None = None) -> Exception:
        if isinstance(exc, LedgerError):
            return exc
        if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
            text = exc.diag.message_primary  # one line: no LINE 1 / caret of the statement
        else:
            text = str(exc).strip()
        if isinstance(exc, pg_errors.DiskFull):
            return LedgerDiskFull(
                f"disk full: the ledger's database at {self.address} cannot be written ({text})"
            )
        if isinstance(exc, _BUSY):
            return LedgerBusy(text)
        if isinstance(exc, _CORRUPT):
            return LedgerCorrupt(text)
        broken = conn is not None and (conn.closed or conn.broken)
        if isinstance(exc, psycopg.OperationalError) and (broken or conn is None):
            return self._unreachable(exc)
        if isinstance(exc, psycopg.InterfaceError):
            return self._unreachable(exc)
        if isinstance(exc, psycopg.Error):
            return LedgerError(text)
        return exc if isinstance(exc, Exception) else LedgerError(str(exc))

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Ledger]:
        local = self._local
        if getattr(local, "reading", 0):
            raise LedgerError("a write inside a read transaction: the snapshot is read-only")
        depth = getattr(local, "depth", 0)
        if depth:
            yield from self._savepoint(depth)
            return
        with self._borrowed() as conn:
            try:
                conn.execute("BEGIN")
            except psycopg.Error as exc:
                raise self._translated(exc, conn) from exc
            local.conn, local.depth = conn, 1
            try:
                yield self
            except BaseException as exc:
                local.conn, local.depth = None, 0
                self._rollback(conn)
                if isinstance(exc, psycopg.Error):
                    raise self._translated(exc, conn) from exc
                raise
            local.conn, local.depth = None, 0
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                self._rollback(conn)
                raise self._translated(exc, conn) from exc
        self._maybe_fold()

    def _savepoint(self, depth: int) -> Iterator[Ledger]:
        local = self._local
        conn = local.conn
        try:
            conn.execute(f"SAVEPOINT seer_{depth}")
        except psycopg.Error as exc:
            raise self._translated(exc, conn) from exc
        local.depth = depth + 1
        try:
            yield self
        except BaseException as exc:
            local.depth = depth
            try:
                conn.execute(f"ROLLBACK TO SAVEPOINT seer_{depth}")
                conn.execute(f"RELEASE SAVEPOINT seer_{depth}")
            except psycopg.Error as failed:
                raise self._translated(failed, conn) from exc
            if isinstance(exc, psycopg.Error):
                raise self._translated(exc, conn) from exc
            raise
        local.depth = depth
        try:
            conn.execute(f"RELEASE SAVEPOINT seer_{depth}")
        except psycopg.Error as exc:
            raise self._translated(exc, conn) from exc

    def _rollback(self, conn: psycopg.Connection) -> None:
        if conn.closed or conn.broken:
            return  # the pool throws it away when it comes back
        # A connection that broke meanwhile: nothing to roll back on a server that lost it.
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")

    @contextmanager
    def read(self) -> Iterator[Ledger]:
        local = self._local
        if getattr(local, "depth", 0):
            yield self  # a write transaction is already one consistent view
            return
        reading = getattr(local, "reading", 0)
        if reading:
            local.reading = reading + 1
            try:
                yield self
            finally:
                local.reading = reading
            return
        with self._borrowed() as conn:
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            except psycopg.Error as exc:
                raise self._translated(exc, conn) from exc
            local.conn, local.reading = conn, 1
            try:
                yield self
            except psycopg.Error as exc:
                raise self._translated(exc, conn) from exc
            finally:
                local.conn, local.reading = None, 0
                self._rollback(conn)

    # -- statements ------------------------------------------------------------------------

    def _run(self, sql: str, params: Params, many: bool = False) -> _Result:
        query = _psycopg_sql(sql) if params else sql
        with self._borrowed() as conn:
            try:
                cursor = conn.cursor()
                if many:
                    cursor.executemany(query, params)
                    return _Result(cursor.rowcount, [], [])
                cursor.execute(query, params or None)
                if cursor.description is None:
                    return _Result(cursor.rowcount, [], [])
                return _Result(
                    cursor.rowcount,
                    cursor.fetchall(),
                    [c.name for c in cursor.description],
                )
            except psycopg.Error as exc:
                raise self._translated(exc, conn) from exc

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        return self._run(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._run(sql, rows, many=True)

    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        result = self._run(sql, params)
        names = result.description
        return [dict(zip(names, row, strict=True)) for row in result.found]

    def scalar(self, sql: str, params: Params = ()) -> Any:
        found = self._run(sql, params).found
        return found[0][0] if found else None

    # -- what differs between engines ------------------------------------------------------

    def has_table(self, name: str) -> bool:
        return bool(self.scalar("SELECT to_regclass(?) IS NOT NULL", (name,)))

    def claim_parcels(
        self, owner: str, now: float, limit: int, max_bytes: int, lease: float
    ) -> list[ClaimedParcel]:
        with self.write():
            # SKIP LOCKED: consumers on other hosts take other parcels instead of waiting.
            heads = batch_of(
                [
                    ParcelHead(*r)
                    for r in self.execute(
                        "SELECT seq, size, isolate FROM parcels "
                        "WHERE state = 'queued' AND not_before <= ? ORDER BY seq LIMIT ? "
                        "FOR UPDATE SKIP LOCKED",
                        (now, limit),
                    ).fetchall()
                ],
                max_bytes,
            )
            if not heads:
                return []
            found = self.execute(
                "UPDATE parcels SET state = 'in_flight', owner = ?, claimed_at = ?, "
                f"claim_size = ?, lease_until = ?, {APPEND} WHERE seq = ANY(?) "
                "RETURNING seq, id, payload, size, attempts, isolate",
                (
                    owner,
                    now,
                    len(heads),
                    now + lease,
                    event_line("claimed", now, owner),
                    [h.seq for h in heads],
                ),
            ).fetchall()
        return sorted((ClaimedParcel(*r) for r in found), key=lambda p: p.seq)

    def now(self) -> float:
        if self._offset is None or time.monotonic() - self._offset_at > CLOCK_REFRESH_SECONDS:
            try:
                with self._borrowed() as conn:
                    self._measure_clock(conn)
            except LedgerError:
                if self._offset is None:
                    raise
                # The last offset stays good for a while; the server's outage is said elsewhere.
        return time.time() + (self._offset or 0.0)

    def _measure_clock(self, conn: psycopg.Connection) -> None:
        before = time.time()
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        after = time.time()
        if row is not None:
            self._offset = float(row[0]) - (before + after) / 2
            self._offset_at = time.monotonic()

    def lock(self, name: str, shared: bool = False) -> None:
        if not getattr(self._local, "depth", 0):
            raise LedgerError(f"the lock {name!r} is taken inside a write transaction only")
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        kind = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        self.execute(f"SELECT {kind}(?)", (key,))

    # -- counters --------------------------------------------------------------------------

    _COUNTED = (
        "SELECT name, sum(value)::bigint AS value FROM ("
        "SELECT name, value FROM counters UNION ALL "
        "SELECT name, delta FROM counter_deltas) AS c"
    )

    def counters(self) -> dict[str, int]:
        return {r["name"]: r["value"] for r in self.rows(self._COUNTED + " GROUP BY name")}

    def counter(self, name: str) -> int:
        return (
            self.scalar(
                "SELECT ((SELECT coalesce(sum(value), 0) FROM counters WHERE name = ?) "
                "+ (SELECT coalesce(sum(delta), 0) FROM counter_deltas WHERE name = ?))::bigint",
                (name, name),
            )
            or 0
        )

    def add_to_counter(self, name: str, delta: int) -> None:
        self.execute("INSERT INTO counter_deltas (name, delta) VALUES (?, ?)", (name, delta))

    def set_counter(self, name: str, value: int) -> None:
        with self.write():
            self.execute("DELETE FROM counter_deltas WHERE name = ?", (name,))
            self.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))

    def fold_counters(self) -> None:
        with self.write():
            # One folder at a time (two would update the same rows in any order: a deadlock);
            # a writer that finds it taken just leaves the folding to the one holding it.
            if not self.scalar("SELECT pg_try_advisory_xact_lock(?)", (_FOLD_LOCK,)):
                return
            self.execute(
                "WITH d AS (DELETE FROM counter_deltas RETURNING name, delta), "
                "s AS (SELECT name, sum(delta) AS delta FROM d GROUP BY name) "
                "INSERT INTO counters (name, value) SELECT name, delta FROM s "
                "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value"
            )

    def _maybe_fold(self) -> None:
        self._writes_since_fold += 1
        if time.monotonic() - self._last_fold < FOLD_EVERY_SECONDS:
            return
        self._last_fold = time.monotonic()
        self._writes_since_fold = 0
        try:
            self.fold_counters()
        except LedgerError as exc:
            # The deltas stay and still count: folding is only compaction.
            log.debug("counters not folded this time: %s", exc)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5)


_FOLD_LOCK = int.from_bytes(hashlib.sha256(b"seer.counters.fold").digest()[:8], "big", signed=True)
