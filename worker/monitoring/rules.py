"""The alert rules of the task card, evaluated from O(1) readings of the ledger.

| rule                | warning                                        | critical          |
| cas_size            | > ALERT_THRESHOLD of quota or > 10 GB, lower   | > 90% of quota    |
| queue_depth         | > 100                                          | > 500             |
| failed_per_hour     | > 10 failed parcels in the last hour           |                   |
| compaction_failures |                                                | > 3 failed a day  |
"""

from __future__ import annotations

from dataclasses import dataclass

import humanize

from worker.alerts.alerting import Reading
from worker.ledger import Ledger
from worker.memory import compaction
from worker.monitoring import metrics
from worker.settings import Settings

LEVELS = ("ok", "warning", "critical")
RULES = ("cas_size", "queue_depth", "failed_per_hour", "compaction_failures")


@dataclass(frozen=True)
class Inputs:
    cas_bytes: int
    queue_depth: int
    failed_last_hour: int
    compaction_failures_day: int


def read_inputs(
    ledger: Ledger, now: float | None = None, counts: dict[str, int] | None = None
) -> Inputs:
    """What the rules measure; `counts`, the ledger's counters if the caller has read them."""
    now = ledger.now() if now is None else now
    counts = metrics.counters(ledger) if counts is None else counts
    return Inputs(
        cas_bytes=counts.get("cas_bytes", 0),
        queue_depth=counts.get("parcels_queued", 0),
        failed_last_hour=metrics.failed_since(ledger, now - 3600),
        compaction_failures_day=compaction.failures_per_day(ledger, now),
    )


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
    return readings


def worst(levels: list[str]) -> str:
    return max(levels, key=LEVELS.index, default="ok")
