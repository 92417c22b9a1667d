"""Metric samples: what they count, rolling them up, and the scheduler consumer taking them."""

from __future__ import annotations

import datetime as dt
import threading
import urllib.error
import urllib.request

import pytest

from tests.helpers import parcel, wait_for
from worker.monitoring import exporter, metrics
from worker.parcels import intake as parcels
from worker.schedules import Every


def sample(runtime, now):
    s = runtime.settings
    taken = metrics.measure(runtime.ledger, s.postmaster_queue, s.scheduler_queue, now=now)
    metrics.record(runtime.ledger, taken)
    return taken


def test_sample_counts_queue_deliveries_and_failures_since_the_last(runtime):
    batch = [parcels.validate(parcel("a", n, attachment=f"{n}"), 10**6) for n in range(5)]
    ids = parcels.queue_parcels(runtime.ledger, batch, now=1000.0)
    first = sample(runtime, 1010.0)
    assert (first.queue_depth, first.oldest_queued_age, first.delivered) == (5, 10.0, 0)
    runtime.postmaster().deliver_waiting(now=1020.0, limit=3)
    with runtime.ledger.write():
        runtime.ledger.execute(
            "UPDATE parcels SET state='failed', finished_at=1025 WHERE id = ?", (ids[4],)
        )
    second = sample(runtime, 1030.0)
    assert (second.queue_depth, second.delivered, second.failed) == (1, 3, 1)
    assert second.failed_last_hour == 1
    assert second.cas_blobs == 6 and second.cas_bytes > 0
    assert not second.postmaster_up and not second.scheduler_up
    # Retrying the failure does not make the next sample count backwards.
    with runtime.ledger.write():
        runtime.ledger.execute("UPDATE parcels SET state='queued' WHERE id = ?", (ids[4],))
    assert sample(runtime, 1040.0).failed == 0


def test_downsampling_rolls_up_whole_buckets_and_expires_old_ones(runtime):
    retention = metrics.Retention(raw=3600, minute=7200, hour=86400)
    base = 1_000_020.0 // 3600 * 3600
    for i in range(12):  # two minutes of raw samples, 10 s apart
        taken = metrics.Sample(base + i * 10, i, None, 1, 0, 0, 100 * i, i, True, True, i, 0)
        metrics.record(runtime.ledger, taken)
    metrics.downsample(runtime.ledger, retention, now=base + 3600 + 60)
    minute = metrics.history(runtime.ledger, 0, metrics.MINUTE)
    raw = metrics.history(runtime.ledger, 0, metrics.RAW)
    # Only the first minute is past the raw retention; the second stays raw.
    assert [m.ts for m in minute] == [base]
    assert (minute[0].queue_depth, minute[0].delivered, minute[0].cas_bytes) == (5, 6, 500)
    assert len(raw) == 6
    metrics.downsample(runtime.ledger, retention, now=base + 3 * 3600 + 1)
    hour = metrics.history(runtime.ledger, 0, metrics.HOUR)
    assert len(hour) == 1 and hour[0].delivered == 12
    metrics.downsample(runtime.ledger, retention, now=base + 90000)
    assert metrics.history(runtime.ledger, 0, metrics.HOUR) == []


def test_growth_per_day_from_samples(runtime):
    for i in range(7):
        metrics.record(
            runtime.ledger,
            metrics.Sample(1000.0 + 600 * i, 0, None, 0, 0, 0, 1000 * i, i, True, True, 0, 0),
        )
    assert metrics.growth_per_day(runtime.ledger, now=4600.0) == 1000 / 600 * 86400
    assert metrics.growth_per_day(runtime.ledger, now=4600.0, window=300) is None


def test_every_fires_once_per_slot_however_the_checks_drift():
    rule = Every(15)
    start = dt.datetime(2026, 11, 27, 12, 0, 0)
    checks = [start + dt.timedelta(seconds=s) for s in (0.2, 5.9, 10.1, 14.99, 15.0, 19, 44, 61)]
    assert [rule(c) for c in checks] == [True, False, False, False, True, False, True, True]
    assert rule.next_after(start) == start + dt.timedelta(seconds=15)


@pytest.mark.queue_facing
def test_scheduler_consumer_records_samples(runtime, consumers):
    consumers("scheduler")
    wait_for(lambda: metrics.history(runtime.ledger, 0), 30, "a metric sample")
    (first,) = metrics.history(runtime.ledger, 0)[:1]
    assert first.scheduler_up


def test_flow_counts_the_last_minute_and_projects_nothing(runtime):
    """150 deliveries and 12 failures in the last minute are 150 and 12, not "203/min" and
    "15/min" projected from the span between two samples."""
    batch = [parcels.validate(parcel("a", n, attachment=f"{n}"), 10**6) for n in range(165)]
    ids = parcels.queue_parcels(runtime.ledger, batch, now=1000.0)
    runtime.postmaster().deliver_waiting(now=1955.0, limit=150)
    with runtime.ledger.write():
        for n, parcel_id in enumerate(ids[150:]):
            # 12 inside the window, 3 just outside it.
            at = 1950.0 + n if n < 12 else 1939.0
            runtime.ledger.execute(
                "UPDATE parcels SET state = 'failed', finished_at = ? WHERE id = ?", (at, parcel_id)
            )
    sample(runtime, 1956.0)
    sample(runtime, 1999.0)
    assert metrics.flow(runtime.ledger, now=2000.0) == metrics.Flow(60.0, 150, 12)
    assert metrics.flow(runtime.ledger, now=2100.0) == metrics.Flow(60.0, 0, 0)


def test_a_periodic_slot_is_claimed_once_whoever_asks(runtime):
    from worker.fleet import control

    assert control.claim_slot(runtime.ledger, "sample", 100)
    assert not control.claim_slot(runtime.ledger, "sample", 100)  # a second scheduler
    assert not control.claim_slot(runtime.ledger, "sample", 99)  # a late one
    assert control.claim_slot(runtime.ledger, "sample", 101)
    assert control.claim_slot(runtime.ledger, "reap", 100)  # slots are per job


def test_two_scheduler_consumers_sample_once_per_slot(runtime, consumers, monkeypatch):
    # An orphan scheduler beside the real one (issue 10, item 5): every job ran twice a slot.
    monkeypatch.setenv("SEER_SAMPLE_INTERVAL", "5s")
    first, second = consumers("scheduler"), consumers("scheduler")

    wait_for(lambda: len(metrics.history(runtime.ledger, 0)) >= 6, 90, "six samples")
    taken = [s.ts for s in metrics.history(runtime.ledger, 0)]
    # A sample runs when its task does, which on a loaded machine may be in the next slot:
    # so count them against the slots they span rather than by the slot of each time. Two
    # schedulers each sampling every slot would take about twice as many.
    slots_spanned = (max(taken) - min(taken)) / 5 + 1
    assert len(taken) <= slots_spanned + 1, (len(taken), slots_spanned)
    assert first.proc.poll() is None and second.proc.poll() is None


def test_exporter_speaks_openmetrics_when_asked_with_the_same_names(runtime):
    collector = exporter.SeerCollector(runtime, now=1000.0)
    classic, content_type = exporter.encode(collector)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"

    # The same text, but for the queue's round trip: each read measures its own.
    def timeless(text: str) -> list[str]:
        return [x for x in text.splitlines() if not x.startswith("seer_queue_latency_seconds ")]

    assert timeless(classic.decode()) == timeless(exporter.render(runtime, now=1000.0))
    assert (
        "# TYPE seer_parcels_delivered_total counter\nseer_parcels_delivered_total 0\n"
        in classic.decode()
    )
    scraper = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    body, content_type = exporter.encode(collector, scraper)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE seer_parcels_delivered counter\nseer_parcels_delivered_total 0.0\n" in text
    # A registry of its own: no process_ or python_ metrics of prometheus_client's default one.
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples and all(line.startswith("seer_") for line in samples)


def test_exporter_answers_503_when_the_ledger_cannot_be_read():
    class Unreadable:
        def collect(self):
            raise OSError("the ledger is gone")

    server = exporter.serve("127.0.0.1", 0, Unreadable())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 503
    finally:
        server.shutdown()
        server.server_close()
