"""`seer worker`: one consumer, run in this process (what supervisord starts).

`seer worker` is the only command whose start is on a path that is timed (a consumer's first
dequeue, issue 15): `seer` imports this module alone for it (seer_console.cli.ALONE), so it
imports what the consumer needs and nothing of the other commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from seer_console.cli.common import AddCommand, ExitCode, Failure, warn
from worker.fleet.programs import PROGRAMS
from worker.ops import consumer
from worker.runtime import Runtime

# As early as the process can know it: this module is imported when `seer` starts.
_PARENT_AT_START = os.getppid()


def cmd_worker(args: argparse.Namespace) -> int:
    # First: opening the runtime takes long enough (on a busy host, past supervisord's
    # startsecs) for a parent killed meanwhile to go unnoticed.
    _die_with_parent()
    # Settings, storage root and schema checked: a wrong one fails here in one line (and the
    # consumer never starts). The same runtime serves the consumer; it is not closed, see run().
    runtime = Runtime.open()
    # In this process, not an exec: supervisord's signals reach the consumer itself, and the
    # process it started is the consumer (its pid is the one in the registry).
    consumer.run(runtime, args.queue)
    return ExitCode.OK


def _die_with_parent() -> None:
    """Linux: the consumer gets SIGINT (Huey's graceful stop) when its parent dies. A
    supervisord killed with -9 left its consumers running as orphans, beside the ones the next
    `seer up` started. The setting holds for this process, which runs the consumer, and
    survives the exec of Huey's restart on SIGHUP."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGINT), 0, 0, 0) != 0:
        warn("cannot ask to stop with the parent (prctl)")
        return
    # A parent that died before the prctl sends no signal, and by then the orphan has been
    # adopted (by init or a subreaper): its parent now is not the one that started it.
    if os.getppid() != _PARENT_AT_START or (
        os.environ.get("SUPERVISOR_PROCESS_NAME") in PROGRAMS and not _parent_is_supervisord()
    ):
        raise Failure("the parent process exited while the worker was starting")


def _parent_is_supervisord() -> bool:
    import psutil

    try:
        return any("supervisord" in part for part in psutil.Process(os.getppid()).cmdline())
    except psutil.Error:
        return False


def register(sub: Any, add: AddCommand) -> None:
    p = add("worker", cmd_worker, "run a consumer in the foreground (Huey's, in this process)")
    p.add_argument("queue", nargs="?", default="postmaster", choices=("postmaster", "scheduler"))
