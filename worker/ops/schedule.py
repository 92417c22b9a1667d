"""The periodic jobs as an operator asks about them: each one's schedule, next run, last run
(when, how long, how it went) and last good run, the scheduler queue's depth, and running the
safe ones now (`seer schedule`, the console's Schedule view).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.fleet import control
from worker.redaction import redact_text

if TYPE_CHECKING:
    from worker.runtime import Runtime

# worker.ops.jobs and worker.monitoring.status are imported where they are used: the console
# imports this module to draw its Schedule view, and importing them (the runtime, Huey's
# wiring, supervisord's client) at its start cost ~0.3 s of its first frame.

# The columns of `seer schedule` and of the console's Schedule view, in this order.
COLUMNS = ("JOB", "SCHEDULE", "NEXT RUN", "LAST RUN", "TOOK", "RESULT", "LAST OK")

# The jobs an operator may run now from another process while the scheduler also runs them,
# and why each is safe: what they write is fine twice, or guarded in the ledger.
SAFE: dict[str, str] = {
    "monitor_storage": "a report line more in the log; the CAS rule is evaluated under the "
    "alerts lock, so an alert is sent once",
    "compact_memory": "one compaction at a time cluster-wide: a run in progress makes this "
    "one a recorded skip",
    "sample": "one metric sample more; roll-ups that overlap agree",
}
# Why the others are not run from here, one line each.
UNSAFE: dict[str, str] = {
    "reap": "runs every few seconds already; taking parcels back belongs to the scheduler",
    "evaluate_rules": "runs every minute; its runs are what the watchdogs judge the "
    "scheduler's health by",
    "deliver_alerts": "runs every few seconds already, with its own retries and backoff",
}


class NotRunnable(ValueError):
    """A job that is not run on request (or does not exist): one line saying why."""


@dataclass(frozen=True)
class JobStatus:
    name: str
    schedule: str
    description: str
    next_run: float | None  # epoch seconds, None: never
    last: control.JobRun | None  # its last recorded run
    last_ok_at: float | None
    safe: bool  # may be run now (`run_now`)
    why_not: str | None  # why it may not, if so

    @property
    def result(self) -> str:
        if self.last is None:
            return "never ran"
        return "ok" if self.last.ok else "FAILED"

    def result_line(self, limit: int = 60) -> str:
        """RESULT as `seer schedule` and the Schedule view show it: ok, never ran, or FAILED
        and the error on one line (cut at `limit`), and who ran it unless the scheduler did."""
        last = self.last
        if last is None:
            return "never ran"
        by = "" if last.by == "scheduler" else f" (by {last.by})"
        if last.ok:
            return "ok" + by
        return f"FAILED: {_one_line(last.error or 'no error recorded', limit)}{by}"

    @property
    def took_text(self) -> str:
        """TOOK: the last run's duration, `-` if it never ran."""
        return f"{self.last.took:.2f}s" if self.last else "-"

    def as_dict(self) -> dict[str, object]:
        last = self.last
        return {
            "job": self.name,
            "schedule": self.schedule,
            "next_run": self.next_run,
            "last_run": last.started_at if last else None,
            "took": last.took if last else None,
            "result": self.result,
            "error": last.error if last else None,
            "by": last.by if last else None,
            "last_ok": self.last_ok_at,
            "runnable": self.safe,
            "description": self.description,
        }


@dataclass(frozen=True)
class Schedule:
    jobs: tuple[JobStatus, ...]
    queue: str  # the scheduler queue's name
    depth: int | None  # its jobs waiting for a scheduler consumer, None if it cannot be read
    depth_error: str | None = None
    taken_at: float = 0.0


def jobs(runtime: Runtime, now: float | None = None) -> list[JobStatus]:
    """Every periodic job with its next run after `now` (the ledger's clock by default) and
    its last recorded run."""
    from worker.ops import jobs as periodic_jobs

    now = runtime.ledger.now() if now is None else now
    runs = control.job_runs(runtime.ledger)
    # The schedules are read in local time, as the scheduler reads them.
    moment = dt.datetime.fromtimestamp(now)
    found = []
    for job in periodic_jobs.periodic(runtime.settings):
        upcoming = job.rule.next_after(moment)
        last = runs.get(job.name)
        if last is not None and last.error:
            # Redacted where it is read, too: a body's own message is recorded as it said it,
            # and what an older version recorded was never redacted.
            last = dataclasses.replace(last, error=redact_text(_one_line(last.error, 10_000)))
        found.append(
            JobStatus(
                job.name,
                job.rule.describe(),
                job.description,
                upcoming.timestamp() if upcoming else None,
                last,
                last.last_ok_at if last else None,
                job.name in SAFE,
                None if job.name in SAFE else UNSAFE.get(job.name, "not run on request"),
            )
        )
    return found


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def schedule(runtime: Runtime, now: float | None = None) -> Schedule:
    """The jobs and the scheduler queue's depth, read through the queue's probe."""
    from worker.monitoring import status

    now = runtime.ledger.now() if now is None else now
    probe = status.queue_probe(runtime)
    queue = runtime.settings.scheduler_queue
    depth = probe.depths.get(queue) if probe.reachable else None
    return Schedule(tuple(jobs(runtime, now)), queue, depth, probe.error, now)


def _bodies(runtime: Runtime, by: str) -> dict[str, Callable[[], str | None]]:
    from worker.ops import jobs as periodic_jobs

    def sample() -> str | None:
        periodic_jobs.sample(runtime)
        return None

    return {
        "monitor_storage": lambda: periodic_jobs.monitor_storage(runtime),
        # The compaction's trigger says who ran it, as the CLI's "manual" and the key's
        # "console" do.
        "compact_memory": lambda: periodic_jobs.compact_memory(runtime, by),
        "sample": sample,
    }


def ran(run: control.JobRun, limit: int = 200) -> str:
    """A run from `run_now` in one line, as `seer schedule run` and the console's key say it."""
    if run.ok:
        return f"{run.job} ran: ok in {run.took:.2f}s"
    return f"{run.job} ran: FAILED in {run.took:.2f}s: {_one_line(run.error or '', limit)}"


def check_runnable(runtime: Runtime, name: str) -> None:
    """NotRunnable (one line: why, and which may be run) unless `name` is a safe job."""
    from worker.ops import jobs as periodic_jobs

    names = [j.name for j in periodic_jobs.periodic(runtime.settings)]
    allowed = ", ".join(n for n in names if n in SAFE)
    if name not in names:
        raise NotRunnable(f"no periodic job {name!r}: the jobs are {', '.join(names)}")
    if name not in SAFE:
        raise NotRunnable(
            f"{name} is not run on request ({UNSAFE.get(name, 'not safe')}); "
            f"these may be: {allowed}"
        )


def run_now(
    runtime: Runtime, name: str, by: str = "console", now: float | None = None
) -> control.JobRun:
    """Runs safe job `name` in this process, now, recorded as the scheduler records its runs
    (with `by`: who ran it). An error of the job is in the returned run, not raised."""
    from worker.ops import jobs as periodic_jobs

    check_runnable(runtime, name)
    body = _bodies(runtime, by)[name]
    started = runtime.ledger.now() if now is None else now
    try:
        recorded = periodic_jobs.run_recorded(runtime, name, body, by)
    except Exception as exc:
        # Recorded with its error before it was raised again: that record is the answer.
        recorded = control.job_runs(runtime.ledger).get(name)
        if recorded is None or recorded.started_at < started:
            return control.JobRun(name, started, 0.0, periodic_jobs.one_line_error(exc), by, None)
    if recorded is None:
        return control.JobRun(
            name, started, 0.0, "ran, but the run could not be recorded", by, None
        )
    return recorded
