"""The ledger interface: what domain code may ask of the ledger database, whatever holds it.

Modelled on huey's `storage.BaseStorage`: one documented base class, one subclass per database
(`worker/ledger/sqlite.py` today). Domain modules annotate with `Ledger` and run SQL that both
SQLite 3.40 and PostgreSQL 15 accept (`?` placeholders, `INSERT … ON CONFLICT … DO NOTHING /
DO UPDATE`, `RETURNING`, `IS NOT DISTINCT FROM`); what differs between engines (starting a
transaction and waiting for its lock, the claim of a batch, looking up the schema, DDL and
migrations, backup) is a method here, implemented once per engine.

Every method raises only `worker.ledger.errors` classes for what the database refuses, never a
driver's exception.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

Params = Sequence[Any] | Mapping[str, Any]
"""Positional values for `?` placeholders, or a mapping for `:name` placeholders."""


class Cursor(Protocol):
    """What `execute` returns: the DB-API cursor's portable part. (`lastrowid` is not portable:
    ask with `INSERT … RETURNING id` and `scalar` instead.)"""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class ParcelHead(NamedTuple):
    """What a claim looks at before it reads any payload."""

    seq: int
    size: int
    isolate: int


class ClaimedParcel(NamedTuple):
    """A parcel a consumer now owns: in flight under its token until it delivers, retries or
    fails it. A tuple, built straight from the row: the claim is on the Postmaster's hot path."""

    seq: int
    id: str
    payload: str | None
    size: int
    attempts: int
    isolate: int

    def without_payload(self) -> ClaimedParcel:
        """The same claim, its payload let go once it is parsed (a batch lives until it commits)."""
        return self._replace(payload=None)


def batch_of(heads: Sequence[ParcelHead], max_bytes: int) -> Sequence[ParcelHead]:
    """Which of the oldest due parcels one claim takes: an isolated parcel (a suspect in a
    worker's death) alone, else every one before the next isolated one, bounded by `max_bytes`
    of payload (but always at least one). The same rule on every engine."""
    if not heads:
        return heads
    if heads[0].isolate:
        return heads[:1]
    cut = next((i for i, h in enumerate(heads) if h.isolate), len(heads))
    heads = heads[:cut]
    # Bounded by bytes too: only the payloads of the batch are read into memory, and a batch
    # of 100 parcels of 32 MB is not one batch.
    taken, total = 1, heads[0].size
    while taken < len(heads) and total + heads[taken].size <= max_bytes:
        total += heads[taken].size
        taken += 1
    return heads[:taken]


class Ledger(abc.ABC):
    """One ledger database, shared by every thread of a process and by every process and host.

    Statements outside `write()` and `read()` run on their own (autocommit): each one sees the
    latest committed state, and two of them may see different states.
    """

    dialect: str
    """The engine's name ("sqlite", "postgresql"): which migrations and backups apply."""

    # -- transactions ----------------------------------------------------------------------

    @abc.abstractmethod
    def write(self) -> AbstractContextManager[Ledger]:
        """A write transaction: everything inside commits together when the block ends, or
        nothing does if it raises (the exception then propagates, translated if it came from
        the database).

        - SQLite: it waits for the one write lock when it begins (not at its first write), up
          to the lock timeout, then raises `LedgerBusy`; so a read-then-write inside it never
          fails halfway because another writer came first. The wait polls often enough that a
          writer gets into the short gaps a long job leaves between its transactions.
        - PostgreSQL: writers run side by side (READ COMMITTED); a statement waits for the rows
          it changes, a writer that must exclude others on every host takes `lock(name)`,
          and any wait longer than the lock timeout raises `LedgerBusy`. Domain SQL is written
          for both: conditions in the UPDATE itself (`WHERE state = 'in_flight' AND owner =
          ?`), never a read whose answer a later write relies on without a lock.
        - Nested in another `write()` of the same thread it is a savepoint: its block rolls
          back alone if it raises, and commits only with the outer transaction.
        - A full disk, at any statement or at the commit, raises `LedgerDiskFull` ("disk full:
          PATH: …"), after the transaction has been rolled back.
        - Not allowed inside `read()` (raises `LedgerError`).
        """

    @abc.abstractmethod
    def read(self) -> AbstractContextManager[Ledger]:
        """A read transaction: every statement inside sees one consistent snapshot of the
        whole ledger, taken when the block begins, whatever commits meanwhile. For what is
        shown together (the console's snapshot, `seer status`).

        - It never waits for the write lock and never blocks a writer.
        - Reentrant: nested in another `read()` of the same thread it shares that snapshot;
          inside a `write()` it is that write's own transaction.
        - Nothing may be written inside it: a write statement, or a `write()`, raises
          `LedgerError`.
        """

    # -- statements ------------------------------------------------------------------------

    @abc.abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """Runs one statement; its cursor gives `rowcount` and any rows it returns."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Runs one statement once per row of values, as one call (a batch insert)."""

    @abc.abstractmethod
    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """The result rows of a query, each a dict by column name."""

    def row(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        """The first result row of a query, or None."""
        found = self.rows(sql, params)
        return found[0] if found else None

    @abc.abstractmethod
    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first result row, or None when there is no row. The
        statement is run to its end, so `INSERT … RETURNING id` is complete when it returns."""

    # -- what differs between engines ------------------------------------------------------

    def now(self) -> float:
        """The ledger's clock in Unix seconds: what leases, claims, heartbeats and deliveries
        are stamped with, so hosts whose clocks disagree still agree on the ledger's. SQLite is
        on this host: its clock is the host's."""
        return time.time()

    # -- counters --------------------------------------------------------------------------
    # Counts kept by triggers in the same transaction as the change they count (parcels by
    # state, running totals, CAS bytes and blobs). How they are stored differs: one row per
    # name on SQLite (one writer at a time anyway); on PostgreSQL appended deltas, so that
    # concurrent deliveries never queue on one hot row.

    def counters(self) -> dict[str, int]:
        """Every counter's value, by name (inside `read()`, from its snapshot)."""
        return {r["name"]: r["value"] for r in self.rows("SELECT name, value FROM counters")}

    def counter(self, name: str) -> int:
        """One counter's value (0 if there is none)."""
        return self.scalar("SELECT value FROM counters WHERE name = ?", (name,)) or 0

    def add_to_counter(self, name: str, delta: int) -> None:
        """Moves a counter by `delta`, for a change no trigger sees (inside `write()`)."""
        self.execute("UPDATE counters SET value = value + ? WHERE name = ?", (delta, name))

    def set_counter(self, name: str, value: int) -> None:
        """Sets a counter outright (a recount; inside `write()`)."""
        self.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))

    @abc.abstractmethod
    def fold_counters(self) -> None:
        """Compacts the counters' storage (PostgreSQL folds its deltas into one row per name);
        a periodic job calls it. Values are unchanged."""

    @abc.abstractmethod
    def lock(self, name: str, shared: bool = False) -> None:
        """Inside `write()`: takes the lock `name` until the transaction ends, for writers on
        any host that must not interleave (CAS gc and a delivery's commit, the CAS quota).
        Exclusive, or `shared` with other shared holders (deliveries) but not with an
        exclusive one (gc). Waits at most the lock timeout, then raises `LedgerBusy`. On
        SQLite the write transaction already excludes every other writer."""

    @abc.abstractmethod
    def has_table(self, name: str) -> bool:
        """Whether the ledger has a table of this name (a schema rolled back may lack it)."""

    @abc.abstractmethod
    def claim_parcels(
        self, owner: str, now: float, limit: int, max_bytes: int, lease: float
    ) -> list[ClaimedParcel]:
        """Claims the oldest queued parcels due at `now` (at most `limit`, chosen by
        `batch_of`) for `owner`, in one transaction: each becomes in flight, owned by the
        token, its lease until `now + lease`. Two consumers, on any hosts, never claim the
        same parcel; what one has claimed is returned in queue order, payloads included."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases this thread's connection; the ledger opens another if used again."""
