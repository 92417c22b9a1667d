"""A parcel's life as it happens: one short JSON line per event in `parcels.history`.

Each line is appended by the UPDATE that makes the change itself (a claim, a delivery, a try
that failed, a take-back), so keeping the history costs no statement of its own on the
Postmaster's path. `worker.parcels.finder` reads them back.
"""

from __future__ import annotations

import json
from typing import Any

# SQL both engines accept: NULL || text is NULL on both, hence the coalesce.
APPEND = "history = coalesce(history, '') || ?"

# Past this an error is cut: the full last error stays in `parcels.error`.
ERROR_CHARS = 300

KINDS = ("claimed", "try_failed", "failed", "delivered", "taken_back", "released", "retried")


def event_line(kind: str, at: float, owner: str | None = None, **extra: Any) -> str:
    """One history line: `kind` (one of KINDS), `at` (the ledger's time), `owner` (the
    consumer's token, worker.identity.Owner), and what else the event says (`error`,
    `attempt`, `retry_at`)."""
    event: dict[str, Any] = {"k": kind, "t": round(at, 6)}
    if owner is not None:
        event["o"] = owner
    for key, value in extra.items():
        if value is None:
            continue
        if key == "error":
            value = str(value)[:ERROR_CHARS]
        event[key] = value
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
