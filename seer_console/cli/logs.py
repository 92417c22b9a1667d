"""`seer logs`: the worker's, supervisord's and the orchestration log, tailed, followed and
searched (worker/ops/logs.py reads them in blocks from the end: a 1 GB log costs nothing)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from seer_console import output
from seer_console.cli.common import AddCommand, ExitCode, Failure, UserError, positive_int
from worker.layout import Layout
from worker.ops import logs
from worker.settings import load_settings

# How often -f looks for new lines: as `tail -f` does.
FOLLOW_EVERY = 0.5


def _layout() -> Layout:
    # The files only: no ledger is opened, so the logs can be read when it is down.
    layout = Layout.from_settings(load_settings())
    layout.require_initialised()
    return layout


def cmd_logs(args: argparse.Namespace) -> int:
    layout = _layout()
    if args.name is None:
        return _list(layout, args.json)
    try:
        log = logs.log_file(layout, args.name)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    wanted = _filter(args.grep, args.level)
    try:
        shown = _last(log, args.lines, wanted)
    except FileNotFoundError:
        raise Failure(f"{log.path} does not exist (yet): nothing has written it") from None
    for line in shown.lines:
        print(line.text)
    if args.follow:
        _follow(log, shown.end, shown.inode, wanted)
    return ExitCode.OK


def _list(layout: Layout, as_json: bool) -> int:
    found = [logs.info(log) for log in logs.log_files(layout)]
    if as_json:
        output.emit_json(
            [
                {
                    "name": f.log.name,
                    "path": str(f.log.path),
                    "exists": f.exists,
                    "size": f.size if f.exists else None,
                    "modified": f.modified,
                    "error": f.error,
                    "description": f.log.description,
                }
                for f in found
            ]
        )
        return ExitCode.OK
    output.table(
        [
            (
                f.log.name,
                f.log.path,
                output.size(f.size) if f.exists else "-",
                output.stamp(f.modified) if f.exists else (f.error or "missing"),
            )
            for f in found
        ],
        ("NAME", "FILE", "SIZE", "MODIFIED"),
    )
    return ExitCode.OK


Wanted = Any  # a predicate on logs.Line, or None for every line


def _filter(grep: str | None, level: str | None) -> Wanted:
    if level is not None:
        upper = level.upper()
        if upper == "WARN":
            upper = "WARNING"
        if upper not in logs.LEVELS:
            raise UserError(f"--level {level!r}: allowed are {', '.join(logs.LEVELS).lower()}")
        least = logs.LEVELS.index(upper)
    if grep is None and level is None:
        return None
    needle = (grep or "").lower()

    def wanted(line: logs.Line) -> bool:
        if needle and needle not in line.text.lower():
            return False
        if level is not None:
            return line.level is not None and logs.LEVELS.index(line.level) >= least
        return True

    return wanted


def _last(log: logs.LogFile, count: int, wanted: Wanted) -> logs.Chunk:
    """The last `count` lines (of those `wanted`), read backwards a chunk at a time."""
    chunk = logs.tail(log, count if wanted is None else 1000)
    if wanted is None:
        return chunk
    kept = [line for line in chunk.lines if wanted(line)]
    start = chunk.start
    while len(kept) < count and start > 0:
        earlier = logs.before(log, start, 1000)
        if earlier.start >= start:
            break
        kept = [line for line in earlier.lines if wanted(line)] + kept
        start = earlier.start
    return logs.Chunk(tuple(kept[-count:]), start, chunk.end, chunk.size, chunk.inode)


def _follow(log: logs.LogFile, offset: int, inode: int, wanted: Wanted) -> None:
    """Prints new lines as they come, until Ctrl-C (exit 130, as every command)."""
    while True:
        try:
            chunk = logs.after(log, offset, 1000, inode=inode)
        except FileNotFoundError:
            # Between supervisord's rename and its new file: look again.
            time.sleep(FOLLOW_EVERY)
            continue
        if chunk.restarted:
            print(f"seer: {log.path} was rotated or truncated: reading it from its start")
        for line in chunk.lines:
            if wanted is None or wanted(line):
                print(line.text, flush=True)
        offset, inode = chunk.end, chunk.inode
        if chunk.at_end:
            time.sleep(FOLLOW_EVERY)


def register(sub: Any, add: AddCommand) -> None:
    p = add(
        "logs",
        cmd_logs,
        "the logs: list them, or show one's end (-f follows), filtered by --grep and --level",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help=" | ".join(logs.NAMES))
    p.add_argument("-n", "--lines", type=positive_int, default=40, help="how many (40)")
    p.add_argument("-f", "--follow", action="store_true", help="print new lines as they come")
    p.add_argument("--grep", metavar="TEXT", help="only lines holding TEXT (any case)")
    p.add_argument(
        "--level", metavar="LEVEL", help="only lines at LEVEL or worse: debug, info, warning, error"
    )
    p.add_argument("--json", action="store_true", help="the list of logs as JSON")
