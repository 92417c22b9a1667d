"""`seer inbox`: agents' inboxes, as the Postmaster delivered them (redacted), and acks."""

from __future__ import annotations

import argparse
from typing import Any

from seer_console import output
from seer_console.cli.common import (
    AddCommand,
    ExitCode,
    Failure,
    UserError,
    open_runtime,
    positive_int,
)
from worker.parcels import inbox


def cmd_inbox(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    if args.agent == "ack":
        if not args.rest:
            raise UserError("usage: seer inbox ack MESSAGE_ID")
        text = args.rest[0]
        try:
            message_id = int(text) if len(text) <= 19 else -1
        except ValueError:
            message_id = -1
        if not 0 < message_id < 2**63:
            raise UserError(
                f"message id must be a whole number from 1 (see `seer inbox AGENT`), "
                f"not {output.one_line(text, 40)!r}"
            )
        changed = inbox.ack(runtime.ledger, message_id)
        if changed is None:
            raise Failure(f"no message {message_id}")
        print(f"message {message_id} " + ("acknowledged" if changed else "was already read"))
        return ExitCode.OK
    if args.rest:
        raise UserError(f"unexpected argument {args.rest[0]!r}: seer inbox AGENT [--unread]")
    found = inbox.messages(runtime.ledger, args.agent, unread=args.unread, limit=args.limit)
    now = runtime.ledger.now()
    if args.json:
        output.emit_json([m.as_dict() for m in found])
        return ExitCode.OK
    rows = [
        (
            m.id,
            output.when(m.created_at, now),
            "read" if m.read_at else "unread",
            m.headers.get("original_type", ""),
            m.headers.get("artifact_count", 0),
            m.parcel_id,
        )
        for m in found
    ]
    output.table(rows, ("ID", "DELIVERED", "STATE", "TYPE", "ARTIFACTS", "PARCEL"))
    if not found:
        print(f"(no {'unread ' if args.unread else ''}messages for {args.agent})")
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    p = add("inbox", cmd_inbox, "an agent's messages (`seer inbox ack ID` marks one read)")
    p.add_argument("agent", metavar="AGENT|ack")
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--unread", action="store_true")
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--json", action="store_true")
