"""The queue: the only package that imports Huey. A task is a doorbell; the ledger is the record."""

from worker.queue.errors import QueueDamaged, QueueError
from worker.queue.queues import Queues, StorageChoice, build_queues, check_supported, queue_storage
from worker.queue.tasks import Jobs, Periodic, register

__all__ = [
    "Jobs",
    "Periodic",
    "QueueDamaged",
    "QueueError",
    "Queues",
    "StorageChoice",
    "build_queues",
    "check_supported",
    "queue_storage",
    "register",
]
