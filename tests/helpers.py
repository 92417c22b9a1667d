"""Shared test helpers: wait by polling with a deadline, never by a fixed sleep; the ledger's
backends and the few questions about the schema that only a dialect can answer."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.ledger import Ledger
    from worker.runtime import Runtime


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition", step=0.02
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


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


# -- the ledger's backends ------------------------------------------------------------------------
# Every fixture that builds a storage root takes `ledger_backend` (tests/conftest.py); a backend
# is added here, once, with what it needs to know. Only these helpers know a dialect.

LEDGER_BACKENDS: tuple[str, ...] = ("sqlite",)


def backend_environment(backend: str, tmp_path: Path) -> dict[str, str]:
    """The environment variables that point a storage root's ledger at `backend`."""
    if backend == "sqlite":
        return {}  # the default: ledger.db under the storage root
    raise ValueError(f"unknown ledger backend {backend!r}")


def other_ledger(runtime: Runtime, lock_timeout: float | None = None) -> Ledger:
    """A second, independent connection to the runtime's ledger (another process, as far as
    the database can tell); `lock_timeout` shortens how long its writes wait for the lock."""
    from worker.ledger.sqlite import SqliteLedger

    if isinstance(runtime.ledger, SqliteLedger):
        if lock_timeout is None:
            return SqliteLedger(runtime.ledger.path)
        return SqliteLedger(runtime.ledger.path, lock_timeout=lock_timeout)
    raise TypeError(f"no second connection for {type(runtime.ledger).__name__}")


def ledger_tables(ledger: Ledger) -> list[str]:
    """The names of the ledger's tables."""
    return [name for kind, name, _ in ledger_schema(ledger) if kind == "table"]


def ledger_schema(ledger: Ledger) -> list[tuple]:
    """The ledger's schema as (type, name, definition) rows in a stable order: two equal
    schemas give equal lists."""
    from worker.ledger.sqlite import SqliteLedger

    if isinstance(ledger, SqliteLedger):
        return [tuple(r.values()) for r in ledger.rows(_SQLITE_SCHEMA)]
    raise TypeError(f"no schema listing for {type(ledger).__name__}")


def sqlite_file_schema(path: Path) -> list[tuple]:
    """The schema of a SQLite file that is no ledger (Huey's queue.db), as `ledger_schema`."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(_SQLITE_SCHEMA).fetchall()
    finally:
        conn.close()


_SQLITE_SCHEMA = (
    "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
)
