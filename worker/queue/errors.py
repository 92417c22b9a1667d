"""What the queue raises, whatever storage holds it: its driver's errors never leave the
queue package."""


class QueueError(RuntimeError):
    """The queue's storage failed a read or a write (busy, unreachable)."""


class QueueDamaged(QueueError):
    """The queue's storage is damaged (a corrupt queue.db): no consumer can run on it until it
    is replaced. Parcels are safe: the ledger is the record."""
