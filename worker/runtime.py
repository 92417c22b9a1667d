"""Wiring: settings to storage root, ledger, CAS and queues, checked before anything runs.

The CLI, the console and the consumers all start here, so every entry point refuses the same
way on a bad setting, an uninitialised root or a schema that does not match the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from worker.cas import BlobStore, open_store
from worker.fleet import control
from worker.layout import Layout, apply_umask
from worker.ledger import Ledger, migrations, open_ledger
from worker.memory.compaction import Compactor
from worker.memory.service import MemoryService
from worker.parcels.postmaster import Postmaster
from worker.settings import Settings, load_settings

if TYPE_CHECKING:
    from worker.queue import Queues


@dataclass
class Runtime:
    settings: Settings
    layout: Layout
    ledger: Ledger
    store: BlobStore

    @classmethod
    def open(cls, settings: Settings | None = None, *, check_schema: bool = True) -> Runtime:
        settings = settings or load_settings()
        layout = Layout.from_settings(settings)
        apply_umask(layout)
        layout.require_initialised()
        # Before anything is opened: a link planted in the root would be written through.
        layout.check_no_links()
        ledger = open_ledger(layout, settings)
        if check_schema:
            migrations.check_schema(ledger)
        return cls(settings, layout, ledger, open_store(layout, ledger, settings))

    @cached_property
    def queues(self) -> Queues:
        # Imported here: Huey and its drivers (redis, psycopg) cost a command that never
        # rings, `seer worker` refusing a schema among them, a tenth of a second at start.
        from worker.queue import build_queues

        queues = build_queues(self.settings, self.layout)
        queues.set_pause_check(lambda: control.is_paused(self.ledger))
        return queues

    def memory(self) -> MemoryService:
        s = self.settings
        return MemoryService(self.ledger, s.memory_ttl_hours, s.memory_max_value)

    def compactor(self) -> Compactor:
        return Compactor(
            self.ledger,
            self.layout.logs / "orchestration.log",
            self.layout.file_mode,
            base=self.layout.root,
            host_id=self.settings.host_id or None,
        )

    def postmaster(self) -> Postmaster:
        return Postmaster(self.ledger, self.store, self.settings)

    def ring(self, parcel_ids: list[str]) -> None:
        """One doorbell per batch of parcels: each delivers up to POSTMASTER_BATCH_SIZE of the
        oldest waiting parcels, so one per parcel would mostly find nothing left."""
        self.queues.ring(parcel_ids[:: self.settings.batch_size])

    def close(self) -> None:
        self.ledger.close()
        self.store.close()
