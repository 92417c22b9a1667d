"""`seer cas`: the content store's usage, verification, reconciliation and garbage collection."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
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
    large_blobs_place,
    open_runtime,
    warn,
)
from worker.cas import tools as cas_tools
from worker.cas.errors import CorruptBlob

LIST_LIMIT = 20
DEFAULT_GRACE = "24h"


def _capped(lines: Sequence[str], limit: int = LIST_LIMIT) -> list[str]:
    shown = list(lines[:limit])
    if len(lines) > limit:
        shown.append(f"… and {len(lines) - limit} more")
    return shown


def _print_list(title: str, lines: Sequence[str]) -> None:
    if not lines:
        return
    print(f"{title}:")
    for line in _capped(lines):
        print(f"  {line}")


def _missing_lines(missing: Sequence[cas_tools.MissingBlob]) -> list[str]:
    lines = []
    for m in missing:
        if not m.artifacts:
            lines.append(f"{m.hash}  {output.size(m.size)}  (no artifact refers to it)")
            continue
        refs = ", ".join(f"{a.kind} {a.name!r} of parcel {a.parcel_id}" for a in m.artifacts[:3])
        more = f" and {len(m.artifacts) - 3} more" if len(m.artifacts) > 3 else ""
        lines.append(f"{m.hash}  {output.size(m.size)}  used by {refs}{more}")
    return lines


def _blob_lines(blobs: Sequence[cas_tools.BlobInfo]) -> list[str]:
    return [f"{b.hash}  {output.size(b.size)}" for b in blobs]


def _resized_lines(resized: Sequence[cas_tools.Resized]) -> list[str]:
    return [f"{r.hash}  recorded {r.recorded} B, on disk {r.actual} B" for r in resized]


def _stats_text(s: cas_tools.CasStats) -> str:
    return f"{output.size(s.bytes)} in {output.counted(s.blobs, 'blob')}"


# -- commands -----------------------------------------------------------------------------------


def cmd_cas_stats(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    found = cas_tools.stats(runtime.ledger)
    rows = cas_tools.in_ledger(runtime.ledger)
    limit = runtime.settings.cas_max_size
    small = runtime.settings.cas_small_blob_size
    if args.json:
        output.emit_json(
            {
                "bytes": found.bytes,
                "blobs": found.blobs,
                "max_bytes": limit,
                "in_ledger_bytes": rows.bytes,
                "in_ledger_blobs": rows.blobs,
                "small_blob_size": small,
            }
        )
        return ExitCode.OK
    share = f" ({100 * found.bytes / limit:.1f}%)" if limit else ""
    print(f"CAS: {_stats_text(found)}, quota {output.size(limit)}{share}")
    if small or rows.blobs:
        which = (
            f"those up to {output.size(small)}: ORCHESTRATION_CAS_SMALL_BLOB_SIZE"
            if small
            else "stored before ORCHESTRATION_CAS_SMALL_BLOB_SIZE was 0"
        )
        print(
            f"  in the ledger: {_stats_text(rows)} ({which}); the rest in "
            f"{large_blobs_place(runtime.settings)}"
        )
    else:
        print(
            f"  every blob in {large_blobs_place(runtime.settings)} "
            "(ORCHESTRATION_CAS_SMALL_BLOB_SIZE=0)"
        )
    return ExitCode.OK


def cmd_cas_unpack(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    progress = None if args.json else _progress("moved")
    try:
        moved = cas_tools.unpack(runtime.store, progress=progress)
    except CorruptBlob as exc:
        raise Failure(f"{exc}: `seer cas verify --repair` first; what was moved stays") from None
    if progress is not None:
        print("\r\033[K", end="", file=sys.stderr)
    if args.json:
        output.emit_json({"bytes": moved.bytes, "blobs": moved.blobs})
        return ExitCode.OK
    print(f"moved {_stats_text(moved)} from the ledger into {large_blobs_place(runtime.settings)}")
    if runtime.settings.cas_small_blob_size:
        warn(
            "new small blobs are rows again: set ORCHESTRATION_CAS_SMALL_BLOB_SIZE=0 to keep "
            "every blob a file"
        )
    return ExitCode.OK


def _progress(verb: str = "verified") -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(blobs: int, nbytes: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            print(
                f"\r{verb} {output.counted(blobs, 'blob')}, {output.size(nbytes)}",
                end="",
                file=sys.stderr,
            )

    return show


def cmd_cas_verify(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    progress = None if args.json else _progress()
    report = cas_tools.verify(runtime.ledger, runtime.store, progress=progress)
    if progress is not None:
        print("\r\033[K", end="", file=sys.stderr)
    repairing = args.repair and not report.clean
    if args.json:
        if not repairing:
            output.emit_json(report.as_dict())
    else:
        state = "clean" if report.clean else "DAMAGED"
        print(
            f"verify {state}: {output.counted(report.blobs_checked, 'blob')} "
            f"({output.size(report.bytes_checked)}) rehashed, "
            f"{output.counted(report.rows, 'row')} in the ledger; "
            f"{len(report.corrupt)} corrupt, {len(report.missing)} missing, "
            f"{len(report.orphaned)} orphaned, in {report.duration:.1f}s"
        )
        _print_list("corrupt (bytes do not match their name)", _blob_lines(report.corrupt))
        _print_list("missing (recorded, no file)", _missing_lines(report.missing))
        _print_list("orphaned (file, not recorded)", _blob_lines(report.orphaned))
        _print_list("size recorded wrongly", _resized_lines(report.resized))
    if report.orphaned or report.resized:
        warn(
            "the accounting does not match the disk: `seer cas reconcile` records orphaned "
            "files and corrects sizes, `seer cas gc` removes old orphans"
        )
    if repairing:
        fixed = cas_tools.repair(
            runtime.ledger,
            runtime.store,
            report,
            runtime.layout.orchestration / "quarantine",
            redact=runtime.settings.redact_secrets,
        )
        if args.json:
            output.emit_json({**report.as_dict(), "repair": fixed.as_dict()})
        else:
            for path in fixed.quarantined:
                print(f"quarantined {path}")
            for digest in fixed.restored:
                print(f"restored    {digest} (from a parcel still holding its content)")
            for digest in fixed.unrecoverable:
                print(f"LOST        {digest}: no parcel holds its content any more")
        return ExitCode.OK if fixed.complete else ExitCode.FAILED
    elif not report.clean and not args.json:
        warn("`seer cas verify --repair` quarantines damaged files and restores what it can")
    return ExitCode.OK if report.clean else ExitCode.FAILED


def cmd_cas_reconcile(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    # The CLI is single-threaded, so the walk may fork: a second core halves it.
    cores = min(2, os.cpu_count() or 1)
    report = cas_tools.reconcile(
        runtime.ledger, runtime.store, repair=not args.dry_run, processes=cores
    )
    if args.json:
        output.emit_json(report.as_dict())
    else:
        if report.in_step:
            verdict = "accounting matches the disk"
        else:
            verdict = "repaired" if report.repaired else "would repair (dry run)"
        print(
            f"reconcile: {verdict}; counters {_stats_text(report.before)} -> "
            f"{_stats_text(report.after)}; on disk {_stats_text(report.disk)}; "
            f"{len(report.orphaned)} orphaned, {len(report.missing)} missing, "
            f"{len(report.resized)} resized, in {report.duration:.2f}s"
        )
        done = "now" if report.repaired else "would be"
        _print_list(f"orphaned files ({done} recorded)", _blob_lines(report.orphaned))
        _print_list(f"files missing (their rows {done} removed)", _missing_lines(report.missing))
        _print_list(f"sizes recorded wrongly ({done} corrected)", _resized_lines(report.resized))
    dangling = sum(len(m.artifacts) for m in report.missing)
    if dangling:
        warn(
            f"{output.counted(dangling, 'artifact')} {'points' if dangling == 1 else 'point'} at "
            "blobs whose file is gone: their content is lost unless a parcel stores the same "
            "bytes again"
        )
    return ExitCode.OK


def _gc_summary(report: cas_tools.GcReport, grace_text: str) -> str:
    verb = "would remove" if report.dry_run else "removed"
    text = (
        f"gc: {verb} {output.counted(len(report.removed), 'unreferenced blob')} "
        f"({output.size(report.removed_bytes)}) and "
        f"{output.counted(len(report.orphans_removed), 'orphaned file')} "
        f"({output.size(report.orphan_bytes)}) older than {grace_text}"
    )
    if report.skipped:
        text += f"; kept {report.skipped} on a second look (in use again, or a newer file)"
    return text


def _print_gc(report: cas_tools.GcReport, grace_text: str, as_json: bool) -> None:
    if as_json:
        output.emit_json(report.as_dict())
        return
    print(_gc_summary(report, grace_text))
    done = "to remove" if report.dry_run else "removed"
    _print_list(f"unreferenced blobs {done}", _blob_lines(report.removed))
    _print_list(f"orphaned files {done}", _blob_lines(report.orphans_removed))


def cmd_cas_gc(args: argparse.Namespace) -> int:
    grace = duration_arg(args.grace, "--grace")
    if grace < cas_tools.MIN_GRACE:
        raise UserError(
            f"--grace {args.grace!r} is not allowed: expected at least "
            f"{cas_tools.MIN_GRACE / 60:.0f}m (a delivery in progress trusts the blobs it "
            "wrote that recently)"
        )
    runtime = open_runtime()
    ledger, store = runtime.ledger, runtime.store
    # One clock for the plan and the run: what was counted is what was agreed to.
    now = ledger.now()
    if args.dry_run:
        _print_gc(cas_tools.gc(ledger, store, grace, dry_run=True, now=now), args.grace, args.json)
        return ExitCode.OK
    if not args.yes:
        plan = cas_tools.gc(ledger, store, grace, dry_run=True, now=now)
        count = len(plan.removed) + len(plan.orphans_removed)
        if count == 0:
            _print_gc(plan, args.grace, args.json)
            return ExitCode.OK
        question = (
            f"Remove {output.counted(len(plan.removed), 'unreferenced blob')} "
            f"({output.size(plan.removed_bytes)}) and "
            f"{output.counted(len(plan.orphans_removed), 'orphaned file')} "
            f"({output.size(plan.orphan_bytes)}) older than {args.grace} for good?"
        )
        if not confirm(question, args.yes):
            print("nothing removed")
            return ExitCode.FAILED
    _print_gc(cas_tools.gc(ledger, store, grace, now=now), args.grace, args.json)
    return ExitCode.OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "stats": cmd_cas_stats,
    "verify": cmd_cas_verify,
    "unpack": cmd_cas_unpack,
    "reconcile": cmd_cas_reconcile,
    "gc": cmd_cas_gc,
}


def cmd_cas(args: argparse.Namespace) -> int:
    return _COMMANDS[args.cas_command](args)


# -- parser -------------------------------------------------------------------------------------


def register(sub: Any, add: AddCommand) -> None:
    """Registers `seer cas stats|verify|unpack|reconcile|gc` on the top-level subparsers."""
    cas = add("cas", cmd_cas, "the content store: usage, verify, reconcile, gc")
    csub = cas.add_subparsers(dest="cas_command", metavar="ACTION", parser_class=Parser)
    csub.required = True
    p = csub.add_parser("stats", help="bytes and blobs stored, from the counters (instant)")
    p.add_argument("--json", action="store_true")
    p = csub.add_parser(
        "verify", help="rehash every blob, compare with the ledger (exit 1: damage)"
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="move damaged files to orchestration/quarantine/ and re-create them, and missing "
        "ones, from any parcel still holding their content (exit 1: some are lost)",
    )
    p.add_argument("--json", action="store_true")
    p = csub.add_parser(
        "unpack",
        help="move the blobs kept in the ledger into files (before rolling back migration 7)",
    )
    p.add_argument("--json", action="store_true")
    p = csub.add_parser("reconcile", help="make the accounting match the disk (sizes by stat)")
    p.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    p.add_argument("--json", action="store_true")
    p = csub.add_parser("gc", help="remove old unreferenced blobs and orphans (asks first)")
    p.add_argument("--dry-run", action="store_true", help="report what would go; remove nothing")
    p.add_argument(
        "--grace",
        metavar="AGE",
        default=DEFAULT_GRACE,
        help=f"only what is older than this, e.g. 1h, 7d (default {DEFAULT_GRACE})",
    )
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.add_argument("--json", action="store_true")
