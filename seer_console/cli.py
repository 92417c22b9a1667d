"""`seer`: every operator action from the command line, for runbooks, cron and scripts.

Each command is a thin caller of a service function in worker/. Exit status: 0 done, 1 the
action failed or found nothing, 2 bad usage, input or settings (`seer status`: 0 OK,
1 warning, 2 critical, 3 unknown, as monitoring plugins expect).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import peewee

from seer_console import output
from seer_console.cli_backup import add_backup_commands
from seer_console.cli_cas import add_cas_commands
from seer_console.cli_monitor import add_monitor_commands
from seer_console.cli_supervisor import add_supervisor_commands
from worker import jsondata
from worker.cas.artifacts import ArtifactError, artifacts_of_parcel, digest_of
from worker.cas.store import CasError
from worker.fleet import control, supervision
from worker.layout import Layout, NotInitialised, UnsafeEntry, apply_umask
from worker.ledger import migrations
from worker.ledger.sqlite import LedgerUnavailable, check_supported, open_ledger
from worker.memory.service import MemoryError_
from worker.monitoring import status
from worker.ops import operations
from worker.parcels import failures, inbox
from worker.parcels import intake as parcels
from worker.runtime import Runtime
from worker.settings import SettingsError, load_settings, parse_duration

# peewee wraps sqlite3's errors; the hot paths use sqlite3 directly, so both can surface.
DATABASE_ERRORS = (peewee.DatabaseError, sqlite3.DatabaseError)


class UserError(Exception):
    """A mistake of the caller's: printed as one line, exit 2, no traceback."""


class Failure(Exception):
    """The action could not be done (not found, unreachable): one line, exit 1."""


def _runtime() -> Runtime:
    return Runtime.open()


# -- setup --------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    settings = load_settings()
    check_supported(settings)
    layout = Layout.from_settings(settings)
    apply_umask(layout)
    created = layout.create()
    layout.create_file(layout.ledger_db)
    layout.create_file(layout.queue_db)
    applied = migrations.migrate(open_ledger(layout, settings))
    layout.write_marker()
    runtime = Runtime.open(settings)
    runtime.queues.postmaster.storage.initialize_schema()
    print(f"storage root {layout.root}")
    print(f"  directories created: {len(created)} (mode {oct(layout.dir_mode)[2:]:0>4})")
    print(f"  migrations applied: {len(applied)} (schema version {migrations.LATEST})")
    print("ready: `seer up` starts the workers, `seer status` shows them")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    layout = Layout.from_settings(settings)
    apply_umask(layout)
    layout.require_initialised()
    ledger = open_ledger(layout, settings)
    if args.status:
        states = migrations.status(ledger)
        if args.json:
            output.emit_json([s.__dict__ for s in states])
            return 0
        rows = [
            (s.version, "applied" if s.applied_at else "pending", output.when(s.applied_at), s.name)
            for s in states
        ]
        output.table(rows, ("VERSION", "STATE", "APPLIED", "NAME"))
        print(f"schema version {migrations.current_version(ledger)}, code {migrations.LATEST}")
        return 0
    if args.rollback is not None:
        try:
            # Refused while a consumer runs, or without a newer backup: one check, the
            # console's `m` calls it too.
            plan = operations.rollback_preview(
                ledger, layout, args.rollback, force=args.force, to_zero=args.to_zero
            )
            print(plan)
            if plan == operations.NOTHING_TO_ROLL_BACK:
                return 0
            if not _confirm("Roll back, dropping the above for good?", args.yes):
                print("nothing rolled back")
                return 1
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
        return 0
    applied = migrations.migrate(ledger)
    for m in applied:
        print(f"applied {m.version}: {m.name}")
    if not applied:
        print(f"nothing to do: schema is at version {migrations.LATEST}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    runtime = _runtime()
    queue = args.queue
    module = f"worker.queue.huey_app.{queue}"
    consumer = Path(sys.executable).parent / "huey_consumer"
    command = [str(consumer), module, "--workers", "1", "--worker-type", "thread"]
    # Poll an idle queue at least every second: Huey's default waits up to 10 s for new work.
    command += ["--delay", "0.1", "--max-delay", "1.0"]
    if queue == "postmaster":
        # Only the scheduler consumer enqueues periodic jobs (else they would run twice).
        command.append("--no-periodic")
    else:
        # Two threads: a slow alert channel never holds up the samples and the reaper.
        command[command.index("--workers") + 1] = "2"
    runtime.close()
    sys.stdout.flush()
    _die_with_parent()
    # exec, not a child: supervisord's signals must reach the consumer itself.
    os.execv(command[0], command)
    return 0  # not reached


def _supervisor_runtime() -> Runtime:
    """For the commands that talk only to supervisord: they work whatever the schema (after a
    rollback the operator must still be able to stop, start and remove the workers)."""
    return Runtime.open(check_schema=False)


def _stop_orphans(runtime: Runtime) -> None:
    """Consumers of this root that supervisord does not run (left when it was killed) are
    stopped, so that none runs beside the ones it starts."""
    sup = supervision.Supervisor(supervision.socket_path(runtime.layout))
    keep = {p.pid for p in sup.programs() if p.pid} if sup.reachable() else set()
    try:
        stopped = operations.stop_orphan_consumers(runtime, keep)
    except DATABASE_ERRORS as exc:  # a ledger without the table (schema behind): cannot tell
        print(f"seer: warning: cannot look for orphaned consumers: {exc}", file=sys.stderr)
        return
    for queue, pid in stopped:
        print(f"stopped an orphaned seer-{queue} consumer (pid {pid}, not run by supervisord)")


def _die_with_parent() -> None:
    """Linux: the consumer gets SIGINT (Huey's graceful stop) when its parent dies. A
    supervisord killed with -9 left its consumers running as orphans, beside the ones the next
    `seer up` started. The setting survives the exec into huey_consumer."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGINT), 0, 0, 0) != 0:
        print("seer: warning: cannot ask to stop with the parent (prctl)", file=sys.stderr)
        return
    if os.getppid() != parent:  # it died before the prctl: no signal will come
        raise Failure("the parent process exited while the worker was starting")


def cmd_up(args: argparse.Namespace) -> int:
    runtime = _supervisor_runtime()
    try:
        migrations.check_schema(runtime.ledger)
    except migrations.SchemaMismatch as exc:
        print(f"seer: warning: the workers refuse to start: {exc}", file=sys.stderr)
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
    return (
        0
        if len(seer) == len(supervision.PROGRAMS) and all(p.state == "RUNNING" for p in seer)
        else 1
    )


def cmd_down(args: argparse.Namespace) -> int:
    runtime = _supervisor_runtime()
    if supervision.down(runtime.layout):
        print("stopped supervisord and the workers")
    else:
        print("supervisord was not running")
    _stop_orphans(runtime)
    return 0


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


# -- status -------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    try:
        runtime = _runtime()
        snap = status.snapshot(runtime)
    except (
        SettingsError,
        NotInitialised,
        UnsafeEntry,
        migrations.SchemaMismatch,
        LedgerUnavailable,
        *DATABASE_ERRORS,
    ) as exc:
        if args.json:
            output.emit_json({"level": "unknown", "error": str(exc)})
        print(f"seer status: UNKNOWN: {exc}", file=sys.stderr)
        return 3
    if args.json:
        output.emit_json(snap.as_dict())
    else:
        status.print_text(snap)
    return snap.exit_code


# -- parcels ------------------------------------------------------------------------------------


def _read_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc.strerror}") from None


def cmd_parcel_send(args: argparse.Namespace) -> int:
    runtime = _runtime()
    raw = _read_input(args.file)
    try:
        batch = parcels.parse_input(raw, runtime.settings.max_parcel_size)
    except parcels.ParcelError as exc:
        raise UserError(f"nothing queued: {exc}") from None
    rung = _warn(operations.send_parcels(runtime, batch))
    if args.json:
        output.emit_json(list(rung.ids))
    else:
        print("\n".join(rung.ids))
    return 0


def _warn(rung: operations.Rung) -> operations.Rung:
    if rung.warning:
        print(f"seer: warning: {rung.warning}", file=sys.stderr)
    return rung


def cmd_send_test_parcel(args: argparse.Namespace) -> int:
    runtime = _runtime()
    rung = _warn(operations.send_test_parcel(runtime))
    print(rung.ids[0])
    if control.is_paused(runtime.ledger):
        print(
            "note: the postmaster queue is paused; it is delivered after `seer queue resume`",
            file=sys.stderr,
        )
    return 0


def cmd_parcel_show(args: argparse.Namespace) -> int:
    runtime = _runtime()
    found = failures.parcel(runtime.ledger, args.id)
    if found is None:
        raise Failure(f"no parcel {args.id!r}")
    message = inbox.message_for_parcel(runtime.ledger, args.id)
    arts = artifacts_of_parcel(runtime.ledger, args.id)
    if args.json:
        if not args.traceback:
            found.pop("traceback", None)
        output.emit_json(
            {**found, "message_id": message["id"] if message else None, "artifacts": arts}
        )
        return 0
    _print_parcel(found, message, arts, show_traceback=args.traceback)
    return 0


def _print_parcel(
    found: dict[str, Any],
    message: dict[str, Any] | None,
    arts: list[dict[str, Any]],
    show_traceback: bool = True,
) -> None:
    print(f"parcel   {found['id']}")
    print(f"state    {found['state']}")
    print(f"agent    {found['to_agent_id']}   task {found['task_id']}   type {found['type']}")
    print(f"tries    {found['attempts']}   worker deaths {found['crashes']}")
    print(f"queued   {output.when(found['created_at'])}")
    print(f"finished {output.when(found['finished_at'])}")
    if message:
        print(f"message  {message['id']} in the inbox of {message['to_agent_id']}")
    for a in arts:
        print(f"artifact {a['kind']:<10} {a['size']:>9}  {a['uri']}")
    if found.get("error"):
        print(f"error    {found['error']}")
    if show_traceback and found.get("traceback"):
        print(found["traceback"].rstrip())
    if found.get("payload") is not None:
        # failures.parcel() redacted it: the raw copy never leaves the ledger.
        print("parcel (secrets redacted)")
        print(json.dumps(found["payload"], indent=2, ensure_ascii=False))


def cmd_inbox(args: argparse.Namespace) -> int:
    runtime = _runtime()
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
        return 0
    if args.rest:
        raise UserError(f"unexpected argument {args.rest[0]!r}: seer inbox AGENT [--unread]")
    found = inbox.messages(runtime.ledger, args.agent, unread=args.unread, limit=args.limit)
    if args.json:
        output.emit_json(found)
        return 0
    rows = [
        (
            m["id"],
            output.when(m["created_at"]),
            "read" if m["read_at"] else "unread",
            m["headers"].get("original_type", ""),
            m["headers"].get("artifact_count", 0),
            m["parcel_id"],
        )
        for m in found
    ]
    output.table(rows, ("ID", "DELIVERED", "STATE", "TYPE", "ARTIFACTS", "PARCEL"))
    if not found:
        print(f"(no {'unread ' if args.unread else ''}messages for {args.agent})")
    return 0


def cmd_artifacts_pull(args: argparse.Namespace) -> int:
    runtime = _runtime()
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
        return 0
    data = runtime.store.read(digest)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


# -- failures -----------------------------------------------------------------------------------


def cmd_failed_list(args: argparse.Namespace) -> int:
    runtime = _runtime()
    found = failures.list_failed(runtime.ledger, args.limit)
    if args.json:
        output.emit_json(found)
        return 0
    output.table(
        [
            (
                f["id"],
                f["to_agent_id"],
                f["attempts"],
                output.when(f["failed_at"]),
                output.one_line(f["error"] or "", 60),
            )
            for f in found
        ],
        ("PARCEL", "AGENT", "TRIES", "FAILED", "ERROR"),
    )
    total = failures.count_failed(runtime.ledger)
    print(f"({total} failed)" if total > len(found) else f"({len(found)} failed)")
    return 0


def cmd_failed_show(args: argparse.Namespace) -> int:
    runtime = _runtime()
    found = failures.parcel(runtime.ledger, args.id)
    if found is None or found["state"] != "failed":
        raise Failure(f"no failed parcel {args.id!r}")
    if args.json:
        output.emit_json(found)
        return 0
    _print_parcel(found, None, [], show_traceback=True)
    return 0


def cmd_failed_retry(args: argparse.Namespace) -> int:
    runtime = _runtime()
    if args.all:
        rung = _warn(operations.retry_all_failed(runtime))
        print(f"{len(rung.ids)} failed parcels back in the queue")
        return 0
    if not args.id:
        raise UserError("give a parcel id, or --all")
    if operations.retry_failed(runtime, args.id) is None:
        raise Failure(f"no failed parcel {args.id!r}")
    print(f"parcel {args.id} back in the queue")
    return 0


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise UserError(f"{question} Refusing without a terminal to ask: pass --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def cmd_failed_purge(args: argparse.Namespace) -> int:
    runtime = _runtime()
    older = _duration_arg(args.older_than) if args.older_than else None
    count = failures.count_failed(runtime.ledger, older)
    if count == 0:
        print("no failed parcels to purge")
        return 0
    scope = f" failed more than {args.older_than} ago" if older is not None else ""
    if not _confirm(f"Delete {count} failed parcels{scope} for good?", args.yes):
        print("nothing purged")
        return 1
    removed = operations.purge_failed(runtime, older)
    print(f"purged {removed} failed parcels")
    return 0


# -- queue --------------------------------------------------------------------------------------


def cmd_queue(args: argparse.Namespace) -> int:
    runtime = _runtime()
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
        return 0
    if args.action == "resume":
        changed = operations.resume(runtime)
        print("postmaster queue resumed" if changed else "postmaster queue was not paused")
        return 0
    snap = status.snapshot(runtime)
    if args.json:
        output.emit_json(snap.as_dict()["queue"])
        return 0
    status.print_queue(snap)
    return 0


# -- memory and compaction ----------------------------------------------------------------------


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
    runtime = _runtime()
    memory = runtime.memory()
    try:
        if args.memory_command == "set":
            memory.set_durable(args.agent, args.key, _value(args))
            print(f"{args.agent} {args.key}: stored (durable)")
        elif args.memory_command == "set-ephemeral":
            ttl = _duration_arg(args.ttl, "--ttl") if args.ttl else None
            expires = memory.set_ephemeral(args.agent, args.key, _value(args), ttl=ttl)
            print(f"{args.agent} {args.key}: stored (ephemeral, expires {output.when(expires)})")
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
            if args.json:
                output.emit_json([e.__dict__ for e in entries])
                return 0
            output.table(
                [
                    (
                        e.key,
                        e.partition,
                        output.when(e.expires_at) if e.expires_at else "never",
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
    return 0


def cmd_compact_memory(args: argparse.Namespace) -> int:
    runtime = _runtime()
    run = runtime.compactor().run("manual", agent=args.agent, dry_run=args.dry_run)
    if args.json:
        output.emit_json(run.as_dict())
    else:
        print(f"compaction {run.status}: {run.summary()} in {run.duration or 0:.2f}s")
        if run.error:
            print(f"error: {run.error}")
    return 0 if run.status == "ok" else 1


def cmd_compactions(args: argparse.Namespace) -> int:
    runtime = _runtime()
    runs = runtime.compactor().recent(args.limit)
    if args.json:
        output.emit_json([r.as_dict() for r in runs])
        return 0
    output.table(
        [
            (
                r.id,
                output.when(r.started_at),
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
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    runtime = _runtime()
    now = datetime.datetime.now()
    jobs = [
        {
            "job": j.name,
            "queue": runtime.settings.scheduler_queue,
            "schedule": j.rule.describe(),
            "next_run": (
                n.isoformat(timespec="seconds") if (n := j.rule.next_after(now)) else None
            ),
            "description": j.description,
        }
        for j in runtime.tasks.periodic
    ]
    if args.json:
        output.emit_json(jobs)
        return 0
    output.table(
        [
            (
                j["job"],
                j["schedule"],
                (j["next_run"] or "never").replace("T", " "),
                j["description"],
            )
            for j in jobs
        ],
        ("JOB", "SCHEDULE", "NEXT RUN (local time)", "WHAT"),
    )
    print(f"(run by the {runtime.settings.scheduler_queue} consumer, paused queue or not)")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from worker.settings_example import render_example

    if args.config_command == "example":
        sys.stdout.write(render_example())
        return 0
    settings = load_settings()
    from worker.settings import SPECS

    rows, typed = [], {}
    for spec, field_name in zip(SPECS, settings.__dataclass_fields__, strict=True):
        value = getattr(settings, field_name)
        hidden = spec.secret and value
        rows.append((spec.name, "(hidden)" if hidden else spec.shown(value)))
        # JSON keeps numbers and booleans typed; a mode is a string, "0770", as in the file.
        typed[spec.name] = "(hidden)" if hidden else spec.show(value) if spec.show else value
    if args.json:
        output.emit_json(typed)
    else:
        output.table(rows, ("SETTING", "VALUE IN FORCE"))
    return 0


# -- parser -------------------------------------------------------------------------------------


# Past any list an operator reads, and within SQLite's 64-bit integers.
MAX_COUNT = 1_000_000


def positive_int(text: str) -> int:
    """An argparse type: a whole number from 1 to MAX_COUNT."""
    try:
        value = int(text) if len(text) <= 20 else 0
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_COUNT:,}, not {output.one_line(text, 40)!r}"
        )
    return value


def _duration_arg(text: str, option: str = "--older-than") -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UserError(f"{option} {text!r} is not {exc}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for every user mistake
        self.exit(2, f"{self.prog}: error: {output.printable(message)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="seer",
        description="Operate Seer Ops: the Postmaster worker, its queue, the CAS and the inbox.",
        epilog="Settings come from the environment and .env (see config/seer.env.example).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, func: Callable, help: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, **kw)
        p.set_defaults(func=func)
        return p

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

    p = add("worker", cmd_worker, "run a consumer in the foreground (exec huey_consumer)")
    p.add_argument("queue", nargs="?", default="postmaster", choices=("postmaster", "scheduler"))
    add("up", cmd_up, "start the local supervisord with both consumers (idempotent)")
    add("down", cmd_down, "stop the local supervisord and both consumers (idempotent)")

    p = add("status", cmd_status, "one-shot health: queue, parcels, failures, consumers")
    p.add_argument("--json", action="store_true")

    add("send-test-parcel", cmd_send_test_parcel, "send a test parcel to POSTMASTER_TEST_AGENT")

    parcel = sub.add_parser("parcel", help="send or inspect parcels")
    psub = parcel.add_subparsers(dest="parcel_command", metavar="ACTION", parser_class=_Parser)
    psub.required = True
    p = psub.add_parser("send", help="queue one JSON parcel, or JSON Lines of many; prints ids")
    p.add_argument("file", metavar="FILE|-")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_parcel_send)
    p = psub.add_parser("show", help="a parcel's state, message and artifacts")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--traceback", action="store_true", help="include the last traceback")
    p.set_defaults(func=cmd_parcel_show)

    p = add("inbox", cmd_inbox, "an agent's messages (`seer inbox ack ID` marks one read)")
    p.add_argument("agent", metavar="AGENT|ack")
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--unread", action="store_true")
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--json", action="store_true")

    art = sub.add_parser("artifacts", help="read artifacts from the CAS")
    asub = art.add_subparsers(dest="artifacts_command", metavar="ACTION", parser_class=_Parser)
    asub.required = True
    p = asub.add_parser("pull", help="write an artifact (hash verified) to stdout or -o FILE")
    p.add_argument("ref", metavar="URI|HASH")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--force", action="store_true", help="overwrite FILE")
    p.set_defaults(func=cmd_artifacts_pull)

    failed = sub.add_parser("failed", help="parcels that used up their tries")
    fsub = failed.add_subparsers(dest="failed_command", metavar="ACTION", parser_class=_Parser)
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

    mem = add("memory", cmd_memory, "agents' memory: set, set-ephemeral, get, forget, keys")
    msub = mem.add_subparsers(dest="memory_command", metavar="ACTION", parser_class=_Parser)
    msub.required = True
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
    p = add("schedule", cmd_schedule, "periodic jobs, their schedules and next run times")
    p.add_argument("--json", action="store_true")

    cfg = add("config", cmd_config, "settings: `show` those in force, `example` for a new .env")
    csub = cfg.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser)
    csub.required = True
    p = csub.add_parser("show", help="every setting in force (secrets hidden)")
    p.add_argument("--json", action="store_true")
    csub.add_parser("example", help="every setting with its default and meaning")

    add_monitor_commands(sub, add)
    add_cas_commands(sub, add)
    add_supervisor_commands(sub, add)
    add_backup_commands(sub, add)

    p = add("queue", cmd_queue, "pause, resume or show the postmaster queue")
    p.add_argument("action", choices=("pause", "resume", "status"))
    p.add_argument("queue", nargs="?", metavar="QUEUE", help="postmaster (the only one paused)")
    p.add_argument("--json", action="store_true")
    return parser


def _undecodable(argv: Sequence[str]) -> str | None:
    """The first argument that was not valid UTF-8 (Python keeps such bytes as surrogates)."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    bad = _undecodable(argv)
    if bad is not None:
        shown = bad.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        print(
            f"seer: argument {shown[:60]!r} is not valid UTF-8: ids, names and values are text",
            file=sys.stderr,
        )
        return 2
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UserError, SettingsError, NotInitialised, migrations.SchemaMismatch) as exc:
        print(f"seer: {output.printable(exc)}", file=sys.stderr)
        return 2
    except (Failure, CasError, UnsafeEntry, supervision.SupervisorError, LedgerUnavailable) as exc:
        print(f"seer: {output.printable(exc)}", file=sys.stderr)
        return 1
    except NotImplementedError as exc:
        print(f"seer: {output.printable(exc)}", file=sys.stderr)
        return 2
    except DATABASE_ERRORS as exc:
        print(f"seer: the ledger database cannot be used: {output.printable(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("seer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
