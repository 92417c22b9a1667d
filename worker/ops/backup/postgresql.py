"""Backup's PostgreSQL strategy: `pg_dump --format=custom` of the ledger's schema in one
snapshot, and `pg_restore` of it into an empty database or schema.

The snapshot: this process opens a REPEATABLE READ transaction on the ledger, exports its
snapshot (`pg_export_snapshot()`), reads the facts and the recorded blobs in it, and hands it to
pg_dump (`--snapshot`), whose own single REPEATABLE READ transaction then sees exactly the same
committed state: the dump, the blob list and the manifest's counts are one point in time,
taken while consumers keep committing (a dump blocks no writer, only DDL).

Huey's queue tables (huey_task, huey_schedule, …, in the same schema) are left out: they hold
only doorbells, and the ledger is the record. After a restore, the postmaster consumer's start
rings for the oldest due parcel and the reaper rings whenever due parcels have no doorbell, so
every queued parcel is delivered without them; Huey creates its tables again when a runtime
first builds the queues. (Restoring old doorbells beside a fresh Huey would only ring twice.)

The password never leaves this process but in PGPASSWORD, in the tools' environment: the
command line carries the URL without it, errors name host:port, and any text a tool prints is
scrubbed of it before it is shown.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from worker.files import fsync_file, sha256_file
from worker.layout import Layout
from worker.ledger import Ledger, LedgerError, migrations
from worker.ops.backup.errors import BackupError, BackupRefused, DamagedBackup
from worker.ops.backup.manifest import DATABASES, BackupManifest
from worker.ops.backup.strategy import LedgerFacts, Snapshot, Strategy

DUMP = DATABASES["postgresql"][0]
# pg_dump waits this long for the lock of a table a migration holds, then gives up.
LOCK_WAIT = "60s"
_HUEY = "huey\\_%"  # LIKE pattern of Huey's tables (huey_task, huey_schedule, …)
_TABLE_KINDS = "('r', 'p', 'v', 'm', 'f')"
# pg_restore's TOC lines of the schema itself: the target's schema is made (or kept) here.
_SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ (SCHEMA - |(COMMENT|ACL) - SCHEMA )")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def split_url(url: str) -> tuple[str, str]:
    """The URL without its password (what a tool's command line may carry), and the password
    ('' when there is none), from the user part or a `password=` parameter."""
    parts = urlsplit(url)
    password = ""
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hostport = netloc.rsplit("@", 1)
        user, sep, raw = userinfo.partition(":")
        if sep:
            password = unquote(raw)
        netloc = f"{user}@{hostport}" if user else hostport
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "password":
            password = password or value
        else:
            query.append((name, value))
    return parts._replace(netloc=netloc, query=urlencode(query)).geturl(), password


def _first_schema(search_path: str) -> str:
    for entry in search_path.split(","):
        name = entry.strip()
        if name.startswith('"') and name.endswith('"') and len(name) > 1:
            name = name[1:-1].replace('""', '"')
        if name and name != "$user":
            return name
    return "public"


class _Tools:
    """pg_dump and pg_restore, run with the password in their environment only."""

    def __init__(self, url: str, address: str) -> None:
        self.conninfo, self.password = split_url(url)
        self.address = address

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def _scrubbed(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    def run(self, tool: str, args: list[str], what: str, *, connect: bool = True) -> str:
        """Runs `tool` (with --dbname when `connect`); its stdout. BackupError, one line
        naming host:port and the tool's first error, when it fails."""
        found = shutil.which(tool)
        if found is None:
            raise BackupError(
                f"{tool} is not installed: a PostgreSQL ledger's backup and restore need "
                "pg_dump and pg_restore of the server's major version (postgresql-client)"
            )
        command = [found, *args]
        if connect:
            command += ["--no-password", f"--dbname={self.conninfo}"]
        done = subprocess.run(
            command, env=self._environment(), capture_output=True, text=True, errors="replace"
        )
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if "error:" in line] or lines or ["no message"]
            reason = errors[0].split("error:", 1)[-1].strip()
            where = f" at {self.address}" if connect else ""
            raise BackupError(self._scrubbed(f"{what}{where} failed ({tool}): {reason}"))
        return done.stdout


class PostgresStrategy(Strategy):
    """The ledger's schema in one PostgreSQL database: dumped in one snapshot, restored by
    pg_restore into an empty database or schema."""

    engine = "postgresql"
    databases = DATABASES["postgresql"]

    def __init__(self, ledger: Ledger, url: str, address: str) -> None:
        self.ledger = ledger
        self.address = address
        self.tools = _Tools(url, address)
        # What a restore made, for `undo`: schemas created, functions there before.
        self._created: list[str] = []
        self._kept_functions: dict[str, set[str]] = {}
        self._restored_into: list[str] = []

    # -- the database's schemas ------------------------------------------------------------

    def schema(self) -> str:
        """The schema the ledger's URL points at: where its tables are, or would be made."""
        current = self.ledger.scalar("SELECT current_schema()")
        if current:
            return str(current)
        return _first_schema(str(self.ledger.scalar("SELECT current_setting('search_path')")))

    def _exists(self, schema: str) -> bool:
        return bool(self.ledger.scalar("SELECT 1 FROM pg_namespace WHERE nspname = ?", (schema,)))

    def _tables(self, schema: str) -> list[str]:
        """The schema's tables and views, Huey's queue tables left out."""
        return [
            r["relname"]
            for r in self.ledger.rows(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                f"WHERE n.nspname = ? AND c.relkind IN {_TABLE_KINDS} AND c.relname NOT LIKE ? "
                "ORDER BY c.relname",
                (schema, _HUEY),
            )
        ]

    def _functions(self, schema: str) -> set[str]:
        """The schema's functions, each as `schema.name(argument types)`, qualified."""
        return {
            r["signature"]
            for r in self.ledger.rows(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' "
                "|| pg_get_function_identity_arguments(p.oid) || ')' AS signature "
                "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = ?",
                (schema,),
            )
        }

    # -- backup ----------------------------------------------------------------------------

    def take(self, dest: Path, mode: int) -> Snapshot:
        ledger = self.ledger
        schema = self.schema()
        path = dest / DUMP
        with ledger.read():
            # The exporting transaction must outlive pg_dump's start; it waits idle meanwhile.
            ledger.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            snapshot_id = str(ledger.scalar("SELECT pg_export_snapshot()"))
            facts = _facts(ledger)
            recorded = (
                {r["hash"]: int(r["size"]) for r in ledger.rows("SELECT hash, size FROM blobs")}
                if ledger.has_table("blobs")
                else {}
            )
            self.tools.run(
                "pg_dump",
                [
                    "--format=custom",
                    f"--file={path}",
                    f"--schema={quote_ident(schema)}",
                    f"--exclude-table={quote_ident(schema)}.huey_*",
                    f"--snapshot={snapshot_id}",
                    f"--lock-wait-timeout={LOCK_WAIT}",
                ],
                "the dump of the ledger",
            )
        os.chmod(path, mode)
        fsync_file(path)
        return Snapshot(facts, recorded, schema)

    def referenced(self, dest: Path, digests: Iterable[str]) -> set[str]:
        # The live ledger: artifacts are never deleted, so one the snapshot has is still here.
        return {
            d
            for d in digests
            if self.ledger.scalar("SELECT 1 FROM artifacts WHERE hash = ? LIMIT 1", (d,))
        }

    def leave_out(self, dest: Path, digests: list[str]) -> tuple[str, ...]:
        return tuple(sorted(digests))  # a dump is not edited: restore deletes their rows

    # -- restore ---------------------------------------------------------------------------

    def check_target(self, manifest: BackupManifest) -> None:
        target, dumped = self.schema(), manifest.schema
        if not dumped:
            raise DamagedBackup(f"{manifest.path}: the manifest does not name the dump's schema")
        found = self._tables(target)
        if found:
            raise BackupRefused(
                f"the database at {self.address} already has a ledger in schema {target} "
                f"({len(found)} tables): restore only into an empty database or schema"
            )
        if dumped != target and self._tables(dumped):
            raise BackupRefused(
                f"the backup's schema {dumped} holds tables in the database at {self.address}: "
                "pg_restore recreates a dump under its own schema's name before it is renamed "
                f"to {target}, so restore into another database (or drop that schema)"
            )

    def put_back(self, manifest: BackupManifest, layout: Layout) -> None:
        ledger = self.ledger
        target, dumped = self.schema(), manifest.schema
        dump = manifest.path / DUMP
        for schema in dict.fromkeys((dumped, target)):
            self._kept_functions[schema] = self._functions(schema)
        if not self._exists(dumped):
            ledger.execute(f"CREATE SCHEMA {quote_ident(dumped)}")
            self._created.append(dumped)
        self._restored_into.append(dumped)
        toc = self.tools.run("pg_restore", ["--list", str(dump)], "reading the dump", connect=False)
        with tempfile.NamedTemporaryFile("w", prefix="seer-restore-", suffix=".list") as listing:
            listing.write(
                "".join(line for line in toc.splitlines(True) if not _SCHEMA_ENTRY.match(line))
            )
            listing.flush()
            self.tools.run(
                "pg_restore",
                [
                    "--single-transaction",
                    "--exit-on-error",
                    "--no-owner",
                    "--no-privileges",
                    f"--use-list={listing.name}",
                    str(dump),
                ],
                "the restore of the ledger",
            )
        with ledger.write():
            if dumped != target:
                self._move(dumped, target)
            # Blobs gc took while the backup ran: their rows go, as gc's would have (the
            # counters' triggers follow).
            for digest in manifest.left_out:
                ledger.execute("DELETE FROM blobs WHERE hash = ?", (digest,))
        if sha256_file(dump) != next(d.sha256 for d in manifest.databases if d.name == DUMP):
            raise DamagedBackup(
                f"damaged backup: {DUMP} changed while it was restored (SHA-256 differs)"
            )

    def _move(self, dumped: str, target: str) -> None:
        """Puts what pg_restore made in `dumped` into `target` (inside a write)."""
        ledger = self.ledger
        if not self._exists(target):
            ledger.execute(f"ALTER SCHEMA {quote_ident(dumped)} RENAME TO {quote_ident(target)}")
            if dumped in self._created:
                self._created[self._created.index(dumped)] = target
            self._restored_into = [target]
            return
        for table in self._tables(dumped):
            # Its indexes, constraints, triggers and identity sequence move with it.
            ledger.execute(
                f"ALTER TABLE {quote_ident(dumped)}.{quote_ident(table)} "
                f"SET SCHEMA {quote_ident(target)}"
            )
        for signature in sorted(self._functions(dumped) - self._kept_functions[dumped]):
            ledger.execute(f"ALTER FUNCTION {signature} SET SCHEMA {quote_ident(target)}")
        if dumped in self._created:
            ledger.execute(f"DROP SCHEMA {quote_ident(dumped)}")
            self._created.remove(dumped)
        self._restored_into = [target]

    def recorded_after(self, layout: Layout) -> tuple[dict[str, int], LedgerFacts]:
        ledger = self.ledger
        with ledger.read():
            recorded = {
                r["hash"]: int(r["size"]) for r in ledger.rows("SELECT hash, size FROM blobs")
            }
            return recorded, _facts(ledger)

    def undo(self) -> None:
        """Drops what the restore made: the schemas it created, else the tables and functions
        it put into a schema that was there (and empty of tables) before."""
        ledger = self.ledger
        with contextlib.suppress(LedgerError):
            for schema in self._restored_into:
                if schema in self._created:
                    continue
                for table in self._tables(schema):
                    ledger.execute(
                        f"DROP TABLE IF EXISTS {quote_ident(schema)}.{quote_ident(table)} CASCADE"
                    )
                kept = self._kept_functions.get(schema, set())
                for signature in sorted(self._functions(schema) - kept):
                    ledger.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")
            for schema in self._created:
                ledger.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        self._created, self._restored_into = [], []

    def close(self) -> None:
        self.ledger.close()


def _facts(ledger: Ledger) -> LedgerFacts:
    def count(table: str) -> int:
        return int(ledger.scalar(f"SELECT count(*) FROM {table}")) if ledger.has_table(table) else 0

    return LedgerFacts(migrations.current_version(ledger), count("messages"), count("parcels"))


def recorded_in_dump(manifest: BackupManifest) -> dict[str, int]:
    """hash -> size of the blobs the dump's `blobs` table holds, those the manifest leaves out
    left out: pg_restore reads that table's data from the file (no database is opened)."""
    text = _Tools("", "").run(
        "pg_restore",
        [
            "--data-only",
            f"--schema={manifest.schema}",
            "--table=blobs",
            "--file=-",
            str(manifest.path / DUMP),
        ],
        f"reading {DUMP}",
        connect=False,
    )
    try:
        recorded = _copied_rows(text, ("hash", "size"))
    except (ValueError, IndexError):
        raise DamagedBackup(f"damaged backup: the blobs in {DUMP} cannot be read") from None
    found = {row[0]: int(row[1]) for row in recorded}
    for digest in manifest.left_out:
        found.pop(digest, None)
    return found


def _copied_rows(text: str, wanted: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The `wanted` columns of the rows of the one COPY … FROM stdin block in pg_restore's
    SQL (none when the table had no data). Hashes and sizes need no unescaping."""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("COPY ") and line.endswith(" FROM stdin;"):
            columns = [
                c.strip().strip('"')
                for c in line[line.rindex("(") + 1 : line.rindex(")")].split(",")
            ]
            at = [columns.index(name) for name in wanted]
            rows: list[tuple[str, ...]] = []
            for data in lines:
                if data == "\\.":
                    return rows
                fields = data.split("\t")
                rows.append(tuple(fields[i] for i in at))
            raise ValueError("the COPY block does not end")
    return []
