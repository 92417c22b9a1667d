"""`seer schedule` and `seer config show|example`: the periodic jobs and the settings."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
from typing import Any

from seer_console import output
from seer_console.cli.common import AddCommand, ExitCode, Parser, UserError, open_runtime
from worker.ops import schedule
from worker.runtime import Runtime
from worker.settings import load_settings


def _iso(ts: object) -> str | None:
    if not isinstance(ts, float | int) or not ts:
        return None
    return datetime.datetime.fromtimestamp(ts).isoformat(timespec="seconds")


def cmd_schedule(args: argparse.Namespace) -> int:
    runtime = open_runtime()
    if args.action == "run":
        return _run_job(runtime, args)
    if args.job is not None:
        raise UserError(f"unexpected {args.job!r}: `seer schedule` or `seer schedule run JOB`")
    shown = schedule.schedule(runtime)
    if args.json:
        # A list of jobs, as before the runs were recorded; times in local ISO form, as
        # next_run always was; the queue and its depth on each, so the list stays a list.
        output.emit_json(
            [
                {
                    **j.as_dict(),
                    **{key: _iso(j.as_dict()[key]) for key in ("next_run", "last_run", "last_ok")},
                    "queue": shown.queue,
                    "queue_depth": shown.depth,
                }
                for j in shown.jobs
            ]
        )
        return ExitCode.OK
    output.table(
        [
            (
                j.name,
                j.schedule,
                output.stamp(j.next_run) if j.next_run else "never",
                output.stamp(j.last.started_at if j.last else None),
                j.took_text,
                j.result_line(),
                output.stamp(j.last_ok_at),
            )
            for j in shown.jobs
        ],
        schedule.COLUMNS,
    )
    depth = (
        f"{shown.depth} waiting"
        if shown.depth is not None
        else f"unknown ({output.one_line(shown.depth_error or 'not reachable', 60)})"
    )
    print(
        f"(local time; run by the {shown.queue} consumer, paused queue or not; "
        f"{shown.queue} queue: {depth}; `seer schedule run JOB` runs "
        f"{', '.join(schedule.SAFE)} now)"
    )
    return ExitCode.OK


def _run_job(runtime: Runtime, args: argparse.Namespace) -> int:
    if args.job is None:
        raise UserError(
            f"which job? `seer schedule run JOB`, JOB one of {', '.join(schedule.SAFE)}"
        )
    try:
        schedule.check_runnable(runtime, args.job)
    except schedule.NotRunnable as exc:
        raise UserError(str(exc)) from None
    run = schedule.run_now(runtime, args.job, by=f"cli:{output.operator()}")
    if args.json:
        output.emit_json(dataclasses.asdict(run) | {"ok": run.ok})
    else:
        print(schedule.ran(run))
    return ExitCode.OK if run.ok else ExitCode.FAILED


def cmd_config(args: argparse.Namespace) -> int:
    from worker.settings_example import render_example

    if args.config_command == "example":
        sys.stdout.write(render_example())
        return ExitCode.OK
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
    return ExitCode.OK


def register(sub: Any, add: AddCommand) -> None:
    p = add(
        "schedule",
        cmd_schedule,
        "periodic jobs: schedules, next and last runs, results; `run JOB` runs a safe one now",
    )
    p.add_argument("action", nargs="?", choices=("run",), help="run JOB now")
    p.add_argument("job", nargs="?", metavar="JOB", help=", ".join(schedule.SAFE))
    p.add_argument("--json", action="store_true")

    cfg = add("config", cmd_config, "settings: `show` those in force, `example` for a new .env")
    csub = cfg.add_subparsers(dest="config_command", metavar="ACTION", parser_class=Parser)
    csub.required = True
    p = csub.add_parser("show", help="every setting in force (secrets hidden)")
    p.add_argument("--json", action="store_true")
    csub.add_parser("example", help="every setting with its default and meaning")
