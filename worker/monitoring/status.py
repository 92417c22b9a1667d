"""One read of everything `seer status` (and later the console) shows, as a frozen snapshot,
and the health it adds up to. Rendering it is the caller's (the CLI, the console)."""

from __future__ import annotations

import enum
import os
from dataclasses import asdict, dataclass

from worker.alerts.alerting import Reading
from worker.doorbells import QueueProbe, backend_of
from worker.fleet import consumers, control, supervision
from worker.fleet.consumers import HostConsumer
from worker.identity import host_name
from worker.layout import Layout
from worker.monitoring import metrics, rules
from worker.monitoring.wiring import WiredWithQueue


class Health(enum.IntEnum):
    """The exit status of `seer status` and `seer monitor-storage`: the monitoring plugins'
    convention (Nagios, Icinga, Sensu), so a check runs the command as it is."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @classmethod
    def of(cls, level: str) -> Health:
        """The status for a rule level ("ok", "warning", "critical"); anything else is
        UNKNOWN."""
        return cls.__members__.get(level.upper(), cls.UNKNOWN)


@dataclass(frozen=True)
class QueueStatus:
    name: str
    depth: int
    in_flight: int
    oldest_queued_age: float | None
    paused: bool
    paused_since: float | None
    paused_by: str | None
    backoff_reason: str | None
    backoff_until: float | None


@dataclass(frozen=True)
class ConsumerProcess:
    """One registered consumer process of a queue, on any host, and its heartbeat."""

    queue: str
    host: str
    pid: int
    local: bool  # on this host (SEER_HOST_ID, else the machine's name)
    heartbeat_age: float | None  # seconds, on the ledger's clock
    stale: bool  # silent past SEER_HEARTBEAT_TIMEOUT: taken for dead, its parcels given back


@dataclass(frozen=True)
class ConsumerStatus:
    queue: str
    alive: bool
    pids: tuple[int, ...]
    supervisor_state: str | None
    restarts: int | None = 0  # None: unknown (the ledger cannot be read)
    last_exit: supervision.LastExit | None = None
    supervisor_pid: int | None = None
    # Every host's processes of the queue that are not dead by their pid: the live ones and
    # the stale ones (silent past the timeout).
    processes: tuple[ConsumerProcess, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    storage_root: str
    queue: QueueStatus
    parcels: dict[str, int]
    failed_last_hour: int
    cas_bytes: int
    cas_blobs: int
    cas_quota: int
    consumers: tuple[ConsumerStatus, ...]
    supervisor: str
    level: str
    problems: tuple[str, ...]
    rules: dict[str, str]
    # The one evaluation of the alert rules that `problems` and `rules` come from (the
    # console's banner and Alerts pane show it too), and the last minute's flow.
    readings: tuple[Reading, ...] = ()
    flow: metrics.Flow | None = None
    # The queue's storage as this read found it (backend, reachability, latency, depth of
    # both queues, persistence), and since when it has not answered, if consumers saw that.
    queue_backend: QueueProbe | None = None
    queue_unreachable_since: float | None = None
    # What an operator should know though it changes no health level (Redis persisting
    # nothing: a lost doorbell delays delivery, never loses a parcel).
    notes: tuple[str, ...] = ()
    # Every host's consumers (the rules' reading): live processes, and (queue, host)s with
    # none running, this host's first.
    hosts: tuple[HostConsumer, ...] = ()

    @property
    def exit_code(self) -> Health:
        return Health.of(self.level)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SupervisorView:
    """supervisord's programs and how each last exited, as one answer read before the ledger."""

    programs: tuple[supervision.ProgramInfo, ...]
    exits: dict[str, supervision.LastExit]
    state: str  # "running" or "not reachable"


def supervisor_view(layout: Layout) -> SupervisorView:
    sup = supervision.Supervisor(supervision.socket_path(layout), timeout=2.0)
    try:
        listed = sup.programs()
        return SupervisorView(tuple(listed), sup.last_exits(listed), "running")
    except supervision.SupervisorError:
        return SupervisorView((), {}, "not reachable")


def consumer_statuses(
    runtime: WiredWithQueue,
    *,
    with_ledger: bool = True,
    view: SupervisorView | None = None,
    now: float | None = None,
) -> tuple[tuple[ConsumerStatus, ...], str]:
    """Each queue's consumer as supervisord and the ledger see it, and supervisord's state.
    Without the ledger (a schema behind the code) only supervisord's view is given."""
    view = view or supervisor_view(runtime.layout)
    exits, sup_state = view.exits, view.state
    programs = {p.name: p for p in view.programs}
    settings = runtime.settings
    registered = (
        consumers.consumers(
            runtime.ledger,
            host_id=settings.host_id,
            timeout=settings.heartbeat_timeout,
            now=now,
        )
        if with_ledger
        else []
    )
    here = host_name(settings.host_id)
    restarts = consumers.restarts(runtime.ledger) if with_ledger else None
    found = []
    for queue_name, program in (
        (runtime.settings.postmaster_queue, "seer-postmaster"),
        (runtime.settings.scheduler_queue, "seer-scheduler"),
    ):
        live = [c for c in registered if c.queue == queue_name and consumers.is_up(c)]
        info = programs.get(program)
        found.append(
            ConsumerStatus(
                queue_name,
                bool(live) if with_ledger else bool(info and info.running),
                tuple(c.pid for c in live)
                if with_ledger
                else ((info.pid,) if info and info.pid else ()),
                info.state if info else None,
                None if restarts is None else restarts.get(queue_name, 0),
                exits.get(program),
                info.pid if info and info.pid else None,
                tuple(
                    ConsumerProcess(
                        c.queue, c.host, c.pid, c.host == here, c.heartbeat_age, c.stale
                    )
                    for c in registered
                    if c.queue == queue_name and c.alive is not False
                ),
            )
        )
    return tuple(found), sup_state


# Free space below two of the largest parcels: the next one may not fit in the ledger, the
# queue and the CAS together.
def _disk_margin(runtime: WiredWithQueue) -> int:
    return max(2 * runtime.settings.max_parcel_size, 1024**2)


def disk_problems(runtime: WiredWithQueue) -> list[str]:
    """`disk full: PATH` for each filesystem of the storage root (the root, the CAS) that has
    less free space than a couple of parcels need."""
    import humanize

    seen: set[int] = set()
    found = []
    margin = _disk_margin(runtime)
    for path in (runtime.layout.root, runtime.layout.cas):
        try:
            st = os.statvfs(path)
            device = os.stat(path).st_dev
        except OSError:
            continue
        if device in seen:
            continue
        seen.add(device)
        free = st.f_bavail * st.f_frsize
        if free < margin:
            found.append(
                f"disk full: {path} has {humanize.naturalsize(free, binary=True)} free, less "
                f"than two parcels of POSTMASTER_MAX_PARCEL_SIZE need"
            )
    return found


def queue_probe(runtime: WiredWithQueue, *, depths: bool = True) -> QueueProbe:
    """The queue's storage as one look finds it, also when it cannot even be opened (a
    damaged queue.db fails as the queues are built)."""
    try:
        return runtime.queues.probe(depths=depths)
    except Exception as exc:
        settings = runtime.settings
        return QueueProbe(backend_of(settings), settings.queue_address, False, error=str(exc))


def queue_problem(
    runtime: WiredWithQueue,
    probe: QueueProbe | None = None,
    outage: control.QueueOutage | None = None,
    now: float | None = None,
) -> str | None:
    """What is wrong with the queue's storage, if it cannot be read: a Redis or a database
    that does not answer (parcels are accepted into the ledger meanwhile and delivered when it
    is back), or a damaged queue.db (no consumer can start on it)."""
    probe = probe or queue_probe(runtime, depths=False)
    if probe.reachable:
        return None
    if probe.backend == "sqlite":
        return (
            f"queue database cannot be read ({probe.error}): the workers cannot run; stop them, "
            f"move {runtime.layout.queue_db} aside and run `seer init` (parcels are safe in the "
            "ledger)"
        )
    since = ""
    if outage is not None and now is not None:
        import humanize

        since = (
            f" since {_clock(outage.since)} ({humanize.naturaldelta(max(0.0, now - outage.since))})"
        )
    reason = (probe.error or "no answer").removeprefix(
        f"cannot reach the queue at {probe.address}: "
    )
    return (
        f"queue unreachable: {probe.address}{since} ({reason.rstrip('.')}): parcels sent "
        "meanwhile wait in the ledger and are delivered when it answers"
    )


def _clock(moment: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def snapshot(
    runtime: WiredWithQueue,
    now: float | None = None,
    *,
    view: SupervisorView | None = None,
    counts: dict[str, int] | None = None,
    inputs: rules.Inputs | None = None,
    queue_depths: bool = True,
    probe: QueueProbe | None = None,
) -> Snapshot:
    """The report, its ledger part read in one read transaction (supervisord and the queue's
    storage asked first). A caller that has read the counters or the rules' inputs in its own
    transaction (the console) passes them, so nothing is read twice; one that polls often
    leaves out `queue_depths` (a count of a database's queue grows with it). One that reads
    inside its own transaction passes the `probe` it took before it, as supervisord's `view`:
    a slow storage must not hold the transaction open."""
    now = runtime.ledger.now() if now is None else now
    ledger = runtime.ledger
    view = view or supervisor_view(runtime.layout)
    probe = probe or queue_probe(runtime, depths=queue_depths)
    with ledger.read():
        return _snapshot(runtime, now, view, counts, inputs, probe)


def _snapshot(
    runtime: WiredWithQueue,
    now: float,
    view: SupervisorView,
    counts: dict[str, int] | None,
    inputs: rules.Inputs | None,
    probe: QueueProbe,
) -> Snapshot:
    ledger = runtime.ledger
    counts = metrics.counters(ledger) if counts is None else counts
    inputs = (
        rules.read_inputs(ledger, now, counts=counts, settings=runtime.settings)
        if inputs is None
        else inputs
    )
    oldest = ledger.scalar(
        "SELECT created_at FROM parcels WHERE state = 'queued' ORDER BY seq LIMIT 1"
    )
    pause = control.pause_state(ledger)
    backoff = control.backoff_state(ledger)
    if backoff and backoff.until < now - 60:
        backoff = None
    failed_hour = inputs.failed_last_hour
    queue = QueueStatus(
        runtime.settings.postmaster_queue,
        counts.get("parcels_queued", 0),
        counts.get("parcels_in_flight", 0),
        None if oldest is None else max(0.0, now - oldest),
        pause.paused,
        pause.since,
        pause.by,
        backoff.reason if backoff else None,
        backoff.until if backoff else None,
    )
    found, sup_state = consumer_statuses(runtime, view=view, now=now)
    problems: list[str] = []
    levels: list[str] = []

    def problem(text: str, level: str) -> None:
        problems.append(text)
        levels.append(level)

    readings = rules.evaluate(runtime.settings, inputs)
    outage = None if probe.reachable else control.queue_outage(ledger)
    unreachable = queue_problem(runtime, probe, outage, now)
    for reading in readings:
        # The queue's own line (below) says what the queue_unreachable rule would, and since when.
        if reading.level != "ok" and not (unreachable and reading.rule == "queue_unreachable"):
            problem(reading.summary, reading.level)
    if queue.paused:
        problem("postmaster queue is PAUSED", "warning")
    if queue.backoff_reason:
        problem(f"postmaster is backing off: {queue.backoff_reason}", "warning")
    for text in disk_problems(runtime):
        problem(text, "critical")
    if unreachable:
        problem(unreachable, "critical")
    registered = consumers.consumers(
        ledger,
        host_id=runtime.settings.host_id,
        timeout=runtime.settings.heartbeat_timeout,
        now=now,
    )
    for text in consumers.cas_sharing_problems(registered):
        problem(text, "warning")
    for c in found:
        if not c.alive:
            # No scheduler means no monitoring and no alerts: as bad as parcels not moving.
            bad = c.queue != queue.name or queue.depth > 0
            problem(f"{c.queue} consumer not running", "critical" if bad else "warning")
    level = rules.worst(levels)
    return Snapshot(
        taken_at=now,
        storage_root=str(runtime.layout.root),
        queue=queue,
        parcels={
            s: counts.get(f"parcels_{s}", 0) for s in ("queued", "in_flight", "delivered", "failed")
        },
        failed_last_hour=failed_hour,
        cas_bytes=counts.get("cas_bytes", 0),
        cas_blobs=counts.get("cas_blobs", 0),
        cas_quota=runtime.settings.cas_max_size,
        consumers=found,
        supervisor=sup_state,
        level=level,
        problems=tuple(problems),
        rules={r.rule: r.level for r in readings},
        readings=tuple(readings),
        flow=metrics.flow(ledger, now),
        queue_backend=probe,
        queue_unreachable_since=outage.since if outage else None,
        notes=probe.warnings,
        hosts=inputs.fleet,
    )
