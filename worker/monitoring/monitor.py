"""Storage monitoring and alert evaluation: what `seer monitor-storage`, `seer alerts` and the
scheduler's periodic jobs run. The task card's `orchestration:monitor-storage`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from worker.alerts import alerting, outbox
from worker.alerts.channels import Notification, channels_from_settings
from worker.monitoring import metrics, rules
from worker.monitoring.wiring import Wired


@dataclass(frozen=True)
class StorageReport:
    taken_at: float
    cas_bytes: int
    cas_blobs: int
    # Where the bytes are: these in the ledger's database (small blobs), the rest in files.
    ledger_bytes: int
    ledger_blobs: int
    quota: int
    percent: float
    warning_bytes: int
    critical_bytes: int
    growth_per_day: float | None
    days_to_quota: float | None
    level: str
    summary: str

    def as_dict(self) -> dict:
        return asdict(self)


def storage_report(runtime: Wired, now: float | None = None) -> StorageReport:
    now = runtime.ledger.now() if now is None else now
    inputs = rules.read_inputs(runtime.ledger, now, settings=runtime.settings)
    counts = metrics.counters(runtime.ledger)
    (cas,) = [r for r in rules.evaluate(runtime.settings, inputs) if r.rule == "cas_size"]
    warning, critical = rules.cas_lines(runtime.settings)
    quota = runtime.settings.cas_max_size
    growth = metrics.growth_per_day(runtime.ledger, now)
    days = (quota - inputs.cas_bytes) / growth if growth and growth > 0 else None
    return StorageReport(
        taken_at=now,
        cas_bytes=inputs.cas_bytes,
        cas_blobs=counts.get("cas_blobs", 0),
        ledger_bytes=counts.get("cas_small_bytes", 0),
        ledger_blobs=counts.get("cas_small_blobs", 0),
        quota=quota,
        percent=100.0 * inputs.cas_bytes / quota if quota else 0.0,
        warning_bytes=warning,
        critical_bytes=critical,
        growth_per_day=growth,
        days_to_quota=max(0.0, days) if days is not None else None,
        level=cas.level,
        summary=cas.summary,
    )


def channel_names(runtime: Wired) -> list[str]:
    return list(channels_from_settings(runtime.settings, runtime.layout))


def evaluate(
    runtime: Wired, now: float | None = None, only: tuple[str, ...] | None = None
) -> tuple[list[rules.Reading], list[Notification]]:
    """Evaluates the rules (or `only` some) and records their states; queues notifications."""
    now = runtime.ledger.now() if now is None else now
    readings = rules.evaluate(
        runtime.settings, rules.read_inputs(runtime.ledger, now, settings=runtime.settings)
    )
    if only:
        readings = [r for r in readings if r.rule in only]
    sent = alerting.apply(
        runtime.ledger,
        readings,
        channel_names(runtime),
        repeat_every=runtime.settings.alert_repeat,
        storage_root=str(runtime.layout.root),
        now=now,
    )
    return readings, sent


def deliver(runtime: Wired, now: float | None = None) -> outbox.DeliveryReport:
    return outbox.deliver_due(
        runtime.ledger, channels_from_settings(runtime.settings, runtime.layout), now=now
    )


def simulate_high_usage(runtime: Wired, now: float | None = None) -> Notification:
    """Queues a critical CAS alert as if the store were past the critical line (the rule's
    recorded state is left alone: nothing real is wrong)."""
    now = runtime.ledger.now() if now is None else now
    _, critical = rules.cas_lines(runtime.settings)
    quota = runtime.settings.cas_max_size
    pretend = max(critical + 1, int(quota * 0.95))
    inputs = rules.Inputs(pretend, 0, 0, 0)
    (cas,) = [r for r in rules.evaluate(runtime.settings, inputs) if r.rule == "cas_size"]
    note = alerting.notification(
        cas, "critical", since=now, now=now, storage_root=str(runtime.layout.root), simulated=True
    )
    outbox.enqueue(runtime.ledger, note, channel_names(runtime), now=now)
    return note


def queue_test_alert(
    runtime: Wired, channel: str | None = None, now: float | None = None
) -> list[int]:
    """Queues a test notification for one channel or all configured ones; returns the outbox
    row ids, one a channel. LookupError names the setting of a channel that is not set."""
    now = runtime.ledger.now() if now is None else now
    names = channel_names(runtime)
    if channel is not None:
        if channel not in names:
            raise LookupError(
                f"the {channel} channel is not configured: "
                + {
                    "slack": "set ALERT_SLACK_WEBHOOK_URL",
                    "email": "set SMTP_HOST and ALERT_EMAIL_TO",
                }.get(channel, "unknown channel")
            )
        names = [channel]
    note = Notification(
        rule="test",
        level="test",
        title="Test alert from Seer Ops",
        text=f"`seer alerts test` at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, storage root "
        f"{runtime.layout.root}. If you can read this, the channel works.",
        at=now,
    )
    return outbox.enqueue(runtime.ledger, note, names, now=now)


def log_storage_report(runtime: Wired, report: StorageReport) -> None:
    """One JSON line in logs/orchestration.log, as the task card's cron job appended output.
    A link planted there (or at logs/) raises UnsafeEntry naming it; nothing is written."""
    line = {"event": "storage.report", **report.as_dict()}
    line["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(report.taken_at))
    runtime.layout.append_log("orchestration.log", line)
