"""`seer migrate-backend --to URL`: the SQLite ledger copied to PostgreSQL, checked table by
table; `seer migrate-cas --to s3://…`: the CAS files copied into an object store, checked blob
by blob (worker/ops/migrate_backend.py and migrate_cas.py do it; this prints it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from seer_console import output
from seer_console.cli.common import AddCommand, ExitCode, Failure, UserError
from worker.ledger.errors import LedgerError, LedgerUnavailable
from worker.ops import migrate_backend as moving
from worker.ops import migrate_cas
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
        print(
            f"rang {output.counted(report.rung, 'doorbell')} "
            "for the queued parcels on the new queue"
        )
    if report.ring_warning:
        print(f"seer: warning: {report.ring_warning}", file=sys.stderr)
    print("the CAS directory stays where it is: both ledgers name the same blob files")
    print(NEXT)
    return ExitCode.OK


NEXT_CAS = (
    "next: set ORCHESTRATION_CAS_URL={url} (and the AWS_* variables) in the settings file of "
    "every host, then `seer up`; the files under orchestration/cas stay until you remove them"
)


def cmd_migrate_cas(args: argparse.Namespace) -> int:
    import humanize

    settings = load_settings()
    try:
        url = migrate_cas.parse_target(args.to)
    except migrate_cas.MigrationRefused as exc:
        raise UserError(str(exc)) from None
    try:
        report = migrate_cas.migrate_cas(settings, str(url))
    except migrate_cas.MigrationRefused as exc:
        raise Failure(str(exc)) from None
    except migrate_cas.CasError as exc:
        raise Failure(f"the copy stopped: {exc}; run it again to complete it") from None
    next_step = NEXT_CAS.format(url=url)
    if args.json:
        output.emit_json({**report.as_dict(), "next": next_step.removeprefix("next: ")})
        return ExitCode.OK if report.verified else ExitCode.FAILED
    if report.bucket_created:
        print(f"created the bucket {url.bucket}")
    print(
        f"copied {output.counted(report.copied, 'blob')} "
        f"({humanize.naturalsize(report.copied_bytes, binary=True)}) to {report.target}; "
        f"{output.counted(report.already_there, 'blob')} already there"
    )
    if not report.verified:
        more = len(report.mismatches) - 1
        raise Failure(
            f"the copy does not match the files: {report.mismatches[0]}"
            + (f" (and {more} more)" if more else "")
            + "; run it again"
        )
    print(
        f"verified: all {output.counted(report.source_blobs, 'blob file')} "
        f"({humanize.naturalsize(report.source_bytes, binary=True)}) are objects of the same size"
    )
    print("small blobs stay in the ledger, which every host reaches")
    print(next_step)
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    """Registers `seer migrate-backend` and `seer migrate-cas` on the top-level subparsers."""
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
    p = add(
        "migrate-cas",
        cmd_migrate_cas,
        "copy this root's CAS files into an S3-compatible object store, verify every blob "
        "(the workers stopped; safe to run again)",
    )
    p.add_argument(
        "--to",
        required=True,
        metavar="s3://BUCKET/PREFIX",
        help="the object store; its endpoint and credentials come from AWS_ENDPOINT_URL, "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION",
    )
    p.add_argument("--json", action="store_true")
