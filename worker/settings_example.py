"""config/seer.env.example, written from the settings themselves: `seer config example`."""

from __future__ import annotations

import textwrap

from worker.settings import SPECS

HEADER = (
    "# Seer Ops settings. Copy to .env (or point SEER_ENV_FILE at it) and edit.",
    "# Every setting is listed with its default; the real environment wins over this file.",
    "# A bad value stops every command with one line naming the variable and what is allowed.",
)

# How the file is laid out for a reader; every setting must be in exactly one group.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Storage",
        (
            "SEER_STORAGE_PATH",
            "SEER_DIR_MODE",
            "SEER_FILE_MODE",
            "SEER_DATABASE_URL",
            "SEER_SQLITE_SYNCHRONOUS",
            "SEER_BACKUP_KEY",
        ),
    ),
    (
        "Orchestration (names from the task card)",
        (
            "ORCHESTRATION_REDACT_SECRETS",
            "ORCHESTRATION_CAS_MAX_SIZE",
            "ORCHESTRATION_CAS_ALERT_THRESHOLD",
            "ORCHESTRATION_MEMORY_TTL_HOURS",
            "ORCHESTRATION_MEMORY_MAX_VALUE_SIZE",
            "ORCHESTRATION_COMPACTION_CRON",
        ),
    ),
    ("Queue", ("QUEUE_CONNECTION", "REDIS_URL", "POSTMASTER_QUEUE", "SEER_SCHEDULER_QUEUE")),
    ("Many hosts (docs/SCALING.md)", ("SEER_HOST_ID", "SEER_HEARTBEAT_TIMEOUT")),
    (
        "Alert rules (thresholds from the task card)",
        (
            "ORCHESTRATION_CAS_CRITICAL_THRESHOLD",
            "ORCHESTRATION_CAS_ALERT_MAX_SIZE",
            "POSTMASTER_QUEUE_WARNING",
            "POSTMASTER_QUEUE_CRITICAL",
            "POSTMASTER_FAILED_PER_HOUR_WARNING",
            "ORCHESTRATION_COMPACTION_FAILURES_CRITICAL",
            "SEER_QUEUE_OUTAGE_ALERT",
            "SEER_CONSUMER_DOWN_ALERT",
            "SEER_RESTART_ALERT_COUNT",
            "SEER_RESTART_ALERT_WINDOW",
            "SEER_OLDEST_QUEUED_ALERT",
            "ORCHESTRATION_MONITOR_CRON",
            "ALERT_REPEAT_INTERVAL",
        ),
    ),
    (
        "Alert channels (a channel without its settings is off; the log always receives alerts)",
        (
            "ALERT_SLACK_WEBHOOK_URL",
            "ALERT_EMAIL_TO",
            "ALERT_EMAIL_FROM",
            "SMTP_HOST",
            "SMTP_PORT",
            "SMTP_USERNAME",
            "SMTP_PASSWORD",
            "SMTP_SECURITY",
        ),
    ),
    (
        "Postmaster",
        (
            "POSTMASTER_TRIES",
            "POSTMASTER_RETRY_DELAY",
            "POSTMASTER_MAX_CRASHES",
            "POSTMASTER_BATCH_SIZE",
            "POSTMASTER_BATCH_BYTES",
            "POSTMASTER_MAX_PARCEL_SIZE",
            "POSTMASTER_LEASE",
            "POSTMASTER_TEST_AGENT",
        ),
    ),
    (
        "Content store",
        (
            "ORCHESTRATION_CAS_SMALL_BLOB_SIZE",
            "ORCHESTRATION_CAS_URL",
            "ORCHESTRATION_CAS_CONCURRENCY",
        ),
    ),
    (
        "Metrics and console",
        (
            "SEER_SAMPLE_INTERVAL",
            "SEER_METRICS_KEEP_RAW",
            "SEER_METRICS_KEEP_MINUTE",
            "SEER_METRICS_KEEP_HOUR",
            "SEER_CONSOLE_REFRESH",
        ),
    ),
)


def render_example() -> str:
    by_name = {spec.name: spec for spec in SPECS}
    grouped = [name for _, names in GROUPS for name in names]
    if sorted(grouped) != sorted(by_name):
        missing = sorted(set(by_name) - set(grouped)) or sorted(set(grouped) - set(by_name))
        raise RuntimeError(f"settings_example.GROUPS is out of step with the settings: {missing}")
    lines = [*HEADER, ""]
    for title, names in GROUPS:
        lines.append(f"## {title}")
        for name in names:
            spec = by_name[name]
            lines += [f"# {line}" for line in textwrap.wrap(spec.help, 96)]
            value = f'"{spec.default}"' if " " in spec.default else spec.default
            lines += [f"{name}={value}", ""]
    return "\n".join(lines).rstrip() + "\n"
