"""Fixed parcels for the Parcels view's tests and snapshots: ids, times, owners, histories,
messages and artifacts all chosen here (intake's ids are random), written as raw rows into a
real ledger and a real CAS."""

from __future__ import annotations

import json

from worker.runtime import Runtime

NOW = 1_795_780_800.0  # 2026-11-27 08:00:00 UTC, as tests/console_fixtures.py
HOST = "seer-prod-1"
OWNER = f"{HOST}/48211/170000000/139900000000001"
OTHER = "seer-prod-2/51002/170000100/139900000000002"
COUNT = 60
LIFE = 42  # the parcel with everything: a failed try, a delivery, an attachment, a manifest
FAILED = 45  # a failed parcel, its error looking like markup
MARKUP_AGENT = "[bold]agent[/]"
NOTES = b"release notes: v1.2.3\n"


def parcel_id(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def _line(kind: str, at: float, owner: str | None = None, **extra: object) -> str:
    event = {"k": kind, "t": at, **({"o": owner} if owner else {}), **extra}
    return json.dumps(event, separators=(",", ":")) + "\n"


def fill_parcels(runtime: Runtime) -> None:
    """COUNT parcels a minute apart before NOW, newest last: three agents (one named like
    markup), tasks of three, two types; every fifth failed, the newest ten queued, the rest
    delivered with a message each."""
    ledger = runtime.ledger
    notes = runtime.store.put(NOTES).digest
    with ledger.write():
        for n in range(COUNT):
            created = NOW - (COUNT - n) * 60.0
            agent = ("ops-bot", "billing-agent", MARKUP_AGENT)[n % 3]
            task = f"T-{n // 3}"
            kind = ("pm.task.created", "pm.task.updated")[n % 2]
            history = _line("claimed", created + 1, OWNER)
            finished = None
            error = None
            attempts = 1
            if n >= COUNT - 10:
                state, history, attempts = "queued", None, 0
            elif n % 5 == 0 or n == FAILED:
                state, finished = "failed", created + 3
                error = "ValueError: envelope [red]boom[/] is not valid"
                history += _line("failed", finished, OWNER, attempt=1, error=error)
            else:
                state, finished = "delivered", created + 2
                if n == LIFE:
                    history += _line(
                        "try_failed",
                        created + 1.5,
                        OWNER,
                        attempt=1,
                        error="OSError: the CAS [i]hiccuped[/i]",
                        retry_at=created + 1.7,
                    )
                    history += _line("claimed", created + 1.8, OTHER)
                    attempts = 2
                history += _line("delivered", finished, OTHER if n == LIFE else OWNER)
            ledger.execute(
                "INSERT INTO parcels (id, to_agent_id, task_id, type, stream, state, payload, "
                "size, attempts, created_at, claimed_at, finished_at, error, history) "
                "VALUES (?, ?, ?, ?, 'command.delegation', ?, ?, 120, ?, ?, ?, ?, ?, ?)",
                (
                    parcel_id(n),
                    agent,
                    task,
                    kind,
                    state,
                    None if state == "delivered" else "{}",
                    attempts,
                    created,
                    created + 1 if history else None,
                    finished,
                    error,
                    history,
                ),
            )
            if state == "delivered":
                ledger.execute(
                    "INSERT INTO messages (id, parcel_id, to_agent_id, type, stream, headers, "
                    "envelope, created_at) VALUES (?, ?, ?, 'postmaster.delivery', "
                    "'command.delegation', '{}', '{}', ?)",
                    (1000 + n, parcel_id(n), agent, finished),
                )
        task = f"T-{LIFE // 3}"
        manifest = json.dumps(
            {
                "parcel_id": parcel_id(LIFE),
                "task_id": task,
                "artifacts": [{"name": "notes.txt", "hash": notes, "size": len(NOTES)}],
            }
        ).encode()
        manifest_digest = runtime.store.put(manifest).digest
        for kind, name, digest, size, mime in (
            ("attachment", "notes.txt", notes, len(NOTES), "text/plain"),
            ("manifest", "manifest.json", manifest_digest, len(manifest), "application/json"),
        ):
            ledger.execute(
                "INSERT INTO artifacts (parcel_id, task_id, kind, name, hash, filename, "
                "mime_type, size, uri, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    parcel_id(LIFE),
                    task,
                    kind,
                    name,
                    digest,
                    name,
                    mime,
                    size,
                    f"fe://artifacts/by-task/{task}/{digest}/{name}",
                    NOW,
                ),
            )
