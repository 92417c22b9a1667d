"""Agents' inboxes: the messages the Postmaster delivered, and acknowledging them.

Messages are shown redacted whatever ORCHESTRATION_REDACT_SECRETS stored: the setting decides
what the agent gets, not what an operator's terminal shows.

Lists page by keyset, never OFFSET: a page ends with a `Cursor` (the last message shown), and
the next page starts after it, so page 1,000 costs what page 1 does. Unread first walks the
`messages_unread` partial index (to_agent_id, id WHERE read_at IS NULL), then the agent's
read messages (`messages_agent`), each newest first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, cast

from worker.cas.artifacts import Artifact, artifacts_of_parcel
from worker.ledger import Ledger
from worker.redaction import redact_value

_COLUMNS = "id, parcel_id, to_agent_id, type, stream, headers, envelope, created_at, read_at"

# Totals from the agent index, unread counts from the unread partial index, both grouped in
# one statement; the newest message's time by its primary key.
_AGENTS = """
SELECT t.to_agent_id AS agent, t.total AS messages, coalesce(u.unread, 0) AS unread,
       newest.created_at AS last_at
FROM (SELECT to_agent_id, count(*) AS total, max(id) AS last_id
      FROM messages GROUP BY to_agent_id) t
LEFT JOIN (SELECT to_agent_id, count(*) AS unread
           FROM messages WHERE read_at IS NULL GROUP BY to_agent_id) u
       ON u.to_agent_id = t.to_agent_id
JOIN messages newest ON newest.id = t.last_id
ORDER BY t.last_id DESC
LIMIT ?
"""


@dataclass(frozen=True)
class Message:
    """A delivered message as an operator sees it: every string redacted, keys too."""

    id: int
    parcel_id: str
    to_agent_id: str
    type: str
    stream: str
    headers: dict[str, Any]
    envelope: dict[str, Any]
    created_at: float
    read_at: float | None

    def as_dict(self) -> dict[str, Any]:
        # Not `asdict`: it would deep-copy every envelope only to print it. The fields' order
        # is the JSON's key order, which tests and docs compare.
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class AgentInbox:
    """One agent's inbox in the list of agents (the name redacted)."""

    agent: str
    messages: int
    unread: int
    last_at: float  # when its newest message was delivered

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: its last message's id, and whether it was unread when shown (which
    part of an unread-first list the next page goes on in)."""

    id: int
    unread: bool

    @classmethod
    def after(cls, message: Message) -> Cursor:
        return cls(message.id, message.read_at is None)


@dataclass(frozen=True)
class MessagePage:
    """A page of an agent's messages; `next` is the cursor of the next page (None: the last)."""

    messages: tuple[Message, ...]
    next: Cursor | None


@dataclass(frozen=True)
class OpenedMessage:
    """One message opened: its redacted envelope and headers, and the parcel's attachments
    (name, size, hash, URI) and manifest as the artifacts table has them (redacted)."""

    message: Message
    attachments: tuple[Artifact, ...]
    manifest: Artifact | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.message.as_dict(),
            "attachments": [a.as_dict() for a in self.attachments],
            "manifest": self.manifest.as_dict() if self.manifest else None,
        }


def _message(row: dict[str, Any]) -> Message:
    message = {
        **row,
        "headers": json.loads(row["headers"]),
        "envelope": json.loads(row["envelope"]),
    }
    # The whole row through redact_value: keys inside headers and envelope are redacted too.
    return Message(**cast(dict[str, Any], redact_value(message)))


def agents(ledger: Ledger, limit: int = 200) -> list[AgentInbox]:
    """Every agent that has messages, with its total and unread counts; the agent with the
    newest message first."""
    rows = ledger.rows(_AGENTS, (limit,))
    return [AgentInbox(**cast(dict[str, Any], redact_value(r))) for r in rows]


def _rows(ledger: Ledger, agent: str, part: str, before: int | None, limit: int) -> list[Any]:
    where = "to_agent_id = ?" + {"all": "", "unread": " AND read_at IS NULL"}.get(
        part, " AND read_at IS NOT NULL"
    )
    params: list[Any] = [agent]
    if before is not None:
        where += " AND id < ?"
        params.append(before)
    return ledger.rows(
        f"SELECT {_COLUMNS} FROM messages WHERE {where} ORDER BY id DESC LIMIT ?",
        (*params, limit),
    )


def messages_page(
    ledger: Ledger,
    agent: str,
    *,
    unread: bool = False,
    unread_first: bool = False,
    after: Cursor | None = None,
    limit: int = 50,
) -> MessagePage:
    """A page of the agent's messages, newest first; with `unread_first`, its unread ones
    (newest first), then its read ones (newest first). `after`: the previous page's `next`.
    The agent is matched as stored (as it was sent)."""
    wanted = limit + 1
    before = after.id if after else None
    with ledger.read():
        if unread or not unread_first:
            rows = _rows(ledger, agent, "unread" if unread else "all", before, wanted)
        else:
            rows = []
            if after is None or after.unread:
                rows = _rows(ledger, agent, "unread", before, wanted)
                before = None
            if len(rows) < wanted:
                rows += _rows(ledger, agent, "read", before, wanted - len(rows))
    shown = tuple(_message(r) for r in rows[:limit])
    more = len(rows) > limit and bool(shown)
    return MessagePage(shown, Cursor.after(shown[-1]) if more else None)


def messages(
    ledger: Ledger,
    agent: str,
    *,
    unread: bool = False,
    limit: int = 50,
    unread_first: bool = False,
    after: Cursor | None = None,
) -> list[Message]:
    """The agent's newest messages first (unread ones first, with `unread_first`); one page
    of `messages_page`."""
    page = messages_page(
        ledger, agent, unread=unread, unread_first=unread_first, after=after, limit=limit
    )
    return list(page.messages)


def message(ledger: Ledger, message_id: int) -> Message | None:
    row = ledger.row(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,))
    return _message(row) if row else None


def open_message(ledger: Ledger, message_id: int) -> OpenedMessage | None:
    """The message with its parcel's attachments and manifest, or None if there is no such
    message."""
    with ledger.read():
        row = ledger.row(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        if row is None:
            return None
        found = artifacts_of_parcel(ledger, row["parcel_id"])
    return OpenedMessage(
        _message(row),
        tuple(a for a in found if a.kind != "manifest"),
        next((a for a in found if a.kind == "manifest"), None),
    )


def message_for_parcel(ledger: Ledger, parcel_id: str) -> Message | None:
    row = ledger.row(f"SELECT {_COLUMNS} FROM messages WHERE parcel_id = ?", (parcel_id,))
    return _message(row) if row else None


def ack(ledger: Ledger, message_id: int, now: float | None = None) -> bool | None:
    """Marks a message read. True if it changed, False if it was already read, None if unknown."""
    now = ledger.now() if now is None else now
    with ledger.write():
        # The UPDATE decides: on PostgreSQL two acks that both read the message as unread
        # would both say True; this way the second one waits and finds it read.
        if ledger.execute(
            "UPDATE messages SET read_at = ? WHERE id = ? AND read_at IS NULL", (now, message_id)
        ).rowcount:
            return True
        known = ledger.scalar("SELECT 1 FROM messages WHERE id = ?", (message_id,))
    return None if known is None else False
