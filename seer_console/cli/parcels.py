"""`seer send-test-parcel`, `parcel send|find|show` and `artifacts pull`: parcels in, finding
them among millions, and what became of each (its whole life)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from seer_console import output
from seer_console.cli.common import (
    AddCommand,
    ExitCode,
    Failure,
    Parser,
    UserError,
    open_runtime,
    positive_int,
    warn,
)
from worker.cas.artifacts import Artifact, ArtifactError, artifacts_of_parcel, digest_of
from worker.fleet import control
from worker.ops import operations
from worker.parcels import failures, finder, inbox
from worker.parcels import intake as parcels
from worker.parcels.failures import ParcelEntry
from worker.parcels.inbox import Message


def _read_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc.strerror}") from None


def warn_rung(rung: operations.Rung) -> operations.Rung:
    """The parcels were queued; a doorbell that did not ring is said, not raised."""
    if rung.warning:
        warn(rung.warning)
    return rung


def cmd_parcel_send(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    raw = _read_input(args.file)
    try:
        batch = parcels.parse_input(raw, runtime.settings.max_parcel_size)
    except parcels.ParcelError as exc:
        raise UserError(f"nothing queued: {exc}") from None
    rung = warn_rung(operations.send_parcels(runtime, batch))
    if args.json:
        output.emit_json(list(rung.ids))
    else:
        print("\n".join(rung.ids))
    return ExitCode.OK


def cmd_send_test_parcel(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    rung = warn_rung(operations.send_test_parcel(runtime))
    print(rung.ids[0])
    if control.is_paused(runtime.ledger):
        print(
            "note: the postmaster queue is paused; it is delivered after `seer queue resume`",
            file=sys.stderr,
        )
    return ExitCode.OK


def _when(text: str | None, now: float, option: str) -> float | None:
    if text is None:
        return None
    try:
        return finder.parse_when(text, now, option)
    except finder.FinderError as exc:
        raise UserError(str(exc)) from None


def cmd_parcel_find(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    now = runtime.ledger.now()
    for option in ("task", "agent", "type"):
        value = getattr(args, option)
        if value is not None and not value.strip():
            raise UserError(f"--{option} needs a value that is not blank")
    try:
        page = finder.find(
            runtime.ledger,
            id_prefix=args.id,
            task_id=args.task,
            agent=args.agent,
            type=args.type,
            state=args.state,
            since=_when(args.since, now, "--since"),
            until=_when(args.until, now, "--until"),
            before=args.before,
            limit=args.limit,
        )
    except finder.FinderError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        output.emit_json(
            {"parcels": [r.as_dict() for r in page.rows], "next_before": page.next_before}
        )
        return ExitCode.OK
    output.table(
        [
            (
                r.id,
                output.one_line(r.to_agent_id, 24),
                output.one_line(r.task_id, 24),
                output.one_line(r.type, 24),
                r.state,
                r.attempts,
                output.when(r.created_at, now),
            )
            for r in page.rows
        ],
        ("PARCEL", "AGENT", "TASK", "TYPE", "STATE", "TRIES", "QUEUED"),
    )
    if page.next_before is not None:
        print(f"({len(page.rows):,} shown, newest first; next page: --before {page.next_before})")
    else:
        print(f"({len(page.rows):,} shown, newest first; no more)")
    return ExitCode.OK


def cmd_parcel_show(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    found = failures.parcel(runtime.ledger, args.id)
    if found is None:
        raise Failure(f"no parcel {args.id!r}")
    message = inbox.message_for_parcel(runtime.ledger, args.id)
    arts = artifacts_of_parcel(runtime.ledger, args.id)
    life = finder.life(runtime.ledger, args.id)
    events = list(life.events) if life else []
    if args.json:
        shown = found.as_dict()
        if not args.traceback:
            shown.pop("traceback", None)
        output.emit_json(
            {
                **shown,
                "message_id": message.id if message else None,
                "artifacts": [a.as_dict() for a in arts],
                "events": [e.as_dict() for e in events],
            }
        )
        return ExitCode.OK
    now = runtime.ledger.now()
    print_parcel(found, message, arts, show_traceback=args.traceback, now=now)
    print_events(events, now)
    return ExitCode.OK


def print_events(events: list[finder.Event], now: float | None = None) -> None:
    """The parcel's life, one line an event, oldest first."""
    if not events:
        return
    print("life")
    for event in events:
        at = output.when(event.at, now) if event.at else "(time not kept)"
        print(f"  {at}  {output.printable(event.describe())}")


def print_parcel(
    found: ParcelEntry,
    message: Message | None,
    arts: list[Artifact],
    show_traceback: bool = True,
    now: float | None = None,
) -> None:
    """`now`: the ledger's time, which the ages are of."""
    print(f"parcel   {found.id}")
    print(f"state    {found.state}")
    print(f"agent    {found.to_agent_id}   task {found.task_id}   type {found.type}")
    print(f"tries    {found.attempts}   worker deaths {found.crashes}")
    print(f"queued   {output.when(found.created_at, now)}")
    print(f"finished {output.when(found.finished_at, now)}")
    if message:
        print(f"message  {message.id} in the inbox of {message.to_agent_id}")
    for a in arts:
        print(f"artifact {a.kind:<10} {a.size:>9}  {a.uri}")
    if found.error:
        print(f"error    {found.error}")
    if show_traceback and found.traceback:
        print(found.traceback.rstrip())
    if found.payload is not None:
        # failures.parcel() redacted it: the raw copy never leaves the ledger.
        print("parcel (secrets redacted)")
        print(json.dumps(found.payload, indent=2, ensure_ascii=False))


def cmd_artifacts_pull(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    try:
        digest = digest_of(args.ref)
    except ArtifactError as exc:
        raise UserError(str(exc)) from None
    if args.output:
        dest = Path(args.output)
        if dest.exists() and not args.force:
            raise UserError(f"{dest} exists: choose another file or pass --force")
        if not dest.parent.is_dir():
            raise UserError(f"-o {dest}: there is no directory {dest.parent}")
        try:
            # The caller's file, not the group's: 0600, as curl -o or scp would leave it.
            runtime.store.copy_to(digest, dest, mode=0o600)
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            raise UserError(f"-o {dest}: cannot write there ({exc.strerror})") from None
        print(f"wrote {dest} ({output.size(dest.stat().st_size)}, sha256 {digest})")
        return ExitCode.OK
    data = runtime.store.read(digest)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    add("send-test-parcel", cmd_send_test_parcel, "send a test parcel to POSTMASTER_TEST_AGENT")

    parcel = sub.add_parser("parcel", help="send or inspect parcels")
    psub = parcel.add_subparsers(dest="parcel_command", metavar="ACTION", parser_class=Parser)
    psub.required = True
    p = psub.add_parser("send", help="queue one JSON parcel, or JSON Lines of many; prints ids")
    p.add_argument("file", metavar="FILE|-")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_parcel_send)
    p = psub.add_parser(
        "find",
        help="find parcels by id prefix, task, agent, type, state or time, newest first",
        description="Find parcels, newest first, a page at a time (every filter uses an index). "
        "WHEN is an age (15m, 2h, 7d) or an ISO time (UTC unless it has an offset).",
    )
    p.add_argument("--id", metavar="PREFIX", help="a parcel id or its start")
    p.add_argument("--task", metavar="ID")
    p.add_argument("--agent", metavar="AGENT")
    p.add_argument("--type", metavar="TYPE")
    p.add_argument("--state", choices=finder.STATES)
    p.add_argument("--since", metavar="WHEN", help="queued at or after WHEN")
    p.add_argument("--until", metavar="WHEN", help="queued at or before WHEN")
    p.add_argument("--limit", type=positive_int, default=50, help="a page (default 50)")
    p.add_argument("--before", type=positive_int, metavar="CURSOR", help="the next page's cursor")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_parcel_find)
    p = psub.add_parser("show", help="a parcel's state, message, artifacts and life")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--traceback", action="store_true", help="include the last traceback")
    p.set_defaults(func=cmd_parcel_show)

    art = sub.add_parser("artifacts", help="read artifacts from the CAS")
    asub = art.add_subparsers(dest="artifacts_command", metavar="ACTION", parser_class=Parser)
    asub.required = True
    p = asub.add_parser("pull", help="write an artifact (hash verified) to stdout or -o FILE")
    p.add_argument("ref", metavar="URI|HASH")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--force", action="store_true", help="overwrite FILE")
    p.set_defaults(func=cmd_artifacts_pull)
