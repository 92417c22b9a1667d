"""The alert outbox: one row per notification per channel, sent with retries and backoff.

Rows commit with the rule's state change; deliver_due sends outside any transaction and records
"sent" only after the channel said ok, so a crash repeats an alert rather than losing it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from worker.alerts.channels import Channel, Notification, SendResult
from worker.ledger import Ledger

log = logging.getLogger("seer.alerts")

BACKOFF_FIRST = 10.0
BACKOFF_MAX = 600.0
# Statuses that still owe a delivery; 'sent' and 'failed' are final.
OPEN = ("pending", "sending")


@dataclass(frozen=True)
class DeliveryReport:
    """What one deliver_due call did; skipped counts due rows whose channel is not configured."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Delivery:
    """One outbox row as the console and `seer alerts` show it."""

    id: int
    channel: str
    rule: str
    level: str
    title: str
    created_at: float
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    sent_at: float | None


def backoff(attempts: int) -> float:
    """The wait after the `attempts`-th failed try: 10 s, doubling, at most 10 minutes."""
    return min(BACKOFF_FIRST * 2 ** min(max(attempts - 1, 0), 16), BACKOFF_MAX)


def enqueue(
    ledger: Ledger, notification: Notification, channels: Iterable[str], now: float | None = None
) -> list[int]:
    """Queues `notification` once per channel; returns the row ids.

    Inside a caller's `with ledger.write():` this is a savepoint, so the rows commit (or roll
    back) with whatever else the caller wrote.
    """
    now = ledger.now() if now is None else now
    payload = notification.to_json()
    ids: list[int] = []
    with ledger.write():
        for channel in dict.fromkeys(channels):
            ids.append(
                ledger.scalar(
                    "INSERT INTO alert_outbox (channel, rule, level, payload, created_at, status,"
                    " next_attempt_at) VALUES (?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
                    (channel, notification.rule, notification.level, payload, now, now),
                )
            )
    return ids


def deliver_due(
    ledger: Ledger,
    channels: dict[str, Channel],
    now: float | None = None,
    limit: int = 50,
    lease: float = 60,
) -> DeliveryReport:
    """Sends the due rows, oldest first per channel, at most `limit` sends in all.

    Each row is claimed ('sending' with a lease) in a short write transaction, sent with no
    transaction open, then its outcome recorded in another. A channel stops at its first row
    that is not due: a newer alert never overtakes an older one waiting on backoff, and a
    channel that just failed is not tried again for every row behind it.
    """
    clock: Callable[[], float] = ledger.now if now is None else (lambda: now)
    sent = retried = failed = 0
    budget = limit
    for name, channel in channels.items():
        while budget > 0:
            claimed = _claim(ledger, name, clock(), lease)
            if claimed is None:
                break
            budget -= 1
            row_id, lease_until, payload = claimed
            result = _send(channel, payload)
            outcome = _record(ledger, row_id, lease_until, result, clock())
            if outcome == "sent":
                sent += 1
            elif outcome == "failed":
                failed += 1
            else:
                retried += 1
                break
    skipped = _skip_unconfigured(ledger, list(channels), clock())
    return DeliveryReport(sent, retried, failed, skipped)


def deliver_rows(
    ledger: Ledger,
    channels: dict[str, Channel],
    ids: Iterable[int],
    now: float | None = None,
    lease: float = 60,
) -> list[Delivery]:
    """Sends these rows now, each once, ahead of older rows of their channel; returns them as
    they stand afterwards.

    For a test alert: it asks whether the channel works now, so it does not wait behind an
    older alert in backoff. A row that fails stays in the outbox and retries as any other.
    """
    clock: Callable[[], float] = ledger.now if now is None else (lambda: now)
    ids = list(ids)
    for row_id in ids:
        claimed = _claim_row(ledger, row_id, clock(), lease)
        if claimed is None:
            continue
        channel = channels.get(claimed[0])
        if channel is None:
            _release(ledger, row_id, claimed[1])
            continue
        result = _send(channel, claimed[2])
        _record(ledger, row_id, claimed[1], result, clock())
    return deliveries(ledger, ids)


# A claim's own condition, judged by the UPDATE on the row as it stands when the claim gets
# it: on PostgreSQL two schedulers may both have read the row as due, and READ COMMITTED makes
# the second UPDATE wait for the first and re-check this on the row the first left ('sending',
# leased), so exactly one of them sends. The same rule as `_due`.
_CLAIMABLE = (
    "(status = 'pending' AND next_attempt_at <= ?)"
    " OR (status = 'sending' AND (lease_until IS NULL OR lease_until < ?))"
)


def _due(row: dict[str, Any], now: float) -> bool:
    if row["status"] == "pending":
        return row["next_attempt_at"] <= now
    # 'sending' past its lease: the sender died mid-send. Sending again may duplicate the
    # alert, which beats losing it (Alertmanager makes the same choice).
    return row["lease_until"] is None or row["lease_until"] < now


def _head(ledger: Ledger, channel: str) -> dict[str, Any] | None:
    return ledger.row(
        "SELECT id, status, next_attempt_at, lease_until, payload FROM alert_outbox"
        " WHERE channel = ? AND status IN ('pending', 'sending') ORDER BY id LIMIT 1",
        (channel,),
    )


def _claim(ledger: Ledger, channel: str, now: float, lease: float) -> tuple[int, float, str] | None:
    # Looked at first without the write lock: most calls find nothing due.
    head = _head(ledger, channel)
    if head is None or not _due(head, now):
        return None
    with ledger.write():
        head = _head(ledger, channel)
        if head is None or not _due(head, now):
            return None
        lease_until = now + lease
        if not ledger.execute(
            f"UPDATE alert_outbox SET status = 'sending', lease_until = ? WHERE id = ? AND "
            f"({_CLAIMABLE})",
            (lease_until, head["id"], now, now),
        ).rowcount:
            return None  # another sender has the channel's head: it goes on from there
    return head["id"], lease_until, head["payload"]


def _claim_row(
    ledger: Ledger, row_id: int, now: float, lease: float
) -> tuple[str, float, str] | None:
    with ledger.write():
        row = ledger.row(
            "SELECT channel, status, next_attempt_at, lease_until, payload FROM alert_outbox"
            " WHERE id = ? AND status IN ('pending', 'sending')",
            (row_id,),
        )
        if row is None or (row["status"] == "sending" and not _due(row, now)):
            return None
        lease_until = now + lease
        # Pending whatever its backoff (a test alert goes now), else as any claim: once.
        if not ledger.execute(
            "UPDATE alert_outbox SET status = 'sending', lease_until = ? WHERE id = ? AND "
            f"(status = 'pending' OR {_CLAIMABLE})",
            (lease_until, row_id, now, now),
        ).rowcount:
            return None
    return row["channel"], lease_until, row["payload"]


def _release(ledger: Ledger, row_id: int, lease_until: float) -> None:
    with ledger.write():
        ledger.execute(
            "UPDATE alert_outbox SET status = 'pending', lease_until = NULL"
            " WHERE id = ? AND status = 'sending' AND lease_until = ?",
            (row_id, lease_until),
        )


def _send(channel: Channel, payload: str) -> SendResult:
    try:
        notification = Notification.from_json(payload)
    except (ValueError, TypeError, KeyError):
        return SendResult(False, True, error="the stored notification cannot be read")
    try:
        return channel.send(notification)
    except Exception as exc:
        # Channels answer failures rather than raise; this is a bug. Its message may hold a
        # URL or a password, so only the class is kept.
        log.error("alert channel %s raised %s", channel.name, type(exc).__name__)
        return SendResult(False, error=f"{channel.name}: unexpected {type(exc).__name__}")


def _record(ledger: Ledger, row_id: int, lease_until: float, result: SendResult, now: float) -> str:
    with ledger.write():
        if result.ok:
            # Recorded whoever holds the claim now: the channel has the alert.
            ledger.execute(
                "UPDATE alert_outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " lease_until = NULL, last_error = ? WHERE id = ?",
                (now, result.error, row_id),
            )
            return "sent"
        attempts = ledger.scalar("SELECT attempts FROM alert_outbox WHERE id = ?", (row_id,))
        attempts = (attempts or 0) + 1
        if result.permanent:
            status, next_at = "failed", now
        else:
            status = "pending"
            next_at = now + max(backoff(attempts), result.retry_after or 0)
        # Only while the claim is still ours: a sender that took it over after our lease ran
        # out owns the outcome now.
        ledger.execute(
            "UPDATE alert_outbox SET status = ?, attempts = ?, next_attempt_at = ?,"
            " lease_until = NULL, last_error = ?"
            " WHERE id = ? AND status = 'sending' AND lease_until = ?",
            (status, attempts, next_at, result.error, row_id, lease_until),
        )
        return status


def _skip_unconfigured(ledger: Ledger, configured: list[str], now: float) -> int:
    """Counts the due rows of channels that are off; they wait for the channel to come back."""
    # "1 = 1", not "1": PostgreSQL wants a boolean after AND.
    where = f"channel NOT IN ({', '.join('?' * len(configured))})" if configured else "1 = 1"
    stale = ledger.scalar(
        f"SELECT count(*) FROM alert_outbox WHERE status = 'sending' AND lease_until < ?"
        f" AND {where}",
        (now, *configured),
    )
    if stale:
        # A sender died mid-send and the channel has since been switched off: show the row as
        # waiting, not as being sent forever.
        with ledger.write():
            ledger.execute(
                "UPDATE alert_outbox SET status = 'pending', lease_until = NULL"
                f" WHERE status = 'sending' AND lease_until < ? AND {where}",
                (now, *configured),
            )
    return ledger.scalar(
        f"SELECT count(*) FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= ?"
        f" AND {where}",
        (now, *configured),
    )


def _title(payload: str) -> str:
    try:
        return str(json.loads(payload).get("title", ""))
    except (ValueError, AttributeError):
        return ""


_DELIVERY_COLUMNS = (
    "id, channel, rule, level, payload, created_at, status, attempts, next_attempt_at,"
    " last_error, sent_at"
)


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        channel=row["channel"],
        rule=row["rule"],
        level=row["level"],
        title=_title(row["payload"]),
        created_at=row["created_at"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        sent_at=row["sent_at"],
    )


def recent(ledger: Ledger, limit: int = 20) -> list[Delivery]:
    """The newest outbox rows first."""
    rows = ledger.rows(
        f"SELECT {_DELIVERY_COLUMNS} FROM alert_outbox ORDER BY id DESC LIMIT ?", (limit,)
    )
    return [_delivery(row) for row in rows]


def deliveries(ledger: Ledger, ids: Iterable[int]) -> list[Delivery]:
    """These rows, in the order given (a row no longer in the outbox is left out)."""
    ids = list(ids)
    if not ids:
        return []
    rows = ledger.rows(
        f"SELECT {_DELIVERY_COLUMNS} FROM alert_outbox WHERE id IN ({', '.join('?' * len(ids))})",
        tuple(ids),
    )
    by_id = {row["id"]: _delivery(row) for row in rows}
    return [by_id[i] for i in ids if i in by_id]


def pending_count(ledger: Ledger) -> int:
    """Rows still owed to a channel: pending, or being sent."""
    return ledger.scalar("SELECT count(*) FROM alert_outbox WHERE status IN ('pending', 'sending')")
