"""`seer schedule` and `seer config show|example`: the periodic jobs and the settings."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from seer_console import output
from seer_console.cli.common import AddCommand, ExitCode, Parser, open_runtime
from worker.ops.jobs import periodic
from worker.settings import load_settings


def cmd_schedule(args: argparse.Namespace) -> int:
    runtime = open_runtime()
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
        for j in periodic(runtime.settings)
    ]
    if args.json:
        output.emit_json(jobs)
        return ExitCode.OK
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
    return ExitCode.OK


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
    p = add("schedule", cmd_schedule, "periodic jobs, their schedules and next run times")
    p.add_argument("--json", action="store_true")

    cfg = add("config", cmd_config, "settings: `show` those in force, `example` for a new .env")
    csub = cfg.add_subparsers(dest="config_command", metavar="ACTION", parser_class=Parser)
    csub.required = True
    p = csub.add_parser("show", help="every setting in force (secrets hidden)")
    p.add_argument("--json", action="store_true")
    csub.add_parser("example", help="every setting with its default and meaning")
