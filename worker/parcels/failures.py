"""The failed store: parcels that used up their tries, with error and traceback (redacted).

Every row leaves here redacted, ids and payload included: the raw copy of a parcel stays in the
ledger, and only a retry (in SQL) uses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, cast

from worker.ledger import Ledger, history
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


# What a retry does to a failed parcel, whichever parcels it picks: its original contents
# (the raw payload still in the ledger), fresh tries, due at once.
# The parcel's history gets its "retried" line in the same UPDATE (its one parameter: the line).
_RETRY = (
    "UPDATE parcels SET state = 'queued', attempts = 0, crashes = 0, isolate = 0, "
    f"not_before = 0, finished_at = NULL, {history.APPEND}"
)


def _retried(ledger: Ledger, now: float | None) -> str:
    return history.event_line("retried", ledger.now() if now is None else now)


def retry(ledger: Ledger, parcel_id: str, now: float | None = None) -> bool:
    """Puts a failed parcel back in the queue with its original contents and fresh tries."""
    with ledger.write():
        return (
            ledger.execute(
                f"{_RETRY} WHERE id = ? AND state = 'failed'", (_retried(ledger, now), parcel_id)
            ).rowcount
            == 1
        )


def retry_all(ledger: Ledger, now: float | None = None) -> list[str]:
    """Retries every failed parcel; returns the ids this call put back, oldest first."""
    with ledger.write():
        # The ids come from the UPDATE itself: on PostgreSQL a list read first could miss a
        # parcel failed meanwhile, or name ones a concurrent retry took back.
        found = ledger.rows(
            f"{_RETRY} WHERE state = 'failed' RETURNING seq, id", (_retried(ledger, now),)
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


@dataclass(frozen=True)
class FailureFilter:
    """Which failed parcels an operator means: every field given must hold (AND).

    `agent` and `type` are exact; `error` is a substring of the error, `text` one of the id,
    the agent or the error (both case-insensitive); `older_than` / `newer_than` are seconds
    of age since the failure, against `now`. The match is made in SQL on the ledger's rows,
    which hold secrets that the screens show redacted: the filter is for operators, who
    can read the ledger anyway, and what it shows is redacted as everywhere else.
    """

    agent: str | None = None
    error: str | None = None
    type: str | None = None
    older_than: float | None = None
    newer_than: float | None = None
    text: str | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in (None, "") for f in fields(self))

    def describe(self) -> str:
        """The filter as a phrase: "agent ops-bot, error ~timeout, failed more than 2h ago"."""
        parts = []
        if self.agent:
            parts.append(f"agent {self.agent}")
        if self.type:
            parts.append(f"type {self.type}")
        if self.error:
            parts.append(f"error ~{self.error}")
        if self.text:
            parts.append(f"~{self.text}")
        if self.older_than is not None:
            parts.append(f"failed more than {_age(self.older_than)} ago")
        if self.newer_than is not None:
            parts.append(f"failed less than {_age(self.newer_than)} ago")
        return ", ".join(parts) or "every failed parcel"


def _age(seconds: float) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _contains(text: str) -> str:
    # LIKE's own characters taken literally; `lower()` on both sides, as PostgreSQL's LIKE
    # is case-sensitive (SQLite's `lower` folds ASCII only: so does the match there).
    escaped = text.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


def _where(failure_filter: FailureFilter, now: float) -> tuple[str, list[Any]]:
    """The filter as SQL conditions on `parcels` (state included) and their values."""
    f = failure_filter
    clauses: list[str] = ["state = 'failed'"]
    params: list[Any] = []
    if f.agent:
        clauses.append("to_agent_id = ?")
        params.append(f.agent)
    if f.type:
        clauses.append("type = ?")
        params.append(f.type)
    if f.error:
        clauses.append("lower(coalesce(error, '')) LIKE ? ESCAPE '!'")
        params.append(_contains(f.error))
    if f.text:
        clauses.append(
            "(lower(id) LIKE ? ESCAPE '!' OR lower(to_agent_id) LIKE ? ESCAPE '!' "
            "OR lower(coalesce(error, '')) LIKE ? ESCAPE '!')"
        )
        params += [_contains(f.text)] * 3
    if f.older_than is not None:
        clauses.append("finished_at < ?")
        params.append(now - f.older_than)
    if f.newer_than is not None:
        clauses.append("finished_at >= ?")
        params.append(now - f.newer_than)
    return " AND ".join(clauses), params


def matching(
    ledger: Ledger, failure_filter: FailureFilter, now: float | None = None, limit: int = 100
) -> list[FailedParcel]:
    """The failed parcels the filter selects, newest failure first (redacted)."""
    now = ledger.now() if now is None else now
    where, params = _where(failure_filter, now)
    rows = ledger.rows(
        f"SELECT {_SUMMARY} FROM parcels WHERE {where} ORDER BY finished_at DESC LIMIT ?",
        (*params, limit),
    )
    return [FailedParcel(**cast(dict[str, Any], redact_value(row))) for row in rows]


def count_matching(ledger: Ledger, failure_filter: FailureFilter, now: float | None = None) -> int:
    now = ledger.now() if now is None else now
    where, params = _where(failure_filter, now)
    return ledger.scalar(f"SELECT count(*) FROM parcels WHERE {where}", params)


# Rows a transaction of a filtered retry or purge touches at most. One transaction for a
# filter matching 100,000 parcels would hold SQLite's one write lock (and, on both engines,
# run the counter triggers for every row) for seconds: the Postmaster's deliveries would
# wait behind it. Batches keep each wait short; each is its own transaction.
BATCH = 1000


def _in_batches(
    ledger: Ledger,
    statement: str,
    failure_filter: FailureFilter,
    now: float | None,
    statement_params: tuple[object, ...] = (),
) -> list[str]:
    """Runs `statement` (an UPDATE or DELETE of parcels, then its WHERE) on the parcels the
    filter selects, oldest first, a batch a transaction; returns the ids it acted on.

    A parcel is acted on if it matches when its batch runs. The walk goes up the parcels'
    `seq` (each parcel looked at once, so a retried parcel that fails again meanwhile is not
    taken twice) and stops at the newest parcel that existed when it began.
    """
    now = ledger.now() if now is None else now
    where, params = _where(failure_filter, now)
    last = ledger.scalar("SELECT max(seq) FROM parcels WHERE state = 'failed'")
    done: list[str] = []
    after = 0
    while last is not None:
        with ledger.write():
            picked = ledger.rows(
                f"SELECT seq FROM parcels WHERE {where} AND seq > ? AND seq <= ? "
                "ORDER BY seq LIMIT ?",
                (*params, after, last, BATCH),
            )
            if not picked:
                break
            upto = picked[-1]["seq"]
            # A range, not the picked rows: on PostgreSQL a row another transaction retried
            # or purged meanwhile is checked against the conditions again once unlocked.
            found = ledger.rows(
                f"{statement} WHERE {where} AND seq > ? AND seq <= ? RETURNING seq, id",
                (*statement_params, *params, after, upto),
            )
        done += [r["id"] for r in sorted(found, key=lambda r: r["seq"])]
        after = upto
    return done


def retry_matching(
    ledger: Ledger, failure_filter: FailureFilter, now: float | None = None
) -> list[str]:
    """Retries (as `retry` does) the failed parcels the filter selects; returns the ids put
    back, oldest first."""
    return _in_batches(ledger, _RETRY, failure_filter, now, (_retried(ledger, now),))


def purge_matching(ledger: Ledger, failure_filter: FailureFilter, now: float | None = None) -> int:
    """Deletes the failed parcels the filter selects, as `purge` does; returns how many."""
    return len(_in_batches(ledger, "DELETE FROM parcels", failure_filter, now))
