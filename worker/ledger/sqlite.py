"""The SQLite ledger: one peewee connection per thread, WAL, IMMEDIATE writes, polled locks."""

from __future__ import annotations

import errno
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from worker.lean_imports import hidden

with hidden("psycopg", "psycopg2"):  # peewee's PostgreSQL driver, not used by this ledger
    from peewee import PeeweeException, SqliteDatabase

from worker.ledger.base import ClaimedParcel, Cursor, Ledger, Params, ParcelHead, batch_of
from worker.ledger.errors import (
    LedgerBusy,
    LedgerCorrupt,
    LedgerDiskFull,
    LedgerError,
)
from worker.ledger.history import APPEND, event_line

__all__ = ["SqliteLedger"]

BUSY_TIMEOUT_SECONDS = 10
LOCK_POLL_MS = 2
# Less free space than this beside the ledger, and an I/O error is a full disk: a page and a
# WAL frame do not fit.
NO_ROOM_BYTES = 64 * 1024

_DRIVER_ERRORS = (sqlite3.Error, PeeweeException)
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _is_disk_full(exc: BaseException) -> bool:
    return "database or disk is full" in str(exc) or getattr(exc, "errno", None) == errno.ENOSPC


class SqliteLedger(Ledger):
    """The ledger in one SQLite file in WAL mode: readers never wait for the writer.

    Every write transaction takes the write lock when it begins (BEGIN IMMEDIATE), so a
    read-then-write never fails with SQLITE_BUSY halfway. Waiting for that lock is done here,
    polling every millisecond or two: SQLite's own busy handler backs off to 100 ms sleeps, and
    a writer that polls that slowly misses the short gaps a long job (compaction) leaves between
    its transactions, so a parcel could wait half a second for a lock free most of the time.

    Statements run on the raw sqlite3 connection, not through peewee's query layer: on the
    Postmaster's path the ORM costs more than the disk. Driver errors are translated where
    they surface (a statement, a transaction's begin or end), never per row.
    """

    dialect = "sqlite"

    def __init__(
        self, path: str, synchronous: str = "full", lock_timeout: float = BUSY_TIMEOUT_SECONDS
    ) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self.db = SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "synchronous": synchronous.upper(),
                "foreign_keys": 1,
                "cache_size": -16000,
            },
            timeout=lock_timeout,
        )
        self._local = threading.local()

    # -- errors ----------------------------------------------------------------------------

    def _translated(self, exc: BaseException) -> LedgerError:
        if isinstance(exc, LedgerError):
            return exc
        # peewee wraps the sqlite3 error it caught; its code is on the original.
        original = getattr(exc, "orig", None) or exc
        if _is_disk_full(original):
            return self._disk_full(original)
        code = getattr(original, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        text = str(original)
        if (primary == sqlite3.SQLITE_IOERR or "disk I/O error" in text) and self._no_room():
            # A write the filesystem refused for want of room may come back as an I/O error
            # (the WAL or its index could not grow), not as SQLITE_FULL: say what it is.
            return self._disk_full(original)
        if primary in _BUSY or (primary is None and "database is locked" in text):
            return LedgerBusy(text)
        if primary in _CORRUPT:
            return LedgerCorrupt(text)
        return LedgerError(text)

    def _no_room(self) -> bool:
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < NO_ROOM_BYTES

    def _disk_full(self, exc: BaseException) -> LedgerDiskFull:
        where = os.path.dirname(os.path.abspath(self.path))
        return LedgerDiskFull(f"disk full: {where}: the ledger cannot be written ({exc})")

    def _connection(self) -> sqlite3.Connection:
        try:
            return self.db.connection()
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Ledger]:
        local = self._local
        if getattr(local, "reading", 0):
            raise LedgerError("a write inside a read transaction: the snapshot is read-only")
        depth = getattr(local, "depth", 0)
        conn = self._connection()
        try:
            if depth == 0:
                self._begin_immediate(conn)
            else:
                conn.execute(f"SAVEPOINT seer_{depth}")
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc
        local.depth = depth + 1
        try:
            yield self
        except BaseException as exc:
            local.depth = depth
            # SQLite may have rolled the transaction back itself (a full disk does): then a
            # ROLLBACK would fail with "no transaction is active" and hide the real error.
            try:
                if conn.in_transaction:
                    if depth == 0:
                        conn.execute("ROLLBACK")
                    else:
                        conn.execute(f"ROLLBACK TO seer_{depth}")
                        conn.execute(f"RELEASE seer_{depth}")
            except _DRIVER_ERRORS as failed:
                raise self._translated(failed) from exc
            if _is_disk_full(exc) and not isinstance(exc, LedgerDiskFull):
                raise self._disk_full(exc) from exc
            if isinstance(exc, _DRIVER_ERRORS):
                # Statements run on the raw connection (benches, tests) are translated too.
                raise self._translated(exc) from exc
            raise
        local.depth = depth
        try:
            if depth:
                conn.execute(f"RELEASE seer_{depth}")
                return
            conn.execute("COMMIT")
        except _DRIVER_ERRORS as exc:
            # A failed COMMIT (a full disk) leaves the transaction open: end it, or every
            # later write on this connection would fail to begin.
            if depth == 0 and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._translated(exc) from exc

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self.lock_timeout
        conn.execute(f"PRAGMA busy_timeout = {LOCK_POLL_MS}")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    if time.monotonic() > deadline:
                        raise
                time.sleep(random.uniform(0.0005, 0.002))
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")

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
        conn = self._connection()
        try:
            # query_only makes "nothing is written inside" the engine's rule, not a hope.
            conn.execute("PRAGMA query_only = 1")
            conn.execute("BEGIN DEFERRED")
            # In WAL mode the snapshot is fixed by the first read, not by BEGIN: read now, so
            # it is the state when the block began.
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except _DRIVER_ERRORS as exc:
            self._end_read(conn)
            raise self._translated(exc) from exc
        local.reading = 1
        try:
            yield self
        finally:
            local.reading = 0
            self._end_read(conn)

    def _end_read(self, conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("PRAGMA query_only = 0")
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc

    # -- statements ------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            return self._connection().execute(sql, params)
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._connection().executemany(sql, rows)
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc

    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        try:
            cursor = self._connection().execute(sql, params)
            found = cursor.fetchall()
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in found]

    def scalar(self, sql: str, params: Params = ()) -> Any:
        try:
            # fetchall, not fetchone: an unfinished INSERT … RETURNING would keep the
            # statement open, and COMMIT refuses while a write statement is in progress.
            found = self._connection().execute(sql, params).fetchall()
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc
        return found[0][0] if found else None

    # -- what differs between engines ------------------------------------------------------

    def has_table(self, name: str) -> bool:
        return bool(
            self.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        )

    def claim_parcels(
        self, owner: str, now: float, limit: int, max_bytes: int, lease: float
    ) -> list[ClaimedParcel]:
        # The write lock makes the claim exclusive: no other consumer reads the queue's head
        # between our SELECT and our UPDATE.
        with self.write():
            heads = batch_of(
                [
                    ParcelHead(*r)
                    for r in self.execute(
                        "SELECT seq, size, isolate FROM parcels "
                        "WHERE state = 'queued' AND not_before <= ? ORDER BY seq LIMIT ?",
                        (now, limit),
                    ).fetchall()
                ],
                max_bytes,
            )
            if not heads:
                return []
            claimed = [
                ClaimedParcel(*r)
                for r in self.execute(
                    "SELECT seq, id, payload, size, attempts, isolate FROM parcels "
                    f"WHERE seq IN ({', '.join('?' * len(heads))}) ORDER BY seq",
                    [h.seq for h in heads],
                ).fetchall()
            ]
            line = event_line("claimed", now, owner)
            # One statement for the batch: every row takes the same values.
            self.execute(
                "UPDATE parcels SET state = 'in_flight', owner = ?, claimed_at = ?, "
                f"claim_size = ?, lease_until = ?, {APPEND} "
                f"WHERE seq IN ({', '.join('?' * len(claimed))})",
                [owner, now, len(claimed), now + lease, line, *(p.seq for p in claimed)],
            )
        return claimed

    def fold_counters(self) -> None:
        """One row per counter already: nothing to fold."""

    def lock(self, name: str, shared: bool = False) -> None:
        """The write transaction already holds the one write lock: nothing more to take."""
        if not getattr(self._local, "depth", 0):
            raise LedgerError(f"the lock {name!r} is taken inside a write transaction only")

    def close(self) -> None:
        try:
            if not self.db.is_closed():
                self.db.close()
        except _DRIVER_ERRORS as exc:
            raise self._translated(exc) from exc
