"""`seer failed list|show|retry|purge`: parcels that used up their tries, one or by filter.

A filter (`--agent`, `--error`, `--type`, `--older-than`, `--newer-than`) selects the same
parcels in `list`, `retry` and `purge`. A filtered retry of more than one parcel asks first
(as a purge always does) unless `--yes`: a filter is easy to get wider than meant, and a
thousand retries at once is a backlog. `retry ID` and `retry --all` do not ask, as before.
"""

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

FILTER_USAGE = "[--agent AGENT] [--error TEXT] [--type TYPE] [--older-than AGE] [--newer-than AGE]"


def _filter(args: argparse.Namespace) -> failures.FailureFilter:
    """The filter options as a FailureFilter (empty when none is given)."""
    for option in ("agent", "error", "type"):
        value = getattr(args, option)
        if value is not None and not value.strip():
            raise UserError(f"--{option} needs a value that is not blank")
    return failures.FailureFilter(
        agent=args.agent,
        error=args.error,
        type=args.type,
        older_than=duration_arg(args.older_than) if args.older_than else None,
        newer_than=duration_arg(args.newer_than, "--newer-than") if args.newer_than else None,
    )


def _plural(count: int) -> str:
    return output.counted(count, "failed parcel")


def cmd_failed_list(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    chosen = _filter(args)
    now = runtime.ledger.now()
    if chosen:
        found = failures.matching(runtime.ledger, chosen, now, limit=args.limit)
    else:
        found = failures.list_failed(runtime.ledger, args.limit)
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
    if chosen:
        matched = failures.count_matching(runtime.ledger, chosen, now)
        total = failures.count_failed(runtime.ledger)
        print(
            f"({len(found):,} shown of {matched:,} matching {chosen.describe()}; {total:,} failed)"
        )
        return ExitCode.OK
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
    chosen = _filter(args)
    ways = [
        name
        for name, given in (("ID", args.id), ("--all", args.all), ("a filter", chosen))
        if given
    ]
    if len(ways) != 1:
        said = "give one of" if not ways else f"{' and '.join(ways)} together: give one of"
        raise UserError(
            f"{said} ID, --all or a filter: seer failed retry ID | --all | {FILTER_USAGE}"
        )
    runtime = open_runtime()
    if args.all:
        rung = warn_rung(operations.retry_all_failed(runtime))
        print(f"{len(rung.ids)} failed parcels back in the queue")
        return ExitCode.OK
    if args.id:
        if operations.retry_failed(runtime, args.id) is None:
            raise Failure(f"no failed parcel {args.id!r}")
        print(f"parcel {args.id} back in the queue")
        return ExitCode.OK
    now = runtime.ledger.now()
    count = failures.count_matching(runtime.ledger, chosen, now)
    if count == 0:
        print(f"no failed parcels match ({chosen.describe()}): nothing retried")
        return ExitCode.OK
    question = f"Retry {_plural(count)} ({chosen.describe()})?"
    if count > 1 and not confirm(question, args.yes):
        print("nothing retried")
        return ExitCode.FAILED
    rung = warn_rung(operations.retry_failed_matching(runtime, chosen, now))
    # The number acted on: parcels may have failed or been retried since the count.
    print(f"{_plural(len(rung.ids))} back in the queue ({chosen.describe()})")
    return ExitCode.OK


def cmd_failed_purge(args: argparse.Namespace) -> int:
    chosen = _filter(args)
    runtime = open_runtime()
    now = runtime.ledger.now()
    count = failures.count_matching(runtime.ledger, chosen, now)
    if count == 0:
        print("no failed parcels to purge" + (f" ({chosen.describe()})" if chosen else ""))
        return ExitCode.OK
    scope = f" ({chosen.describe()})" if chosen else ""
    if not confirm(f"Delete {_plural(count)}{scope} for good?", args.yes):
        print("nothing purged")
        return ExitCode.FAILED
    if chosen == failures.FailureFilter(older_than=chosen.older_than):
        # Every one, or by age alone: today's purge, one statement.
        removed = operations.purge_failed(runtime, chosen.older_than, now)
    else:
        removed = operations.purge_failed_matching(runtime, chosen, now)
    print(f"purged {_plural(removed)}{scope}")
    return ExitCode.OK


def _add_filter(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", help="only this agent's (exact)")
    p.add_argument(
        "--error", metavar="TEXT", help="only those whose error contains TEXT (any case)"
    )
    p.add_argument("--type", help="only parcels of this type (exact), e.g. pm.task.created")
    p.add_argument("--older-than", metavar="AGE", help="only those failed before, e.g. 7d, 12h")
    p.add_argument("--newer-than", metavar="AGE", help="only those failed since, e.g. 30m")


def register(sub: Any, add: AddCommand) -> None:
    failed = sub.add_parser("failed", help="parcels that used up their tries")
    fsub = failed.add_subparsers(dest="failed_command", metavar="ACTION", parser_class=Parser)
    fsub.required = True
    p = fsub.add_parser("list", help="failed parcels, newest first (a filter narrows them)")
    p.add_argument("--limit", type=positive_int, default=100)
    _add_filter(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_failed_list)
    p = fsub.add_parser("show", help="one failed parcel with its error and traceback")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_failed_show)
    p = fsub.add_parser(
        "retry", help="put failed parcels back in the queue: one (ID), --all, or a filter's"
    )
    p.add_argument("id", nargs="?")
    p.add_argument("--all", action="store_true")
    _add_filter(p)
    p.add_argument(
        "--yes", action="store_true", help="do not ask (a filter matching more than one)"
    )
    p.set_defaults(func=cmd_failed_retry)
    p = fsub.add_parser(
        "purge", help="delete failed parcels for good, all or a filter's (asks first)"
    )
    _add_filter(p)
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_failed_purge)
