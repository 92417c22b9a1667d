"""What backup and restore ask of the ledger's engine: one documented base class, one subclass
per engine (`sqlite`, `postgresql`), as huey's storage.py has one per backend. Everything else
(the destination, the blobs, the manifest, the root's marker) is the same for every engine.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from worker.layout import Layout
from worker.ledger import open_ledger
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.ops.backup.manifest import BackupManifest

ENGINES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class LedgerFacts:
    """What a manifest and a restore report say about a copied ledger."""

    schema_version: int
    messages: int
    parcels: int


@dataclass(frozen=True)
class Snapshot:
    """What `Strategy.take` copied: its facts and the blobs it records (hash -> size)."""

    facts: LedgerFacts
    recorded: dict[str, int]
    # The PostgreSQL schema the dump holds (pg_restore recreates it under this name).
    schema: str = ""


class Strategy(abc.ABC):
    """The engine's part of a backup and of a restore.

    Backup: `take` writes the databases into the backup in one consistent snapshot and says
    which blobs it records; the blobs are then copied by the caller; blobs `seer cas gc` took
    meanwhile are judged with `referenced` and left out with `leave_out`.
    Restore: `check_target` refuses a target that already has a ledger, before anything is
    written; `put_back` writes the databases; `recorded_after` reads the restored ledger's
    blobs; `undo` removes what `put_back` wrote when a later step fails.
    """

    engine: str
    """The manifest's `engine`: which strategy reads the backup back."""

    databases: tuple[str, ...]
    """The files of a backup of this engine (each listed in the manifest with its SHA-256)."""

    # -- backup ----------------------------------------------------------------------------

    @abc.abstractmethod
    def take(self, dest: Path, mode: int) -> Snapshot:
        """Writes the databases into `dest` (files of `mode`), one consistent snapshot."""

    @abc.abstractmethod
    def referenced(self, dest: Path, digests: Iterable[str]) -> set[str]:
        """Those of `digests` that an artifact points at (artifacts are never deleted)."""

    @abc.abstractmethod
    def leave_out(self, dest: Path, digests: list[str]) -> tuple[str, ...]:
        """Leaves out of the backup the rows of blobs gc removed after the snapshot; returns
        those the manifest must list for restore to leave out (when the copy cannot be
        changed)."""

    # -- restore ---------------------------------------------------------------------------

    @abc.abstractmethod
    def check_target(self, manifest: BackupManifest) -> None:
        """Refuses (BackupRefused) a target whose ledger database is not empty."""

    @abc.abstractmethod
    def put_back(self, manifest: BackupManifest, layout: Layout) -> None:
        """Writes the backup's databases into the target (raises DamagedBackup if one
        changed while it was read)."""

    @abc.abstractmethod
    def recorded_after(self, layout: Layout) -> tuple[dict[str, int], LedgerFacts]:
        """The restored ledger's blobs (hash -> size) and facts."""

    def undo(self) -> None:  # noqa: B027 - most engines write nothing outside the root
        """Removes what `put_back` wrote outside the storage root (which restore empties)."""

    def close(self) -> None:  # noqa: B027 - most engines hold no connection
        """Releases the ledger connections the strategy opened."""


def strategy_for(layout: Layout, settings: Settings) -> Strategy:
    """The strategy of the ledger the settings name (the one `open_ledger` opens)."""
    ledger = open_ledger(layout, settings)
    if ledger.dialect == "postgresql":
        from worker.ops.backup.postgresql import PostgresStrategy

        return PostgresStrategy(ledger, settings.database_url, settings.database_address)
    ledger.close()
    from worker.ops.backup.sqlite import SqliteStrategy

    return SqliteStrategy(layout)
