"""Which consumers are running: each registers itself when it starts, liveness is checked by pid."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

from worker.identity import Owner, current_owner, is_alive
from worker.ledger import Ledger

PREFIX = "consumer:"
STARTS = "starts:"


@dataclass(frozen=True)
class ConsumerInfo:
    queue: str
    host: str
    pid: int
    started: float
    alive: bool | None  # None: on another host, cannot tell from here
    owner: Owner | None = None  # pid and start time: never mistaken for a reused pid


def register(ledger: Ledger, queue: str, now: float | None = None) -> None:
    now = ledger.now() if now is None else now
    owner = current_owner()
    key = f"{PREFIX}{queue}:{owner.host}:{owner.pid}"
    value = {"queue": queue, "token": owner.token, "started": now}
    with ledger.write():
        # The start-up hook runs once per worker thread (the scheduler has two): only the
        # first thread of a process registers it and counts a start.
        mine = ledger.row("SELECT value FROM control WHERE key = ?", (key,))
        if mine:
            old = Owner.parse(json.loads(mine["value"])["token"])
            if old and old.process_token == owner.process_token:
                return
        # Entries of dead consumers on this host are dropped as a new one registers.
        for row in ledger.rows("SELECT key, value FROM control WHERE key LIKE ?", (PREFIX + "%",)):
            old = Owner.parse(json.loads(row["value"])["token"])
            if old and is_alive(old) is False:
                ledger.execute("DELETE FROM control WHERE key = ?", (row["key"],))
        ledger.execute(
            "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, json.dumps(value), now),
        )
        # How often each queue's consumer process started: restarts are starts after the first.
        ledger.execute(
            "INSERT INTO control (key, value, updated_at) VALUES (?, '1', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(control.value AS INTEGER) + 1, updated_at = ?",
            (f"{STARTS}{queue}", now, now),
        )


def consumers(ledger: Ledger) -> list[ConsumerInfo]:
    found = []
    host = socket.gethostname()
    for row in ledger.rows(
        "SELECT value FROM control WHERE key LIKE ? ORDER BY key", (PREFIX + "%",)
    ):
        value = json.loads(row["value"])
        owner = Owner.parse(value["token"])
        if owner is None:
            continue
        found.append(
            ConsumerInfo(
                value["queue"],
                owner.host,
                owner.pid,
                value["started"],
                is_alive(owner, host),
                owner,
            )
        )
    return found


def is_up(consumer: ConsumerInfo) -> bool:
    """What "the consumer is up" means everywhere (status, metrics, the exporter, the console):
    not known to be dead. One on another host cannot be checked by pid from here, and counts
    as up while it is registered; the reaper's heartbeat timeout judges it."""
    return consumer.alive is not False


def starts(ledger: Ledger) -> dict[str, int]:
    """How many consumer processes of each queue have started since the storage root was made."""
    return {
        r["key"][len(STARTS) :]: int(r["value"])
        for r in ledger.rows("SELECT key, value FROM control WHERE key LIKE ?", (STARTS + "%",))
    }


def restarts(ledger: Ledger) -> dict[str, int]:
    """Each queue's consumer restarts: process starts after the first."""
    return {queue: max(0, n - 1) for queue, n in starts(ledger).items()}
