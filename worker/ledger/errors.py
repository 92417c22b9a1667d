"""What the ledger raises, whatever database is behind it.

Each implementation turns its driver's exceptions into these, so no caller needs to know
whether sqlite3, peewee or a PostgreSQL driver is underneath.
"""


class LedgerError(RuntimeError):
    """The ledger database failed a statement or a transaction."""


class LedgerUnavailable(LedgerError):
    """The ledger database cannot be opened or read."""


class LedgerDiskFull(LedgerUnavailable):
    """The ledger cannot be written: its filesystem is full. Said as such, not as whatever
    the rollback says next."""
