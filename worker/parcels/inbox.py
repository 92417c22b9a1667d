"""Agents' inboxes: the messages the Postmaster delivered, and acknowledging them.

Messages are shown redacted whatever ORCHESTRATION_REDACT_SECRETS stored: the setting decides
what the agent gets, not what an operator's terminal shows.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from worker.ledger import Ledger
from worker.redaction import redact_value


def _message(row: dict[str, Any]) -> dict[str, Any]:
    message = {
        **row,
        "headers": json.loads(row["headers"]),
        "envelope": json.loads(row["envelope"]),
    }
    return cast(dict[str, Any], redact_value(message))


def messages(
    ledger: Ledger, agent: str, *, unread: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    """The agent's newest messages first."""
    where = "to_agent_id = ?" + (" AND read_at IS NULL" if unread else "")
    rows = ledger.rows(
        f"SELECT id, parcel_id, to_agent_id, type, stream, headers, envelope, created_at, read_at "
        f"FROM messages WHERE {where} ORDER BY id DESC LIMIT ?",
        (agent, limit),
    )
    return [_message(r) for r in rows]


def message_for_parcel(ledger: Ledger, parcel_id: str) -> dict[str, Any] | None:
    row = ledger.row(
        "SELECT id, parcel_id, to_agent_id, type, stream, headers, envelope, created_at, read_at "
        "FROM messages WHERE parcel_id = ?",
        (parcel_id,),
    )
    return _message(row) if row else None


def ack(ledger: Ledger, message_id: int, now: float | None = None) -> bool | None:
    """Marks a message read. True if it changed, False if it was already read, None if unknown."""
    now = time.time() if now is None else now
    with ledger.write():
        found = ledger.row("SELECT read_at FROM messages WHERE id = ?", (message_id,))
        if found is None:
            return None
        if found["read_at"] is not None:
            return False
        ledger.execute("UPDATE messages SET read_at = ? WHERE id = ?", (now, message_id))
    return True
