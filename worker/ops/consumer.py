"""A consumer process, whoever starts it: `seer worker QUEUE` (run() in its own process) or
Huey's `huey_consumer worker.queue.huey_app.QUEUE` (which imports huey_app, which prepares).
"""

from __future__ import annotations

import logging

from worker.ops import jobs
from worker.queue import consumer as huey_consumer
from worker.queue.queues import quiet_huey_logging
from worker.runtime import Runtime


class _SeerLines(logging.StreamHandler):
    """The `seer` loggers' lines on stderr, in huey_consumer's format without the thread."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s:%(name)s:%(message)s"))


def prepare(runtime: Runtime) -> None:
    """What a consumer process sets up on an opened runtime before Huey's consumer starts:
    the jobs declared on its queues, Huey's routine lines dropped, and the `seer` loggers' own
    handler (once)."""
    jobs.register(runtime)
    # Huey's per-task and per-tick INFO lines are noise at thousands of parcels a second and a
    # check every few seconds; its warnings and errors stay.
    quiet_huey_logging()
    seer_log = logging.getLogger("seer")
    if not any(isinstance(h, _SeerLines) for h in seer_log.handlers):
        seer_log.addHandler(_SeerLines())
    seer_log.setLevel(logging.INFO)
    seer_log.propagate = False


def run(runtime: Runtime, queue: str) -> None:
    """Runs the consumer of `queue` ("postmaster" or "scheduler") in this process, on the
    runtime already opened (and checked), until it is stopped (worker.queue.consumer.run).

    The runtime is left open: after SIGTERM (Huey's immediate stop) the worker threads may still
    be in a task when this returns, and the process ending takes them with it, as it does
    huey_consumer's."""
    prepare(runtime)
    huey_consumer.run(getattr(runtime.queues, queue), queue)
