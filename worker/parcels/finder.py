"""Finding parcels among millions (by id prefix, task, agent, type, state, time), one parcel's
whole life (sent, claims, tries, take-backs, delivery, artifacts, manifest), and the newest
deliveries. Every string leaves here redacted, ids and agents too.

Every search walks an index newest first (`seq` descending) and stops at a page: keyset
paging, `before` being the cursor the previous page gave, so page 1,000 costs what page 1 does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, cast

from worker.cas.artifacts import Artifact, artifacts_of_parcel
from worker.cas.base import BlobStore
from worker.fleet import consumers
from worker.identity import Owner
from worker.ledger import Ledger
from worker.redaction import redact_text, redact_value
from worker.settings import parse_duration

STATES = ("queued", "in_flight", "delivered", "failed")
MAX_LIMIT = 1000
# The manifest is shown whole up to this; it lists the attachments, so it is small.
MANIFEST_LIMIT = 64 * 1024
# What intake generates (str(uuid4())): lowercase hex in groups of 8-4-4-4-12.
_ID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_HEX = frozenset("0123456789abcdef")

_ROW = "seq, id, to_agent_id, task_id, type, state, attempts, created_at, finished_at, error"


class FinderError(ValueError):
    """A search term that cannot be used: one line naming it and what is allowed."""


@dataclass(frozen=True)
class ParcelRow:
    """One line of a search's results (redacted)."""

    seq: int
    id: str
    to_agent_id: str
    task_id: str
    type: str
    state: str
    attempts: int
    created_at: float
    finished_at: float | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Page:
    """A page of results, newest first; `next_before` is the cursor of the next page (None:
    this is the last)."""

    rows: tuple[ParcelRow, ...]
    next_before: int | None


@dataclass(frozen=True)
class Query:
    """What a search asks for; times are Unix seconds (see `parse_when`)."""

    id_prefix: str | None = None
    task_id: str | None = None
    agent: str | None = None
    type: str | None = None
    state: str | None = None
    since: float | None = None
    until: float | None = None


def validate_prefix(prefix: str) -> str:
    """An id prefix as intake writes ids (uppercase hex taken as lowercase); else FinderError.
    Every character must be what a uuid has there: a hex digit, or a hyphen at 9, 14, 19, 24."""
    value = prefix.strip().lower()
    if (
        not value
        or len(value) > len(_ID_SHAPE)
        or any(
            (shape == "-") != (c == "-") or (c != "-" and c not in _HEX)
            for c, shape in zip(value, _ID_SHAPE, strict=False)
        )
    ):
        raise FinderError(
            f"id {prefix[:60]!r} is not a parcel id or the start of one: ids are "
            f"{_ID_SHAPE}, x a hex digit (0-9, a-f)"
        )
    return value


def validate_state(state: str) -> str:
    if state not in STATES:
        raise FinderError(f"state {state[:40]!r} is not one of {', '.join(STATES)}")
    return state


def parse_when(text: str, now: float, what: str = "since") -> float:
    """An age before `now` (15m, 2h, 7d) or an ISO time (2026-12-02T10:00, UTC unless it
    says otherwise), as Unix seconds."""
    value = text.strip()
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FinderError(
            f"{what} {text[:40]!r} is not an age (15m, 2h, 7d) or an ISO time "
            "(2026-12-02T10:00, UTC unless an offset is given)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


_TERMS = {"id": "id_prefix", "task": "task_id", "agent": "agent", "type": "type"}
_TERMS_HELP = "agent:A task:T type:X state:S since:2h until:ISO id:PREFIX, or a bare id prefix"


def parse_filter(text: str, now: float) -> Query:
    """The console's filter line: `agent:ops-bot state:failed since:2h`, or a bare id prefix."""
    found: dict[str, Any] = {}
    for term in text.split():
        name, sep, value = term.partition(":")
        if not sep:
            name, value = "id", term
        if not value:
            raise FinderError(f"{term[:40]!r} has no value: use {_TERMS_HELP}")
        if name in _TERMS:
            key = _TERMS[name]
            found[key] = validate_prefix(value) if key == "id_prefix" else value
        elif name == "state":
            found["state"] = validate_state(value)
        elif name in ("since", "until"):
            found[name] = parse_when(value, now, name)
        else:
            raise FinderError(f"unknown term {name[:20]!r}: use {_TERMS_HELP}")
    return Query(**found)


def _seq_from(ledger: Ledger, created_at: float, top: int) -> int:
    """The first seq whose parcel was queued at or after `created_at`, by bisection on the
    primary key (seq and created_at grow together: a parcel is stamped as it is inserted),
    so a time range costs ~20 lookups and no index of its own on intake's path."""
    lo, hi = 0, top + 1
    while lo < hi:
        mid = (lo + hi) // 2
        at = ledger.scalar(
            "SELECT created_at FROM parcels WHERE seq >= ? ORDER BY seq LIMIT 1", (mid,)
        )
        if at is None or at >= created_at:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _row(row: dict[str, Any]) -> ParcelRow:
    return ParcelRow(**cast(dict[str, Any], redact_value(row)))


def find(
    ledger: Ledger,
    *,
    id_prefix: str | None = None,
    task_id: str | None = None,
    agent: str | None = None,
    type: str | None = None,
    state: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Page:
    """Parcels matching every filter given, newest first, `limit` a page; `before`: the
    previous page's `next_before`. Values are matched as stored (an agent as it was sent)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise FinderError(f"limit {limit} is not from 1 to {MAX_LIMIT}")
    where: list[str] = []
    params: list[Any] = []
    if id_prefix:
        prefix = validate_prefix(id_prefix)
        # A range on the unique index; the substr check keeps it exact whatever the
        # database's collation does with the hyphens.
        where.append("id >= ? AND id < ? AND substr(id, 1, ?) = ?")
        params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1), len(prefix), prefix]
    # Intake stores tasks and types redacted (agents as sent): matched as stored.
    for column, value in (
        ("task_id", None if task_id is None else redact_text(task_id)),
        ("to_agent_id", agent),
        ("type", None if type is None else redact_text(type)),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if state is not None:
        where.append("state = ?")
        params.append(validate_state(state))
    for bound in (since, until):
        if bound is not None and not math.isfinite(bound):
            raise FinderError("a time bound must be a finite time")
    if since is not None or until is not None:
        top = ledger.scalar("SELECT max(seq) FROM parcels") or 0
        if since is not None:
            where.append("seq >= ? AND created_at >= ?")
            params += [_seq_from(ledger, since, top), since]
        if until is not None:
            where.append("seq < ? AND created_at <= ?")
            params += [_seq_from(ledger, math.nextafter(until, math.inf), top) + 1, until]
    if before is not None:
        where.append("seq < ?")
        params.append(before)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    rows = ledger.rows(
        f"SELECT {_ROW} FROM parcels {clause}ORDER BY seq DESC LIMIT ?", (*params, limit + 1)
    )
    more = len(rows) > limit
    page = tuple(_row(r) for r in rows[:limit])
    return Page(page, page[-1].seq if more and page else None)


def find_query(ledger: Ledger, query: Query, before: int | None = None, limit: int = 50) -> Page:
    return find(
        ledger,
        id_prefix=query.id_prefix,
        task_id=query.task_id,
        agent=query.agent,
        type=query.type,
        state=query.state,
        since=query.since,
        until=query.until,
        before=before,
        limit=limit,
    )


def recent(ledger: Ledger, limit: int = 20) -> tuple[ParcelRow, ...]:
    """The newest deliveries, newest first (the index on state and finish time)."""
    rows = ledger.rows(
        f"SELECT {_ROW} FROM parcels WHERE state = 'delivered' ORDER BY finished_at DESC LIMIT ?",
        (limit,),
    )
    return tuple(_row(r) for r in rows)


# -- a parcel's life --------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One moment of a parcel's life (redacted). `kind`: sent, claimed, try_failed, failed,
    taken_back, released, retried, delivered."""

    kind: str
    at: float | None
    host: str | None = None
    pid: int | None = None
    thread: int | None = None
    consumer: str | None = None  # the queue of the consumer process, when it is registered
    attempt: int | None = None
    error: str | None = None
    retry_at: float | None = None
    message_id: int | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def by(self) -> str:
        """Who: "host web-1 pid 4242 thread 7 (postmaster)", or "" when nobody is named."""
        if self.host is None:
            return ""
        named = f" ({self.consumer})" if self.consumer else ""
        return f"host {self.host} pid {self.pid} thread {self.thread}{named}"

    def describe(self) -> str:
        """The event in one line, without its time (the CLI and the console add their own)."""
        words = {
            "sent": "sent (queued)",
            "claimed": "claimed",
            "try_failed": f"try {self.attempt} failed",
            "failed": f"failed at try {self.attempt}" if self.attempt else "failed",
            "taken_back": "taken back from a dead worker",
            "released": "given back by its worker",
            "retried": "retried",
            "delivered": "delivered",
        }.get(self.kind, self.kind)
        if self.kind == "delivered" and self.message_id is not None:
            words += f" as message {self.message_id}"
        if self.by:
            words += f" by {self.by}"
        if self.note:
            words += f"; {self.note}"
        if self.error:
            words += f": {' '.join(self.error.split())}"
        return words


@dataclass(frozen=True)
class ParcelLife:
    """A parcel and everything that happened to it (redacted)."""

    id: str
    to_agent_id: str
    task_id: str
    type: str
    stream: str
    state: str
    size: int
    attempts: int
    crashes: int
    created_at: float
    finished_at: float | None
    error: str | None
    events: tuple[Event, ...]
    artifacts: tuple[Artifact, ...]  # the attachments
    manifest: Artifact | None
    manifest_text: str | None  # the manifest's JSON, when a store was given to read it
    message_id: int | None
    actions: tuple[str, ...]  # "retry" (a failed parcel), "pull" (it has artifacts)

    def as_dict(self) -> dict[str, Any]:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["events"] = [e.as_dict() for e in self.events]
        shown["artifacts"] = [a.as_dict() for a in self.artifacts]
        shown["manifest"] = self.manifest.as_dict() if self.manifest else None
        return shown


_EVENT_KEYS = {"attempt", "error", "retry_at", "crashes"}


def _event(raw: dict[str, Any], queues: dict[str, str], message_id: int | None) -> Event:
    owner = Owner.parse(str(raw.get("o") or "")) if raw.get("o") else None
    kind = str(raw.get("k", "?"))
    note = "put back in the queue by an operator" if kind == "retried" else None
    if raw.get("crashes"):
        note = f"worker deaths {raw['crashes']}"
    return Event(
        kind=kind,
        at=raw.get("t"),
        host=owner.host if owner else None,
        pid=owner.pid if owner else None,
        thread=owner.thread if owner else None,
        consumer=queues.get(owner.process_token) if owner else None,
        attempt=raw.get("attempt"),
        error=raw.get("error"),
        retry_at=raw.get("retry_at"),
        message_id=message_id if kind == "delivered" else None,
        note=note,
    )


def _events(row: dict[str, Any], queues: dict[str, str], message_id: int | None) -> list[Event]:
    events = [Event("sent", row["created_at"])]
    history = row["history"]
    if history is None:
        # Written before the history was kept (schema 5): what the row itself says.
        if row["claimed_at"] is not None:
            events.append(Event("claimed", row["claimed_at"], note="last claim only"))
        if row["state"] in ("delivered", "failed"):
            events.append(
                Event(
                    row["state"],
                    row["finished_at"],
                    error=row["error"] if row["state"] == "failed" else None,
                    message_id=message_id if row["state"] == "delivered" else None,
                    attempt=row["attempts"] or None,
                )
            )
        return events
    for line in history.splitlines():
        try:
            raw = json.loads(line)
        except ValueError:
            events.append(Event("unreadable", None, note=line[:80]))
            continue
        if not isinstance(raw, dict):
            continue
        if events[-1].kind == "failed" and raw.get("k") not in ("failed", "retried"):
            # Retried before retries were written down: only a retry from the failed store
            # takes a failed parcel back to the queue.
            events.append(Event("retried", None, note="put back in the queue by an operator"))
        events.append(_event(raw, queues, message_id))
    if events[-1].kind == "failed" and row["state"] == "queued":
        events.append(Event("retried", None, note="put back in the queue by an operator"))
    return events


def _queues(ledger: Ledger) -> dict[str, str]:
    try:
        return {c.owner.process_token: c.queue for c in consumers.consumers(ledger) if c.owner}
    except Exception:  # a registry it cannot read leaves the consumer unnamed, nothing more
        return {}


def life(
    ledger: Ledger, parcel_id: str, now: float | None = None, store: BlobStore | None = None
) -> ParcelLife | None:
    """One parcel's whole life, or None if the ledger has no such parcel. With `store`, the
    manifest's JSON is read from the CAS too. `now` is unused today: ages are the caller's."""
    with ledger.read():
        row = ledger.row(
            "SELECT id, to_agent_id, task_id, type, stream, state, size, attempts, crashes, "
            "created_at, claimed_at, finished_at, error, history FROM parcels WHERE id = ?",
            (parcel_id,),
        )
        if row is None:
            return None
        message_id = ledger.scalar("SELECT id FROM messages WHERE parcel_id = ?", (parcel_id,))
        found = artifacts_of_parcel(ledger, parcel_id)
        queues = _queues(ledger) if row["history"] else {}
    events = [_redacted(e) for e in _events(row, queues, message_id)]
    manifest = next((a for a in found if a.kind == "manifest"), None)
    attachments = tuple(a for a in found if a.kind != "manifest")
    manifest_text = None
    if store is not None and manifest is not None:
        manifest_text = _manifest_text(store, manifest)
    shown = cast(
        dict[str, Any], redact_value({k: row[k] for k in row if k not in ("claimed_at", "history")})
    )
    actions = (("retry",) if row["state"] == "failed" else ()) + (("pull",) if found else ())
    return ParcelLife(
        **shown,
        events=tuple(events),
        artifacts=attachments,
        manifest=manifest,
        manifest_text=manifest_text,
        message_id=message_id,
        actions=actions,
    )


def _redacted(event: Event) -> Event:
    return Event(**cast(dict[str, Any], redact_value(event.as_dict())))


def _manifest_text(store: BlobStore, manifest: Artifact) -> str:
    try:
        if manifest.size > MANIFEST_LIMIT:
            return f"(manifest of {manifest.size} bytes: pull it to read it)"
        data = json.loads(store.read(manifest.hash))
    except Exception as exc:  # a blob gone or damaged is said, the life still shown
        return f"(manifest unreadable: {redact_text(str(exc))[:200]})"
    return json.dumps(redact_value(data), indent=2, ensure_ascii=False)
