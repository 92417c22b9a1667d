"""What the monitoring jobs and reports are handed: the settings, the storage root, the ledger
and the queues. A Runtime is one; named here as protocols so that monitoring depends on those
parts, not on the wiring that assembles them (worker.runtime imports upward of it)."""

from __future__ import annotations

from typing import Protocol

from worker.doorbells import QueueProbe
from worker.layout import Layout
from worker.ledger import Ledger
from worker.settings import Settings


class Wired(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def layout(self) -> Layout: ...
    @property
    def ledger(self) -> Ledger: ...


class Doorbells(Protocol):
    def check(self) -> None: ...
    def probe(self, *, depths: bool = True) -> QueueProbe: ...


class WiredWithQueue(Wired, Protocol):
    @property
    def queues(self) -> Doorbells: ...
