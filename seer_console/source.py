"""Everything the console shows, read in one go into an immutable snapshot (off the UI thread).

The source is used by one thread worker at a time (polls never overlap), so it may keep the
psutil handles it needs to measure CPU between two polls.
"""

from __future__ import annotations

import datetime
import socket
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import psutil

from worker.doorbells import QueueProbe, backend_of
from worker.settings import Settings, load_settings

if TYPE_CHECKING:
    # Imported when the first snapshot is read, in the worker thread: the alert channels pull
    # in requests and smtplib, which would add a quarter of a second before the first frame.
    from worker.alerts import alerting, outbox
    from worker.fleet import consumers, supervision
    from worker.memory import compaction
    from worker.monitoring import status
    from worker.monitoring.rules import Reading
    from worker.runtime import Runtime

HISTORY_SECONDS = 15 * 60
# A database's queue is counted at most this often (a count of queue.db grows with it: 200,000
# doorbells took 12-30 ms of a poll); Redis's every poll (LLEN is O(1)).
DEPTH_SECONDS = 5.0
# ...and at most this share of the time: a count that took 20 ms waits 20 s for the next.
DEPTH_SHARE = 0.001
FAILURE_ROWS = 200
COMPACTION_ROWS = 10
DELIVERY_ROWS = 10


@dataclass(frozen=True)
class FailureRow:
    id: str
    agent: str
    error: str
    tries: int
    failed_at: float


@dataclass(frozen=True)
class WorkerRow:
    """One consumer in the Worker pane: a program of this host's supervisord (its keys act on
    it), or a consumer of the fleet that it does not run, another host's above all (shown
    only: `host` names it, `local` is False)."""

    program: str
    queue: str
    state: str
    pid: int | None
    uptime: float | None
    cpu_percent: float | None
    rss: int | None
    restarts: int | None  # None: unknown (the ledger cannot be read)
    last_exit: supervision.LastExit | None = None
    heartbeat_age: float | None = None  # its process's, on the ledger's clock; None: unknown
    stale: bool = False  # silent past SEER_HEARTBEAT_TIMEOUT: taken for dead
    # Restarts not on purpose within SEER_RESTART_ALERT_WINDOW (consumer_restarts counts them).
    restarts_recent: int | None = None
    host: str = ""  # empty: this host
    local: bool = True  # run by this host's supervisord: the pane's keys act on it


@dataclass(frozen=True)
class ConsoleSnapshot:
    taken_at: float
    host: str
    storage_root: str
    status: status.Snapshot
    depth_history: tuple[int, ...]
    cas_history: tuple[int, ...]
    growth_per_day: float | None
    warning_bytes: int
    critical_bytes: int
    failures: tuple[FailureRow, ...]
    workers: tuple[WorkerRow, ...]
    # The fleet's consumers that this host's supervisord does not run: other hosts' (and any
    # started here by hand), this host's first; view-only.
    hosts: tuple[WorkerRow, ...] = ()
    restart_window: float = 600.0  # SEER_RESTART_ALERT_WINDOW, for the pane's label
    queue_warning: int = 100
    queue_critical: int = 500
    alerts: tuple[alerting.RuleState, ...] = ()
    deliveries: tuple[outbox.Delivery, ...] = ()
    channels: tuple[str, ...] = ()
    compactions: tuple[compaction.Run, ...] = ()
    compaction_failures_24h: int = 0
    next_compaction: float | None = None
    tracked: dict[str, str] = field(default_factory=dict)  # parcel id -> state


@dataclass(frozen=True)
class PartialSnapshot:
    """What can still be shown when the ledger cannot be read: supervisord's view."""

    reason: str  # shown instead of "data unavailable"
    workers: tuple[WorkerRow, ...]
    supervisor: str


class SchemaBehind(RuntimeError):
    """The ledger's schema is not the code's: only the Worker pane has data (supervisord's)."""

    def __init__(self, message: str, partial: PartialSnapshot) -> None:
        super().__init__(message)
        self.partial = partial


# Settings that decide which files and queues the runtime opens: a change reopens it. Any
# other change (a quota, a threshold, a channel) only replaces the settings it carries.
_WIRING = (
    "storage_path",
    "database_url",
    "queue_connection",
    "postmaster_queue",
    "scheduler_queue",
    "sqlite_synchronous",
    "dir_mode",
    "file_mode",
)


def _active_alerts(
    readings: tuple[Reading, ...], stored: dict[str, alerting.RuleState], now: float
) -> tuple[alerting.RuleState, ...]:
    """The rules at warning or critical in this snapshot's own evaluation (the one the banner
    shows), since when the scheduler recorded them at that level, worst first."""
    from worker.alerts import alerting

    found = []
    for reading in readings:
        if reading.level == "ok":
            continue
        before = stored.get(reading.rule)
        kept = before if before is not None and before.level == reading.level else None
        found.append(
            alerting.RuleState(
                reading.rule,
                reading.level,
                reading.value,
                reading.summary,
                kept.since if kept else now,
                kept.notified_at if kept else None,
                now,
            )
        )
    return tuple(sorted(found, key=lambda s: (s.level != "critical", s.since)))


def _next_run(expression: str, now: float) -> float | None:
    from worker.schedules import Cron

    found = Cron(expression).next_after(datetime.datetime.fromtimestamp(now))
    return found.timestamp() if found else None


class SnapshotSource:
    """Opens the runtime lazily (a missing root is reported, then retried on the next poll)."""

    def __init__(self, settings: Settings | None = None, *, reload: bool = True) -> None:
        self._settings = settings
        self._reload = reload
        self._runtime: Runtime | None = None
        self._processes: dict[int, psutil.Process] = {}
        self._failures: tuple[FailureRow, ...] = ()
        self._failures_version: tuple[int, int] | None = None
        self._channels: tuple[object, tuple[str, ...]] | None = None
        # The last count of the doorbells: (queue address, when by time.monotonic(), how
        # long it took, the depths).
        self._depths: tuple[str, float, float, dict[str, int]] | None = None
        self.host = socket.gethostname()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from worker.runtime import Runtime

            # The schema is checked on every read instead: a rollback may happen while the
            # console runs, and supervisord's view (the Worker pane) is shown whatever it is.
            settings = self._settings or load_settings()
            self._runtime = Runtime.open(settings, check_schema=False)
        return self._runtime

    def _with_current_settings(self) -> Runtime:
        """The runtime, carrying the settings the workers use now: the environment over the
        .env file (or SEER_ENV_FILE), read again on every snapshot, so that an edited quota
        shows without restarting the console. A bad value fails this read, not the console."""
        if self._reload:
            self._settings = load_settings()
        runtime = self.runtime
        if self._settings is None or runtime.settings == self._settings:
            return runtime
        if all(getattr(runtime.settings, f) == getattr(self._settings, f) for f in _WIRING):
            self._runtime = replace(runtime, settings=self._settings)
        else:
            # Another root or database: opened afresh. The old one is not closed under an
            # action that may still be using it; it goes with its last reference.
            self._runtime = None
        return self.runtime

    def storage_root(self) -> str:
        settings = self._settings or load_settings()
        return str(settings.storage_root)

    def read(self, now: float | None = None, tracked: tuple[str, ...] = ()) -> ConsoleSnapshot:
        from worker.alerts import alerting, outbox
        from worker.ledger import migrations
        from worker.monitoring import metrics, rules, status
        from worker.parcels import failures
        from worker.parcels import intake as parcels

        runtime = self._with_current_settings()
        ledger = runtime.ledger
        # The ledger's clock: the ages on screen are of the ledger's times (a host whose clock
        # is off still shows them right).
        now = ledger.now() if now is None else now
        # supervisord and the queue's storage first, outside the ledger's read transaction: a
        # slow answer (a Redis across a partition waits for its connect timeout) must not hold
        # the snapshot (and the WAL behind it) open.
        view = status.supervisor_view(runtime.layout)
        counting = self._count_depths(runtime)
        started = time.monotonic()
        probe = status.queue_probe(runtime, depths=counting)
        probe = self._with_depths(runtime, probe, time.monotonic() - started)
        # One read transaction: every figure on screen is of the same moment, and a delivery
        # committing halfway through cannot show as both queued and delivered.
        with ledger.read():
            try:
                migrations.check_schema(ledger)
            except migrations.SchemaMismatch as exc:
                found, supervisor = status.consumer_statuses(runtime, with_ledger=False, view=view)
                behind = migrations.current_version(ledger) < migrations.LATEST
                reason = "schema behind: run seer migrate" if behind else "schema ahead of the code"
                partial = PartialSnapshot(reason, self._workers(runtime, found, now), supervisor)
                raise SchemaBehind(f"{reason} ({exc})", partial) from None
            counts = metrics.counters(ledger)
            inputs = rules.read_inputs(ledger, now, counts=counts, settings=runtime.settings)
            snap = status.snapshot(
                runtime, now=now, view=view, counts=counts, inputs=inputs, probe=probe
            )
            samples = metrics.history(ledger, now - HISTORY_SECONDS)
            # The failure list only changes when a parcel fails, is retried or purged: both
            # counters tell, so an unchanged list is neither read again nor compared again.
            version = (snap.parcels["failed"], counts.get("failed_total", 0))
            if version != self._failures_version:
                self._failures = tuple(
                    FailureRow(f.id, f.to_agent_id, f.error or "", f.attempts, f.failed_at)
                    for f in failures.list_failed(ledger, FAILURE_ROWS)
                )
                self._failures_version = version
            growth = metrics.growth_per_day(ledger, now)
            alerts = _active_alerts(snap.readings, alerting.states(ledger), now)
            deliveries = tuple(outbox.recent(ledger, DELIVERY_ROWS))
            compactions = tuple(runtime.compactor().recent(COMPACTION_ROWS))
            states = parcels.states_of(ledger, tracked)
        warning, critical = rules.cas_lines(runtime.settings)
        workers = self._workers(runtime, snap.consumers, now, snap.hosts)
        return ConsoleSnapshot(
            taken_at=now,
            host=self.host,
            storage_root=snap.storage_root,
            status=snap,
            depth_history=tuple(s.queue_depth for s in samples),
            cas_history=tuple(s.cas_bytes for s in samples),
            growth_per_day=growth,
            warning_bytes=warning,
            critical_bytes=critical,
            failures=self._failures,
            workers=workers,
            hosts=host_rows(runtime.settings, snap.hosts, workers, now),
            restart_window=runtime.settings.restart_alert_window,
            queue_warning=runtime.settings.queue_warning,
            queue_critical=runtime.settings.queue_critical,
            alerts=alerts,
            deliveries=deliveries,
            channels=self._channel_names(runtime),
            compactions=compactions,
            compaction_failures_24h=inputs.compaction_failures_day,
            next_compaction=_next_run(runtime.settings.compaction_cron, now),
            tracked=states,
        )

    def _count_depths(self, runtime: Runtime) -> bool:
        """Whether this poll counts the doorbells: every poll on Redis, where LLEN is O(1);
        at most every DEPTH_SECONDS on a database, where a count grows with the queue (the
        console polls every second; the doorbells are shown beside the ledger's depth, which
        is the record, so a count a few seconds old says as much), and less often when the
        count is slow (DEPTH_SHARE): a console left open on a deep queue costs next to nothing."""
        if backend_of(runtime.settings) == "redis" or self._depths is None:
            return True
        address, counted_at, took, _ = self._depths
        wait = max(DEPTH_SECONDS, took / DEPTH_SHARE)
        fresh = time.monotonic() - counted_at < wait
        return address != runtime.settings.queue_address or not fresh

    def _with_depths(self, runtime: Runtime, probe: QueueProbe, took: float) -> QueueProbe:
        """The probe with the doorbells of the last count, when this poll did not count."""
        if not probe.reachable:
            self._depths = None  # counted again as soon as it answers
            return probe
        address = runtime.settings.queue_address
        if probe.depths:
            self._depths = (address, time.monotonic(), took, dict(probe.depths))
            return probe
        if self._depths is None or self._depths[0] != address:
            return probe
        return replace(probe, depths=dict(self._depths[3]))

    def _channel_names(self, runtime: Runtime) -> tuple[str, ...]:
        """The configured channels, built again only when the settings change."""
        from worker.alerts.channels import channels_from_settings

        key = (runtime.settings, runtime.layout)
        if self._channels is None or self._channels[0] != key:
            self._channels = (key, tuple(channels_from_settings(*key)))
        return self._channels[1]

    def _workers(
        self,
        runtime: Runtime,
        found: tuple[status.ConsumerStatus, ...],
        now: float,
        fleet: tuple[consumers.HostConsumer, ...] = (),
    ) -> tuple[WorkerRow, ...]:
        since = now - runtime.settings.restart_alert_window
        recent = {c.queue: c.restarts_since(since) for c in fleet if c.local}
        rows = []
        for program, queue_status in zip(("seer-postmaster", "seer-scheduler"), found, strict=True):
            pid = queue_status.supervisor_pid or (
                queue_status.pids[0] if queue_status.pids else None
            )
            cpu = rss = uptime = None
            if pid:
                try:
                    process = self._processes.get(pid) or psutil.Process(pid)
                    first = pid not in self._processes
                    self._processes[pid] = process
                    with process.oneshot():
                        cpu = None if first else process.cpu_percent(None)
                        if first:
                            process.cpu_percent(None)
                        rss = process.memory_info().rss
                        # The process's start is on this host's clock, not the ledger's.
                        uptime = max(0.0, time.time() - process.create_time())
                except psutil.Error:
                    pid = None
            state = queue_status.supervisor_state or (
                "RUNNING" if queue_status.alive else "NOT RUNNING"
            )
            beat = next(
                (p for p in queue_status.processes if p.local and p.pid == pid and pid), None
            )
            rows.append(
                WorkerRow(
                    program,
                    queue_status.queue,
                    state,
                    pid,
                    uptime,
                    cpu,
                    rss,
                    queue_status.restarts,
                    queue_status.last_exit,
                    beat.heartbeat_age if beat else None,
                    beat.stale if beat else False,
                    recent.get(queue_status.queue),
                )
            )
        return tuple(rows)


def host_rows(
    settings: Settings,
    fleet: tuple[consumers.HostConsumer, ...],
    workers: tuple[WorkerRow, ...],
    now: float,
) -> tuple[WorkerRow, ...]:
    """The fleet's consumers beside this host's supervisord programs, as Worker pane rows:
    every other host's, and this host's processes that its supervisord does not run (started
    by hand). This host's programs that do not run are its supervisord rows already."""
    from worker.monitoring.rules import program_of

    shown = {(w.queue, w.pid) for w in workers if w.pid}
    supervised = {w.queue for w in workers}
    since = now - settings.restart_alert_window
    rows = []
    for c in fleet:
        if c.local and ((c.queue, c.pid) in shown or (c.queue in supervised and not c.running)):
            continue
        rows.append(
            WorkerRow(
                program_of(settings, c.queue),
                c.queue,
                c.state,
                c.pid,
                None,
                c.cpu_percent,
                c.rss,
                c.restarts,
                heartbeat_age=c.heartbeat_age,
                stale=c.state == "STALE",
                restarts_recent=c.restarts_since(since),
                host=c.host,
                local=False,
            )
        )
    return tuple(rows)
