"""What every part may know of the queue without importing it: one look at its storage.

The queue package (the only one that knows Huey) answers with a QueueProbe; monitoring, the
CLI and the console show it. A doorbell lost with the queue costs delay, never a parcel: the
ledger is the record, and due parcels without a doorbell are rung again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.settings import Settings


def backend_of(settings: Settings) -> str:
    """Which storage holds the queue by the settings: "redis", "postgresql" or "sqlite"."""
    if settings.queue_connection == "redis":
        return "redis"
    if settings.queue_connection == "database" and settings.database_url:
        return "postgresql"
    return "sqlite"


@dataclass(frozen=True)
class QueueProbe:
    """The queue's storage as one look found it."""

    backend: str  # "sqlite", "postgresql" or "redis"
    address: str  # redis://host:port, unix:///path, postgresql://host:port, or queue.db's path
    reachable: bool
    error: str | None = None  # why it is not reachable, in one line
    latency: float | None = None  # seconds for one round trip to the storage
    # Doorbells waiting on each queue, by queue name (empty when not asked or unreachable).
    depths: dict[str, int] = field(default_factory=dict)
    # How the storage keeps its doorbells across a restart: "aof", "rdb", "aof+rdb" or
    # "none" on Redis, "disk" for the databases, None when it could not be told.
    persistence: str | None = None
    # What an operator should know though nothing is failing (Redis persisting nothing,
    # evicting keys under memory pressure), one line each.
    warnings: tuple[str, ...] = ()
