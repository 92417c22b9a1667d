"""Agents' inboxes: the messages the Postmaster delivered, and acknowledging them.

Messages are shown redacted whatever ORCHESTRATION_REDACT_SECRETS stored: the setting decides
what the agent gets, not what an operator's terminal shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, cast

from worker.ledger import Ledger
from worker.redaction import redact_value

_COLUMNS = "id, parcel_id, to_agent_id, type, stream, headers, envelope, created_at, read_at"


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


def _message(row: dict[str, Any]) -> Message:
    message = {
        **row,
        "headers": json.loads(row["headers"]),
        "envelope": json.loads(row["envelope"]),
    }
    # The whole row through redact_value: keys inside headers and envelope are redacted too.
    return Message(**cast(dict[str, Any], redact_value(message)))


def messages(ledger: Ledger, agent: str, *, unread: bool = False, limit: int = 50) -> list[Message]:
    """The agent's newest messages first."""
    where = "to_agent_id = ?" + (" AND read_at IS NULL" if unread else "")
    rows = ledger.rows(
        f"SELECT {_COLUMNS} FROM messages WHERE {where} ORDER BY id DESC LIMIT ?",
        (agent, limit),
    )
    return [_message(r) for r in rows]


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
