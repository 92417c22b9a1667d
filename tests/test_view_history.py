"""The History view (H): its windows switched by key, empty history said so, data read again,
and its snapshots at 80x24 and 120x40 from fixed samples at a fixed clock."""

from __future__ import annotations

import pytest

from seer_console.app import SeerConsole
from seer_console.screens import HelpScreen
from seer_console.views.history import EMPTY, HistoryPlot, HistoryView, time_ticks, value_ticks
from tests.console_fixtures import NOW, FixedSource, app_for, settle, use_utc
from worker.monitoring import metrics

PLOTS = ("queue-depth", "delivered", "failed", "cas-size")
GiB = 1024**3


def sample(ts: float) -> metrics.Sample:
    """A sample as the sampler takes them every 15 s, from integers only (the same on every
    machine): a backlog that rises towards noon and builds and drains every ten minutes, a
    failure now and then and a burst of them on the 24th, the CAS growing and garbage
    collected once, on the 25th."""
    i = int(ts // 15)
    minute_of_day = int(ts // 60) % 1440
    depth = 5 + 60 - abs(minute_of_day - 720) * 60 // 720 + 3 * abs(i % 40 - 20) // 2
    burst = NOW - 3 * 86400 - 6 * 3600 <= ts < NOW - 3 * 86400 - 5 * 3600
    failed = 2 if burst else int(i % 97 == 0)
    grown = (i - int((NOW - 7 * 86400) // 15)) * 150_000
    collected = 2 * GiB if ts >= NOW - 2 * 86400 - 4 * 3600 else 0
    cas = int(8.2 * GiB) + grown - collected
    delivered = 3 + (minute_of_day // 120) % 4 + i % 3
    return metrics.Sample(ts, depth, None, delivered, failed, 0, cas, 0, True, True, 0, 0)


def fill_history(runtime, seconds: int = 7 * 86400) -> None:
    """The last `seconds` sampled every 15 s, with the sampler down for ten minutes half an
    hour ago and for three hours five days ago, then rolled up as the scheduler does: raw
    for the last day, per minute before."""
    down = [(NOW - 2400, NOW - 1800), (NOW - 5 * 86400, NOW - 5 * 86400 + 3 * 3600)]
    taken = [NOW - 15 * n for n in range(seconds // 15)]
    kept = [ts for ts in reversed(taken) if not any(a <= ts < b for a, b in down)]
    metrics.record_many(runtime.ledger, [sample(ts) for ts in kept])
    metrics.downsample(runtime.ledger, metrics.Retention(), now=NOW)


@pytest.fixture
def utc():
    use_utc()


def plot(app, name: str) -> HistoryPlot:
    return app.screen.query_one(f"#plot-{name}", HistoryPlot)


def shown(app, name: str) -> str:
    return str(plot(app, name).render())


async def open_history(pilot) -> HistoryView:
    await settle(pilot)
    await pilot.press("H")
    await settle(pilot)
    view = pilot.app.screen
    assert isinstance(view, HistoryView)
    return view


async def test_h_opens_the_last_hour_and_each_key_switches_the_window(runtime, utc):
    fill_history(runtime, 2 * 86400)
    app = app_for(runtime)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await open_history(pilot)
        assert view.window_name == "1h"
        series = plot(app, "queue-depth").series
        assert series is not None and series.window == "1h" and series.end == NOW
        assert "1 hour" in str(view.query_one("#history-head").render())
        windows = (("1", "15m", 15, "15 s"), ("3", "24h", 600, "10 min"), ("4", "7d", 3600, "1 h"))
        for key, name, bucket, each in windows:
            await pilot.press(key)
            await settle(pilot)
            assert view.window_name == name
            for p in PLOTS:
                drawn = plot(app, p).series
                assert drawn is not None and (drawn.window, drawn.bucket) == (name, bucket)
            assert f"a point each {each} · to 12:00:00" in str(
                view.query_one("#history-head").render()
            )
        await pilot.press("w")  # after 7 days comes 15 minutes again
        await settle(pilot)
        assert view.window_name == "15m"
        await pilot.press("w")
        await settle(pilot)
        assert view.window_name == "1h"


async def test_each_plot_draws_its_own_column_with_labels_for_it(runtime, utc):
    fill_history(runtime, 3600)
    app = app_for(runtime)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_history(pilot)
        series = plot(app, "queue-depth").series
        assert [line.values for line in plot(app, "queue-depth").lines] == [series.queue_depth]
        assert [line.values for line in plot(app, "delivered").lines] == [series.delivered_per_min]
        assert [line.values for line in plot(app, "failed").lines] == [series.failed_per_min]
        assert [line.values for line in plot(app, "cas-size").lines] == [series.cas_bytes]
        cas = shown(app, "cas-size")
        assert "GiB" in cas and "11:30" in cas and "12:00" in cas  # NOW is 12:00 UTC
        assert None in series.queue_depth  # the ten minutes the sampler was down


async def test_empty_history_says_so_in_every_plot_then_data_appears(runtime, utc):
    app = app_for(runtime)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_history(pilot)
        assert [shown(app, p) for p in PLOTS] == [EMPTY] * 4
        fill_history(runtime, 900)
        await pilot.press("r")  # read again now (live, the view does so every 30 s)
        await settle(pilot)
        assert all(EMPTY not in shown(app, p) for p in PLOTS)
        assert plot(app, "queue-depth").series.queue_depth[-1] == sample(NOW).queue_depth
        await pilot.press("4")
        await settle(pilot)
        assert not plot(app, "cas-size").series.empty
        assert view._next is None  # not live: no timer reads again


async def test_a_history_that_cannot_be_read_is_said_in_the_plots(runtime, utc):
    app = app_for(runtime)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_history(pilot)
        with runtime.ledger.write():
            runtime.ledger.execute("DROP TABLE metric_samples")
        await pilot.press("r")
        await settle(pilot)
        assert shown(app, "queue-depth").startswith("cannot read the history: ")
        assert "metric_samples" in shown(app, "queue-depth")


async def test_live_the_view_reads_again_while_shown_and_stops_when_left(runtime, utc):
    fill_history(runtime, 900)
    app = SeerConsole(FixedSource(runtime), clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_history(pilot)
        assert view._next is not None
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HistoryView) and view._next is None
        await pilot.press("f")  # frozen: the view reads once when opened, then waits
        await pilot.press("H")
        await settle(pilot)
        assert app.screen is view and view._next is None


async def test_help_lists_the_window_keys(runtime, utc):
    app = app_for(runtime)
    async with app.run_test(size=(100, 40)) as pilot:
        await open_history(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(str(s.render()) for s in app.screen.query("Static"))
        for line in ("plot the last 15 minutes", "plot the last 7 days", "the next window"):
            assert line in text


def test_time_labels_fall_on_whole_local_minutes_hours_and_days(utc):
    ticks, labels = time_ticks(NOW - 3600, NOW, 36)
    assert labels == ["11:00", "11:30", "12:00"] and ticks[-1] == NOW
    ticks, labels = time_ticks(NOW - 7 * 86400, NOW, 100)
    assert labels == ["Sat 21", "Sun 22", "Mon 23", "Tue 24", "Wed 25", "Thu 26", "Fri 27"]
    ticks, labels = time_ticks(NOW - 7 * 86400, NOW, 40)
    assert labels == ["Sat 21", "Mon 23", "Wed 25", "Fri 27"]


def test_value_labels_are_round_and_in_the_unit_of_the_data():
    assert value_ticks(3, 74, "count", 3) == ([0.0, 50.0, 100.0], ["0", "50", "100"])
    assert value_ticks(0, 0.11, "rate", 3)[1] == ["0.0", "0.1", "0.2"]
    ticks, labels = value_ticks(8.04 * GiB, 8.6 * GiB, "bytes", 3)
    assert labels == ["8.0 GiB", "8.5 GiB", "9.0 GiB"] and ticks[0] == 8 * GiB
    assert value_ticks(0, 0, "count", 3)[1] == ["0", "1"]  # a flat zero still has an axis
    assert value_ticks(0, 52_000, "count", 3)[1] == ["0", "50k", "100k"]


# -- snapshots ------------------------------------------------------------------------------


def _snap_app(runtime) -> SeerConsole:
    use_utc()
    fill_history(runtime)
    return app_for(runtime)


def test_snapshot_history_80x24(runtime, snap_compare):
    assert snap_compare(_snap_app(runtime), terminal_size=(80, 24), run_before=open_history)


def test_snapshot_history_120x40_week(runtime, snap_compare):
    async def week(pilot):
        await open_history(pilot)
        await pilot.press("4")
        await settle(pilot)

    assert snap_compare(_snap_app(runtime), terminal_size=(120, 40), run_before=week)


def test_snapshot_history_80x24_empty(runtime, snap_compare):
    use_utc()
    assert snap_compare(app_for(runtime), terminal_size=(80, 24), run_before=open_history)
