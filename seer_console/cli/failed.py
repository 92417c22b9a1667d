"""`seer failed list|show|retry|purge`: parcels that used up their tries."""

from __future__ import annotations

import argparse
from typing import Any

from seer_console import output
from seer_console.cli.common import (
    AddCommand,
    ExitCode,
    Failure,
    Parser,
    UserError,
    confirm,
    duration_arg,
    open_runtime,
    positive_int,
)
from seer_console.cli.parcels import print_parcel, warn_rung
from worker.ops import operations
from worker.parcels import failures


def cmd_failed_list(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    found = failures.list_failed(runtime.ledger, args.limit)
    now = runtime.ledger.now()
    if args.json:
        output.emit_json([f.as_dict() for f in found])
        return ExitCode.OK
    output.table(
        [
            (
                f.id,
                f.to_agent_id,
                f.attempts,
                output.when(f.failed_at, now),
                output.one_line(f.error or "", 60),
            )
            for f in found
        ],
        ("PARCEL", "AGENT", "TRIES", "FAILED", "ERROR"),
    )
    total = failures.count_failed(runtime.ledger)
    print(f"({total} failed)" if total > len(found) else f"({len(found)} failed)")
    return ExitCode.OK


def cmd_failed_show(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    found = failures.parcel(runtime.ledger, args.id)
    if found is None or found.state != "failed":
        raise Failure(f"no failed parcel {args.id!r}")
    if args.json:
        output.emit_json(found.as_dict())
        return ExitCode.OK
    print_parcel(found, None, [], show_traceback=True, now=runtime.ledger.now())
    return ExitCode.OK


def cmd_failed_retry(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    if args.all:
        rung = warn_rung(operations.retry_all_failed(runtime))
        print(f"{len(rung.ids)} failed parcels back in the queue")
        return ExitCode.OK
    if not args.id:
        raise UserError("give a parcel id, or --all")
    if operations.retry_failed(runtime, args.id) is None:
        raise Failure(f"no failed parcel {args.id!r}")
    print(f"parcel {args.id} back in the queue")
    return ExitCode.OK


def cmd_failed_purge(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    older = duration_arg(args.older_than) if args.older_than else None
    count = failures.count_failed(runtime.ledger, older)
    if count == 0:
        print("no failed parcels to purge")
        return ExitCode.OK
    scope = f" failed more than {args.older_than} ago" if older is not None else ""
    if not confirm(f"Delete {count} failed parcels{scope} for good?", args.yes):
        print("nothing purged")
        return ExitCode.FAILED
    removed = operations.purge_failed(runtime, older)
    print(f"purged {removed} failed parcels")
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    failed = sub.add_parser("failed", help="parcels that used up their tries")
    fsub = failed.add_subparsers(dest="failed_command", metavar="ACTION", parser_class=Parser)
    fsub.required = True
    p = fsub.add_parser("list", help="failed parcels, newest first")
    p.add_argument("--limit", type=positive_int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_failed_list)
    p = fsub.add_parser("show", help="one failed parcel with its error and traceback")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_failed_show)
    p = fsub.add_parser("retry", help="put one failed parcel (or --all) back in the queue")
    p.add_argument("id", nargs="?")
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=cmd_failed_retry)
    p = fsub.add_parser("purge", help="delete failed parcels for good (asks first)")
    p.add_argument("--older-than", metavar="AGE", help="only those failed before, e.g. 7d, 12h")
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_failed_purge)
