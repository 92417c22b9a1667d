"""What the ledger raises, whatever database is behind it.

Each implementation turns its driver's exceptions into these, so no caller needs to know
whether sqlite3, peewee or a PostgreSQL driver is underneath. The text of a translated error
is the driver's own message; the original stays attached as its `__cause__`.
"""


class LedgerError(RuntimeError):
    """The ledger database failed a statement or a transaction (a missing table, a broken
    constraint, a statement the schema does not allow)."""


class LedgerBusy(LedgerError):
    """The ledger was locked by others for longer than the implementation waits: a busy
    moment, which a later try may get through."""


class LedgerCorrupt(LedgerError):
    """The ledger's database is damaged or is not a database at all: no retry helps until an
    operator restores or replaces it."""


class LedgerUnavailable(LedgerError):
    """The ledger's storage refuses to keep anything: it cannot be written at all."""


class LedgerDiskFull(LedgerUnavailable):
    """The ledger cannot be written: its filesystem is full. Said as such, not as whatever
    the rollback says next."""
