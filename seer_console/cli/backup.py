"""`seer backup DEST` and `seer restore SRC`: a consistent copy of a running root (and of its
ledger's database, whichever engine holds it), and back.

Neither command checks the schema version: a backup is what one takes before migrating, and a
restored root may be behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seer_console import output
from seer_console.cli.common import (
    DATABASE_ERRORS,
    AddCommand,
    ExitCode,
    Failure,
    UserError,
)
from worker.layout import Layout
from worker.ledger import migrations
from worker.ops import backup as backups
from worker.settings import Settings, load_settings

# A disk or a database failing under a copy: the command says so in one line.
COPY_ERRORS: tuple[type[Exception], ...] = (OSError, *DATABASE_ERRORS)


def _layout() -> tuple[Layout, Settings]:
    """The storage root's layout, and the settings (SEER_BACKUP_KEY, empty: unsigned; the
    ledger's database)."""
    settings = load_settings()
    return Layout.from_settings(settings), settings


def _ledger_line(engine: str, schema: str) -> str:
    if engine == "postgresql":
        return f"PostgreSQL schema {schema}, one snapshot (pg_dump)"
    return "SQLite files, one snapshot each (online backup)"


def _as_cli_error(exc: backups.BackupError) -> Exception:
    # A refusal is the caller's to fix (exit 2); a damaged backup or store is a failure (1).
    if isinstance(exc, backups.BackupRefused):
        return UserError(str(exc))
    return Failure(str(exc))


def cmd_backup(args: argparse.Namespace) -> int:
    layout, settings = _layout()
    key = settings.backup_key
    if args.sign and not key:
        raise UserError("--sign needs a key: set SEER_BACKUP_KEY (16 characters or more)")
    try:
        manifest = backups.backup(layout, Path(args.dest), key=key, settings=settings)
    except backups.BackupError as exc:
        raise _as_cli_error(exc) from None
    except COPY_ERRORS as exc:
        raise Failure(f"backup failed, nothing kept in {args.dest}: {exc}") from None
    checked = None
    if args.verify:
        try:
            checked = backups.verify(manifest.path, key)
        except backups.BackupError as exc:
            raise _as_cli_error(exc) from None
    if args.json:
        output.emit_json({**manifest.as_dict(), "verified": checked is not None})
        return ExitCode.OK
    print(f"backup of {manifest.source_root} in {manifest.path}")
    width = max(9, *(len(db.name) for db in manifest.databases))
    for db in manifest.databases:
        print(f"  {db.name:<{width}} {output.size(db.size):>10}  sha256 {db.sha256}")
    print(
        f"  {'CAS':<{width}} {output.size(manifest.blob_bytes):>10}  "
        f"{output.counted(manifest.blobs, 'blob')}: "
        f"{manifest.cloned} cloned (reflink), {manifest.copied} copied"
    )
    print(
        f"  {'ledger':<{width}} {_ledger_line(manifest.engine, manifest.schema)}: schema version "
        f"{manifest.schema_version}, "
        f"{output.counted(manifest.messages, 'message')}, "
        f"{output.counted(manifest.parcels, 'parcel')}"
    )
    if manifest.collected_meanwhile:
        print(
            f"  {output.counted(manifest.collected_meanwhile, 'unreferenced blob')} removed by "
            "`seer cas gc` during the backup: left out of it"
        )
    signed = "signed with SEER_BACKUP_KEY" if manifest.signed else "unsigned"
    print(f"  {'manifest':<{width}} {manifest.manifest_path} ({signed})")
    print(f"took {manifest.duration:.2f}s")
    if checked is not None:
        print(
            f"verified: {output.counted(checked.databases, 'database')} and "
            f"{output.counted(checked.blobs, 'blob')} read back and hash-checked"
        )
    if manifest.cloned:
        print(
            "note: reflinked blobs share the live store's filesystem (not its inodes); to "
            f"survive losing that disk, copy {manifest.path} elsewhere (rsync -a, tar)",
            file=sys.stderr,
        )
    return ExitCode.OK


def cmd_restore(args: argparse.Namespace) -> int:
    layout, settings = _layout()
    try:
        report = backups.restore(Path(args.src), layout, settings.backup_key, settings=settings)
    except backups.BackupError as exc:
        raise _as_cli_error(exc) from None
    except COPY_ERRORS as exc:
        raise Failure(f"restore failed, the storage root is left empty: {exc}") from None
    if args.json:
        output.emit_json({**report.as_dict(), "code_schema_version": migrations.LATEST})
        return ExitCode.OK
    where = f" and the database at {settings.database_address}" if settings.database_url else ""
    print(f"restored {report.source} into {report.root}{where}")
    print(f"  backup taken {output.when(report.created_at)}")
    width = max(9, *(len(db.name) for db in report.databases))
    for db in report.databases:
        print(f"  {db.name:<{width}} {output.size(db.size):>10}  sha256 checked")
    print(
        f"  {'CAS':<{width}} {output.size(report.blob_bytes):>10}  "
        f"{output.counted(report.blobs, 'blob')} "
        f"hash-checked: {report.cloned} cloned (reflink), {report.copied} copied"
    )
    print(f"  {'ledger':<{width}} {output.counted(report.messages, 'message')}")
    print(f"took {report.duration:.2f}s")
    if report.schema_version != migrations.LATEST:
        direction = "behind" if report.schema_version < migrations.LATEST else "ahead of"
        print(
            f"warning: the restored ledger is at schema version {report.schema_version}, "
            f"{direction} this code's {migrations.LATEST}",
            file=sys.stderr,
        )
    print("next: `seer migrate --status` to check the schema, then `seer up`")
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    """Registers `seer backup DEST` and `seer restore SRC` on the top-level subparsers."""
    p = add(
        "backup",
        cmd_backup,
        "copy the databases (online, consistent) and the CAS into DEST, with a manifest",
    )
    p.add_argument("dest", metavar="DEST", help="a new or empty directory outside the root")
    p.add_argument(
        "--verify", action="store_true", help="then read back every file written and check it"
    )
    p.add_argument(
        "--sign",
        action="store_true",
        help="insist on signing (HMAC with SEER_BACKUP_KEY; a backup is signed whenever the "
        "key is set)",
    )
    p.add_argument("--json", action="store_true")
    p = add(
        "restore",
        cmd_restore,
        "put a backup back into an empty storage root (SEER_STORAGE_PATH), hashes checked",
    )
    p.add_argument("src", metavar="SRC", help="a directory written by `seer backup`")
    p.add_argument("--json", action="store_true")
