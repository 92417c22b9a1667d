"""`seer queue pause|resume|status`: the postmaster queue's pause flag (the scheduler queue is
never paused)."""

from __future__ import annotations

import argparse
from typing import Any

from seer_console import output
from seer_console.cli.common import AddCommand, ExitCode, UserError, open_runtime
from seer_console.cli.status import note_lines, queue_lines
from worker.monitoring import status
from worker.ops import operations


def cmd_queue(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    if args.queue is not None and args.queue != runtime.settings.postmaster_queue:
        # The task card writes `queue:pause postmaster`: the queue may be named.
        if args.queue == runtime.settings.scheduler_queue:
            raise UserError(
                f"the {args.queue} queue is never paused (monitoring and alerts must keep "
                f"running): `seer queue {args.action}` acts on "
                f"{runtime.settings.postmaster_queue}"
            )
        raise UserError(
            f"no queue {args.queue!r}: the parcel queue is {runtime.settings.postmaster_queue!r}"
        )
    if args.action == "pause":
        changed = operations.pause(runtime, by=f"cli:{output.operator()}")
        print("postmaster queue paused" if changed else "postmaster queue was already paused")
        print(
            "the consumer finishes what it is running and takes no new parcel; parcels keep "
            "queueing; `seer queue resume` continues in order"
        )
        return ExitCode.OK
    if args.action == "resume":
        changed = operations.resume(runtime)
        print("postmaster queue resumed" if changed else "postmaster queue was not paused")
        return ExitCode.OK
    snap = status.snapshot(runtime)
    if args.json:
        shown = snap.as_dict()
        # The queue's storage too, under the names `seer status --json` gives them.
        storage = ("queue_backend", "queue_unreachable_since", "notes")
        output.emit_json(shown["queue"] | {k: shown[k] for k in storage})
        return ExitCode.OK
    print("\n".join(queue_lines(snap) + note_lines(snap)))
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    p = add("queue", cmd_queue, "pause, resume or show the postmaster queue")
    p.add_argument("action", choices=("pause", "resume", "status"))
    p.add_argument("queue", nargs="?", metavar="QUEUE", help="postmaster (the only one paused)")
    p.add_argument("--json", action="store_true")
