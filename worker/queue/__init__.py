"""The queue: the only package that imports Huey. A task is a doorbell; the ledger is the record.

Its errors are light; the rest loads Huey (and redis-py and psycopg with it) on first use, so a
command that only catches QueueError does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.queue.errors import QueueDamaged, QueueError

if TYPE_CHECKING:
    from worker.queue.queues import Queues, StorageChoice, build_queues, queue_storage
    from worker.queue.tasks import Jobs, Periodic, register

_LAZY = {
    "Queues": "worker.queue.queues",
    "StorageChoice": "worker.queue.queues",
    "build_queues": "worker.queue.queues",
    "queue_storage": "worker.queue.queues",
    "Jobs": "worker.queue.tasks",
    "Periodic": "worker.queue.tasks",
    "register": "worker.queue.tasks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'worker.queue' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "Jobs",
    "Periodic",
    "QueueDamaged",
    "QueueError",
    "Queues",
    "StorageChoice",
    "build_queues",
    "queue_storage",
    "register",
]
