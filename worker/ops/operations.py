"""The operator's actions, once each: the `seer` CLI and the console both call these."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from worker.fleet import control as flags
from worker.ledger.errors import LedgerError
from worker.memory.compaction import Run
from worker.parcels import failures
from worker.parcels import intake as parcels
from worker.queue import QueueDamaged
from worker.runtime import Runtime

if TYPE_CHECKING:
    from worker.fleet.supervision import Supervisor


@dataclass(frozen=True)
class Rung:
    """What an action queued, and whether the worker was told (if not, the reaper tells it)."""

    ids: tuple[str, ...]
    notified: bool
    warning: str | None = None


def _ring(runtime: Runtime, ids: list[str]) -> Rung:
    try:
        runtime.ring(ids)
    except Exception as exc:
        if isinstance(exc, QueueDamaged):
            # Not a busy moment: the queue's file is damaged, and no consumer (reaper included)
            # can run on it, so no promise of "within a minute".
            return Rung(
                tuple(ids),
                False,
                f"queued in the ledger, but the queue database is damaged ({exc}): nothing is "
                "delivered until it is replaced; `seer status` says how",
            )
        # Queued in the ledger all the same: the consumer's start-up and the reaper ring later.
        return Rung(
            tuple(ids),
            False,
            f"queued, but the worker was not notified ({exc}); the reaper rings for them "
            "within seconds of the queue answering",
        )
    return Rung(tuple(ids), True)


def prepare_cas(runtime: Runtime) -> str | None:
    """Makes the CAS's store ready (an object store's bucket created if missing); a line
    saying where the blobs go, or None when there is nothing to make (files)."""
    return runtime.store.prepare()


def send_parcels(runtime: Runtime, batch: list[dict]) -> Rung:
    """Queues validated parcels (all or none) and rings the postmaster queue."""
    return _ring(runtime, parcels.queue_parcels(runtime.ledger, batch))


def send_test_parcel(runtime: Runtime, now: float | None = None) -> Rung:
    parcel = parcels.validate(
        parcels.test_parcel(runtime.settings.test_agent, now), runtime.settings.max_parcel_size
    )
    return send_parcels(runtime, [parcel])


def pause(runtime: Runtime, by: str, now: float | None = None) -> bool:
    return flags.pause(runtime.ledger, by=by, now=now)


def resume(runtime: Runtime) -> bool:
    return flags.resume(runtime.ledger)


def retry_failed(runtime: Runtime, parcel_id: str) -> Rung | None:
    """None if there is no such failed parcel."""
    if not failures.retry(runtime.ledger, parcel_id):
        return None
    return _ring(runtime, [parcel_id])


def retry_all_failed(runtime: Runtime) -> Rung:
    ids = failures.retry_all(runtime.ledger)
    return _ring(runtime, ids) if ids else Rung((), True)


def purge_failed(
    runtime: Runtime, older_than: float | None = None, now: float | None = None
) -> int:
    return failures.purge(runtime.ledger, older_than, now)


def retry_failed_matching(
    runtime: Runtime, failure_filter: failures.FailureFilter, now: float | None = None
) -> Rung:
    """Retries, as `retry_failed` does, the failed parcels the filter selects when it runs
    (in batches: `failures.BATCH`); `len(rung.ids)` is how many, which may differ from a
    count shown before (parcels failing or retried meanwhile)."""
    ids = failures.retry_matching(runtime.ledger, failure_filter, now)
    return _ring(runtime, ids) if ids else Rung((), True)


def purge_failed_matching(
    runtime: Runtime, failure_filter: failures.FailureFilter, now: float | None = None
) -> int:
    """Deletes the failed parcels the filter selects when it runs, as `purge_failed` does
    (the parcels' rows only: a failed parcel has no artifact rows, and the blobs a failed
    try stored are gc's, referenced by no artifact); returns how many."""
    return failures.purge_matching(runtime.ledger, failure_filter, now)


def compact_memory(
    runtime: Runtime, trigger: str, agent: str | None = None, dry_run: bool = False
) -> Run:
    """Runs a compaction now (recorded, with its trigger) and returns the run; a failed one
    says so in its status and error."""
    return runtime.compactor().run(trigger, agent=agent, dry_run=dry_run)


@dataclass(frozen=True)
class ChannelTest:
    """What one channel did with this test alert (not with an earlier one)."""

    channel: str
    status: str  # sent, pending (retries later), failed (given up)
    error: str | None
    next_attempt_at: float
    checked_at: float  # the ledger's time when the report was made

    def describe(self, now: float | None = None) -> str:
        if self.status == "sent":
            return f"{self.channel} sent"
        now = self.checked_at if now is None else now
        reason = f": {self.error}" if self.error else ""
        if self.status == "failed":
            return f"{self.channel} failed{reason}"
        wait = max(0, round(self.next_attempt_at - now))
        return f"{self.channel} {self.status}{reason} (next try in {wait}s)"


@dataclass(frozen=True)
class TestAlertReport:
    channels: tuple[ChannelTest, ...]

    @property
    def ok(self) -> bool:
        """Every channel took it."""
        return all(c.status == "sent" for c in self.channels)

    def __str__(self) -> str:
        return "test alert: " + ", ".join(c.describe() for c in self.channels)


def send_test_alert(
    runtime: Runtime, channel: str | None = None, now: float | None = None
) -> TestAlertReport:
    """Queues a test alert and sends it now through every channel (or one), ahead of older
    alerts in backoff; reports what each channel did with it. LookupError: not configured."""
    from worker.alerts import outbox
    from worker.alerts.channels import channels_from_settings
    from worker.monitoring import monitor

    ids = monitor.queue_test_alert(runtime, channel, now=now)
    channels = channels_from_settings(runtime.settings, runtime.layout)
    rows = outbox.deliver_rows(runtime.ledger, channels, ids, now=now)
    checked = runtime.ledger.now() if now is None else now
    return TestAlertReport(
        tuple(
            ChannelTest(d.channel, d.status, d.last_error, d.next_attempt_at, checked) for d in rows
        )
    )


def _local_supervisor(runtime: Runtime):
    from worker.fleet import supervision

    return supervision, supervision.Supervisor(supervision.socket_path(runtime.layout))


def control(sup: Supervisor, action: str, program: str | None) -> list[str]:
    """start, stop (gracefully) or restart one of Seer's programs (None: all of them) of a
    supervisord; one line a program says how it went."""
    from worker.fleet import supervision

    return [supervision.control(sup, info, action) for info in supervision.resolve(sup, program)]


def control_program(runtime: Runtime, action: str, program: str) -> str:
    """start, stop (gracefully) or restart one program of the local supervisord."""
    _, sup = _local_supervisor(runtime)
    (said,) = control(sup, action, program)
    return said


def pause_and_stop(runtime: Runtime, by: str) -> str:
    """The task card's first rollback steps: pause the queue, stop the parcel worker."""
    paused = pause(runtime, by=by)
    stopped = control_program(runtime, "stop", "seer-postmaster")
    return ("queue paused" if paused else "queue was already paused") + f"; {stopped}"


def running_consumers(ledger, layout) -> list[str]:
    """The consumers that run now: under supervisord, or anywhere the ledger knows of (a
    `seer worker` in a terminal). A migration rollback under them would pull tables away
    from running code, so it is refused while this is not empty (CLI and console alike)."""
    from supervisor.states import ProcessStates

    from worker.fleet import consumers, supervision

    running: set[str] = set()
    try:
        programs = supervision.Supervisor(supervision.socket_path(layout), timeout=2.0).programs()
    except supervision.SupervisorError:
        programs = []
    running.update(
        p.name
        for p in programs
        if p.name in supervision.PROGRAMS and (p.started or p.code == ProcessStates.STOPPING)
    )
    try:
        registered = consumers.consumers(ledger)
    except LedgerError:
        registered = []  # a ledger rolled back past migration 2 has no control table
    # On this host by pid (a stopped process may wake up under the new schema); on another
    # host, by its heartbeat.
    running.update(
        f"seer-{c.queue}" for c in registered if c.alive or (c.alive is None and not c.stale)
    )
    return sorted(running)


NOTHING_TO_ROLL_BACK = "nothing to roll back"


def rollback_preview(
    ledger, layout, steps: int = 1, force: bool = False, to_zero: bool = False
) -> str:
    """What `steps` migrations' rollback would drop, after every check that refuses it.

    ValueError: a step count that is a typo (more than exist, or down to nothing without
    `to_zero`); RuntimeError: refused as things stand (a consumer runs, no newer backup).
    """
    from worker.ledger import migrations
    from worker.ops import backup

    version = migrations.current_version(ledger)
    if version == 0:
        return NOTHING_TO_ROLL_BACK
    if steps > version:
        raise ValueError(
            f"--rollback {steps}: only {version} migration{'s' if version != 1 else ''} "
            "applied; nothing was rolled back"
        )
    if steps == version and version > 0 and not to_zero:
        raise ValueError(
            f"--rollback {steps} undoes every migration and drops every table: pass --to-zero "
            "as well if that is meant"
        )
    running = running_consumers(ledger, layout)
    if running:
        raise RuntimeError(
            f"refusing to roll back while {', '.join(running)} "
            f"{'runs' if len(running) == 1 else 'run'}: stop the workers first "
            "(`seer supervisor stop`, or `seer down`)"
        )
    undo = migrations.to_undo(ledger, steps)
    if not undo:
        return NOTHING_TO_ROLL_BACK
    applied = [s for s in migrations.status(ledger) if s.applied_at]
    last = max(s.applied_at for s in applied if s.applied_at is not None)
    newest = backup.latest_backup(layout)
    if not force and (newest is None or newest.created_at < last):
        raise RuntimeError(
            "no backup newer than the last migration: take one first (`seer backup DEST`), "
            "or roll back with --force"
        )
    lines = [
        f"undo {m.version}: {m.name}; drops " + ", ".join(migrations.rollback_effects(ledger, m))
        for m in undo
    ]
    after = undo[-1].version - 1
    lines.append(f"schema version {migrations.current_version(ledger)} -> {after}")
    return "\n".join(lines)


def migration_rollback(
    ledger, layout, steps: int = 1, force: bool = False, to_zero: bool = False
) -> str:
    """Rolls back `steps` migrations, refusing while a consumer runs or without a backup
    newer than the last migration."""
    from worker.ledger import migrations

    if rollback_preview(ledger, layout, steps, force, to_zero) == NOTHING_TO_ROLL_BACK:
        return NOTHING_TO_ROLL_BACK
    undone = migrations.rollback(ledger, steps)
    lines = [f"rolled back {m.version}: {m.name}" for m in undone] or ["nothing to roll back"]
    lines.append(f"schema version now {migrations.current_version(ledger)}")
    return "\n".join(lines)


class Orphan(NamedTuple):
    """A consumer stopped because supervisord does not run it."""

    queue: str
    pid: int


def stop_orphan_consumers(runtime: Runtime, keep: set[int], timeout: float = 30.0) -> list[Orphan]:
    """Stops the consumers of this storage root on this host whose pid is not in `keep` (the
    pids supervisord runs): an orphan left when supervisord was killed would run beside the
    new ones. SIGINT (finish the running batch), then SIGKILL after `timeout`; the reaper
    gives back whatever it held. Returns each one stopped."""
    import signal

    from worker.fleet import consumers
    from worker.identity import host_name, is_alive

    host_id = runtime.settings.host_id
    host = host_name(host_id)
    orphans = [
        c
        for c in consumers.consumers(runtime.ledger, host_id=host_id)
        if c.host == host and c.alive and c.owner and c.pid not in keep and c.pid != os.getpid()
    ]
    for c in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    for c in orphans:
        owner = c.owner
        if owner is None:
            continue
        while time.monotonic() < deadline and is_alive(owner, host_id) is True:
            time.sleep(0.05)
        if is_alive(owner, host_id) is True:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.pid, signal.SIGKILL)
    return [Orphan(c.queue, c.pid) for c in orphans]
