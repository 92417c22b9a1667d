"""`seer migrate-backend --to postgresql://…`: a SQLite deployment's ledger copied, row for row,
into a PostgreSQL database, checked table by table, so that the deployment can be pointed at it.

What is copied: parcels in every state (queued, in flight with a dead consumer: the target's
reaper and consumer start take them back, delivered, failed), messages, artifacts, the blobs'
rows, the small blobs' bytes (the CAS keeps those in the ledger), memory, compaction runs,
control flags, alert states and their outbox, metric history, and the counters (set to the
source's values once the rows are in, so that `seer status` and `seer cas stats` say on the
target what they said on the source). Not copied: the consumer
registrations of this host's stopped consumers (the target's consumers register themselves),
Huey's queue (doorbells: each queued parcel is rung again on the target's queue at the end),
and the CAS directory: the blob files stay where they are, shared by both ledgers, which name
them by hash. The target's ORCHESTRATION_CAS_SMALL_BLOB_SIZE may differ: a blob is read where
it is, whatever the threshold when it was stored.

Safe to run again, and to interrupt. The target's schema is made by the migrations when it
has none; a control flag (`migrate-backend`) then names the source and how far the copy got.
Each table is copied in batches in key order, each batch one transaction of `INSERT … ON
CONFLICT DO NOTHING`, so a run killed anywhere leaves whole batches, and a rerun copies what
is missing without duplicating anything. Counters, identity sequences and the doorbells come
after the rows; a run whose copy was complete only verifies. Refused: a target at another
schema version, one that holds rows and is not a copy of this source, and any consumer
running (on the source, or on the target), since its writes would be lost or doubled.

While it copies, the source is held in one write transaction (it writes nothing to it): the
copy is one consistent state of the source, and a `seer` command that would change it
meanwhile waits, then says the ledger is busy.

The URL's password is never shown: the report names the target by host:port.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.fleet import consumers
from worker.identity import host_name
from worker.layout import Layout
from worker.ledger import Ledger, migrations, open_ledger
from worker.ops.operations import running_consumers
from worker.queue import QueueError
from worker.runtime import Runtime
from worker.settings import SPECS, Settings, server_address
from worker.wording import counted

# The target's control flag that names the source and the copy's progress.
MARKER = "migrate-backend"
BATCH = 500
# A batch's rows are in memory twice (read, then sent): bounded, whatever the rows hold.
BATCH_BYTES = 32 * 1024 * 1024
_CONSUMER_KEYS = consumers.PREFIX + "%"


class MigrationRefused(Exception):
    """Nothing was copied: the source, the target or the fleet is not in a state to copy."""


class MigrationFailed(Exception):
    """The copy ran, but the target does not match the source; `report` has the counts."""

    def __init__(self, message: str, report: MigrationReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Table:
    """A table copied row for row: its key (batches go in its order, conflicts skip on it),
    its identity column if any, and which rows are left behind."""

    name: str
    key: tuple[str, ...]
    identity: str | None = None
    # A condition on the source's rows and the counted ones, with its parameters.
    where: str = ""
    params: tuple[Any, ...] = ()
    # A row's size, for tables whose rows can be large: a batch holds at most BATCH_BYTES.
    weight: str = ""


TABLES: tuple[Table, ...] = (
    # A queued parcel's payload holds its attachments (up to POSTMASTER_MAX_PARCEL_SIZE).
    Table("parcels", ("seq",), "seq", weight="coalesce(length(payload), 0)"),
    Table("messages", ("id",), "id", weight="length(envelope) + length(headers)"),
    Table("blobs", ("hash",)),
    # The CAS's small blobs: the bytes themselves, up to ORCHESTRATION_CAS_SMALL_BLOB_SIZE.
    Table("small_blobs", ("hash",), weight="length(data)"),
    Table("artifacts", ("id",), "id"),
    # Not the registrations of consumers (this host's, all stopped), nor this copy's own flag.
    Table(
        "control", ("key",), where="key NOT LIKE ? AND key <> ?", params=(_CONSUMER_KEYS, MARKER)
    ),
    Table("metric_samples", ("resolution", "ts")),
    Table("memory", ("agent_id", "key"), weight="length(value)"),
    Table("compaction_runs", ("id",), "id"),
    Table("alert_state", ("rule",)),
    Table("alert_outbox", ("id",), "id"),
)
# What the target's migrations make and this copy sets otherwise (or SQLite keeps for itself).
NOT_ROWS = ("counters", "counter_deltas", "schema_migrations", "sqlite_sequence")


@dataclass(frozen=True)
class TableCount:
    name: str
    source: int
    target: int
    # Rows this run inserted (0 on a run after a complete copy).
    copied: int


@dataclass(frozen=True)
class MigrationReport:
    target: str  # host:port, never the URL
    tables: tuple[TableCount, ...]
    counters: dict[str, int]
    schema_version: int
    # The target's schema was made by this run; an earlier run had begun the copy; the copy
    # was complete before this run (which then only verified).
    initialised: bool
    resumed: bool
    already_done: bool
    rung: int = 0
    ring_warning: str | None = None
    mismatches: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, Any]:
        found = dataclasses.asdict(self)
        found["tables"] = [dataclasses.asdict(t) for t in self.tables]
        found["mismatches"] = list(self.mismatches)
        found["verified"] = self.verified
        return found


def target_settings(settings: Settings, url: str) -> Settings:
    """The settings with the ledger at `url`; MigrationRefused (never echoing the URL, which
    may hold a password) when it is not a PostgreSQL URL."""
    spec = next(s for s in SPECS if s.name == "SEER_DATABASE_URL")
    try:
        parsed = spec.parse(url)
    except ValueError as exc:
        raise MigrationRefused(f"--to (hidden) is not allowed: expected {exc}") from None
    if not parsed:
        raise MigrationRefused("--to is empty: give the PostgreSQL database's URL")
    return dataclasses.replace(settings, database_url=parsed)


def migrate_backend(
    settings: Settings,
    to_url: str,
    *,
    batch: int = BATCH,
    progress: Callable[[str, int], None] | None = None,
) -> MigrationReport:
    """Copies the SQLite ledger the settings name into the PostgreSQL database at `to_url`,
    verifies every table and the counters, rings the queued parcels on the target's queue.

    `progress(table, rows)` is called after each batch committed (rows so far in that
    table). Raises MigrationRefused before copying anything, MigrationFailed when the target
    does not match the source in the end; LedgerError (naming host:port) when a database
    fails on the way, after which a rerun completes the copy.
    """
    if settings.database_url:
        raise MigrationRefused(
            f"the ledger is already on PostgreSQL (SEER_DATABASE_URL, at "
            f"{settings.database_address}): migrate-backend copies a SQLite ledger; unset "
            "SEER_DATABASE_URL to name the SQLite one"
        )
    goal = target_settings(settings, to_url)
    address = server_address(goal.database_url)
    layout = Layout.from_settings(settings)
    layout.require_initialised()
    layout.check_no_links()
    source = open_ledger(layout, settings)
    target = open_ledger(layout, goal)
    try:
        # Held for the whole copy: nothing changes the source, and what runs is seen below.
        with source.write():
            _check_source(source, layout)
            state = _prepare_target(target, layout, goal, address)
            report = _copy(source, target, state, address, batch, progress)
    finally:
        source.close()
        target.close()
    if report.mismatches:
        more = len(report.mismatches) - 1
        since = (
            " (it was complete before: has the target been used since?)"
            if report.already_done
            else ""
        )
        raise MigrationFailed(
            f"the copy at {address} does not match the source{since}: {report.mismatches[0]}"
            + (f" (and {more} more)" if more else ""),
            report,
        )
    if state.get("state") == "done":
        return report  # verified again; rung and marked done by an earlier run
    return _ring(goal, report)


# -- checks ---------------------------------------------------------------------------------------


def _check_source(source: Ledger, layout: Layout) -> None:
    version = migrations.current_version(source)
    if version != migrations.LATEST:
        raise MigrationRefused(
            f"the SQLite ledger is at schema version {version}, this code's is "
            f"{migrations.LATEST}: run `seer migrate` first, then copy it"
        )
    # supervisord's programs and every consumer the ledger knows of (same check as rollback).
    running = running_consumers(source, layout)
    if running:
        raise MigrationRefused(
            f"refusing to copy the ledger while {', '.join(running)} "
            f"{'runs' if len(running) == 1 else 'run'}: stop the workers first (`seer down`); "
            "what they wrote meanwhile would not be copied"
        )
    known = {t.name for t in TABLES} | set(NOT_ROWS)
    unknown = [name for name in _sqlite_tables(source) if name not in known]
    if unknown:
        raise MigrationRefused(
            f"the ledger has tables this code does not copy ({', '.join(unknown)}): copy it "
            "with the release that made them"
        )


def _sqlite_tables(source: Ledger) -> list[str]:
    return [
        r["name"]
        for r in source.rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]


def _source_identity(layout: Layout, settings: Settings) -> dict[str, str]:
    """What names the source in the target's flag: this host and the storage root's path."""
    return {"host": host_name(settings.host_id), "root": str(layout.root.absolute())}


def _prepare_target(target: Ledger, layout: Layout, goal: Settings, address: str) -> dict[str, Any]:
    """Makes the target's schema if it has none and checks it is this source's copy (or
    empty); returns its flag (`initialised`, `state`, …)."""
    if not target.scalar("SELECT current_schema()"):
        raise MigrationRefused(
            f"the database at {address} has no schema of the URL's search_path: create it "
            "first (CREATE SCHEMA …)"
        )
    version = migrations.current_version(target)
    initialised = False
    if version == 0:
        migrations.migrate(target)
        initialised = True
    elif version != migrations.LATEST:
        raise MigrationRefused(
            f"the database at {address} has a ledger at schema version {version}, this code's "
            f"is {migrations.LATEST}: copy only into an empty database or schema"
        )
    up = [
        f"seer-{c.queue} on {c.host}"
        for c in consumers.consumers(target, host_id=goal.host_id, timeout=goal.heartbeat_timeout)
        if consumers.is_up(c)
    ]
    if up:
        raise MigrationRefused(
            f"refusing to copy into the database at {address} while {', '.join(up)} "
            f"{'runs' if len(up) == 1 else 'run'} on it: stop them first"
        )
    me = _source_identity(layout, goal)
    row = target.row("SELECT value FROM control WHERE key = ?", (MARKER,))
    if row is not None:
        flag = json.loads(row["value"])
        if flag.get("source") != me:
            them = flag.get("source") or {}
            raise MigrationRefused(
                f"the database at {address} holds a copy of another ledger (storage root "
                f"{them.get('root')} on {them.get('host')}): copy only into an empty database "
                "or schema"
            )
        return {**flag, "initialised": initialised, "resumed": True}
    holding = [t.name for t in TABLES if _count(target, t)]
    if holding:
        raise MigrationRefused(
            f"the database at {address} already holds a ledger ({', '.join(holding)} not "
            "empty) that is not a copy of this one: copy only into an empty database or schema"
        )
    flag = {"source": me, "state": "copying", "started_at": target.now()}
    _put_flag(target, flag)
    return {**flag, "initialised": initialised, "resumed": False}


def _put_flag(target: Ledger, flag: dict[str, Any]) -> None:
    with target.write():
        target.execute(
            "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (MARKER, json.dumps(flag, sort_keys=True), target.now()),
        )


# -- the copy -------------------------------------------------------------------------------------


def _where(table: Table, extra: str = "") -> str:
    conditions = [c for c in (table.where, extra) if c]
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


def _count(ledger: Ledger, table: Table) -> int:
    return int(ledger.scalar(f"SELECT count(*) FROM {table.name}{_where(table)}", table.params))


def _copy_table(
    source: Ledger,
    target: Ledger,
    table: Table,
    batch: int,
    progress: Callable[[str, int], None] | None,
) -> int:
    """Copies the source's rows of `table` missing from the target, batch by batch in key
    order; returns how many it inserted."""
    key = ", ".join(table.key)
    after = f"({key}) > ({', '.join('?' for _ in table.key)})"
    last: tuple[Any, ...] | None = None
    inserted = done = 0
    while True:
        where = _where(table, after if last else "")
        params = (*table.params, *(last or ()))
        limit = batch
        if table.weight:
            sizes = source.rows(
                f"SELECT {table.weight} AS size FROM {table.name}{where} ORDER BY {key} LIMIT ?",
                (*params, batch),
            )
            limit = _within(sizes)
        rows = source.rows(
            f"SELECT * FROM {table.name}{where} ORDER BY {key} LIMIT ?", (*params, limit)
        )
        if not rows:
            return inserted
        inserted += _insert(target, table.name, rows)
        done += len(rows)
        last = tuple(rows[-1][k] for k in table.key)
        if progress is not None:
            progress(table.name, done)


def _within(sizes: Sequence[dict[str, Any]]) -> int:
    """How many of these rows, in order, fit in BATCH_BYTES (always at least one)."""
    total = taken = 0
    for row in sizes:
        size = int(row["size"] or 0)
        if taken and total + size > BATCH_BYTES:
            break
        total += size
        taken += 1
    return max(1, taken)


def _insert(target: Ledger, name: str, rows: Sequence[dict[str, Any]]) -> int:
    columns = list(rows[0])
    one = "(" + ", ".join("?" for _ in columns) + ")"
    sql = (
        f"INSERT INTO {name} ({', '.join(columns)}) VALUES "
        + ", ".join(one for _ in rows)
        + " ON CONFLICT DO NOTHING"
    )
    values = [row[c] for row in rows for c in columns]
    with target.write():
        return int(target.execute(sql, values).rowcount)


def _next_ids(source: Ledger) -> dict[str, int]:
    """Each identity table's next id on the source: past every id it ever gave (SQLite's
    AUTOINCREMENT remembers the highest in sqlite_sequence), so none is given twice."""
    remembered = {
        r["name"]: int(r["seq"]) for r in source.rows("SELECT name, seq FROM sqlite_sequence")
    }
    found = {}
    for table in TABLES:
        if table.identity:
            highest = source.scalar(f"SELECT max({table.identity}) FROM {table.name}") or 0
            found[table.name] = max(int(highest), remembered.get(table.name, 0)) + 1
    return found


def _settle(target: Ledger, source: Ledger) -> None:
    """After the rows: the counters as the source has them, identities past its ids."""
    counters = source.counters()
    with target.write():
        for name, value in sorted(counters.items()):
            target.set_counter(name, value)
        for name, next_id in sorted(_next_ids(source).items()):
            column = next(t.identity for t in TABLES if t.name == name)
            # PostgreSQL's identity sequence: the target is PostgreSQL by construction.
            target.scalar(
                "SELECT setval(pg_get_serial_sequence(?, ?), ?, false)", (name, column, next_id)
            )


def _fingerprints(ledger: Ledger) -> dict[str, Any]:
    """What row counts alone would miss: parcels by state, the blobs' bytes."""
    return {
        "parcels by state": sorted(
            (r["state"], int(r["n"]))
            for r in ledger.rows("SELECT state, count(*) AS n FROM parcels GROUP BY state")
        ),
        "blob bytes": int(ledger.scalar("SELECT coalesce(sum(size), 0) FROM blobs")),
    }


def _copy(
    source: Ledger,
    target: Ledger,
    state: dict[str, Any],
    address: str,
    batch: int,
    progress: Callable[[str, int], None] | None,
) -> MigrationReport:
    already_done = state.get("state") in ("copied", "done")
    copied: dict[str, int] = {}
    if not already_done:
        for table in TABLES:
            copied[table.name] = _copy_table(source, target, table, batch, progress)
        _settle(target, source)
    counts = tuple(
        TableCount(t.name, _count(source, t), _count(target, t), copied.get(t.name, 0))
        for t in TABLES
    )
    mismatches = [
        f"{c.name}: {counted(c.source, 'row')} in the source, {c.target:,} in the target"
        for c in counts
        if c.source != c.target
    ]
    theirs, ours = target.counters(), source.counters()
    mismatches += [
        f"counter {name}: {ours.get(name)} in the source, {theirs.get(name)} in the target"
        for name in sorted(set(theirs) | set(ours))
        if theirs.get(name) != ours.get(name)
    ]
    mine, copy = _fingerprints(source), _fingerprints(target)
    mismatches += [
        f"{what}: {mine[what]} in the source, {copy[what]} in the target"
        for what in mine
        if mine[what] != copy[what]
    ]
    if not mismatches and not already_done:
        _put_flag(target, {**_flag(state), "state": "copied", "copied_at": target.now()})
    return MigrationReport(
        target=address,
        tables=counts,
        counters=dict(sorted(theirs.items())),
        schema_version=migrations.current_version(target),
        initialised=bool(state.get("initialised")),
        resumed=bool(state.get("resumed")) and not already_done,
        already_done=already_done,
        mismatches=tuple(mismatches),
    )


def _flag(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in ("initialised", "resumed")}


def _ring(goal: Settings, report: MigrationReport) -> MigrationReport:
    """Rings the queued parcels on the target's queue (Runtime.ring: one doorbell a batch),
    then marks the copy done. A queue out of reach costs only delay: the postmaster
    consumer's start and the reaper ring for due parcels without a doorbell."""
    runtime = Runtime.open(goal)
    try:
        ledger = runtime.ledger
        queued = [
            r["id"]
            for r in ledger.rows("SELECT id FROM parcels WHERE state = 'queued' ORDER BY seq")
        ]
        warning = None
        rung = 0
        if queued:
            try:
                runtime.ring(queued)
                rung = len(queued[:: goal.batch_size])
            except QueueError as exc:
                warning = (
                    f"the queued parcels were not rung ({exc}): the postmaster consumer rings "
                    "for them when it starts"
                )
        row = ledger.row("SELECT value FROM control WHERE key = ?", (MARKER,))
        flag = json.loads(row["value"]) if row else {}
        _put_flag(ledger, {**flag, "state": "done", "done_at": ledger.now()})
    finally:
        runtime.close()
    return dataclasses.replace(report, rung=rung, ring_warning=warning)


__all__ = [
    "BATCH",
    "MARKER",
    "TABLES",
    "MigrationFailed",
    "MigrationRefused",
    "MigrationReport",
    "TableCount",
    "migrate_backend",
    "target_settings",
]
