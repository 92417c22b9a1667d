"""What the two consumers run: parcel delivery, the start-up recovery and the periodic jobs.

Each delivery doorbell carries only a parcel id. It delivers the oldest waiting parcels (its
own among them, or already delivered by an earlier batch), so the ledger, not the queue,
decides what is delivered; a doorbell lost with a killed consumer loses no parcel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.cas import tools as cas_tools
from worker.fleet import consumers, control
from worker.identity import host_name
from worker.monitoring import metrics, monitor, watchdog
from worker.ops import operations
from worker.parcels import postmaster
from worker.queue import QueueError
from worker.redaction import redact_text
from worker.runtime import Runtime
from worker.schedules import TICK, Cron, Every
from worker.settings import Settings

# The consumer's start-up line is read by operators and by bench/parcels.py under this name.
log = logging.getLogger("seer.tasks")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    rule: Every | Cron
    description: str


def periodic(settings: Settings) -> tuple[PeriodicJob, ...]:
    """The scheduler consumer's jobs and their schedules (`seer schedule` lists them)."""
    return (
        PeriodicJob("sample", Every(settings.sample_interval), "record a metric sample"),
        PeriodicJob(
            "compact_memory",
            Cron(settings.compaction_cron),
            "remove expired ephemeral memory keys (ORCHESTRATION_COMPACTION_CRON)",
        ),
        PeriodicJob(
            "reap",
            # As often as the scheduler checks: a dead consumer's parcels are back within
            # SEER_HEARTBEAT_TIMEOUT and a few seconds.
            Every(TICK),
            "take back parcels of dead workers (pid gone or heartbeat stale); ring for lost "
            "deliveries",
        ),
        PeriodicJob("evaluate_rules", Every(60), "evaluate the alert rules; queue notifications"),
        PeriodicJob("deliver_alerts", Every(5), "send queued notifications, with retries"),
        PeriodicJob(
            "monitor_storage",
            Cron(settings.monitor_cron),
            "daily CAS storage report to logs/orchestration.log (ORCHESTRATION_MONITOR_CRON)",
        ),
    )


def ring_if_due(runtime: Runtime, now: float | None = None) -> str | None:
    """Rings for the oldest due parcel, if there is one; returns its id."""
    due = postmaster.due_parcel(runtime.ledger, now)
    if due:
        runtime.ring([due])
    return due


def ring_lost(runtime: Runtime) -> str | None:
    """Rings for the oldest due parcel when no doorbell waits and nothing is paused: a ring
    lost between the ledger and the queue (a crash in `seer parcel send`), or doorbells lost
    with the queue (a Redis restart without persistence, FLUSHDB, an eviction, a consumer
    killed after BRPOP). Returns the parcel rung for, if any."""
    if (
        not control.is_paused(runtime.ledger)
        and runtime.queues.pending_count() == 0
        and postmaster.due_parcel(runtime.ledger)
    ):
        return ring_if_due(runtime)
    return None


def sample(runtime: Runtime) -> None:
    """Records one metric sample and rolls old ones up."""
    settings = runtime.settings
    taken = metrics.measure(
        runtime.ledger,
        settings.postmaster_queue,
        settings.scheduler_queue,
        host_id=settings.host_id,
        heartbeat_timeout=settings.heartbeat_timeout,
    )
    metrics.record(runtime.ledger, taken)
    metrics.downsample(
        runtime.ledger,
        metrics.Retention(
            settings.keep_raw_samples, settings.keep_minute_samples, settings.keep_hour_samples
        ),
    )


def compact_memory(runtime: Runtime, trigger: str) -> str | None:
    """A compaction run (recorded with `trigger`); its error if it failed. Selects by expiry
    time, so a run missed while the consumer was down costs only delay, and a run already in
    progress elsewhere makes this one a recorded skip."""
    run = operations.compact_memory(runtime, trigger)
    return (run.error or "compaction failed") if run.status == "failed" else None


def monitor_storage(runtime: Runtime) -> str | None:
    """The storage report to the orchestration log, and the CAS size rule evaluated (an alert
    sent if it crossed a level); what went wrong writing the report, if anything."""
    report = monitor.storage_report(runtime)
    error = None
    try:
        monitor.log_storage_report(runtime, report)
    except OSError as exc:
        # A refused link or a full disk: said in one line; the alert rule still runs.
        log.error("storage report not logged: %s", exc)
        error = f"storage report not logged: {exc}"
    _, sent = monitor.evaluate(runtime, only=("cas_size",))
    if sent:
        monitor.deliver(runtime)
    return error


def one_line_error(exc: BaseException) -> str:
    """An exception as a run's result: one line, secrets redacted, bounded."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    text = redact_text(text)
    return text if len(text) <= 500 else text[:499] + "…"


def run_recorded(
    runtime: Runtime, name: str, body: Callable[[], str | None], by: str = "scheduler"
) -> control.JobRun | None:
    """Runs a periodic job's body and records the run (start, duration, result, who) in the
    ledger once it is over; an exception is recorded, then raised again. Returns the run as
    recorded, None if the ledger could not take the record (logged: the job's own outcome
    matters more than its record)."""
    try:
        started = runtime.ledger.now()
    except Exception:  # the ledger out of reach: the job says so itself, the record cannot
        started = time.time()
    clock = time.monotonic()
    try:
        error = body()
    except Exception as exc:
        _record(runtime, name, started, time.monotonic() - clock, one_line_error(exc), by)
        raise
    return _record(runtime, name, started, time.monotonic() - clock, error, by)


def _record(
    runtime: Runtime, name: str, started: float, took: float, error: str | None, by: str
) -> control.JobRun | None:
    try:
        return control.record_job_run(runtime.ledger, name, started, took, error, by)
    except Exception as exc:
        log.error("periodic %s ran but its run was not recorded: %s", name, exc)
        return None


def _recorded(runtime: Runtime, name: str, body: Callable[[], str | None]) -> Callable[[], None]:
    def run() -> None:
        run_recorded(runtime, name, body)

    run.__name__ = name
    return run


def _quiet(body: Callable[[], None]) -> Callable[[], str | None]:
    def run() -> str | None:
        body()
        return None

    return run


if TYPE_CHECKING:
    from worker.queue import Jobs


def build(runtime: Runtime) -> Jobs:
    # Huey is loaded by the consumer that runs the jobs, not by `seer schedule`, which only
    # lists them (worker.queue loads it on first use).
    from worker.queue import Jobs, Periodic

    queues = runtime.queues
    backoff_until = [0.0]

    def deliver(parcel_id: str) -> None:
        now = runtime.ledger.now()
        if now < backoff_until[0]:
            return  # a doorbell is already scheduled for the end of the backoff
        result = runtime.postmaster().deliver_waiting()
        if result.retry_at is not None:
            if result.backing_off:
                backoff_until[0] = result.retry_at
            queues.ring([parcel_id], delay=max(0.0, result.retry_at - runtime.ledger.now()))
        if result.claimed >= runtime.settings.batch_size and queues.pending_count() == 0:
            # A full batch and no doorbell left: more may wait whose doorbell was lost with a
            # killed consumer, so keep going rather than wait for the reaper.
            ring_if_due(runtime)

    beating: list[consumers.Heartbeat] = []
    watching: list[watchdog.Watchdog] = []

    def queue_changed(down_since: float | None, reason: str | None) -> None:
        # Since when the queue has not answered, in the ledger, for `seer status` and the
        # console on any host (the ledger is elsewhere: it may well be up).
        if down_since is None:
            control.clear_queue_outage(runtime.ledger)
            # A Redis back from a restart without persistence has lost every doorbell: ring
            # now rather than at the reaper's next slot (which tries again if this fails).
            with contextlib.suppress(QueueError):
                ring_lost(runtime)
        else:
            control.record_queue_outage(
                runtime.ledger,
                runtime.settings.queue_address,
                reason or "no answer",
                host_name(runtime.settings.host_id),
            )

    def started(queue: str) -> None:
        # Registered, and its heartbeat thread started, once per process (the hook runs once
        # per worker thread).
        settings = runtime.settings
        queues.health.on_change = queue_changed
        heartbeat = consumers.start(
            runtime.ledger,
            queue,
            host_id=settings.host_id,
            timeout=settings.heartbeat_timeout,
            cas_root=runtime.store.location(),
            cas_check=lambda: cas_tools.newest_blob_missing(runtime.ledger, runtime.store),
        )
        if heartbeat is not None:
            beating.append(heartbeat)
            # The dead man's switch, one a process: alerting that needs no queue, for when
            # the scheduler's jobs cannot come through it (docs/SCALING.md).
            watching.append(
                watchdog.Watchdog(
                    runtime,
                    host_name(settings.host_id),
                    consumers.heartbeat_interval(settings.heartbeat_timeout),
                ).start()
            )

    def stopped() -> None:
        # The first worker thread to stop ends the heartbeat and removes the entry; a
        # SIGKILLed consumer leaves it, and its silence is what the reaper reads.
        while watching:
            watching.pop().stop()
        while beating:
            heartbeat = beating.pop()
            heartbeat.stop()
            consumers.deregister(runtime.ledger, heartbeat.registration)

    def postmaster_started() -> None:
        started(runtime.settings.postmaster_queue)
        recovery = postmaster.recover(runtime.ledger, runtime.settings)
        removed = runtime.store.clean_temp()
        try:
            due = ring_if_due(runtime)
        except QueueError as exc:
            # Redis down at start: the consumer stays up and waits for it; the lost ring is
            # rung again once the queue answers (due parcels without a doorbell).
            queues.health.failed(exc)
            due = None
        log.info(
            "postmaster consumer started: %d parcels taken back from dead workers, %d failed, "
            "%d temp files removed%s",
            recovery.requeued,
            recovery.failed,
            removed,
            ", delivering" if due else "",
        )

    def scheduler_started() -> None:
        started(runtime.settings.scheduler_queue)

    def evaluate_rules() -> None:
        # That it ran, not only that its slot was claimed: the watchdogs stand in for the
        # scheduler's alerting when it stops running (dead, wedged, its queue unreachable).
        control.record_run(runtime.ledger, watchdog.SCHEDULER_JOB)
        _, sent = monitor.evaluate(runtime)
        if sent:
            monitor.deliver(runtime)

    def deliver_alerts() -> None:
        monitor.deliver(runtime)

    def reap() -> None:
        postmaster.recover(runtime.ledger, runtime.settings)
        consumers.forget(runtime.ledger)
        runtime.store.clean_temp()
        ring_lost(runtime)

    bodies: dict[str, Callable[[], str | None]] = {
        "sample": lambda: sample(runtime),
        "compact_memory": lambda: compact_memory(runtime, "schedule"),
        "evaluate_rules": _quiet(evaluate_rules),
        "deliver_alerts": _quiet(deliver_alerts),
        "monitor_storage": lambda: monitor_storage(runtime),
        "reap": _quiet(reap),
    }
    runs = {name: _recorded(runtime, name, body) for name, body in bodies.items()}
    return Jobs(
        deliver=deliver,
        postmaster_started=postmaster_started,
        scheduler_started=scheduler_started,
        stopped=stopped,
        periodic=tuple(
            Periodic(job.name, once(runtime, job), runs[job.name])
            for job in periodic(runtime.settings)
        ),
    )


def once(runtime: Runtime, job: PeriodicJob) -> Callable[[dt.datetime], bool]:
    """The job's rule, and its slot claimed in the ledger: once per slot cluster-wide."""

    def due(when: dt.datetime) -> bool:
        try:
            # The slot on the ledger's clock, not this host's: schedulers on hosts whose clocks
            # disagree agree on it (one behind would claim no slot until it caught up with the
            # last one claimed by a host ahead of it).
            when = dt.datetime.fromtimestamp(runtime.ledger.now(), tz=when.tzinfo)
            if not job.rule(when):
                return False
            return control.claim_slot(runtime.ledger, job.name, job.rule.slot(when))
        except Exception as exc:  # the ledger is out of reach: skip this slot, not the loop
            log.error("periodic %s skipped: cannot claim its slot (%s)", job.name, exc)
            return False

    return due


def register(runtime: Runtime) -> None:
    """Declares every job on the runtime's queues: what a consumer process does at start."""
    from worker.queue import register as register_tasks

    register_tasks(runtime.queues, build(runtime))
