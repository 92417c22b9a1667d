"""History windows (the console's plots): which resolutions each reads, buckets summed and
maximised in the database, outages shown as gaps, and a week bounded to a few hundred points."""

from __future__ import annotations

import pytest

from worker.monitoring import metrics
from worker.monitoring.metrics import HOUR, MINUTE, RAW

NOW = 1_795_780_800.0  # 2026-11-27 08:00:00 UTC, on a whole hour


def at(ts: float, depth: int = 0, delivered: int = 0, failed: int = 0, cas: int = 0):
    return metrics.Sample(ts, depth, None, delivered, failed, 0, cas, 0, True, True, 0, 0)


def test_each_window_reads_only_the_resolutions_no_coarser_than_its_points(runtime):
    ledger = runtime.ledger

    def seen_by(resolution: int, ago: float) -> list[str]:
        with ledger.write():
            ledger.execute("DELETE FROM metric_samples")
        metrics.record(ledger, at(NOW - ago, depth=1), resolution)
        return [n for n in metrics.WINDOWS if not metrics.window(ledger, n, now=NOW).empty]

    assert seen_by(RAW, 300) == ["15m", "1h", "24h", "7d"]
    assert seen_by(MINUTE, 300) == ["24h", "7d"]
    assert seen_by(HOUR, 300) == ["7d"]
    assert seen_by(MINUTE, 3 * 86400) == ["7d"]
    assert seen_by(HOUR, 8 * 86400) == []
    assert {n: metrics.window(ledger, n, now=NOW).resolutions for n in metrics.WINDOWS} == {
        "15m": (RAW,),
        "1h": (RAW,),
        "24h": (RAW, MINUTE),
        "7d": (RAW, MINUTE, HOUR),
    }


def test_buckets_take_maxima_of_levels_and_counts_per_minute_of_time_covered(runtime):
    ledger = runtime.ledger
    # The 1 h window's points are 30 s: two raw samples 15 s apart in each.
    start = NOW - 600
    metrics.record_many(
        ledger,
        [
            at(start + 15 * i, depth=10 + i % 2 * 5, delivered=3, failed=i % 2, cas=1000 + i)
            for i in range(40)
        ],
    )
    series = metrics.window(ledger, "1h", now=NOW, sample_interval=15)
    assert series.bucket == 30
    assert series.ts[0] == start and series.ts[1] == start + 30
    assert all(t % 30 == 0 for t in series.ts)
    assert set(series.queue_depth) == {15}  # the higher of each pair
    assert series.cas_bytes[1] == 1003
    # 6 delivered in 30 s is 12 a minute, one failure in 30 s is 2 a minute; the first point's
    # first sample has nothing before it and counts as one interval.
    assert series.delivered_per_min == (12.0,) * 20
    assert series.failed_per_min == (2.0,) * 20
    assert None not in series.queue_depth


def test_a_week_of_rolled_up_history_is_per_minute_whatever_its_resolution(runtime):
    ledger = runtime.ledger
    # Six deliveries a minute, kept as minutes for the last week and as hours before.
    minutes = [at(NOW - 86400 - 60 * i, delivered=6, depth=i % 50) for i in range(1, 3 * 1440)]
    hours = [at(NOW - 6 * 86400 - 3600 * i, delivered=360) for i in range(24)]
    metrics.record_many(ledger, minutes, MINUTE)
    metrics.record_many(ledger, hours, HOUR)
    series = metrics.window(ledger, "7d", now=NOW)
    assert series.bucket == 3600
    values = [v for v in series.delivered_per_min if v is not None]
    assert values and all(v == pytest.approx(6.0) for v in values)
    assert max(d for d in series.queue_depth if d is not None) == 49


def test_an_outage_is_a_gap_and_a_late_sample_is_not(runtime):
    ledger = runtime.ledger
    taken = [NOW - 3600 + 15 * i for i in range(240) if not 80 <= i < 120]  # 10 min down
    taken[10] += 14  # a sample 14 s late: its bucket is empty, the next has two
    metrics.record_many(ledger, [at(ts, depth=5, delivered=1) for ts in taken])
    series = metrics.window(ledger, "15m", now=NOW)
    assert None not in series.queue_depth
    series = metrics.window(ledger, "1h", now=NOW)
    gaps = [t for t, d in zip(series.ts, series.queue_depth, strict=True) if d is None]
    assert len(gaps) == 1
    assert NOW - 3600 + 15 * 80 - 30 <= gaps[0] <= NOW - 3600 + 15 * 120
    # The first sample after the outage counts what it saw over the whole outage: an
    # average, not a spike.
    after = series.ts.index(gaps[0]) + 1
    assert series.delivered_per_min[after] < 4
    # The 24 h window's 10-minute points: the outage is one empty point, a gap too.
    assert None in metrics.window(ledger, "24h", now=NOW).queue_depth


def test_a_day_raw_and_a_week_of_minutes_come_back_as_a_few_hundred_points(runtime):
    ledger = runtime.ledger
    metrics.record_many(
        ledger,
        [at(NOW - 86400 - 60 * i, depth=i % 7) for i in range(6 * 1440)],
        MINUTE,
    )
    metrics.record_many(ledger, [at(NOW - 15 * i, depth=i % 9) for i in range(5760)])
    points = {name: len(metrics.window(ledger, name, now=NOW).ts) for name in metrics.WINDOWS}
    assert points == {"15m": 61, "1h": 121, "24h": 145, "7d": 169}
    week = metrics.window(ledger, "7d", now=NOW)
    assert None not in week.queue_depth  # minutes meet the raw samples without a seam


def test_the_window_widens_its_points_to_the_sampler_interval(runtime):
    assert metrics.window_plan("15m", 60)[1] == 60
    assert metrics.window_plan("24h", 700)[1] == 1200  # whole multiples: minutes stay whole
    assert metrics.window_plan("7d", 15)[1] == 3600
    metrics.record_many(runtime.ledger, [at(NOW - 60 * i, depth=1) for i in range(15)])
    series = metrics.window(runtime.ledger, "15m", now=NOW, sample_interval=60)
    assert series.bucket == 60 and None not in series.queue_depth


def test_empty_history_and_an_unknown_window(runtime):
    series = metrics.window(runtime.ledger, "24h", now=NOW)
    assert series.empty and series.start == NOW - 86400 and series.end == NOW
    with pytest.raises(ValueError, match=r"unknown history window '2d': one of 15m, 1h, 24h, 7d"):
        metrics.window(runtime.ledger, "2d", now=NOW)


@pytest.mark.parametrize("name", list(metrics.WINDOWS))
def test_each_window_reads_a_range_of_the_primary_key(runtime, name):
    ledger = runtime.ledger
    chosen, bucket = metrics.window_plan(name)
    sql = metrics._window_sql(chosen.resolutions)
    params = {"bucket": bucket, "start": NOW - chosen.span, "end": NOW, "interval": 15}
    if ledger.dialect == "sqlite":
        plan = " | ".join(
            str(r["detail"]) for r in ledger.rows("EXPLAIN QUERY PLAN " + sql, params)
        )
        searches = plan.count(
            "SEARCH metric_samples USING PRIMARY KEY (resolution=? AND ts>? AND ts<?)"
        )
        assert searches == len(chosen.resolutions) and "SCAN metric_samples" not in plan, plan
    else:
        # The planner takes a sequential scan of a small table whatever the index: forbid it
        # and see that an index answers each resolution's range.
        with ledger.write():
            ledger.execute("SET LOCAL enable_seqscan = off")
            plan = " | ".join(r["QUERY PLAN"] for r in ledger.rows("EXPLAIN " + sql, params))
        assert "Seq Scan" not in plan, plan
        assert plan.count("Index Cond: ((resolution = ") == len(chosen.resolutions), plan
