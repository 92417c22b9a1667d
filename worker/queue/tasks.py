"""The Huey tasks: each one a thin wrapper over a job the consumers run (worker.ops.jobs).

This module declares tasks and nothing else; what a job does, and when a periodic one is due,
is decided outside the queue package, so another queue storage changes nothing here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from worker.queue.queues import Queues


@dataclass(frozen=True)
class Periodic:
    name: str
    due: Callable[[dt.datetime], bool]
    run: Callable[[], None]


@dataclass(frozen=True)
class Jobs:
    """What a consumer process runs: the delivery job (a doorbell's parcel id in), the two
    start-up hooks and the periodic jobs."""

    deliver: Callable[[str], None]
    postmaster_started: Callable[[], None]
    scheduler_started: Callable[[], None]
    periodic: tuple[Periodic, ...]
    stopped: Callable[[], None] = lambda: None  # a graceful stop, once per worker thread


def register(queues: Queues, jobs: Jobs) -> None:
    """Declares the jobs' tasks on the two queues, once per process."""
    if queues.jobs_registered:
        return
    queues.set_delivery(jobs.deliver)
    queues.postmaster.on_startup(name="recover")(jobs.postmaster_started)
    queues.scheduler.on_startup(name="register")(jobs.scheduler_started)
    queues.postmaster.on_shutdown(name="deregister")(jobs.stopped)
    queues.scheduler.on_shutdown(name="deregister")(jobs.stopped)
    for job in jobs.periodic:
        queues.scheduler.periodic_task(job.due, name=job.name)(job.run)
    queues.jobs_registered = True
