"""The alert rules of the task card, evaluated from O(1) readings of the ledger.

| rule                | warning                                        | critical            |
| cas_size            | > ALERT_THRESHOLD of quota or > 10 GB, lower   | > 90% of quota      |
| queue_depth         | > 100                                          | > 500               |
| failed_per_hour     | > 10 failed parcels in the last hour           |                     |
| compaction_failures |                                                | > 3 failed a day    |
| queue_unreachable   |                                                | > 30 s no answer    |
| consumer_down       |                                                | > 60 s not running  |
| consumer_restarts   | > 3 restarts of one consumer in 10 minutes     |                     |
| oldest_queued       | oldest queued parcel > 5 minutes, not paused   |                     |

queue_unreachable is the dead man's switch of docs/SCALING.md: the queue's storage (Redis)
not answering for SEER_QUEUE_OUTAGE_ALERT, as the consumers recorded it in the ledger. Every
consumer's watchdog (worker.monitoring.watchdog) evaluates it, not only the scheduler, whose
jobs reach it through that very queue; it follows consumer_down too (a dead scheduler cannot
say that it is dead).

consumer_down: each program (seer-postmaster, seer-scheduler) on each host where it registered
and was not stopped on purpose since (a graceful stop, as `seer supervisor stop` and the
rollback do, is a decision, not an outage) and not forgotten (FORGET_AFTER, a day after it was
last heard from), with no live process or no heartbeat for SEER_CONSUMER_DOWN_ALERT.
consumer_restarts counts the starts of one (program, host) that followed a process that did
not stop on purpose (crashes, kills), SEER_RESTART_ALERT_COUNT within SEER_RESTART_ALERT_WINDOW.
oldest_queued: the oldest queued parcel older than SEER_OLDEST_QUEUED_ALERT while the queue is
not paused (a paused queue is meant to hold its parcels).
"""

from __future__ import annotations

from dataclasses import dataclass

import humanize

from worker import wording
from worker.alerts.alerting import Reading
from worker.fleet import consumers, control
from worker.ledger import Ledger
from worker.memory import compaction
from worker.monitoring import metrics
from worker.settings import Settings

LEVELS = ("ok", "warning", "critical")
RULES = (
    "cas_size",
    "queue_depth",
    "failed_per_hour",
    "compaction_failures",
    "queue_unreachable",
    "consumer_down",
    "consumer_restarts",
    "oldest_queued",
)


@dataclass(frozen=True)
class Inputs:
    cas_bytes: int
    queue_depth: int
    failed_last_hour: int
    compaction_failures_day: int
    # The queue outage consumers recorded, if any, and how long it has lasted by then.
    queue_outage: control.QueueOutage | None = None
    queue_outage_age: float = 0.0
    # Every host's consumers, when they were read, and the queue's oldest parcel.
    fleet: tuple[consumers.HostConsumer, ...] = ()
    now: float = 0.0
    oldest_queued_age: float | None = None
    paused: bool = False


def read_inputs(
    ledger: Ledger,
    now: float | None = None,
    counts: dict[str, int] | None = None,
    settings: Settings | None = None,
) -> Inputs:
    """What the rules measure; `counts`, the ledger's counters if the caller has read them;
    `settings` say which host this is and when a heartbeat is stale (defaults otherwise)."""
    now = ledger.now() if now is None else now
    counts = metrics.counters(ledger) if counts is None else counts
    outage = control.queue_outage(ledger)
    return Inputs(
        cas_bytes=counts.get("cas_bytes", 0),
        queue_depth=counts.get("parcels_queued", 0),
        failed_last_hour=metrics.failed_since(ledger, now - 3600),
        compaction_failures_day=compaction.failures_per_day(ledger, now),
        queue_outage=outage,
        queue_outage_age=max(0.0, now - outage.since) if outage else 0.0,
        fleet=read_fleet(ledger, settings, now),
        now=now,
        oldest_queued_age=metrics.oldest_queued_age(ledger, now),
        paused=control.is_paused(ledger),
    )


def read_fleet(
    ledger: Ledger, settings: Settings | None, now: float
) -> tuple[consumers.HostConsumer, ...]:
    if settings is None:
        return consumers.fleet(ledger, now=now)
    return consumers.fleet(
        ledger, host_id=settings.host_id, timeout=settings.heartbeat_timeout, now=now
    )


def queue_outage_level(settings: Settings, outage: control.QueueOutage | None) -> str:
    """queue_unreachable's level: critical once a consumer has confirmed a recorded outage
    SEER_QUEUE_OUTAGE_ALERT after it began (shorter ones, a restart of Redis, alert nobody;
    so does a stray record that nobody confirms)."""
    if outage is None or outage.seen - outage.since < settings.queue_outage_alert:
        return "ok"
    return "critical"


def cas_lines(settings: Settings) -> tuple[int, int]:
    """The CAS warning and critical lines in bytes."""
    quota = settings.cas_max_size
    warning = min(int(quota * settings.cas_alert_threshold), settings.cas_alert_max_bytes)
    return warning, int(quota * settings.cas_critical_threshold)


def _size(n: float) -> str:
    return humanize.naturalsize(n, binary=True)


def evaluate(settings: Settings, inputs: Inputs) -> list[Reading]:
    warning, critical = cas_lines(settings)
    quota = settings.cas_max_size
    used = inputs.cas_bytes
    pct = 100.0 * used / quota if quota else 0.0
    cas_level = "critical" if used > critical else "warning" if used > warning else "ok"
    line = {"critical": critical, "warning": warning, "ok": warning}[cas_level]
    relation = ">" if cas_level != "ok" else "<="
    readings = [
        Reading(
            "cas_size",
            cas_level,
            used,
            f"CAS {_size(used)} of {_size(quota)} ({pct:.1f}%) {relation} "
            f"{'critical' if cas_level == 'critical' else 'warning'} line {_size(line)}",
        )
    ]
    depth = inputs.queue_depth
    q_level = (
        "critical"
        if depth > settings.queue_critical
        else "warning"
        if depth > settings.queue_warning
        else "ok"
    )
    readings.append(
        Reading(
            "queue_depth",
            q_level,
            depth,
            f"queue depth {depth:,} (warning > {settings.queue_warning:,}, "
            f"critical > {settings.queue_critical:,})",
        )
    )
    failed = inputs.failed_last_hour
    readings.append(
        Reading(
            "failed_per_hour",
            "warning" if failed > settings.failed_per_hour_warning else "ok",
            failed,
            f"{failed} failed parcels in the last hour "
            f"(warning > {settings.failed_per_hour_warning})",
        )
    )
    runs = inputs.compaction_failures_day
    readings.append(
        Reading(
            "compaction_failures",
            "critical" if runs > settings.compaction_failures_critical else "ok",
            runs,
            f"{runs} failed memory compactions in 24 hours "
            f"(critical > {settings.compaction_failures_critical})",
        )
    )
    readings.append(queue_outage_reading(settings, inputs.queue_outage, inputs.queue_outage_age))
    readings.append(consumer_down_reading(settings, inputs.fleet, inputs.now))
    readings.append(consumer_restarts_reading(settings, inputs.fleet, inputs.now))
    readings.append(oldest_queued_reading(settings, inputs.oldest_queued_age, inputs.paused))
    return readings


def program_of(settings: Settings, queue: str) -> str:
    """The supervisord program that runs a queue's consumer."""
    return {
        settings.postmaster_queue: "seer-postmaster",
        settings.scheduler_queue: "seer-scheduler",
    }.get(queue, f"the {queue} consumer")


def _seconds(n: float) -> str:
    """74 s, 5 min, 6 min 40 s, 2 h 05 min: exact enough to compare with the line."""
    n = int(n)
    if n < 120:
        return f"{n} s"
    if n < 7200:
        return f"{n // 60} min" + (f" {n % 60} s" if n % 60 else "")
    return f"{n // 3600} h {n % 3600 // 60:02d} min"


def _running(settings: Settings, c: consumers.HostConsumer) -> bool:
    # Judged again by these settings' timeout: a fleet read without settings (read_inputs'
    # default, a bench, a test's hand-built inputs) used SEER_HEARTBEAT_TIMEOUT's default.
    return c.running and (c.heartbeat_age or 0.0) <= settings.heartbeat_timeout


def down_consumers(
    settings: Settings, fleet: tuple[consumers.HostConsumer, ...], now: float
) -> list[tuple[consumers.HostConsumer, float]]:
    """Each expected (queue, host) with no live process, and for how long it has not been
    heard from, longest first."""
    running = {(c.queue, c.host) for c in fleet if _running(settings, c)}
    found = [
        (c, max(0.0, now - (c.last_heard if c.last_heard is not None else now)))
        for c in fleet
        if c.expected and (c.queue, c.host) not in running
    ]
    return sorted(found, key=lambda pair: (-pair[1], pair[0].host, pair[0].queue))


def consumer_down_level(
    settings: Settings, fleet: tuple[consumers.HostConsumer, ...], now: float
) -> str:
    down = down_consumers(settings, fleet, now)
    return "critical" if down and down[0][1] > settings.consumer_down_alert else "ok"


def consumer_down_reading(
    settings: Settings, fleet: tuple[consumers.HostConsumer, ...], now: float
) -> Reading:
    line = _seconds(settings.consumer_down_alert)
    down = down_consumers(settings, fleet, now)
    level = consumer_down_level(settings, fleet, now)
    if not down:
        live = [c for c in fleet if c.running]
        hosts = len({c.host for c in live})
        summary = (
            f"every expected consumer runs ({len(live)} on {hosts} host"
            f"{'' if hosts == 1 else 's'}; critical after {line} down)"
        )
        return Reading("consumer_down", "ok", 0, summary)
    parts = []
    for c, silent in down:
        how = "not running" if c.state == "GONE" else "no heartbeat"
        parts.append(f"{program_of(settings, c.queue)} on {c.host}: {how} for {_seconds(silent)}")
    summary = "; ".join(parts) + f" (critical after {line})"
    return Reading("consumer_down", level, round(down[0][1], 1), summary)


def consumer_restarts_reading(
    settings: Settings, fleet: tuple[consumers.HostConsumer, ...], now: float
) -> Reading:
    window = settings.restart_alert_window
    limit = settings.restart_alert_count
    shown = humanize.naturaldelta(window)
    counted: dict[tuple[str, str], int] = {}
    for c in fleet:
        counted[(c.queue, c.host)] = c.restarts_since(now - window)
    over = sorted(
        ((n, queue, host) for (queue, host), n in counted.items() if n > limit), reverse=True
    )
    most = max(counted.values(), default=0)
    if not over:
        return Reading(
            "consumer_restarts",
            "ok",
            most,
            f"at most {wording.counted(most, 'restart')} of a consumer in {shown} "
            f"(warning > {limit})",
        )
    summary = "; ".join(
        f"{program_of(settings, queue)} on {host}: {wording.counted(n, 'restart')} in {shown}"
        for n, queue, host in over
    )
    return Reading("consumer_restarts", "warning", most, f"{summary} (warning > {limit})")


def oldest_queued_reading(settings: Settings, age: float | None, paused: bool) -> Reading:
    line = _seconds(settings.oldest_queued_alert)
    if age is None:
        return Reading("oldest_queued", "ok", 0, f"no parcel queued (warning after {line})")
    over = age > settings.oldest_queued_alert
    if paused:
        summary = f"oldest queued parcel waiting {_seconds(age)}; the queue is paused"
        return Reading("oldest_queued", "ok", round(age, 1), summary)
    return Reading(
        "oldest_queued",
        "warning" if over else "ok",
        round(age, 1),
        f"oldest queued parcel waiting {_seconds(age)} (warning > {line})",
    )


def queue_outage_reading(
    settings: Settings, outage: control.QueueOutage | None, age: float
) -> Reading:
    line = humanize.naturaldelta(settings.queue_outage_alert)
    if outage is None:
        summary = f"the queue answers (critical after {line} without an answer)"
    else:
        reason = outage.reason.removeprefix(f"cannot reach the queue at {outage.address}: ")
        summary = (
            f"the queue at {outage.address} has not answered for {humanize.naturaldelta(age)}, "
            f"first seen by {outage.host} ({reason.rstrip('.')}; critical after {line}): parcels "
            "wait in the ledger and are delivered when it answers"
        )
    return Reading(
        "queue_unreachable", queue_outage_level(settings, outage), round(age, 1), summary
    )


def worst(levels: list[str]) -> str:
    return max(levels, key=LEVELS.index, default="ok")
