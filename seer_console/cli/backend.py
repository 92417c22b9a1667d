"""`seer migrate-backend --to URL`: the SQLite ledger copied to PostgreSQL, checked table by
table (worker/ops/migrate_backend.py does it; this prints it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from seer_console import output
from seer_console.cli.common import AddCommand, ExitCode, Failure, UserError, plural
from worker.ledger.errors import LedgerError, LedgerUnavailable
from worker.ops import migrate_backend as moving
from worker.settings import load_settings

NEXT = (
    "next: set SEER_DATABASE_URL to the URL given with --to in the settings file (.env or "
    "SEER_ENV_FILE) of every host, then `seer up`"
)


def _table(report: moving.MigrationReport) -> None:
    rows = [(t.name, t.source, t.target, t.copied) for t in report.tables]
    output.table(rows, ("TABLE", "SOURCE", "TARGET", "COPIED NOW"))
    print(f"counters: {len(report.counters)} set as the source has them")


def cmd_migrate_backend(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        moving.target_settings(settings, args.to)
    except moving.MigrationRefused as exc:
        raise UserError(str(exc)) from None
    try:
        report = moving.migrate_backend(settings, args.to)
    except moving.MigrationRefused as exc:
        raise Failure(str(exc)) from None
    except moving.MigrationFailed as exc:
        if args.json:
            output.emit_json(exc.report.as_dict())
        else:
            _table(exc.report)
        raise Failure(str(exc)) from None
    except LedgerUnavailable as exc:
        raise Failure(str(exc)) from None
    except LedgerError as exc:
        raise Failure(f"the copy stopped: {exc}; run it again to complete it") from None
    if args.json:
        output.emit_json({**report.as_dict(), "next": NEXT.removeprefix("next: ")})
        return ExitCode.OK
    if report.already_done:
        how = "was already copied: verified again, nothing copied"
    elif report.resumed:
        how = "copied (an interrupted copy, completed)"
    else:
        how = "copied"
    print(f"the SQLite ledger {how} to PostgreSQL at {report.target}")
    if report.initialised:
        print(f"  the target's schema made by the migrations (version {report.schema_version})")
    _table(report)
    print("verified: every table's rows and every counter match the source")
    if report.rung:
        print(f"rang {plural(report.rung, 'doorbell')} for the queued parcels on the new queue")
    if report.ring_warning:
        print(f"seer: warning: {report.ring_warning}", file=sys.stderr)
    print("the CAS directory stays where it is: both ledgers name the same blob files")
    print(NEXT)
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    """Registers `seer migrate-backend` on the top-level subparsers."""
    p = add(
        "migrate-backend",
        cmd_migrate_backend,
        "copy this root's SQLite ledger into an empty PostgreSQL database, verify every table, "
        "ring the queued parcels there (the workers stopped; safe to run again)",
    )
    p.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the target, postgresql://USER@HOST:PORT/DB (a password in it is never shown, "
        "but the command line is visible to other users of this host: PGPASSWORD or "
        "~/.pgpass keep it off)",
    )
    p.add_argument("--json", action="store_true")
