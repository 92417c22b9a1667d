"""`seer supervisor …`: the worker processes under supervisord, over its unix socket only."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import Faults

from seer_console import output
from seer_console.cli.common import AddCommand, ExitCode, Parser, UserError, supervisor_runtime
from worker.fleet import supervision
from worker.layout import Layout
from worker.ops import operations
from worker.settings import load_settings


def _supervisor(args: argparse.Namespace) -> supervision.Supervisor:
    if args.socket:
        return supervision.Supervisor(Path(args.socket))
    return supervision.Supervisor(supervision.socket_path(_layout()))


def _layout() -> Layout:
    """The storage root's layout, whatever its schema: these commands talk only to supervisord,
    so a ledger behind the code (after a rollback) must not lock the operator out of them."""
    runtime = supervisor_runtime()
    runtime.close()
    return runtime.layout


def _rows(programs: Sequence[supervision.ProgramInfo]) -> None:
    output.table(
        [
            (
                supervision.full_name(p),
                p.state,
                p.pid or "-",
                output.short_age(p.uptime) if p.pid else "-",
                p.description,
            )
            for p in programs
        ],
        ("PROGRAM", "STATE", "PID", "UPTIME", "DETAIL"),
    )


def cmd_supervisor(args: argparse.Namespace) -> int:
    action = args.supervisor_command
    if action == "render":
        return _render(args)
    try:
        sup = _supervisor(args)
        if action == "remove":
            return _remove(sup)
        programs = supervision.resolve(sup, args.program)
        if not programs:
            print(
                "supervisord runs no Seer program (removed? locally `seer up` adds them back; "
                "a system supervisord: install the program file, `supervisorctl update`)"
            )
            return ExitCode.NOT_RUNNING
        if action in supervision.ACTIONS:
            # The console's Worker keys call the same function.
            for said in operations.control(sup, action, args.program):
                print(said)
        after = supervision.resolve(sup, args.program)
        if action == "status":
            if args.json:
                output.emit_json([p.__dict__ for p in after])
            else:
                _rows(after)
        if all(p.running for p in after) or action == "stop":
            return ExitCode.OK
        return ExitCode.NOT_RUNNING
    except supervision.SupervisorError as exc:
        hint = ""
        if exc.fault == Faults.SPAWN_ERROR:
            hint = " (it exited at once; its log says why: `seer supervisorctl tail PROGRAM`)"
        print(f"seer: {exc}{hint}", file=sys.stderr)
        return ExitCode.UNREACHABLE if exc.unreachable else ExitCode.FAILED


def _remove(sup: supervision.Supervisor) -> int:
    """The task card's `supervisorctl remove seer-postmaster`: stop, then remove both."""
    groups = supervision.program_groups(sup.programs())
    if not groups:
        print("supervisord runs no Seer program: nothing to remove")
        return ExitCode.OK
    for group in groups:
        # Waits for the graceful stop: parcels in flight finish first.
        sup.stop_group(group)
        sup.remove_group(group)
        print(f"stopped and removed {group} from supervisord")
    print(
        "for good: delete its program file too (sudo rm /etc/supervisor/conf.d/"
        "seer-postmaster.conf), or `supervisorctl update` (locally: `seer up`) brings it back"
    )
    return ExitCode.OK


def cmd_supervisorctl(args: argparse.Namespace) -> int:
    """supervisorctl itself against the local supervisord, its file and socket filled in."""
    return supervision.supervisorctl(_layout(), list(args.args))


def _render(args: argparse.Namespace) -> int:
    settings = load_settings()
    directory = Path(args.dir or Path.cwd()).absolute()
    venv = Path(args.venv or Path(sys.executable).parent.parent).absolute()
    env_file = Path(args.env_file or directory / ".env").absolute()
    storage = (
        settings.storage_path
        if settings.storage_path.is_absolute()
        else directory / settings.storage_path
    )
    try:
        text = supervision.render(
            user=args.user or getpass.getuser(),
            directory=directory,
            log_dir=Path(args.log_dir).absolute(),
            venv=venv,
            storage=storage,
            env_file=env_file,
        )
    except supervision.SupervisorError as exc:
        raise UserError(str(exc)) from None
    if not env_file.is_file():
        print(
            f"seer: warning: the settings file {env_file} does not exist yet; the workers "
            "refuse to start without it (create it from config/seer.env.example)",
            file=sys.stderr,
        )
    sys.stdout.write(text)
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    sup = add(
        "supervisor",
        cmd_supervisor,
        "the worker under supervisord: status, start, stop, restart, remove, render",
    )
    ssub = sup.add_subparsers(dest="supervisor_command", metavar="ACTION", parser_class=Parser)
    ssub.required = True
    p: argparse.ArgumentParser
    for name, text in (
        ("status", "state of seer-postmaster and seer-scheduler (exit 3 if one is not running)"),
        ("start", "start a program (or both)"),
        ("stop", "stop a program (or both), gracefully: running parcels finish"),
        ("restart", "stop, then start, a program (or both)"),
    ):
        p = ssub.add_parser(name, help=text)
        p.add_argument(
            "program",
            nargs="?",
            metavar="PROGRAM",
            help="seer-postmaster or seer-scheduler (default: both)",
        )
        p.add_argument(
            "--socket",
            metavar="PATH",
            help="a system supervisord's unix socket, e.g. /var/run/supervisor.sock",
        )
        if name == "status":
            p.add_argument("--json", action="store_true")
    p = ssub.add_parser("remove", help="stop both programs and remove them from supervisord")
    p.add_argument("--socket", metavar="PATH")
    p = ssub.add_parser("render", help="print supervisor/seer-postmaster.conf for this install")
    p.add_argument("--user", help="the web-server user that runs the worker (default: you)")
    p.add_argument("--dir", help="the working directory (default: here)")
    p.add_argument("--log-dir", default="/var/log/supervisor", help="default /var/log/supervisor")
    p.add_argument("--venv", help="the virtualenv holding seer (default: this one)")
    p.add_argument("--env-file", help="the settings file (default: DIR/.env)")
    p = add(
        "supervisorctl",
        cmd_supervisorctl,
        "supervisorctl ARGS against the local supervisord of `seer up` (its -c and socket)",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="e.g. status, tail -f")
