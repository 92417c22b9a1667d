"""Versioned migrations of the ledger, each with its down step, and the schema check.

The code expects exactly LATEST; the worker and every command refuse a ledger that is behind
or ahead, so an old worker never writes a newer schema (or the reverse).
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.ledger.base import Ledger
from worker.wording import counted, plural_s


class SchemaMismatch(RuntimeError):
    """The ledger's schema version is not the one this code was written for."""


class RollbackRefused(RuntimeError):
    """Undoing a migration would destroy what nothing else holds; the message says how to
    move it out first."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: tuple[str, ...]
    down: tuple[str, ...]
    # (a count that must be 0 before `down` runs, what to do when it is not: with {count}).
    keeps: tuple[str, str] | None = None


def _counter_triggers(table: str, prefix: str) -> tuple[str, ...]:
    # Counts kept by triggers, in the same transaction as the change: O(1) to read, never drift.
    return (
        f"""CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table} BEGIN
            UPDATE counters SET value = value + 1 WHERE name = '{prefix}' || NEW.state; END""",
        f"""CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table} BEGIN
            UPDATE counters SET value = value - 1 WHERE name = '{prefix}' || OLD.state; END""",
        f"""CREATE TRIGGER {table}_count_update AFTER UPDATE OF state ON {table}
            WHEN OLD.state <> NEW.state BEGIN
            UPDATE counters SET value = value - 1 WHERE name = '{prefix}' || OLD.state;
            UPDATE counters SET value = value + 1 WHERE name = '{prefix}' || NEW.state; END""",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "parcel ledger, inbox messages, artifacts, CAS accounting",
        (
            """CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
               WITHOUT ROWID""",
            """INSERT INTO counters (name, value) VALUES
               ('parcels_queued', 0), ('parcels_in_flight', 0), ('parcels_delivered', 0),
               ('parcels_failed', 0), ('cas_bytes', 0), ('cas_blobs', 0)""",
            """CREATE TABLE parcels (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                to_agent_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                type TEXT NOT NULL,
                stream TEXT NOT NULL,
                state TEXT NOT NULL
                    CHECK (state IN ('queued', 'in_flight', 'delivered', 'failed')),
                payload TEXT,
                size INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                crashes INTEGER NOT NULL DEFAULT 0,
                isolate INTEGER NOT NULL DEFAULT 0,
                owner TEXT,
                claim_size INTEGER,
                lease_until REAL,
                not_before REAL NOT NULL DEFAULT 0,
                created_at REAL NOT NULL,
                claimed_at REAL,
                finished_at REAL,
                error TEXT,
                traceback TEXT)""",
            "CREATE INDEX parcels_state_seq ON parcels (state, seq)",
            *_counter_triggers("parcels", "parcels_"),
            """CREATE TABLE messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                parcel_id TEXT NOT NULL UNIQUE,
                to_agent_id TEXT NOT NULL,
                type TEXT NOT NULL,
                stream TEXT NOT NULL,
                headers TEXT NOT NULL,
                envelope TEXT NOT NULL,
                created_at REAL NOT NULL,
                read_at REAL)""",
            "CREATE INDEX messages_agent ON messages (to_agent_id, id)",
            """CREATE TABLE blobs (
                hash TEXT PRIMARY KEY, size INTEGER NOT NULL, created_at REAL NOT NULL)
               WITHOUT ROWID""",
            """CREATE TRIGGER blobs_count_insert AFTER INSERT ON blobs BEGIN
                UPDATE counters SET value = value + NEW.size WHERE name = 'cas_bytes';
                UPDATE counters SET value = value + 1 WHERE name = 'cas_blobs'; END""",
            """CREATE TRIGGER blobs_count_delete AFTER DELETE ON blobs BEGIN
                UPDATE counters SET value = value - OLD.size WHERE name = 'cas_bytes';
                UPDATE counters SET value = value - 1 WHERE name = 'cas_blobs'; END""",
            """CREATE TABLE artifacts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                parcel_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('attachment', 'manifest')),
                name TEXT NOT NULL,
                hash TEXT NOT NULL,
                filename TEXT NOT NULL,
                mime_type TEXT NOT NULL,
                size INTEGER NOT NULL,
                uri TEXT NOT NULL,
                created_at REAL NOT NULL,
                UNIQUE (parcel_id, kind, name))""",
            "CREATE INDEX artifacts_hash ON artifacts (hash)",
            "CREATE INDEX artifacts_task ON artifacts (task_id)",
        ),
        (
            "DROP TABLE artifacts",
            "DROP TABLE blobs",
            "DROP TABLE messages",
            "DROP TABLE parcels",
            "DROP TABLE counters",
        ),
    ),
    Migration(
        2,
        "control flags (queue pause, worker backoff)",
        (
            """CREATE TABLE control (
                key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL)
               WITHOUT ROWID""",
        ),
        ("DROP TABLE control",),
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "metric history, running totals, index of failures by time",
        (
            """INSERT INTO counters (name, value) VALUES
               ('delivered_total', (SELECT count(*) FROM parcels WHERE state = 'delivered')),
               ('failed_total', (SELECT count(*) FROM parcels WHERE state = 'failed'))""",
            # Running totals only ever grow: a sample's "delivered since the last one" is the
            # difference, whatever is retried or purged in between.
            """CREATE TRIGGER parcels_totals AFTER UPDATE OF state ON parcels
               WHEN NEW.state IN ('delivered', 'failed') AND OLD.state <> NEW.state BEGIN
               UPDATE counters SET value = value + 1 WHERE name = NEW.state || '_total'; END""",
            "CREATE INDEX parcels_state_finished ON parcels (state, finished_at)",
            """CREATE TABLE metric_samples (
                resolution INTEGER NOT NULL,
                ts REAL NOT NULL,
                queue_depth INTEGER NOT NULL,
                oldest_queued_age REAL,
                delivered INTEGER NOT NULL,
                failed INTEGER NOT NULL,
                failed_last_hour INTEGER NOT NULL,
                cas_bytes INTEGER NOT NULL,
                cas_blobs INTEGER NOT NULL,
                postmaster_up INTEGER NOT NULL,
                scheduler_up INTEGER NOT NULL,
                delivered_total INTEGER NOT NULL,
                failed_total INTEGER NOT NULL,
                PRIMARY KEY (resolution, ts)) WITHOUT ROWID""",
        ),
        (
            "DROP TABLE metric_samples",
            "DROP INDEX parcels_state_finished",
            "DROP TRIGGER parcels_totals",
            "DELETE FROM counters WHERE name IN ('delivered_total', 'failed_total')",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        4,
        "agent memory and compaction runs",
        (
            # Clustered by agent and key: one agent's keys sit together on disk, so compacting
            # agent by agent writes each page once (scattered deletes rewrite pages many times).
            """CREATE TABLE memory (
                agent_id TEXT NOT NULL,
                key TEXT NOT NULL,
                partition TEXT NOT NULL CHECK (partition IN ('durable', 'ephemeral')),
                value TEXT NOT NULL,
                expires_at REAL,
                updated_at REAL NOT NULL,
                PRIMARY KEY (agent_id, key)) WITHOUT ROWID""",
            """CREATE TABLE compaction_runs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                trigger TEXT NOT NULL,
                agent_id TEXT,
                dry_run INTEGER NOT NULL DEFAULT 0,
                started_at REAL NOT NULL,
                finished_at REAL,
                agents INTEGER NOT NULL DEFAULT 0,
                keys_deleted INTEGER NOT NULL DEFAULT 0,
                status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed')),
                error TEXT,
                owner TEXT)""",
            "CREATE INDEX compaction_runs_status ON compaction_runs (status, started_at)",
        ),
        ("DROP TABLE compaction_runs", "DROP TABLE memory"),
    ),
)

MIGRATIONS += (
    Migration(
        5,
        "alert rule states and the notification outbox",
        (
            """CREATE TABLE alert_state (
                rule TEXT PRIMARY KEY,
                level TEXT NOT NULL CHECK (level IN ('ok', 'warning', 'critical')),
                value REAL,
                summary TEXT,
                since REAL NOT NULL,
                notified_at REAL,
                evaluated_at REAL NOT NULL) WITHOUT ROWID""",
            # One row per notification per channel, written in the same transaction as the
            # state change: an alert exists once it is decided, whatever the channels do.
            """CREATE TABLE alert_outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                channel TEXT NOT NULL,
                rule TEXT NOT NULL,
                level TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at REAL NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL,
                lease_until REAL,
                last_error TEXT,
                sent_at REAL)""",
            "CREATE INDEX alert_outbox_due ON alert_outbox (status, next_attempt_at)",
        ),
        ("DROP TABLE alert_outbox", "DROP TABLE alert_state"),
    ),
)

# A parcel's life, one JSON line an event (worker/ledger/history.py), appended by the
# very UPDATE that makes the change: no extra statement on the Postmaster's path. Indexes for
# the parcel finder (newest first within a task, an agent, a type) and for an inbox's unread.
PARCEL_HISTORY_UP = (
    "ALTER TABLE parcels ADD COLUMN history TEXT",
    "CREATE INDEX parcels_task_seq ON parcels (task_id, seq)",
    "CREATE INDEX parcels_agent_seq ON parcels (to_agent_id, seq)",
    "CREATE INDEX parcels_type_seq ON parcels (type, seq)",
    "CREATE INDEX messages_unread ON messages (to_agent_id, id) WHERE read_at IS NULL",
)
PARCEL_HISTORY_DOWN = (
    "DROP INDEX messages_unread",
    "DROP INDEX parcels_type_seq",
    "DROP INDEX parcels_agent_seq",
    "DROP INDEX parcels_task_seq",
    "ALTER TABLE parcels DROP COLUMN history",
)

MIGRATIONS += (
    Migration(
        6,
        "parcel history, finder and unread-inbox indexes",
        PARCEL_HISTORY_UP,
        PARCEL_HISTORY_DOWN,
    ),
)

# Blobs up to ORCHESTRATION_CAS_SMALL_BLOB_SIZE live here instead of one file each (worker/
# cas/ledger_blobs.py): a batch of deliveries writes them in one transaction. A rowid table,
# not WITHOUT ROWID: its rows run to 100 KB, and SQLite keeps those in overflow pages.
SMALL_BLOBS_DOWN = (
    "DROP TABLE small_blobs",
    "DELETE FROM counters WHERE name IN ('cas_small_bytes', 'cas_small_blobs')",
)

# Dropping the table would drop blobs that artifacts name: the rollback waits until they are
# files (`seer cas unpack`).
SMALL_BLOBS_KEPT = (
    "SELECT count(*) FROM small_blobs",
    "the ledger keeps {count} blob{s} of the CAS in table small_blobs, which this rollback would "
    "drop: with the workers stopped, move them into files first with `seer cas unpack`",
)

MIGRATIONS += (
    Migration(
        7,
        "small CAS blobs kept in the ledger",
        (
            """CREATE TABLE small_blobs (
                hash TEXT PRIMARY KEY, data BLOB NOT NULL, written_at REAL NOT NULL)""",
            """INSERT INTO counters (name, value) VALUES
               ('cas_small_bytes', 0), ('cas_small_blobs', 0)""",
            # Where the CAS's bytes are, for the storage report: O(1) to read, as cas_bytes.
            """CREATE TRIGGER small_blobs_count_insert AFTER INSERT ON small_blobs BEGIN
                UPDATE counters SET value = value + length(NEW.data)
                    WHERE name = 'cas_small_bytes';
                UPDATE counters SET value = value + 1 WHERE name = 'cas_small_blobs'; END""",
            """CREATE TRIGGER small_blobs_count_delete AFTER DELETE ON small_blobs BEGIN
                UPDATE counters SET value = value - length(OLD.data)
                    WHERE name = 'cas_small_bytes';
                UPDATE counters SET value = value - 1 WHERE name = 'cas_small_blobs'; END""",
            """CREATE TRIGGER small_blobs_count_update AFTER UPDATE OF data ON small_blobs BEGIN
                UPDATE counters SET value = value + length(NEW.data) - length(OLD.data)
                    WHERE name = 'cas_small_bytes'; END""",
        ),
        SMALL_BLOBS_DOWN,
        SMALL_BLOBS_KEPT,
    ),
)

LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"""


@dataclass(frozen=True)
class MigrationState:
    version: int
    name: str
    applied_at: float | None


def migrations_of(ledger: Ledger) -> tuple[Migration, ...]:
    """The migrations in the ledger's own dialect: the same versions on every engine."""
    if ledger.dialect == "postgresql":
        from worker.ledger.pg_schema import MIGRATIONS as POSTGRESQL

        return POSTGRESQL
    return MIGRATIONS


def current_version(ledger: Ledger) -> int:
    if not ledger.has_table("schema_migrations"):
        return 0
    return ledger.scalar("SELECT coalesce(max(version), 0) FROM schema_migrations") or 0


def status(ledger: Ledger) -> list[MigrationState]:
    applied: dict[int, float] = {}
    if current_version(ledger) or ledger.has_table("schema_migrations"):
        applied = {
            r["version"]: r["applied_at"]
            for r in ledger.rows("SELECT version, applied_at FROM schema_migrations")
        }
    return [
        MigrationState(m.version, m.name, applied.get(m.version)) for m in migrations_of(ledger)
    ]


def migrate(ledger: Ledger, now: float | None = None) -> list[Migration]:
    """Applies every pending migration, each in its own transaction; returns those applied."""
    applied = []
    ledger.execute(_VERSION_TABLE)
    if current_version(ledger) > LATEST:
        check_schema(ledger)
    for migration in migrations_of(ledger):
        with ledger.write():
            if current_version(ledger) >= migration.version:
                continue
            for statement in migration.up:
                ledger.execute(statement)
            ledger.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, ledger.now() if now is None else now),
            )
        applied.append(migration)
    return applied


def to_undo(ledger: Ledger, steps: int) -> list[Migration]:
    """The migrations a rollback of `steps` would undo, newest first."""
    by_version = {m.version: m for m in migrations_of(ledger)}
    version = current_version(ledger)
    if version > LATEST:
        check_schema(ledger)  # refuses: only the release that applied it can undo it
    undo = [by_version[v] for v in range(version, max(0, version - steps), -1)]
    for migration in undo:
        _refuse_if_kept(ledger, migration)
    return undo


def _refuse_if_kept(ledger: Ledger, migration: Migration) -> None:
    if migration.keeps is None:
        return
    count_sql, advice = migration.keeps
    count = ledger.scalar(count_sql) or 0
    if count:
        raise RollbackRefused(
            f"cannot undo migration {migration.version}: "
            + advice.format(count=count, s=plural_s(count))
        )


def rollback_effects(ledger: Ledger, migration: Migration) -> list[str]:
    """What undoing a migration destroys, with row counts, as the operator should hear it."""
    effects = []
    for statement in migration.down:
        words = statement.split()
        if words[:2] == ["DROP", "TABLE"]:
            rows = ledger.scalar(f'SELECT count(*) FROM "{words[2]}"')
            effects.append(f"table {words[2]} ({counted(rows, 'row')})")
        elif words[:2] == ["ALTER", "TABLE"] and words[3:5] == ["DROP", "COLUMN"]:
            effects.append(f"column {words[2]}.{words[5]} (every row's)")
        elif words[0] == "DROP":
            effects.append(f"{words[1].lower()} {words[2]}")
        elif words[:4] == ["CREATE", "OR", "REPLACE", "FUNCTION"]:
            effects.append(f"function {words[4]} back to its previous version")
        else:
            effects.append(" ".join(words))
    return effects


def rollback(ledger: Ledger, steps: int) -> list[Migration]:
    """Undoes the last `steps` applied migrations, newest first; returns those undone."""
    undone = []
    by_version = {m.version: m for m in migrations_of(ledger)}
    for _ in range(steps):
        with ledger.write():
            version = current_version(ledger)
            if version == 0:
                break
            migration = by_version.get(version)
            if migration is None:
                raise SchemaMismatch(
                    f"the ledger is at schema version {version}, which this code does not know: "
                    "roll back with the release that applied it"
                )
            # Again inside the transaction: a consumer may have written since the preview.
            _refuse_if_kept(ledger, migration)
            for statement in migration.down:
                ledger.execute(statement)
            ledger.execute("DELETE FROM schema_migrations WHERE version = ?", (version,))
        undone.append(migration)
    return undone


def check_schema(ledger: Ledger) -> None:
    version = current_version(ledger)
    if version != LATEST:
        direction = "behind" if version < LATEST else "ahead of"
        raise SchemaMismatch(
            f"the ledger schema is at version {version}, {direction} this code's {LATEST}: "
            "run `seer migrate`" + ("" if version < LATEST else " with the release that matches it")
        )
