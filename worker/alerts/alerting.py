"""Rule states and the notifications they cause, the Alertmanager way.

A rule notifies when its level changes (up, or down to a lower alert), repeats every
ALERT_REPEAT_INTERVAL while it holds, and sends "resolved" when it clears. The state change
and the outbox rows it causes commit together, so an alert is never decided and then lost.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

from worker.alerts import outbox
from worker.alerts.channels import Notification
from worker.ledger import Ledger


@dataclass(frozen=True)
class Reading:
    """One rule's level now, as the monitoring rules measured it: what alerting acts on."""

    rule: str
    level: str
    value: float
    summary: str  # one line: what is measured against which line


@dataclass(frozen=True)
class RuleState:
    rule: str
    level: str
    value: float | None
    summary: str | None
    since: float
    notified_at: float | None
    evaluated_at: float


def states(ledger: Ledger) -> dict[str, RuleState]:
    return {
        r["rule"]: RuleState(**r)
        for r in ledger.rows(
            "SELECT rule, level, value, summary, since, notified_at, evaluated_at "
            "FROM alert_state ORDER BY rule"
        )
    }


def _title(reading: Reading, level: str) -> str:
    names = {
        "cas_size": "CAS storage",
        "queue_depth": "Postmaster queue depth",
        "failed_per_hour": "Failed parcels",
        "compaction_failures": "Memory compaction failures",
        "queue_unreachable": "Queue storage",
        "consumer_down": "Consumer down",
        "consumer_restarts": "Consumer restarts",
        "oldest_queued": "Oldest queued parcel",
    }
    name = names.get(reading.rule, reading.rule)
    return f"{name} {'back to normal' if level == 'resolved' else level}"


def notification(
    reading: Reading,
    level: str,
    *,
    since: float,
    now: float,
    storage_root: str,
    simulated: bool = False,
    repeat: bool = False,
) -> Notification:
    text = "\n".join(
        [
            reading.summary,
            f"since {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(since))}"
            + (" (still holding)" if repeat else ""),
            f"host {socket.gethostname()}, storage root {storage_root}",
        ]
        + (["SIMULATED by `seer monitor-storage --simulate-high-usage`"] if simulated else [])
    )
    return Notification(
        rule=reading.rule,
        level=level,
        title=("[SIMULATED] " if simulated else "") + _title(reading, level),
        text=text,
        at=now,
        simulated=simulated,
    )


def apply(
    ledger: Ledger,
    readings: Iterable[Reading],
    channels: Iterable[str],
    *,
    repeat_every: float,
    storage_root: str,
    now: float | None = None,
) -> list[Notification]:
    """Records the readings as rule states; queues the notifications they call for."""
    now = ledger.now() if now is None else now
    channels = list(channels)
    sent: list[Notification] = []
    with ledger.write():
        # Decided from the states read here: on PostgreSQL two evaluations at once (the
        # scheduler's and `seer monitor-storage`'s, or two hosts') would both see the rule
        # crossing and both queue its notification. Rare and short: a lock, not a hot path.
        ledger.lock("alerts")
        previous = states(ledger)
        for reading in readings:
            before = previous.get(reading.rule)
            old_level = before.level if before else "ok"
            since = before.since if before and old_level == reading.level else now
            notified_at = before.notified_at if before else None
            note = None
            if reading.level != old_level:
                level = "resolved" if reading.level == "ok" else reading.level
                note = notification(reading, level, since=since, now=now, storage_root=storage_root)
            elif (
                reading.level != "ok"
                and notified_at is not None
                and now - notified_at >= repeat_every
            ):
                note = notification(
                    reading,
                    reading.level,
                    since=since,
                    now=now,
                    storage_root=storage_root,
                    repeat=True,
                )
            if note is not None:
                outbox.enqueue(ledger, note, channels, now=now)
                notified_at = now
                sent.append(note)
            ledger.execute(
                "INSERT INTO alert_state (rule, level, value, summary, since, notified_at, "
                "evaluated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rule) DO UPDATE SET "
                "level = excluded.level, value = excluded.value, summary = excluded.summary, "
                "since = excluded.since, notified_at = excluded.notified_at, "
                "evaluated_at = excluded.evaluated_at",
                (
                    reading.rule,
                    reading.level,
                    reading.value,
                    reading.summary,
                    since,
                    notified_at,
                    now,
                ),
            )
    return sent


def active(ledger: Ledger) -> list[RuleState]:
    """Rules currently at warning or critical, worst first."""
    found = [s for s in states(ledger).values() if s.level != "ok"]
    return sorted(found, key=lambda s: (s.level != "critical", s.since))
