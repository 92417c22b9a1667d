"""Backup's SQLite strategy: an online copy of each live database file (the ledger and Huey's
queue), and what backup and restore read from (or correct in) a copy. With the ledger's own
implementation, the only code that speaks to SQLite directly.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

from worker.files import copy_file, fsync_file
from worker.layout import Layout
from worker.ledger.errors import LedgerCorrupt, LedgerError
from worker.ops.backup.errors import BackupError, DamagedBackup
from worker.ops.backup.manifest import DATABASES, BackupManifest
from worker.ops.backup.strategy import LedgerFacts, Snapshot, Strategy

P = ParamSpec("P")
R = TypeVar("R")


def _translated(function: Callable[P, R]) -> Callable[P, R]:
    """sqlite3's errors leave this module as the ledger's (LedgerError, with the same text):
    callers handle a damaged copy as they handle a damaged ledger, without knowing sqlite3."""

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except sqlite3.OperationalError as exc:  # locked, busy, cannot open: not damage
            raise LedgerError(str(exc)) from exc
        except sqlite3.DatabaseError as exc:
            raise LedgerCorrupt(str(exc)) from exc
        except sqlite3.Error as exc:
            raise LedgerError(str(exc)) from exc

    return call


@_translated
def copy_database(src: Path, dest: Path, mode: int) -> None:
    """SQLite's online backup in one step: one read transaction, so one consistent snapshot.

    In WAL mode the reader blocks no writer. (A stepped backup restarts whenever another
    connection writes, so under steady load it might never finish.)
    """
    if not src.is_file():
        raise BackupError(f"{src} does not exist: is the storage root initialised?")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.close(fd)
    source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dest, timeout=30)
        try:
            source.backup(target)
            # A cheap structural check of the copy, before anyone relies on it.
            problem = target.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise BackupError(f"the copy of {src.name} fails SQLite's check: {problem}")
        finally:
            # Closing the last connection checkpoints the copy's WAL into the file.
            target.close()
    finally:
        source.close()
    _settle(dest)
    os.chmod(dest, mode)
    fsync_file(dest)


def _settle(path: Path) -> None:
    """The copy is one file: its last connection checkpointed the WAL into it and removed it."""
    for suffix in ("-wal", "-journal"):
        side = Path(f"{path}{suffix}")
        if side.exists() and side.stat().st_size:
            raise BackupError(f"the copy {path} was left with a non-empty {side.name}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(side)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{path}-shm")


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A quiescent copy, read without locks and without creating -wal or -shm files."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()[0]
    )


def _count(conn: sqlite3.Connection, table: str) -> int:
    if not _has_table(conn, table):
        return 0
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@_translated
def facts(ledger_copy: Path) -> LedgerFacts:
    with _read_only(ledger_copy) as conn:
        version = 0
        if _has_table(conn, "schema_migrations"):
            version = conn.execute(
                "SELECT coalesce(max(version), 0) FROM schema_migrations"
            ).fetchone()[0]
        return LedgerFacts(int(version), _count(conn, "messages"), _count(conn, "parcels"))


@_translated
def recorded_blobs(ledger_copy: Path) -> dict[str, int]:
    """hash -> size of every blob the copied ledger records."""
    with _read_only(ledger_copy) as conn:
        if not _has_table(conn, "blobs"):
            return {}
        return dict(conn.execute("SELECT hash, size FROM blobs"))


@_translated
def referenced(ledger_copy: Path, digests: Iterable[str]) -> set[str]:
    """Those of `digests` that an artifact in the copied ledger points at."""
    with _read_only(ledger_copy) as conn:
        if not _has_table(conn, "artifacts"):
            return set()
        found = set()
        for digest in digests:
            row = conn.execute("SELECT 1 FROM artifacts WHERE hash = ? LIMIT 1", (digest,))
            if row.fetchone() is not None:
                found.add(digest)
        return found


@_translated
def drop_collected(ledger_copy: Path, digests: list[str]) -> None:
    """Removes rows of blobs gc took after the snapshot; the triggers keep the counters right."""
    conn = sqlite3.connect(ledger_copy)
    try:
        with conn:
            conn.executemany("DELETE FROM blobs WHERE hash = ?", [(d,) for d in digests])
    finally:
        conn.close()
    _settle(ledger_copy)
    fsync_file(ledger_copy)


class SqliteStrategy(Strategy):
    """The ledger's file and the queue's, each copied with SQLite's online backup.

    The queue file is copied too (after the ledger): it holds only doorbells, but a restored
    root then starts with the doorbells it had, and a consumer's start rings for any due
    parcel whose doorbell it lacks anyway.
    """

    engine = "sqlite"
    databases = DATABASES["sqlite"]

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def take(self, dest: Path, mode: int) -> Snapshot:
        # The ledger first: every blob it records was stored before its rows committed.
        copy_database(self.layout.ledger_db, dest / "ledger.db", mode)
        copy_database(self.layout.queue_db, dest / "queue.db", mode)
        return Snapshot(facts(dest / "ledger.db"), recorded_blobs(dest / "ledger.db"))

    def referenced(self, dest: Path, digests: Iterable[str]) -> set[str]:
        return referenced(dest / "ledger.db", digests)

    def leave_out(self, dest: Path, digests: list[str]) -> tuple[str, ...]:
        drop_collected(dest / "ledger.db", digests)
        return ()  # the copy no longer has them

    def check_target(self, manifest: BackupManifest) -> None:
        pass  # the databases live in the storage root, which restore checks is empty

    def put_back(self, manifest: BackupManifest, layout: Layout) -> None:
        for db in manifest.databases:
            written = copy_file(manifest.path / db.name, layout.root / db.name, layout.file_mode)
            if written != db.sha256:
                raise DamagedBackup(
                    f"damaged backup: {db.name} changed while it was restored (SHA-256 differs)"
                )

    def recorded_after(self, layout: Layout) -> tuple[dict[str, int], LedgerFacts]:
        return recorded_blobs(layout.ledger_db), facts(layout.ledger_db)
