"""Persisted control flags: the queue pause, the worker's disk-full backoff notice, the queue
outage consumers have seen, the slots periodic jobs have claimed, when they last ran and how
that went."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker.ledger import Ledger

PAUSED = "postmaster.paused"
BACKOFF = "postmaster.backoff"


@dataclass(frozen=True)
class PauseState:
    paused: bool
    since: float | None = None
    by: str | None = None


def _get(ledger: Ledger, key: str) -> tuple[Any, float] | None:
    row = ledger.row("SELECT value, updated_at FROM control WHERE key = ?", (key,))
    return (json.loads(row["value"]), row["updated_at"]) if row else None


def _put(ledger: Ledger, key: str, value: Any, now: float) -> None:
    ledger.execute(
        "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, json.dumps(value), now),
    )


def is_paused(ledger: Ledger) -> bool:
    # Read before every dequeue, so it is one indexed lookup and nothing more.
    return ledger.scalar("SELECT 1 FROM control WHERE key = ?", (PAUSED,)) is not None


def pause_state(ledger: Ledger) -> PauseState:
    found = _get(ledger, PAUSED)
    if not found:
        return PauseState(False)
    value, since = found
    return PauseState(True, since, value.get("by"))


def pause(ledger: Ledger, by: str = "cli", now: float | None = None) -> bool:
    """Pauses the postmaster queue; returns False if it was already paused (nothing changed)."""
    now = ledger.now() if now is None else now
    with ledger.write():
        # The insert is the check: two operators pausing at once (on PostgreSQL a look first
        # would let both through) get one True between them.
        return (
            ledger.execute(
                "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                (PAUSED, json.dumps({"by": by}), now),
            ).rowcount
            == 1
        )


def resume(ledger: Ledger) -> bool:
    """Resumes the queue; returns False if it was not paused."""
    with ledger.write():
        return ledger.execute("DELETE FROM control WHERE key = ?", (PAUSED,)).rowcount > 0


@dataclass(frozen=True)
class Backoff:
    reason: str
    until: float
    since: float


def set_backoff(ledger: Ledger, reason: str, until: float, now: float) -> None:
    with ledger.write():
        found = _get(ledger, BACKOFF)
        since = found[0]["since"] if found else now
        _put(ledger, BACKOFF, {"reason": reason, "until": until, "since": since}, now)


def clear_backoff(ledger: Ledger) -> None:
    if ledger.scalar("SELECT 1 FROM control WHERE key = ?", (BACKOFF,)):
        with ledger.write():
            ledger.execute("DELETE FROM control WHERE key = ?", (BACKOFF,))


def backoff_state(ledger: Ledger) -> Backoff | None:
    found = _get(ledger, BACKOFF)
    if not found:
        return None
    value, _ = found
    return Backoff(value["reason"], value["until"], value["since"])


QUEUE_OUTAGE = "queue.unreachable"


@dataclass(frozen=True)
class QueueOutage:
    """The queue's storage (Redis, the queue's database) not answering, as consumers saw it:
    since when (the ledger's clock, the first sighting), where, why, which host saw it first,
    and when a consumer last found it still not answering (`seen`)."""

    address: str
    reason: str
    since: float
    host: str
    seen: float


def record_queue_outage(
    ledger: Ledger, address: str, reason: str, host: str, now: float | None = None
) -> bool:
    """Notes that the queue at `address` does not answer. The first consumer to see it sets
    since when; later sightings (every consumer's watchdog, at each look) only say it still
    holds, so that a record nobody confirms any more can be told from one that is true.
    Returns whether this call recorded a new outage."""
    now = ledger.now() if now is None else now
    value = json.dumps({"address": address, "reason": reason, "host": host, "since": now})
    with ledger.write():
        # The insert is the check, as for the pause: two consumers seeing it at once (on
        # PostgreSQL a look first would let both through) make one record between them.
        if ledger.execute(
            "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (QUEUE_OUTAGE, value, now),
        ).rowcount:
            return True
        ledger.execute(
            "UPDATE control SET updated_at = ? WHERE key = ? AND updated_at < ?",
            (now, QUEUE_OUTAGE, now),
        )
    return False


def clear_queue_outage(ledger: Ledger, *, unconfirmed_since: float | None = None) -> bool:
    """The queue answers again; returns whether an outage was recorded and is now cleared.
    With `unconfirmed_since`, only a record no consumer has confirmed since then is cleared:
    one that another host still confirms (a partition of that host alone) stays."""
    condition = "key = ?"
    params: tuple[object, ...] = (QUEUE_OUTAGE,)
    if unconfirmed_since is not None:
        condition, params = condition + " AND updated_at < ?", (*params, unconfirmed_since)
    if ledger.scalar(f"SELECT 1 FROM control WHERE {condition}", params) is None:
        return False
    with ledger.write():
        return ledger.execute(f"DELETE FROM control WHERE {condition}", params).rowcount > 0


def queue_outage(ledger: Ledger) -> QueueOutage | None:
    found = _get(ledger, QUEUE_OUTAGE)
    if not found:
        return None
    value, seen = found
    # A record of the release before `since` was kept in the value was stamped with it.
    since = value.get("since", seen)
    return QueueOutage(value["address"], value["reason"], since, value["host"], seen)


RAN = "ran:"


def record_run(ledger: Ledger, job: str, now: float | None = None) -> None:
    """Notes that periodic `job` ran just now (not merely that its slot was claimed: a slot
    is claimed before its job goes through the queue, which may not deliver it)."""
    now = ledger.now() if now is None else now
    with ledger.write():
        _put(ledger, RAN + job, {}, now)


def last_run(ledger: Ledger, job: str) -> float | None:
    """When periodic `job` last ran (the ledger's clock), None if never recorded."""
    found = _get(ledger, RAN + job)
    return found[1] if found else None


SLOT = "slot:"


def claim_slot(ledger: Ledger, job: str, slot: int, now: float | None = None) -> bool:
    """True for exactly one caller per (job, slot), whichever scheduler asks: two schedulers
    (an orphan left by a dead supervisord, a second host) never both run a periodic job."""
    now = ledger.now() if now is None else now
    with ledger.write():
        # One statement, so that no lock is needed on PostgreSQL: racing inserts of a new key
        # wait for each other's outcome, and the DO UPDATE's WHERE is judged against the row
        # as the winner committed it (READ COMMITTED re-reads a locked row), never a snapshot
        # from before. An UPDATE then an INSERT in two statements would let a scheduler whose
        # UPDATE found no row lose a later slot to an INSERT of an earlier one. BIGINT: an
        # INTEGER is 32 bits on PostgreSQL.
        claimed = ledger.execute(
            "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at "
            "WHERE CAST(control.value AS BIGINT) < CAST(excluded.value AS BIGINT)",
            (SLOT + job, str(slot), now),
        ).rowcount
    return claimed == 1


JOB_RUN = "run:"


@dataclass(frozen=True)
class JobRun:
    """A periodic job's last run (the ledger's clock): when it started, how long it took,
    its error (None: it went well), who ran it, and when it last went well."""

    job: str
    started_at: float
    took: float
    error: str | None
    by: str
    last_ok_at: float | None

    @property
    def ok(self) -> bool:
        return self.error is None


def record_job_run(
    ledger: Ledger,
    job: str,
    started_at: float,
    took: float,
    error: str | None = None,
    by: str = "scheduler",
    now: float | None = None,
) -> JobRun:
    """Records a run of periodic `job`, keeping the last good one's time across failures.
    One short transaction, after the run (never held while the job runs)."""
    now = ledger.now() if now is None else now
    with ledger.write():
        found = _get(ledger, JOB_RUN + job)
        last_ok = found[0].get("last_ok_at") if found else None
        if error is None:
            last_ok = max(started_at, last_ok or 0.0)
        run = JobRun(job, started_at, took, error, by, last_ok)
        _put(
            ledger,
            JOB_RUN + job,
            {
                "started_at": started_at,
                "took": took,
                "ok": error is None,
                "error": error,
                "by": by,
                "last_ok_at": last_ok,
            },
            now,
        )
    return run


def job_runs(ledger: Ledger) -> dict[str, JobRun]:
    """Every periodic job's last recorded run, by job name."""
    runs = {}
    for row in ledger.rows("SELECT key, value FROM control WHERE key LIKE ?", (JOB_RUN + "%",)):
        value = json.loads(row["value"])
        job = row["key"][len(JOB_RUN) :]
        runs[job] = JobRun(
            job,
            float(value["started_at"]),
            float(value.get("took") or 0.0),
            value.get("error"),
            str(value.get("by") or "scheduler"),
            value.get("last_ok_at"),
        )
    return runs
