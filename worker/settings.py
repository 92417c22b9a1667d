"""Every setting Seer Ops reads, defined once: name, default, parser and the line of help.

Values come from the environment and a `.env` file (the environment wins). A bad value raises
SettingsError, whose message names the variable, the value and what is allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting has a value that is not allowed; the message is one line for the operator."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("true or false")


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2}
_SIZE_UNITS.update({"g": 1024**3, "gb": 1024**3, "t": 1024**4, "tb": 1024**4})


def parse_size(raw: str) -> int:
    """Bytes, or a number with K/M/G/T (binary units): 107374182400, 100G, 512M."""
    match = re.fullmatch(r"\s*(\d{1,20}(?:\.\d{1,20})?)\s*([a-zA-Z]*)\s*", raw)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError("a size in bytes, or a number with K, M, G or T (e.g. 100G)")
    size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size > MAX_SIZE:
        raise ValueError("a size of at most 1024T")
    return size


# Beyond any disk; also keeps sizes exact as integers and far from float's 2**53.
MAX_SIZE = 1024**5


def _positive_size(raw: str) -> int:
    size = parse_size(raw)
    if size <= 0:
        raise ValueError("a size of more than 0 bytes (e.g. 100G)")
    return size


# Above this a blob is better a file: SQLite's own measurements put the break-even near
# 100 KB, and a row is read into memory whole.
MAX_SMALL_BLOB_SIZE = 1024**2


def _small_blob_size(raw: str) -> int:
    size = parse_size(raw)
    if size > MAX_SMALL_BLOB_SIZE:
        raise ValueError("a size from 0 (every blob a file) to 1M, e.g. 100K")
    return size


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(raw: str) -> float:
    """Seconds, or a number with s/m/h/d/w: 90s, 15m, 24h, 7d."""
    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,9})?)\s*([smhdw]?)\s*", raw.lower())
    if not match:
        raise ValueError("a duration such as 30, 90s, 15m, 24h or 7d")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds > MAX_DURATION:
        raise ValueError("a duration of at most 100 years")
    return seconds


MAX_DURATION = 100 * 366 * 86400


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"a whole number from {low} to {high}")
        return value

    return parse


def _whole_seconds(raw: str, low: int, high: int) -> int:
    value = parse_duration(raw)
    if value != int(value) or not low <= value <= high:
        raise ValueError(f"a whole number of seconds from {low}s to {high}s, e.g. 15s")
    return int(value)


def _seconds_between(raw: str, low: float, high: float) -> float:
    value = parse_duration(raw)
    if not low <= value <= high:
        raise ValueError(f"a duration from {low}s to {high}s")
    return value


def _cron(raw: str) -> str:
    from worker.schedules import Cron

    try:
        return Cron(raw).expression
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _webhook(raw: str) -> str:
    value = raw.strip()
    if not value:
        return value
    allowed = "an http(s) URL such as https://hooks.slack.com/services/T.../B.../..."
    if not re.fullmatch(r"https?://[^\s/]+/\S*", value):
        raise ValueError(allowed)
    from urllib.parse import urlsplit

    # Parsed whole now, as the sender will: a bracket left open or a port that is no number
    # would otherwise fail at every send (and, before, took every channel down with it).
    try:
        parts = urlsplit(value)
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"{allowed} ({exc})") from None
    if not host:
        raise ValueError(f"{allowed} (no host)")
    return value


def _addresses(raw: str) -> str:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    for part in parts:
        if not re.fullmatch(r"[^@\s,]+@[^@\s,]+", part):
            raise ValueError("comma-separated email addresses, e.g. ops@example.com")
    return ",".join(parts)


def _fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise ValueError("a fraction between 0 and 1, e.g. 0.8")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError("one of " + ", ".join(allowed))
        return value

    return parse


def _mode(raw: str) -> int:
    value = raw.strip()
    if not re.fullmatch(r"0?[0-7]{3}", value):
        raise ValueError("an octal permission such as 0770")
    mode = int(value, 8)
    if mode & 0o007:
        raise ValueError("a mode with no permission for others, such as 0770 or 0750")
    return mode


def _dir_mode(raw: str) -> int:
    mode = _mode(raw)
    if mode & 0o700 != 0o700:
        # The worker's own user must be able to list, enter and write its directories.
        raise ValueError("a directory mode that gives its owner rwx, such as 0770 or 0750")
    return mode


def _file_mode(raw: str) -> int:
    mode = _mode(raw)
    if mode & 0o600 != 0o600:
        raise ValueError("a file mode that gives its owner rw, such as 0660 or 0640")
    return mode


def _queue_name(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ValueError("1 to 64 letters, digits, '.', '_' or '-'")
    return value


def _backup_key(raw: str) -> str:
    value = raw.strip()
    if value and len(value) < 16:
        raise ValueError("a key of 16 characters or more (e.g. from `openssl rand -hex 32`)")
    return value


def _agent_id(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 200 or any(ord(c) < 32 for c in value):
        raise ValueError("a non-empty agent id of at most 200 characters, no control characters")
    return value


def _database_url(raw: str) -> str:
    value = raw.strip()
    if not value:
        return value
    from urllib.parse import urlsplit

    allowed = "a postgresql:// URL such as postgresql://seer@db.internal:5432/seer"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(allowed) from None
    if parts.scheme not in ("postgresql", "postgres") or not (parts.hostname or parts.query):
        raise ValueError(allowed)
    if port == 0:
        raise ValueError(allowed)
    if not parts.path.strip("/"):
        raise ValueError(allowed + " (the database name is missing)")
    return value


def _redis_url(raw: str) -> str:
    value = raw.strip()
    if not value:
        return value
    from urllib.parse import parse_qs, urlsplit

    allowed = (
        "a redis://, rediss:// (TLS) or unix:// URL such as redis://redis.internal:6379/0 or "
        "unix:///run/redis/redis.sock?db=0"
    )
    try:
        parts = urlsplit(value)
        port = parts.port
        query = parse_qs(parts.query, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(allowed) from None
    if parts.scheme in ("redis", "rediss"):
        if not parts.hostname or port == 0:
            raise ValueError(allowed)
        db = parts.path.strip("/") or (query.get("db") or ["0"])[0]
    elif parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise ValueError(allowed + " (the socket's absolute path is missing)")
        db = (query.get("db") or ["0"])[0]
    else:
        raise ValueError(allowed)
    if not db.isdigit():
        raise ValueError(allowed + " (the database number must be a number)")
    return value


def server_address(url: str) -> str:
    """host:port of a server's URL (postgresql://, redis://), never its user or password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path
        host = parts.hostname or "localhost"
        port = parts.port or {"redis": 6379, "rediss": 6379}.get(parts.scheme, 5432)
    except ValueError:
        return "(an unreadable URL)"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cas_url(raw: str) -> str:
    value = raw.strip()
    if not value:
        return value
    from worker.object_urls import ObjectUrl

    return str(ObjectUrl.parse(value))


def _host_id(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", value):
        raise ValueError("a host name of letters, digits, '.', '_' and '-' (at most 63)")
    return value


def _text(raw: str) -> str:
    return raw.strip()


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("a directory path")
    return Path(raw.strip())


@dataclass(frozen=True)
class Spec:
    """One setting: its variable, default (as written in the env file) and help line."""

    name: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False
    # How a parsed value is written back, so that `seer config show` prints what the env
    # file would say (a mode in octal, not 504).
    show: Callable[[Any], str] | None = None

    def shown(self, value: Any) -> str:
        if self.show is not None:
            return self.show(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)


def _spec(name: str, default: str, parse: Callable[[str], Any], help: str, **kw: Any) -> Any:
    # A secret stays out of the repr: a traceback's locals or a test's report show Settings.
    return field(
        repr=not kw.get("secret", False), metadata={"spec": Spec(name, default, parse, help, **kw)}
    )


@dataclass(frozen=True)
class Settings:
    """The settings in force, parsed; build it with load_settings()."""

    storage_path: Path = _spec(
        "SEER_STORAGE_PATH",
        "storage",
        _path,
        "Storage root: databases, CAS, logs, supervisord socket (relative to the working dir).",
    )
    redact_secrets: bool = _spec(
        "ORCHESTRATION_REDACT_SECRETS",
        "true",
        _bool,
        "Replace secrets (tokens, keys, passwords) in parcels before they are stored.",
    )
    cas_max_size: int = _spec(
        "ORCHESTRATION_CAS_MAX_SIZE",
        "107374182400",
        _positive_size,
        "CAS quota in bytes (or 100G): a put that would pass it fails the parcel.",
    )
    cas_small_blob_size: int = _spec(
        "ORCHESTRATION_CAS_SMALL_BLOB_SIZE",
        "100K",
        _small_blob_size,
        "Blobs of at most this size are kept in the ledger's database, a batch of deliveries "
        "in one transaction; larger ones are files under orchestration/cas (0: every blob is "
        "a file; at most 1M).",
    )
    cas_url: str = _spec(
        "ORCHESTRATION_CAS_URL",
        "",
        _cas_url,
        "Where the CAS keeps the blobs that are not the ledger's: empty for files under "
        "orchestration/cas, or s3://bucket/prefix for an S3-compatible object store (endpoint "
        "and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_DEFAULT_REGION; seer init creates the bucket).",
    )
    cas_concurrency: int = _spec(
        "ORCHESTRATION_CAS_CONCURRENCY",
        "8",
        _int_range(1, 64),
        "Requests at once to the object store for a batch of blobs (puts, lookups, listings).",
    )
    cas_alert_threshold: float = _spec(
        "ORCHESTRATION_CAS_ALERT_THRESHOLD",
        "0.8",
        _fraction,
        "Fraction of the CAS quota at which storage monitoring warns.",
    )
    memory_ttl_hours: int = _spec(
        "ORCHESTRATION_MEMORY_TTL_HOURS",
        "24",
        _int_range(1, 24 * 365),
        "Hours an ephemeral memory key lives before compaction removes it.",
    )
    memory_max_value: int = _spec(
        "ORCHESTRATION_MEMORY_MAX_VALUE_SIZE",
        "1M",
        parse_size,
        "Largest memory value accepted, as JSON text (bytes, or 64K, 1M).",
    )
    compaction_cron: str = _spec(
        "ORCHESTRATION_COMPACTION_CRON",
        "0 */6 * * *",
        lambda raw: _cron(raw),
        "When memory compaction runs: a crontab (minute hour day month weekday) in the "
        "server's local time. The task card's alternative, daily at 02:00, is `0 2 * * *`.",
    )
    cas_critical_threshold: float = _spec(
        "ORCHESTRATION_CAS_CRITICAL_THRESHOLD",
        "0.9",
        _fraction,
        "Fraction of the CAS quota above which storage is critical.",
    )
    cas_alert_max_bytes: int = _spec(
        "ORCHESTRATION_CAS_ALERT_MAX_SIZE",
        "10G",
        parse_size,
        "CAS size above which storage warns even below the threshold (the card's 10 GB).",
    )
    monitor_cron: str = _spec(
        "ORCHESTRATION_MONITOR_CRON",
        "0 3 * * *",
        lambda raw: _cron(raw),
        "When the daily storage report runs (crontab, server's local time). Every alert rule "
        "is also evaluated each minute.",
    )
    queue_warning: int = _spec(
        "POSTMASTER_QUEUE_WARNING", "100", _int_range(1, 10**9), "Queue depth that warns."
    )
    queue_critical: int = _spec(
        "POSTMASTER_QUEUE_CRITICAL", "500", _int_range(1, 10**9), "Queue depth that is critical."
    )
    failed_per_hour_warning: int = _spec(
        "POSTMASTER_FAILED_PER_HOUR_WARNING",
        "10",
        _int_range(0, 10**9),
        "Failed parcels in the last hour above which it warns.",
    )
    compaction_failures_critical: int = _spec(
        "ORCHESTRATION_COMPACTION_FAILURES_CRITICAL",
        "3",
        _int_range(0, 10**6),
        "Failed compaction runs in a day above which it is critical.",
    )
    queue_outage_alert: float = _spec(
        "SEER_QUEUE_OUTAGE_ALERT",
        "30s",
        lambda raw: _seconds_between(raw, 1, 3600),
        "The queue's storage (Redis) not answering this long is a critical alert "
        "(queue_unreachable), sent by every consumer's watchdog, not through that queue; "
        "shorter outages, such as a restart, alert nobody (1s to 1h).",
    )
    consumer_down_alert: float = _spec(
        "SEER_CONSUMER_DOWN_ALERT",
        "60s",
        lambda raw: _seconds_between(raw, 1, 86400),
        "A consumer expected on a host (one that registered there and was not stopped on "
        "purpose) not running, or silent, this long is a critical alert (consumer_down); a "
        "graceful stop (`seer supervisor stop`, a rollback) alerts nobody (1s to 1d).",
    )
    restart_alert_count: int = _spec(
        "SEER_RESTART_ALERT_COUNT",
        "3",
        # The ledger keeps the last 100 restart times of each consumer.
        _int_range(0, 99),
        "More restarts than this of one consumer on one host within "
        "SEER_RESTART_ALERT_WINDOW warn (consumer_restarts); a stop and start on purpose is "
        "no restart here (0 to 99).",
    )
    restart_alert_window: float = _spec(
        "SEER_RESTART_ALERT_WINDOW",
        "10m",
        lambda raw: _seconds_between(raw, 60, 86400),
        "The window in which consumer restarts are counted (1m to 1d).",
    )
    oldest_queued_alert: float = _spec(
        "SEER_OLDEST_QUEUED_ALERT",
        "5m",
        lambda raw: _seconds_between(raw, 1, 30 * 86400),
        "The oldest queued parcel waiting longer than this warns (oldest_queued), unless the "
        "queue is paused (1s to 30d).",
    )
    alert_repeat: float = _spec(
        "ALERT_REPEAT_INTERVAL",
        "4h",
        # Rules are evaluated once a minute: less would re-send at every evaluation.
        lambda raw: _seconds_between(raw, 60, MAX_DURATION),
        "An alert that holds is sent again after this long.",
    )
    slack_webhook_url: str = _spec(
        "ALERT_SLACK_WEBHOOK_URL",
        "",
        _webhook,
        "Slack incoming webhook (https://hooks.slack.com/services/...); empty: Slack is off.",
        secret=True,
    )
    email_to: str = _spec(
        "ALERT_EMAIL_TO",
        "",
        _addresses,
        "Comma-separated recipients of alert mail; empty: email is off.",
    )
    email_from: str = _spec(
        "ALERT_EMAIL_FROM", "seer-ops@localhost", _text, "Sender of alert mail."
    )
    smtp_host: str = _spec("SMTP_HOST", "", _text, "SMTP server; empty: email is off.")
    smtp_port: int = _spec(
        "SMTP_PORT", "25", _int_range(1, 65535), "SMTP port (25, 587 for starttls, 465 for ssl)."
    )
    smtp_username: str = _spec("SMTP_USERNAME", "", _text, "SMTP login; empty: no login.")
    smtp_password: str = _spec("SMTP_PASSWORD", "", _text, "SMTP password.", secret=True)
    smtp_security: str = _spec(
        "SMTP_SECURITY",
        "starttls",
        _choice("none", "starttls", "ssl"),
        "none, starttls or ssl (implicit TLS).",
    )
    queue_connection: str = _spec(
        "QUEUE_CONNECTION",
        "database",
        _choice("sqlite", "database", "redis"),
        "Queue storage: database (in the ledger's database: the SQLite queue file beside "
        "ledger.db, or PostgreSQL with SEER_DATABASE_URL), sqlite (the SQLite file always) or "
        "redis (scale-out).",
    )
    postmaster_queue: str = _spec(
        "POSTMASTER_QUEUE", "postmaster", _queue_name, "Name of the parcel queue."
    )
    scheduler_queue: str = _spec(
        "SEER_SCHEDULER_QUEUE",
        "scheduler",
        _queue_name,
        "Name of the queue of periodic jobs (never paused).",
    )
    redis_url: str = _spec(
        "REDIS_URL",
        "",
        _redis_url,
        "Redis of the queue with QUEUE_CONNECTION=redis: redis://[:password@]host:port/db, "
        "rediss:// for TLS, or unix:///path/to/redis.sock?db=N. Its keys are named after "
        "POSTMASTER_QUEUE and SEER_SCHEDULER_QUEUE, so deployments with other queue names can "
        "share one Redis.",
        secret=True,
    )
    database_url: str = _spec(
        "SEER_DATABASE_URL",
        "",
        _database_url,
        "Ledger database: a postgresql:// URL for many hosts; empty means the SQLite file "
        "ledger.db under the storage root.",
        secret=True,
    )
    heartbeat_timeout: float = _spec(
        "SEER_HEARTBEAT_TIMEOUT",
        "30s",
        lambda raw: _seconds_between(raw, 5, 3600),
        "A consumer whose heartbeat is this old is dead: any host's reaper gives its parcels "
        "back, whatever their lease. Each consumer beats every sixth of it, 1 to 5 s; the reaper "
        "runs every 5 s (5s to 1h).",
    )
    host_id: str = _spec(
        "SEER_HOST_ID",
        "",
        _host_id,
        "This host's name in the ledger (parcels' owners, heartbeats), one per host: only a "
        "consumer of this host is checked by its pid. Empty: the machine's host name.",
    )
    backup_key: str = _spec(
        "SEER_BACKUP_KEY",
        "",
        lambda raw: _backup_key(raw),
        "Key that signs backups (HMAC-SHA256, 16 characters or more); when set, restore and "
        "verify refuse a backup that is unsigned or signed otherwise. Empty: unsigned backups.",
        secret=True,
    )
    sqlite_synchronous: str = _spec(
        "SEER_SQLITE_SYNCHRONOUS",
        "full",
        _choice("full", "normal"),
        "SQLite durability for ledger and queue: full syncs every commit; normal may lose the "
        "last commits on power loss (never on a crash).",
    )
    tries: int = _spec(
        "POSTMASTER_TRIES",
        "3",
        _int_range(1, 100),
        "Tries a parcel gets in all before it lands in the failed store.",
    )
    retry_delay: float = _spec(
        "POSTMASTER_RETRY_DELAY",
        "10s",
        parse_duration,
        "Wait before the second try; it doubles for each try after that.",
    )
    max_crashes: int = _spec(
        "POSTMASTER_MAX_CRASHES",
        "3",
        _int_range(1, 100),
        "A parcel in flight this many times when its worker died goes to failed.",
    )
    batch_size: int = _spec(
        "POSTMASTER_BATCH_SIZE",
        "100",
        _int_range(1, 10000),
        "Parcels that are already waiting are delivered this many at a time (one commit each).",
    )
    batch_bytes: int = _spec(
        "POSTMASTER_BATCH_BYTES",
        "64M",
        _positive_size,
        "A batch also stops at this many bytes of parcels (one larger parcel goes alone): it "
        "bounds the worker's memory, about 3 times this, whatever the parcels.",
    )
    max_parcel_size: int = _spec(
        "POSTMASTER_MAX_PARCEL_SIZE",
        "32M",
        _positive_size,
        "Largest parcel accepted, attachments included (bytes, or 32M).",
    )
    test_agent: str = _spec(
        "POSTMASTER_TEST_AGENT",
        "seer-test",
        _agent_id,
        "Agent that receives `seer send-test-parcel`.",
    )
    lease: float = _spec(
        "POSTMASTER_LEASE",
        "10m",
        parse_duration,
        "A parcel in flight longer than this on a worker that cannot be checked (another host) "
        "is taken back.",
    )
    sample_interval: int = _spec(
        "SEER_SAMPLE_INTERVAL",
        "15s",
        lambda raw: _whole_seconds(raw, 5, 3600),
        "How often the scheduler records a metric sample (5s to 1h).",
    )
    keep_raw_samples: float = _spec(
        "SEER_METRICS_KEEP_RAW",
        "24h",
        parse_duration,
        "Samples are kept as taken for this long, then rolled up per minute.",
    )
    keep_minute_samples: float = _spec(
        "SEER_METRICS_KEEP_MINUTE",
        "7d",
        parse_duration,
        "Per-minute samples are kept this long, then rolled up per hour.",
    )
    keep_hour_samples: float = _spec(
        "SEER_METRICS_KEEP_HOUR",
        "90d",
        parse_duration,
        "Per-hour samples are kept this long.",
    )
    console_refresh: float = _spec(
        "SEER_CONSOLE_REFRESH",
        "1s",
        lambda raw: _seconds_between(raw, 0.2, 60),
        "How often the console reads a new snapshot (0.2s to 60s).",
    )
    dir_mode: int = _spec(
        "SEER_DIR_MODE",
        "0770",
        _dir_mode,
        "Mode of directories under the storage root (web-server user and operators' group).",
        show=lambda mode: f"{mode:04o}",
    )
    file_mode: int = _spec(
        "SEER_FILE_MODE",
        "0660",
        _file_mode,
        "Mode of files under the storage root.",
        show=lambda mode: f"{mode:04o}",
    )

    @property
    def storage_root(self) -> Path:
        return self.storage_path.absolute()

    @property
    def database_address(self) -> str:
        """host:port of SEER_DATABASE_URL, never its password: what every message names."""
        return server_address(self.database_url)

    @property
    def queue_address(self) -> str:
        """Where the queue is, as every message names it, never a password:
        redis://host:port, unix:///path, postgresql://host:port or the SQLite file."""
        if self.queue_connection == "redis":
            scheme = self.redis_url.split(":", 1)[0]
            if scheme == "unix":
                return "unix://" + server_address(self.redis_url)
            return f"{scheme}://{server_address(self.redis_url)}"
        if self.queue_connection == "database" and self.database_url:
            return f"postgresql://{self.database_address}"
        return str(self.storage_root / "queue.db")


SPECS: tuple[Spec, ...] = tuple(f.metadata["spec"] for f in fields(Settings))


def parse_env_file(path: Path) -> dict[str, str]:
    """Reads KEY=VALUE lines; '#' comments, blank lines, `export` and quotes are understood."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not valid UTF-8") from exc
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file ({exc.strerror})") from exc
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        stripped = stripped.removeprefix("export ").strip()
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        quoted = re.fullmatch(r"""(["'])(.*?)\1\s*(#.*)?""", value)
        value = quoted.group(2) if quoted else value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


# What boto3 reads for the object store (ORCHESTRATION_CAS_URL): taken from the environment,
# or else from the settings file, so that a .env holding them works as it does for ours.
OBJECT_STORE_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
)


def object_store_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The AWS_* variables of OBJECT_STORE_VARIABLES that are set, the environment over the
    settings file; the others are left to boto3's own chain (~/.aws, an instance role)."""
    environ = os.environ if environ is None else environ
    path = env_file_path(environ)
    from_file = parse_env_file(path) if path else {}
    found = {}
    for name in OBJECT_STORE_VARIABLES:
        value = environ.get(name, from_file.get(name, "")).strip()
        if value:
            found[name] = value
    return found


def env_file_path(environ: Mapping[str, str]) -> Path | None:
    explicit = environ.get("SEER_ENV_FILE")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsError(f"SEER_ENV_FILE={explicit}: no such file")
        return path
    default = Path(".env")
    return default if default.is_file() else None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `environ` (default os.environ) over the .env file; raises SettingsError."""
    environ = os.environ if environ is None else environ
    path = env_file_path(environ)
    from_file = parse_env_file(path) if path else {}
    values: dict[str, Any] = {}
    for f in fields(Settings):
        spec: Spec = f.metadata["spec"]
        raw = environ.get(spec.name, from_file.get(spec.name, spec.default))
        try:
            values[f.name] = spec.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if spec.secret else repr(raw)
            raise SettingsError(f"{spec.name}={shown} is not allowed: expected {exc}") from None
    settings = Settings(**values)
    _check_together(settings)
    return settings


def _check_together(s: Settings) -> None:
    """Settings that are each allowed but make no sense together."""
    pairs = (
        (
            "ORCHESTRATION_CAS_ALERT_THRESHOLD",
            s.cas_alert_threshold,
            "ORCHESTRATION_CAS_CRITICAL_THRESHOLD",
            s.cas_critical_threshold,
        ),
        (
            "POSTMASTER_QUEUE_WARNING",
            s.queue_warning,
            "POSTMASTER_QUEUE_CRITICAL",
            s.queue_critical,
        ),
    )
    for low_name, low, high_name, high in pairs:
        if low >= high:
            raise SettingsError(
                f"{low_name}={low:g} is not allowed with {high_name}={high:g}: the warning "
                "line must be below the critical one"
            )
    if s.queue_connection == "redis" and not s.redis_url:
        raise SettingsError(
            "QUEUE_CONNECTION='redis' is not allowed without REDIS_URL: expected a redis:// "
            "URL too, such as REDIS_URL=redis://127.0.0.1:6379/0"
        )
    root = str(s.storage_root)
    bad = next((c for c in root if c in '%"' or ord(c) < 32), None)
    if bad is not None:
        # supervisord expands % in its files and cannot quote " in environment=.
        raise SettingsError(
            f'SEER_STORAGE_PATH={root!r} is not allowed: expected a path without %, " or '
            "control characters (supervisord's files cannot hold them)"
        )
