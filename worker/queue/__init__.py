"""The queue: the only package that imports Huey. A task is a doorbell; the ledger is the record."""

from worker.queue.queues import Queues, StorageChoice, build_queues, check_supported, queue_storage
from worker.queue.tasks import Jobs, Periodic, register

__all__ = [
    "Jobs",
    "Periodic",
    "Queues",
    "StorageChoice",
    "build_queues",
    "check_supported",
    "queue_storage",
    "register",
]
