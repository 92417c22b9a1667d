"""Thin Huey tasks over the domain services: deliver parcels, and the reaper.

Each delivery task carries only a parcel id. It delivers the oldest waiting parcels (its own
among them, or already delivered by an earlier batch), so the ledger, not Huey's queue, decides
what is delivered; a task lost with a killed consumer loses no parcel.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from huey.storage import SqliteStorage

from worker.fleet import consumers, control
from worker.monitoring import metrics, monitor
from worker.parcels import postmaster
from worker.schedules import Cron, Every

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger("seer.tasks")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    rule: Every | Cron
    description: str


@dataclass(frozen=True)
class Tasks:
    deliver: Any
    reap: Any
    sample: Any
    compact_memory: Any
    runtime: Runtime
    periodic: tuple[PeriodicJob, ...] = ()

    def ring(self, parcel_ids: list[str], delay: float | None = None) -> None:
        """One delivery task per batch of parcels: each delivers up to POSTMASTER_BATCH_SIZE
        of the oldest waiting parcels, so one task per parcel would mostly find nothing left."""
        huey = self.runtime.queues.postmaster
        step = self.runtime.settings.batch_size
        heads = parcel_ids[::step]
        if delay:
            for parcel_id in heads:
                self.deliver.schedule((parcel_id,), delay=delay)
            return
        storage = huey.storage
        if not isinstance(storage, SqliteStorage):
            for parcel_id in heads:
                self.deliver(parcel_id)
            return
        # One transaction for the lot: a commit per task would dominate sending a batch.
        with storage.db(commit=True) as cursor:
            for parcel_id in heads:
                message = huey.serialize_task(self.deliver.s(parcel_id))
                cursor.execute(
                    "INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)",
                    (storage.name, storage.to_blob(message), 0),
                )

    def ring_if_due(self, now: float | None = None) -> str | None:
        due = postmaster.due_parcel(self.runtime.ledger, now)
        if due:
            self.ring([due])
        return due


def register(runtime: Runtime) -> Tasks:
    queues = runtime.queues
    pm = queues.postmaster
    backoff_until = [0.0]

    @pm.task(name="deliver")
    def deliver(parcel_id: str) -> None:
        now = time.time()
        if now < backoff_until[0]:
            return  # a doorbell is already scheduled for the end of the backoff
        result = runtime.postmaster().deliver_waiting()
        if result.retry_at is not None:
            if result.disk_full:
                backoff_until[0] = result.retry_at
            tasks.ring([parcel_id], delay=max(0.0, result.retry_at - time.time()))
        if result.claimed >= runtime.settings.batch_size and pm.pending_count() == 0:
            # A full batch and no task left: more may wait whose task was lost with a killed
            # consumer, so keep going rather than wait for the reaper.
            tasks.ring_if_due()

    @pm.on_startup(name="recover")
    def recover_on_start() -> None:
        consumers.register(runtime.ledger, pm.name)
        recovery = postmaster.recover(runtime.ledger, runtime.settings)
        removed = runtime.store.clean_temp()
        due = tasks.ring_if_due()
        log.info(
            "postmaster consumer started: %d parcels taken back from dead workers, %d failed, "
            "%d temp files removed%s",
            recovery.requeued,
            recovery.failed,
            removed,
            ", delivering" if due else "",
        )

    @queues.scheduler.on_startup(name="register")
    def register_scheduler() -> None:
        consumers.register(runtime.ledger, queues.scheduler.name)

    periodic = (
        PeriodicJob("sample", Every(runtime.settings.sample_interval), "record a metric sample"),
        PeriodicJob(
            "compact_memory",
            Cron(runtime.settings.compaction_cron),
            "remove expired ephemeral memory keys (ORCHESTRATION_COMPACTION_CRON)",
        ),
        PeriodicJob(
            "reap", Every(60), "take back parcels of dead workers; ring for lost deliveries"
        ),
        PeriodicJob("evaluate_rules", Every(60), "evaluate the alert rules; queue notifications"),
        PeriodicJob("deliver_alerts", Every(5), "send queued notifications, with retries"),
        PeriodicJob(
            "monitor_storage",
            Cron(runtime.settings.monitor_cron),
            "daily CAS storage report to logs/orchestration.log (ORCHESTRATION_MONITOR_CRON)",
        ),
    )

    def once(job: PeriodicJob) -> Callable[[dt.datetime], bool]:
        """The job's rule, and its slot claimed in the ledger: once per slot cluster-wide."""

        def due(when: dt.datetime) -> bool:
            if not job.rule(when):
                return False
            try:
                return control.claim_slot(runtime.ledger, job.name, job.rule.slot(when))
            except Exception as exc:  # the ledger is out of reach: skip this slot, not the loop
                log.error("periodic %s skipped: cannot claim its slot (%s)", job.name, exc)
                return False

        return due

    rule = {job.name: once(job) for job in periodic}

    @queues.scheduler.periodic_task(rule["sample"], name="sample")
    def sample() -> None:
        settings = runtime.settings
        taken = metrics.measure(runtime.ledger, settings.postmaster_queue, settings.scheduler_queue)
        metrics.record(runtime.ledger, taken)
        metrics.downsample(
            runtime.ledger,
            metrics.Retention(
                settings.keep_raw_samples, settings.keep_minute_samples, settings.keep_hour_samples
            ),
        )

    @queues.scheduler.periodic_task(rule["compact_memory"], name="compact_memory")
    def compact_memory() -> None:
        # Selects by expiry time, so a run missed while the consumer was down costs only delay.
        runtime.compactor().run("schedule")

    @queues.scheduler.periodic_task(rule["evaluate_rules"], name="evaluate_rules")
    def evaluate_rules() -> None:
        _, sent = monitor.evaluate(runtime)
        if sent:
            monitor.deliver(runtime)

    @queues.scheduler.periodic_task(rule["deliver_alerts"], name="deliver_alerts")
    def deliver_alerts() -> None:
        monitor.deliver(runtime)

    @queues.scheduler.periodic_task(rule["monitor_storage"], name="monitor_storage")
    def monitor_storage() -> None:
        report = monitor.storage_report(runtime)
        try:
            monitor.log_storage_report(runtime, report)
        except OSError as exc:
            # A refused link or a full disk: said in one line; the alert rule still runs.
            log.error("storage report not logged: %s", exc)
        _, sent = monitor.evaluate(runtime, only=("cas_size",))
        if sent:
            monitor.deliver(runtime)

    @queues.scheduler.periodic_task(rule["reap"], name="reap")
    def reap() -> None:
        postmaster.recover(runtime.ledger, runtime.settings)
        runtime.store.clean_temp()
        # A ring lost between the ledger and the queue (a crash in `seer parcel send`) is
        # found here: due parcels, nothing waiting in the queue, nothing paused.
        if (
            not control.is_paused(runtime.ledger)
            and pm.pending_count() == 0
            and postmaster.due_parcel(runtime.ledger)
        ):
            tasks.ring_if_due()

    tasks = Tasks(deliver, reap, sample, compact_memory, runtime, periodic)
    return tasks
