"""Metric history: one sample every few seconds, kept raw, then per minute, then per hour.

Every number is read from counters kept in the same transactions as the changes they count,
or from an index, so taking a sample costs the same at a thousand parcels or a million.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from worker.fleet import consumers
from worker.ledger import Ledger

RAW, MINUTE, HOUR = 0, 60, 3600


@dataclass(frozen=True)
class Sample:
    ts: float
    queue_depth: int
    oldest_queued_age: float | None
    delivered: int
    failed: int
    failed_last_hour: int
    cas_bytes: int
    cas_blobs: int
    postmaster_up: bool
    scheduler_up: bool
    delivered_total: int
    failed_total: int


@dataclass(frozen=True)
class Retention:
    raw: float = 24 * 3600
    minute: float = 7 * 86400
    hour: float = 90 * 86400


_COLUMNS = [f.name for f in fields(Sample)]
# A sample taken again for the same (resolution, ts) replaces the first one, whole.
_REPLACE = "ON CONFLICT (resolution, ts) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in _COLUMNS if c != "ts"
)


def counters(ledger: Ledger) -> dict[str, int]:
    return ledger.counters()


def failed_since(ledger: Ledger, since: float) -> int:
    return ledger.scalar(
        "SELECT count(*) FROM parcels WHERE state = 'failed' AND finished_at >= ?", (since,)
    )


@dataclass(frozen=True)
class Flow:
    """Parcels delivered and failed in the last `window` seconds: counted, never projected
    from a shorter span (150 deliveries are "150 in the last 60s", not "203/min")."""

    window: float
    delivered: int
    failed: int


def flow(ledger: Ledger, now: float | None = None, window: float = 60.0) -> Flow:
    """One range of the (state, finished_at) index per state: it costs what the last minute
    holds, whatever the ledger's size."""
    now = ledger.now() if now is None else now
    counts = {
        r["state"]: r["n"]
        for r in ledger.rows(
            "SELECT state, count(*) AS n FROM parcels WHERE state IN ('delivered', 'failed') "
            "AND finished_at > ? AND finished_at <= ? GROUP BY state",
            (now - window, now),
        )
    }
    return Flow(window, counts.get("delivered", 0), counts.get("failed", 0))


def oldest_queued_age(ledger: Ledger, now: float) -> float | None:
    oldest = ledger.scalar(
        "SELECT created_at FROM parcels WHERE state = 'queued' ORDER BY seq LIMIT 1"
    )
    return None if oldest is None else max(0.0, now - oldest)


def measure(
    ledger: Ledger,
    postmaster_queue: str,
    scheduler_queue: str,
    now: float | None = None,
    *,
    host_id: str | None = None,
    heartbeat_timeout: float = consumers.DEFAULT_TIMEOUT,
) -> Sample:
    """Reads the current figures; deltas are against the last raw sample. A consumer is up
    as `consumers.is_up` says (`host_id`: SEER_HOST_ID, `heartbeat_timeout`:
    SEER_HEARTBEAT_TIMEOUT)."""
    now = ledger.now() if now is None else now
    counts = counters(ledger)
    last = ledger.row(
        "SELECT delivered_total, failed_total FROM metric_samples WHERE resolution = 0 "
        "ORDER BY ts DESC LIMIT 1"
    )
    delivered_total = counts.get("delivered_total", 0)
    failed_total = counts.get("failed_total", 0)
    registered = consumers.consumers(ledger, host_id=host_id, timeout=heartbeat_timeout, now=now)
    live = {c.queue for c in registered if consumers.is_up(c)}
    return Sample(
        ts=now,
        queue_depth=counts.get("parcels_queued", 0),
        oldest_queued_age=oldest_queued_age(ledger, now),
        delivered=max(0, delivered_total - last["delivered_total"]) if last else 0,
        failed=max(0, failed_total - last["failed_total"]) if last else 0,
        failed_last_hour=failed_since(ledger, now - 3600),
        cas_bytes=counts.get("cas_bytes", 0),
        cas_blobs=counts.get("cas_blobs", 0),
        postmaster_up=postmaster_queue in live,
        scheduler_up=scheduler_queue in live,
        delivered_total=delivered_total,
        failed_total=failed_total,
    )


def record(ledger: Ledger, sample: Sample, resolution: int = RAW) -> None:
    record_many(ledger, [sample], resolution)


def record_many(ledger: Ledger, samples: Iterable[Sample], resolution: int = RAW) -> None:
    """Samples written in one commit; `resolution` other than RAW is for history brought in
    already rolled up (a migration, a test's week, the bench's 90 days)."""
    marks = ", ".join("?" * (len(_COLUMNS) + 1))
    with ledger.write():
        ledger.executemany(
            f"INSERT INTO metric_samples (resolution, {', '.join(_COLUMNS)}) "
            f"VALUES ({marks}) {_REPLACE}",
            [[resolution, *(getattr(s, c) for c in _COLUMNS)] for s in samples],
        )


# The bucket a sample falls in, floor(ts / :to), alike on both engines: CAST truncates on
# SQLite but rounds on PostgreSQL (a sample at :40 would land in the next minute), so a
# quotient rounded up is taken one down. floor() is not in every SQLite build.
_BUCKET = (
    "(CAST(ts / :to AS BIGINT) - CASE WHEN CAST(ts / :to AS BIGINT) > ts / :to THEN 1 ELSE 0 END)"
)

# Rolling up: sums for counts per interval, maxima for levels (a spike must stay visible),
# minima for "up" (a consumer down for part of a minute shows as down for that minute).
_ROLLUP = f"""
INSERT INTO metric_samples (resolution, ts, queue_depth, oldest_queued_age,
    delivered, failed, failed_last_hour, cas_bytes, cas_blobs, postmaster_up, scheduler_up,
    delivered_total, failed_total)
SELECT :to, {_BUCKET} * :to, max(queue_depth), max(oldest_queued_age),
    sum(delivered), sum(failed), max(failed_last_hour), max(cas_bytes), max(cas_blobs),
    min(postmaster_up), min(scheduler_up), max(delivered_total), max(failed_total)
FROM metric_samples WHERE resolution = :src AND ts < :cutoff
GROUP BY {_BUCKET}
{_REPLACE}
"""


def downsample(ledger: Ledger, retention: Retention, now: float | None = None) -> int:
    """Rolls samples past their age into the next resolution; returns rows removed."""
    now = ledger.now() if now is None else now
    removed = 0
    for source, target, keep in ((RAW, MINUTE, retention.raw), (MINUTE, HOUR, retention.minute)):
        # Cut on a bucket boundary so that no bucket is ever rolled up half-full.
        cutoff = (now - keep) // target * target
        if not ledger.scalar(
            "SELECT 1 FROM metric_samples WHERE resolution = ? AND ts < ? LIMIT 1",
            (source, cutoff),
        ):
            continue
        # No lock: two rollups that overlap (consecutive slots on two hosts) agree, since a
        # bucket's samples are rolled up and deleted in one commit and the other sees all of
        # them or none; the same row is written twice at most.
        with ledger.write():
            ledger.execute(_ROLLUP, {"to": target, "src": source, "cutoff": cutoff})
            removed += ledger.execute(
                "DELETE FROM metric_samples WHERE resolution = ? AND ts < ?", (source, cutoff)
            ).rowcount
    with ledger.write():
        removed += ledger.execute(
            "DELETE FROM metric_samples WHERE resolution = ? AND ts < ?",
            (HOUR, now - retention.hour),
        ).rowcount
    return removed


def history(ledger: Ledger, since: float, resolution: int = RAW, limit: int = 2000) -> list[Sample]:
    rows = ledger.rows(
        f"SELECT {', '.join(_COLUMNS)} FROM metric_samples WHERE resolution = ? AND ts >= ? "
        "ORDER BY ts DESC LIMIT ?",
        (resolution, since, limit),
    )
    return [
        Sample(
            **{
                **r,
                "postmaster_up": bool(r["postmaster_up"]),
                "scheduler_up": bool(r["scheduler_up"]),
            }
        )
        for r in reversed(rows)
    ]


def growth_per_day(ledger: Ledger, now: float | None = None, window: float = 86400) -> float | None:
    """CAS bytes per day over the last `window` (any resolution); None without 10 min of data."""
    now = ledger.now() if now is None else now
    # One indexed lookup per resolution (the key is resolution, ts), never a scan.
    firsts = [
        ledger.row(
            "SELECT ts, cas_bytes FROM metric_samples WHERE resolution = ? AND ts >= ? "
            "ORDER BY ts LIMIT 1",
            (resolution, now - window),
        )
        for resolution in (RAW, MINUTE, HOUR)
    ]
    lasts = [
        ledger.row(
            "SELECT ts, cas_bytes FROM metric_samples WHERE resolution = ? ORDER BY ts DESC "
            "LIMIT 1",
            (resolution,),
        )
        for resolution in (RAW, MINUTE, HOUR)
    ]
    first = min((r for r in firsts if r), key=lambda r: r["ts"], default=None)
    last = max((r for r in lasts if r), key=lambda r: r["ts"], default=None)
    if not first or not last or last["ts"] - first["ts"] < 600:
        return None
    return (last["cas_bytes"] - first["cas_bytes"]) / (last["ts"] - first["ts"]) * 86400


# -- windows: what the console's history plots show ------------------------------------------


@dataclass(frozen=True)
class Window:
    """A span the history plots show, the width of one point, and the resolutions it reads:
    only those no coarser than the point (a 10-minute point cannot split an hour's row)."""

    name: str
    title: str
    span: int
    bucket: int
    resolutions: tuple[int, ...]


# A few hundred points at most: a plot 120 columns wide has about 220 braille dots across.
# Raw samples roll into minutes only once older than 24 h, so a 24 h window is raw samples
# (and minutes, if SEER_METRICS_KEEP_RAW is shorter), and a week is minutes plus the last
# day's raw samples (and hours, if SEER_METRICS_KEEP_MINUTE is shorter).
WINDOWS: dict[str, Window] = {
    w.name: w
    for w in (
        Window("15m", "15 minutes", 900, 15, (RAW,)),
        Window("1h", "1 hour", 3600, 30, (RAW,)),
        Window("24h", "24 hours", 86400, 600, (RAW, MINUTE)),
        Window("7d", "7 days", 7 * 86400, 3600, (RAW, MINUTE, HOUR)),
    )
}


@dataclass(frozen=True)
class Series:
    """One window's points, oldest first. A None in every value column at a point is a gap:
    no sample for longer than two sample intervals (the sampler or its host was down), drawn
    as a break in the line, never as a straight line across."""

    window: str
    start: float
    end: float
    bucket: int  # seconds a point covers
    resolutions: tuple[int, ...]  # what was read: RAW, MINUTE, HOUR
    ts: tuple[float, ...]  # each point's bucket start
    queue_depth: tuple[int | None, ...]  # the highest in the bucket: a spike stays visible
    delivered_per_min: tuple[float | None, ...]
    failed_per_min: tuple[float | None, ...]
    cas_bytes: tuple[int | None, ...]  # the highest in the bucket

    @property
    def empty(self) -> bool:
        return not self.ts


def _window_arm(resolution: int) -> str:
    # One range of the (resolution, ts) key per resolution. What a row counts is since the row
    # before it (a raw sample's delta is since the previous sample, which after an outage is
    # the whole outage): that span, not the bucket, is what the counts are divided by, so a
    # half-covered bucket or the first sample after a gap is not shown as a spike.
    alone = ":interval" if resolution == RAW else str(resolution)
    return (
        "SELECT ts, queue_depth, delivered, failed, cas_bytes, "
        f"COALESCE(ts - lag(ts) OVER (ORDER BY ts), {alone}) AS covered "
        f"FROM metric_samples WHERE resolution = {resolution} AND ts >= :start AND ts <= :end"
    )


def _window_sql(resolutions: tuple[int, ...]) -> str:
    bucket = _BUCKET.replace(":to", ":bucket")
    arms = " UNION ALL ".join(_window_arm(r) for r in resolutions)
    return (
        f"SELECT {bucket} * :bucket AS b, max(queue_depth) AS queue_depth, "
        "sum(delivered) AS delivered, sum(failed) AS failed, max(cas_bytes) AS cas_bytes, "
        f"sum(covered) AS covered FROM ({arms}) AS s GROUP BY {bucket} ORDER BY b"
    )


def window_plan(name: str, sample_interval: int = 15) -> tuple[Window, int]:
    """The window called `name` and the seconds one of its points covers: its bucket, widened
    to a whole multiple that holds at least one sample at the sampler's interval."""
    if name not in WINDOWS:
        raise ValueError(f"unknown history window {name!r}: one of {', '.join(WINDOWS)}")
    chosen = WINDOWS[name]
    multiple = max(1, -(-int(sample_interval) // chosen.bucket))
    return chosen, chosen.bucket * multiple


def window(
    ledger: Ledger, name: str, now: float | None = None, *, sample_interval: int = 15
) -> Series:
    """The last `name` ("15m", "1h", "24h", "7d") of history, bucketed in the database: a
    week is 168 rows returned, not the 15,000 it reads. `sample_interval` is the sampler's
    (SEER_SAMPLE_INTERVAL): a raw sample's span when nothing precedes it, and what counts as
    a gap."""
    now = ledger.now() if now is None else now
    chosen, bucket = window_plan(name, sample_interval)
    start = now - chosen.span
    rows = ledger.rows(
        _window_sql(chosen.resolutions),
        {"bucket": bucket, "start": start, "end": now, "interval": int(sample_interval)},
    )
    # A bucket or two without a sample is jitter (a sample late by a second lands in the next
    # bucket); longer than two intervals is an outage, shown as a break.
    gap = max(2 * int(sample_interval), bucket)
    ts: list[float] = []
    depth: list[int | None] = []
    delivered: list[float | None] = []
    failed: list[float | None] = []
    cas: list[int | None] = []
    for r in rows:
        at = float(r["b"])
        if ts and at - ts[-1] > gap and depth[-1] is not None:
            ts.append(ts[-1] + bucket)
            depth.append(None)
            delivered.append(None)
            failed.append(None)
            cas.append(None)
        # Counts per minute of time the rows cover; sums come back as Decimal on PostgreSQL.
        covered = max(float(r["covered"]), 1.0)
        ts.append(at)
        depth.append(int(r["queue_depth"]))
        delivered.append(float(r["delivered"]) * 60 / covered)
        failed.append(float(r["failed"]) * 60 / covered)
        cas.append(int(r["cas_bytes"]))
    return Series(
        name,
        start,
        now,
        bucket,
        chosen.resolutions,
        tuple(ts),
        tuple(depth),
        tuple(delivered),
        tuple(failed),
        tuple(cas),
    )
