"""The failed store: parcels that used up their tries, with error and traceback (redacted).

Every row leaves here redacted, ids and payload included: the raw copy of a parcel stays in the
ledger, and only a retry (in SQL) uses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, cast

from worker.ledger import Ledger
from worker.redaction import redact_value

_SUMMARY = (
    "id, to_agent_id, task_id, type, attempts, crashes, error, created_at, finished_at AS failed_at"
)


def _shallow(record: FailedParcel | ParcelEntry) -> dict[str, Any]:
    # Not `asdict`: it would deep-copy a payload as large as the parcel size limit only to
    # print it. The fields' order is the JSON's key order, which tests and docs compare.
    return {f.name: getattr(record, f.name) for f in fields(record)}


@dataclass(frozen=True)
class FailedParcel:
    """A line of the failed list (redacted)."""

    id: str
    to_agent_id: str
    task_id: str
    type: str
    attempts: int
    crashes: int
    error: str | None
    created_at: float
    # Set by every path to 'failed'.
    failed_at: float

    def as_dict(self) -> dict[str, Any]:
        return _shallow(self)


@dataclass(frozen=True)
class ParcelEntry:
    """One parcel's ledger entry in any state (redacted). `payload` is the parsed JSON, or
    None once delivery has dropped it."""

    id: str
    to_agent_id: str
    task_id: str
    type: str
    stream: str
    state: str
    size: int
    attempts: int
    crashes: int
    owner: str | None
    not_before: float
    created_at: float
    claimed_at: float | None
    finished_at: float | None
    error: str | None
    traceback: str | None
    payload: Any

    def as_dict(self) -> dict[str, Any]:
        return _shallow(self)


def list_failed(ledger: Ledger, limit: int = 100) -> list[FailedParcel]:
    rows = ledger.rows(
        f"SELECT {_SUMMARY} FROM parcels WHERE state = 'failed' ORDER BY finished_at DESC LIMIT ?",
        (limit,),
    )
    return [FailedParcel(**cast(dict[str, Any], redact_value(row))) for row in rows]


def parcel(ledger: Ledger, parcel_id: str) -> ParcelEntry | None:
    """One parcel's ledger entry as an operator sees it, whatever its state: every string
    redacted, the payload (only while it is kept) too."""
    row = ledger.row(
        "SELECT id, to_agent_id, task_id, type, stream, state, size, attempts, crashes, owner, "
        "not_before, created_at, claimed_at, finished_at, error, traceback, payload "
        "FROM parcels WHERE id = ?",
        (parcel_id,),
    )
    if row is None:
        return None
    if row["payload"] is not None:
        row["payload"] = json.loads(row["payload"])
    return ParcelEntry(**cast(dict[str, Any], redact_value(row)))


def retry(ledger: Ledger, parcel_id: str) -> bool:
    """Puts a failed parcel back in the queue with its original contents and fresh tries."""
    with ledger.write():
        return (
            ledger.execute(
                "UPDATE parcels SET state = 'queued', attempts = 0, crashes = 0, isolate = 0, "
                "not_before = 0, finished_at = NULL WHERE id = ? AND state = 'failed'",
                (parcel_id,),
            ).rowcount
            == 1
        )


def retry_all(ledger: Ledger) -> list[str]:
    """Retries every failed parcel; returns the ids this call put back, oldest first."""
    with ledger.write():
        # The ids come from the UPDATE itself: on PostgreSQL a list read first could miss a
        # parcel failed meanwhile, or name ones a concurrent retry took back.
        found = ledger.rows(
            "UPDATE parcels SET state = 'queued', attempts = 0, crashes = 0, isolate = 0, "
            "not_before = 0, finished_at = NULL WHERE state = 'failed' RETURNING seq, id"
        )
    return [r["id"] for r in sorted(found, key=lambda r: r["seq"])]


def count_failed(ledger: Ledger, older_than: float | None = None, now: float | None = None) -> int:
    now = ledger.now() if now is None else now
    cutoff = now - older_than if older_than is not None else None
    if cutoff is None:
        return ledger.scalar("SELECT count(*) FROM parcels WHERE state = 'failed'")
    return ledger.scalar(
        "SELECT count(*) FROM parcels WHERE state = 'failed' AND finished_at < ?", (cutoff,)
    )


def purge(ledger: Ledger, older_than: float | None = None, now: float | None = None) -> int:
    """Deletes failed parcels (optionally only those failed more than `older_than` s ago)."""
    now = ledger.now() if now is None else now
    with ledger.write():
        if older_than is None:
            return ledger.execute("DELETE FROM parcels WHERE state = 'failed'").rowcount
        return ledger.execute(
            "DELETE FROM parcels WHERE state = 'failed' AND finished_at < ?", (now - older_than,)
        ).rowcount
