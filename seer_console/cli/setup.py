"""`seer init`, `migrate`, `worker` (seer_console.cli.worker), `up` and `down`: the storage
root, its schema, and the workers' processes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from seer_console import output
from seer_console.cli import worker as worker_command
from seer_console.cli.common import (
    DATABASE_ERRORS,
    AddCommand,
    ExitCode,
    Failure,
    UserError,
    confirm,
    opened,
    positive_int,
    supervisor_runtime,
    warn,
)
from worker.fleet import supervision
from worker.layout import Layout, apply_umask
from worker.ledger import migrations, open_ledger
from worker.ops import operations
from worker.runtime import Runtime
from worker.settings import load_settings


def cmd_init(args: argparse.Namespace) -> int:
    settings = load_settings()
    layout = Layout.from_settings(settings)
    apply_umask(layout)
    created = layout.create()
    layout.create_file(layout.ledger_db)
    layout.create_file(layout.queue_db)
    applied = migrations.migrate(opened(open_ledger(layout, settings)))
    layout.write_marker()
    runtime = opened(Runtime.open(settings))
    runtime.queues.initialize()
    bucket = operations.prepare_cas(runtime)
    print(f"storage root {layout.root}")
    print(f"  directories created: {len(created)} (mode {oct(layout.dir_mode)[2:]:0>4})")
    print(f"  migrations applied: {len(applied)} (schema version {migrations.LATEST})")
    if bucket is not None:
        print(f"  object store: {bucket}")
    print("ready: `seer up` starts the workers, `seer status` shows them")
    return ExitCode.OK


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    layout = Layout.from_settings(settings)
    apply_umask(layout)
    layout.require_initialised()
    ledger = opened(open_ledger(layout, settings))
    if args.status:
        states = migrations.status(ledger)
        if args.json:
            output.emit_json([s.__dict__ for s in states])
            return ExitCode.OK
        rows = [
            (s.version, "applied" if s.applied_at else "pending", output.when(s.applied_at), s.name)
            for s in states
        ]
        output.table(rows, ("VERSION", "STATE", "APPLIED", "NAME"))
        print(f"schema version {migrations.current_version(ledger)}, code {migrations.LATEST}")
        return ExitCode.OK
    if args.rollback is not None:
        try:
            # Refused while a consumer runs, or without a newer backup: one check, the
            # console's `m` calls it too.
            plan = operations.rollback_preview(
                ledger, layout, args.rollback, force=args.force, to_zero=args.to_zero
            )
            print(plan)
            if plan == operations.NOTHING_TO_ROLL_BACK:
                return ExitCode.OK
            if not confirm("Roll back, dropping the above for good?", args.yes):
                print("nothing rolled back")
                return ExitCode.FAILED
            print(
                operations.migration_rollback(
                    ledger, layout, args.rollback, force=args.force, to_zero=args.to_zero
                )
            )
        except migrations.SchemaMismatch:
            raise
        except ValueError as exc:
            raise UserError(str(exc)) from None
        except RuntimeError as exc:
            raise Failure(str(exc)) from None
        return ExitCode.OK
    applied = migrations.migrate(ledger)
    for m in applied:
        print(f"applied {m.version}: {m.name}")
    if not applied:
        print(f"nothing to do: schema is at version {migrations.LATEST}")
    return ExitCode.OK


def _stop_orphans(runtime: Runtime) -> None:
    """Consumers of this root that supervisord does not run (left when it was killed) are
    stopped, so that none runs beside the ones it starts."""
    sup = supervision.Supervisor(supervision.socket_path(runtime.layout))
    keep = {p.pid for p in sup.programs() if p.pid} if sup.reachable() else set()
    try:
        stopped = operations.stop_orphan_consumers(runtime, keep)
    except DATABASE_ERRORS as exc:  # a ledger without the table (schema behind): cannot tell
        warn(f"cannot look for orphaned consumers: {exc}")
        return
    for queue, pid in stopped:
        print(f"stopped an orphaned seer-{queue} consumer (pid {pid}, not run by supervisord)")


def cmd_up(args: argparse.Namespace) -> int:
    runtime = supervisor_runtime()
    try:
        migrations.check_schema(runtime.ledger)
    except migrations.SchemaMismatch as exc:
        warn(f"the workers refuse to start: {exc}")
    _stop_orphans(runtime)
    done = supervision.up(runtime.layout)
    print(
        ("started" if done.started else "already running") + f": supervisord on unix://"
        f"{supervision.socket_path(runtime.layout)}"
    )
    if done.added:
        print(f"added back to supervisord: {', '.join(done.added)}")
    _print_programs(done.programs)
    seer = [p for p in done.programs if p.name in supervision.PROGRAMS]
    everything_runs = len(seer) == len(supervision.PROGRAMS) and all(p.running for p in seer)
    return ExitCode.OK if everything_runs else ExitCode.FAILED


def cmd_down(args: argparse.Namespace) -> int:
    runtime = supervisor_runtime()
    if supervision.down(runtime.layout):
        print("stopped supervisord and the workers")
    else:
        print("supervisord was not running")
    _stop_orphans(runtime)
    return ExitCode.OK


def _print_programs(programs: Sequence[supervision.ProgramInfo]) -> None:
    output.table(
        [
            (
                supervision.full_name(p),
                p.state,
                p.pid or "-",
                output.age(p.uptime) if p.pid else "-",
            )
            for p in programs
        ],
        ("PROGRAM", "STATE", "PID", "UPTIME"),
    )


def register(sub: Any, add: AddCommand) -> None:
    add("init", cmd_init, "create the storage root and databases (safe to run again)")
    p = add("migrate", cmd_migrate, "apply migrations; --status lists them; --rollback N undoes N")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--status", action="store_true", help="list migrations and their state")
    group.add_argument("--rollback", type=positive_int, metavar="N", help="undo the last N")
    p.add_argument("--json", action="store_true", help="with --status: JSON output")
    p.add_argument(
        "--force", action="store_true", help="with --rollback: even without a newer backup"
    )
    p.add_argument("--yes", action="store_true", help="with --rollback: do not ask")
    p.add_argument(
        "--to-zero",
        action="store_true",
        help="with --rollback: allow undoing every migration (drops every table)",
    )

    worker_command.register(sub, add)  # its own module: `seer worker` imports nothing else
    add("up", cmd_up, "start the local supervisord with both consumers (idempotent)")
    add("down", cmd_down, "stop the local supervisord and both consumers (idempotent)")
