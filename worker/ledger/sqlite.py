"""The ledger database: one peewee connection per thread, WAL, busy timeout, IMMEDIATE writes."""

from __future__ import annotations

import errno
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from peewee import SqliteDatabase

from worker.layout import Layout
from worker.ledger.errors import LedgerDiskFull, LedgerError, LedgerUnavailable
from worker.settings import Settings, SettingsError

__all__ = ["Ledger", "LedgerDiskFull", "LedgerError", "LedgerUnavailable", "open_ledger"]

BUSY_TIMEOUT_SECONDS = 10
LOCK_POLL_MS = 2


def _is_disk_full(exc: BaseException) -> bool:
    return "database or disk is full" in str(exc) or getattr(exc, "errno", None) == errno.ENOSPC


def open_ledger(layout: Layout, settings: Settings) -> Ledger:
    check_supported(settings)
    return Ledger(str(layout.ledger_db), synchronous=settings.sqlite_synchronous)


def check_supported(settings: Settings) -> None:
    """Refuses, as a settings error, the scale-out backends that are not built yet."""
    if settings.database_url:
        raise SettingsError(
            "SEER_DATABASE_URL=(hidden) is not allowed yet: PostgreSQL is not supported; leave it "
            "empty for the SQLite ledger under the storage root"
        )
    if settings.queue_connection == "redis":
        raise SettingsError(
            "QUEUE_CONNECTION='redis' is not allowed yet: Redis is not supported; use sqlite"
        )


class Ledger:
    """A thin wrapper over peewee's database: SQL in, rows out, writes in IMMEDIATE transactions.

    Every write transaction takes the write lock when it begins (BEGIN IMMEDIATE), so a
    read-then-write never fails with SQLITE_BUSY halfway. Waiting for that lock is done here,
    polling every millisecond or two: SQLite's own busy handler backs off to 100 ms sleeps, and
    a writer that polls that slowly misses the short gaps a long job (compaction) leaves between
    its transactions, so a parcel could wait half a second for a lock free most of the time.
    """

    def __init__(self, path: str, synchronous: str = "full") -> None:
        self.path = path
        self.db = SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "synchronous": synchronous.upper(),
                "foreign_keys": 1,
                "cache_size": -16000,
            },
            timeout=BUSY_TIMEOUT_SECONDS,
        )
        self._local = threading.local()

    @contextmanager
    def write(self) -> Iterator[Ledger]:
        """A write transaction; nested, a savepoint inside the outer one."""
        depth = getattr(self._local, "depth", 0)
        conn = self.db.connection()
        if depth == 0:
            self._begin_immediate(conn)
        else:
            conn.execute(f"SAVEPOINT seer_{depth}")
        self._local.depth = depth + 1
        try:
            yield self
        except BaseException as exc:
            self._local.depth = depth
            # SQLite may have rolled the transaction back itself (a full disk does): then a
            # ROLLBACK would fail with "no transaction is active" and hide the real error.
            if conn.in_transaction:
                if depth == 0:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute(f"ROLLBACK TO seer_{depth}")
                    conn.execute(f"RELEASE seer_{depth}")
            if _is_disk_full(exc) and not isinstance(exc, LedgerDiskFull):
                raise self._disk_full(exc) from exc
            raise
        self._local.depth = depth
        if depth:
            conn.execute(f"RELEASE seer_{depth}")
            return
        try:
            conn.execute("COMMIT")
        except BaseException as exc:
            # A failed COMMIT (a full disk) leaves the transaction open: end it, or every
            # later write on this connection would fail to begin.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if _is_disk_full(exc):
                raise self._disk_full(exc) from exc
            raise

    def _disk_full(self, exc: BaseException) -> LedgerDiskFull:
        where = os.path.dirname(os.path.abspath(self.path))
        return LedgerDiskFull(f"disk full: {where}: the ledger cannot be written ({exc})")

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
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
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        return self.db.execute_sql(sql, params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        self.db.connection().executemany(sql, rows)

    def rows(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        cursor = self.db.execute_sql(sql, params)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def row(self, sql: str, params: tuple | list = ()) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def scalar(self, sql: str, params: tuple | list = ()) -> Any:
        row = self.db.execute_sql(sql, params).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
