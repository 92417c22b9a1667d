"""`seer inbox`: agents' inboxes, as the Postmaster delivered them (redacted), and acks.

seer inbox AGENT [--unread] [--limit N] [--json]   an agent's messages, newest first
seer inbox --agent NAME ...                        the same, for an agent named ack or show
seer inbox --agents [--limit N] [--json]           agents with their unread counts
seer inbox show ID [--json]                        one message: envelope and attachments
seer inbox ack ID                                  marks a message read
"""

from __future__ import annotations

import argparse
import json
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

ACTIONS = ("ack", "show")
MESSAGES_SHOWN = 50
AGENTS_SHOWN = 200


def message_id_arg(text: str) -> int:
    """A message id as `ack` and `show` take it; anything else is a UserError."""
    try:
        message_id = int(text) if len(text) <= 19 else -1
    except ValueError:
        message_id = -1
    if not 0 < message_id < 2**63:
        raise UserError(
            f"message id must be a whole number from 1 (see `seer inbox AGENT`), "
            f"not {output.one_line(text, 40)!r}"
        )
    return message_id


def _one_id(args: argparse.Namespace) -> int:
    if len(args.rest) != 1:
        raise UserError(
            f"usage: seer inbox {args.agent} MESSAGE_ID (an agent named {args.agent}: "
            f"seer inbox --agent {args.agent})"
        )
    return message_id_arg(args.rest[0])


def cmd_inbox(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.inbox_parser
    # Mistakes in the words are found before the storage root is opened.
    if args.agents and (args.agent is not None or args.agent_name is not None):
        parser.error("--agents lists every agent: give no AGENT with it")
    if args.agent_name is not None and args.agent is not None:
        parser.error(
            f"give the agent once: --agent {output.one_line(args.agent_name, 40)!r} "
            f"or {output.one_line(args.agent, 40)!r}"
        )
    if not args.agents and args.agent is None and args.agent_name is None:
        parser.error("give an AGENT (or --agent NAME), --agents, show ID or ack ID")
    if args.agent in ACTIONS and args.agent_name is None:
        message_id = _one_id(args)
        if args.agent == "ack":
            return _ack(message_id)
        return _show(message_id, args.json)
    if args.rest:
        raise UserError(
            f"unexpected argument {output.one_line(args.rest[0], 40)!r}: "
            "seer inbox AGENT [--unread]"
        )
    if args.agents:
        if args.unread:
            parser.error("--unread is for one agent's messages, not with --agents")
        return _agents(args.limit or AGENTS_SHOWN, args.json)
    agent = args.agent if args.agent_name is None else args.agent_name
    return _messages(agent, args.unread, args.limit or MESSAGES_SHOWN, args.json)


def _ack(message_id: int) -> int:
    runtime = open_runtime()
    changed = inbox.ack(runtime.ledger, message_id)
    if changed is None:
        raise Failure(f"no message {message_id}")
    print(f"message {message_id} " + ("acknowledged" if changed else "was already read"))
    return ExitCode.OK


def _show(message_id: int, as_json: bool) -> int:
    runtime = open_runtime()
    opened = inbox.open_message(runtime.ledger, message_id)
    if opened is None:
        raise Failure(f"no message {message_id}")
    if as_json:
        output.emit_json(opened.as_dict())
        return ExitCode.OK
    now = runtime.ledger.now()
    m = opened.message
    print(f"message   {m.id}")
    print(f"agent     {output.printable(m.to_agent_id)}")
    print(f"parcel    {output.printable(m.parcel_id)}")
    print(f"type      {output.printable(m.type)}   stream {output.printable(m.stream)}")
    print(f"delivered {output.when(m.created_at, now)}")
    print(f"read      {output.when(m.read_at, now) if m.read_at else 'unread'}")
    print("headers (secrets redacted)")
    print(_pretty(m.headers))
    print("envelope (secrets redacted)")
    print(_pretty(m.envelope))
    if opened.attachments:
        print("attachments")
        output.table(
            [(a.name, output.size(a.size), a.hash, a.uri) for a in opened.attachments],
            ("NAME", "SIZE", "HASH", "URI"),
        )
    else:
        print("attachments  none")
    if opened.manifest:
        print(f"manifest  {opened.manifest.uri}")
    return ExitCode.OK


def _pretty(value: Any) -> str:
    """Indented JSON, each line safe to print (json.dumps leaves C1 controls as they are)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return "\n".join(output.printable(line) for line in text.split("\n"))


def _agents(limit: int, as_json: bool) -> int:
    runtime = open_runtime()
    found = inbox.agents(runtime.ledger, limit=limit)
    if as_json:
        output.emit_json([a.as_dict() for a in found])
        return ExitCode.OK
    now = runtime.ledger.now()
    output.table(
        [(a.agent, a.messages, a.unread, output.when(a.last_at, now)) for a in found],
        ("AGENT", "MESSAGES", "UNREAD", "LAST"),
    )
    if not found:
        print("(no messages delivered yet)")
    return ExitCode.OK


def _messages(agent: str, unread: bool, limit: int, as_json: bool) -> int:
    runtime = open_runtime()
    found = inbox.messages(runtime.ledger, agent, unread=unread, limit=limit)
    if as_json:
        output.emit_json([m.as_dict() for m in found])
        return ExitCode.OK
    now = runtime.ledger.now()
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
        print(f"(no {'unread ' if unread else ''}messages for {output.printable(agent)})")
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    p = add(
        "inbox",
        cmd_inbox,
        "an agent's messages (`seer inbox --agents` lists the agents, `seer inbox show ID` "
        "opens one, `seer inbox ack ID` marks one read)",
    )
    p.add_argument("agent", metavar="AGENT|show|ack", nargs="?")
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    p.add_argument(
        "--agent", dest="agent_name", metavar="NAME", help="the agent (for one named ack or show)"
    )
    p.add_argument("--agents", action="store_true", help="list the agents and their unread counts")
    p.add_argument("--unread", action="store_true", help="only the agent's unread messages")
    p.add_argument(
        "--limit",
        type=positive_int,
        help=f"at most this many (default {MESSAGES_SHOWN} messages, {AGENTS_SHOWN} agents)",
    )
    p.add_argument("--json", action="store_true", help="JSON for scripts (every field, redacted)")
    p.set_defaults(inbox_parser=p)
