"""The ledger: the record of parcels, messages, artifacts, memory, metrics, alerts and control.

Domain code imports `Ledger` (the interface, worker/ledger/base.py) and the errors from here;
`open_ledger` is the one place that chooses the implementation from the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.ledger.base import ClaimedParcel, Cursor, Ledger, Params
from worker.ledger.errors import (
    LedgerBusy,
    LedgerCorrupt,
    LedgerDiskFull,
    LedgerError,
    LedgerUnavailable,
)
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.layout import Layout

__all__ = [
    "ClaimedParcel",
    "Cursor",
    "Ledger",
    "LedgerBusy",
    "LedgerCorrupt",
    "LedgerDiskFull",
    "LedgerError",
    "LedgerUnavailable",
    "Params",
    "open_ledger",
]


def open_ledger(layout: Layout, settings: Settings) -> Ledger:
    """The ledger the settings name: SQLite under the storage root unless SEER_DATABASE_URL."""
    if settings.database_url:
        from worker.ledger.postgresql import PostgresLedger

        return PostgresLedger(settings.database_url)
    from worker.ledger.sqlite import SqliteLedger

    return SqliteLedger(str(layout.ledger_db), synchronous=settings.sqlite_synchronous)
