"""`seer memory`, `compact-memory` and `compactions`: agents' memory and its compaction."""

from __future__ import annotations

import argparse
import json
from typing import Any

from seer_console import output
from seer_console.cli.common import (
    AddCommand,
    ExitCode,
    Failure,
    Parser,
    UserError,
    duration_arg,
    open_runtime,
    positive_int,
)
from worker import jsondata
from worker.memory.service import MemoryError_
from worker.ops import operations


def _value(args: argparse.Namespace) -> Any:
    if args.string:
        return args.value
    try:
        return jsondata.loads(args.value)
    except jsondata.JsonRefused as exc:
        raise UserError(f"VALUE is not accepted: {exc}") from None
    except json.JSONDecodeError:
        raise UserError(
            f"VALUE {output.one_line(args.value, 40)!r} is not JSON: quote a string "
            "('\"text\"') or pass --string"
        ) from None


def cmd_memory(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    memory = runtime.memory()
    try:
        if args.memory_command == "set":
            memory.set_durable(args.agent, args.key, _value(args))
            print(f"{args.agent} {args.key}: stored (durable)")
        elif args.memory_command == "set-ephemeral":
            ttl = duration_arg(args.ttl, "--ttl") if args.ttl else None
            expires = memory.set_ephemeral(args.agent, args.key, _value(args), ttl=ttl)
            expiry = output.when(expires, runtime.ledger.now())
            print(f"{args.agent} {args.key}: stored (ephemeral, expires {expiry})")
        elif args.memory_command == "get":
            entry = memory.entry(args.agent, args.key)
            if entry is None:
                raise Failure(f"{args.agent} has no key {args.key!r} (or it has expired)")
            if args.json:
                output.emit_json(entry.__dict__)
            else:
                print(json.dumps(entry.value, ensure_ascii=False))
        elif args.memory_command == "forget":
            if not memory.forget(args.agent, args.key):
                raise Failure(f"{args.agent} has no key {args.key!r}")
            print(f"{args.agent} {args.key}: forgotten")
        else:
            entries = memory.keys(args.agent, args.partition)
            now = runtime.ledger.now()
            if args.json:
                output.emit_json([e.__dict__ for e in entries])
                return ExitCode.OK
            output.table(
                [
                    (
                        e.key,
                        e.partition,
                        output.when(e.expires_at, now) if e.expires_at else "never",
                        output.one_line(json.dumps(e.value, ensure_ascii=False), 40),
                    )
                    for e in entries
                ],
                ("KEY", "PARTITION", "EXPIRES", "VALUE"),
            )
            if not entries:
                print(f"({args.agent} has no live keys)")
    except MemoryError_ as exc:
        raise UserError(str(exc)) from None
    return ExitCode.OK


def cmd_compact_memory(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    # The console's compaction key calls the same function.
    run = operations.compact_memory(runtime, "manual", agent=args.agent, dry_run=args.dry_run)
    if args.json:
        output.emit_json(run.as_dict())
    else:
        print(f"compaction {run.status}: {run.summary()} in {run.duration or 0:.2f}s")
        if run.error:
            print(f"error: {run.error}")
    return ExitCode.OK if run.status == "ok" else ExitCode.FAILED


def cmd_compactions(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    runs = runtime.compactor().recent(args.limit)
    now = runtime.ledger.now()
    if args.json:
        output.emit_json([r.as_dict() for r in runs])
        return ExitCode.OK
    output.table(
        [
            (
                r.id,
                output.when(r.started_at, now),
                r.trigger + (" (dry run)" if r.dry_run else ""),
                r.agents,
                r.keys_deleted,
                f"{r.duration:.2f}s" if r.duration is not None else "-",
                r.status.upper() if r.status == "failed" else r.status,
                output.one_line(r.error or "", 40),
            )
            for r in runs
        ],
        ("RUN", "STARTED", "TRIGGER", "AGENTS", "KEYS", "TOOK", "STATUS", "ERROR"),
    )
    if not runs:
        print("(no compaction has run yet)")
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    mem = add("memory", cmd_memory, "agents' memory: set, set-ephemeral, get, forget, keys")
    msub = mem.add_subparsers(dest="memory_command", metavar="ACTION", parser_class=Parser)
    msub.required = True
    p: argparse.ArgumentParser
    for name, text in (
        ("set", "store a durable key"),
        ("set-ephemeral", "store a key that expires"),
    ):
        p = msub.add_parser(name, help=text)
        p.add_argument("agent")
        p.add_argument("key")
        p.add_argument("value", help="JSON (a string with --string)")
        p.add_argument("--string", action="store_true", help="store VALUE as a plain string")
        if name == "set-ephemeral":
            p.add_argument("--ttl", metavar="DURATION", help="e.g. 90s, 15m, 24h (default TTL)")
    for name, text in (("get", "print a key's value (JSON)"), ("forget", "delete a key")):
        p = msub.add_parser(name, help=text)
        p.add_argument("agent")
        p.add_argument("key")
        p.add_argument("--json", action="store_true")
    p = msub.add_parser("keys", help="an agent's live keys")
    p.add_argument("agent")
    p.add_argument("--partition", choices=("durable", "ephemeral"))
    p.add_argument("--json", action="store_true")

    p = add("compact-memory", cmd_compact_memory, "remove expired ephemeral keys now (recorded)")
    p.add_argument("--agent", metavar="ID", help="only this agent")
    p.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    p.add_argument("--json", action="store_true")
    p = add("compactions", cmd_compactions, "recent compaction runs")
    p.add_argument("--limit", type=positive_int, default=20)
    p.add_argument("--json", action="store_true")
