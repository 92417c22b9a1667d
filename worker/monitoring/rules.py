"""The alert rules of the task card, evaluated from O(1) readings of the ledger.

| rule                | warning                                        | critical          |
| cas_size            | > ALERT_THRESHOLD of quota or > 10 GB, lower   | > 90% of quota    |
| queue_depth         | > 100                                          | > 500             |
| failed_per_hour     | > 10 failed parcels in the last hour           |                   |
| compaction_failures |                                                | > 3 failed a day  |
| queue_unreachable   |                                                | > 30 s no answer  |

queue_unreachable is the dead man's switch of docs/SCALING.md: the queue's storage (Redis)
not answering for SEER_QUEUE_OUTAGE_ALERT, as the consumers recorded it in the ledger. Every
consumer's watchdog (worker.monitoring.watchdog) evaluates it, not only the scheduler, whose
jobs reach it through that very queue.
"""

from __future__ import annotations

from dataclasses import dataclass

import humanize

from worker.alerts.alerting import Reading
from worker.fleet import control
from worker.ledger import Ledger
from worker.memory import compaction
from worker.monitoring import metrics
from worker.settings import Settings

LEVELS = ("ok", "warning", "critical")
RULES = ("cas_size", "queue_depth", "failed_per_hour", "compaction_failures", "queue_unreachable")


@dataclass(frozen=True)
class Inputs:
    cas_bytes: int
    queue_depth: int
    failed_last_hour: int
    compaction_failures_day: int
    # The queue outage consumers recorded, if any, and how long it has lasted by then.
    queue_outage: control.QueueOutage | None = None
    queue_outage_age: float = 0.0


def read_inputs(
    ledger: Ledger, now: float | None = None, counts: dict[str, int] | None = None
) -> Inputs:
    """What the rules measure; `counts`, the ledger's counters if the caller has read them."""
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
    return readings


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
