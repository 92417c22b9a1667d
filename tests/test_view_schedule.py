"""The Schedule view (S), driven by Pilot over the console's fixed data and periodic runs
recorded at fixed times as the scheduler records them: every job's columns, a failed run's
error and its last good run, markup in an error shown as it is, running a safe job (confirmed,
cancelled), an unsafe one refused, read-only refusing, reloading; and its snapshots.
"""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from seer_console.screens import ConfirmScreen
from seer_console.views.schedule import ScheduleView
from tests.console_fixtures import GITHUB_TOKEN, NOW, app_for, settle
from worker.fleet import control
from worker.monitoring import status
from worker.ops import jobs

pytestmark = pytest.mark.backends("sqlite")

MARKUP_ERROR = "SMTPServerDisconnected: [bold]mail.example.org[/bold] closed the connection"
LOCKED = "OperationalError: database is locked"


def record_runs(runtime) -> None:
    """A run of each job but one, at fixed times, through what the scheduler records them
    with: compact_memory failed after a good run, deliver_alerts failed with markup and a
    token in its error, monitor_storage run from the CLI, reap never recorded."""
    ledger = runtime.ledger

    def ran(job, ago, took, error=None, by="scheduler"):
        control.record_job_run(ledger, job, NOW - ago, took, error, by, now=NOW - ago + took)

    ran("sample", 7, 0.012)
    ran("compact_memory", 10 * 3600, 0.41)
    ran("compact_memory", 4 * 3600, 30.02, LOCKED)
    ran("evaluate_rules", 31, 0.118)
    ran("deliver_alerts", 8, 0.2)
    ran("deliver_alerts", 3, 1.5, f"{MARKUP_ERROR} (password={GITHUB_TOKEN})")
    ran("monitor_storage", 9 * 3600 + 120, 2.33, by="cli:ops")


@pytest.fixture
def runs(filled):
    record_runs(filled)
    return filled


def table(app) -> DataTable:
    return app.screen.query_one("#schedule-table", DataTable)


def row(app, job: str) -> list[str]:
    return [str(cell) for cell in table(app).get_row(job)]


def rows(app) -> list[str]:
    return [r.key.value for r in table(app).ordered_rows]


def status_line(app) -> str:
    return str(app.screen.query_one("#schedule-status", Static).render())


def detail(app) -> str:
    return str(app.screen.query_one("#schedule-detail", Static).render())


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def open_view(pilot) -> ScheduleView:
    await settle(pilot)
    await pilot.press("S")
    await settle(pilot)
    view = pilot.app.screen
    assert isinstance(view, ScheduleView)
    return view


async def select(pilot, job: str) -> None:
    table(pilot.app).move_cursor(row=rows(pilot.app).index(job))
    await pilot.pause()
    assert detail(pilot.app).startswith(job)


def at_now(runtime, monkeypatch) -> None:
    # The ledger's clock at the console's: a run from the key is recorded "now", as live.
    monkeypatch.setattr(runtime.ledger, "now", lambda: NOW)


async def test_every_job_with_its_columns_and_the_queue_depth(runs):
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        assert rows(app) == [j.name for j in jobs.periodic(runs.settings)]
        columns = [str(c.label) for c in table(app).columns.values()]
        assert columns == ["JOB", "SCHEDULE", "NEXT RUN", "LAST RUN", "TOOK", "RESULT", "LAST OK"]
        sample = row(app, "sample")
        interval = runs.settings.sample_interval
        assert NOW % interval == 0
        assert sample == [
            "sample",
            f"every {interval}s",
            f"in {interval}s",  # NOW is on a whole interval
            "7s ago",
            "0.01s",
            "ok",
            "7s ago",
        ]
        assert row(app, "monitor_storage")[5] == "ok (by cli:ops)"
        assert row(app, "reap")[3:] == ["-", "-", "never ran", "-"]
        assert "scheduler queue: 0 waiting" in status_line(app)


async def test_a_failed_last_run_shows_its_error_and_the_last_good_run(runs):
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        compact = row(app, "compact_memory")
        assert compact[3:] == ["4h00m ago", "30.02s", f"FAILED: {LOCKED}", "10h00m ago"]
        await select(pilot, "compact_memory")
        shown = detail(app)
        assert f"result    FAILED: {LOCKED}" in shown
        assert "last run  2026-11-27 08:00:00 (4 hours ago) by scheduler, took 30.02s" in shown
        assert "last ok   2026-11-27 02:00:00 (10 hours ago)" in shown
        assert "r runs it now" in shown


async def test_markup_in_an_error_is_shown_as_it_is_and_a_secret_is_not(runs):
    app = app_for(runs)
    async with app.run_test(size=(200, 40)) as pilot:
        await open_view(pilot)
        result = row(app, "deliver_alerts")[5]
        assert result.startswith(f"FAILED: {MARKUP_ERROR}")
        await select(pilot, "deliver_alerts")
        shown = detail(app)
        assert MARKUP_ERROR in shown and "[REDACTED" in shown
        assert GITHUB_TOKEN not in shown and GITHUB_TOKEN not in result
        assert "not run on request: runs every few seconds already" in shown


async def test_r_runs_a_safe_job_after_a_confirmation_naming_it(runs, monkeypatch):
    at_now(runs, monkeypatch)
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        await select(pilot, "compact_memory")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Run compact_memory now" in app.screen.question
        await pilot.press("y")
        await settle(pilot, 3)
        assert isinstance(app.screen, ScheduleView)
        run = control.job_runs(runs.ledger)["compact_memory"]
        assert run.ok and run.by == "console" and run.started_at == NOW
        assert row(app, "compact_memory")[3] == "0s ago"
        assert row(app, "compact_memory")[5] == "ok (by console)"
        assert row(app, "compact_memory")[6] == "0s ago"
        assert any(n.startswith("compact_memory ran: ok in ") for n in notes(app))
        # The cursor stays on the job it ran.
        assert detail(app).startswith("compact_memory")


async def test_a_run_that_fails_says_so_and_its_row_shows_the_error(runs, monkeypatch):
    at_now(runs, monkeypatch)
    # A directory where the report goes: the run fails, recorded with why.
    (runs.layout.logs / "orchestration.log").mkdir(exist_ok=True)
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        await select(pilot, "monitor_storage")
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot, 3)
        result = row(app, "monitor_storage")
        assert result[5].startswith("FAILED: storage report not logged")
        assert result[6] == "9h02m ago"  # the last good run, from the CLI
        assert any(n.startswith("monitor_storage ran: FAILED") for n in notes(app))


async def test_cancel_runs_nothing(runs):
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        await select(pilot, "sample")
        before = control.job_runs(runs.ledger)["sample"]
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ScheduleView)
        assert control.job_runs(runs.ledger)["sample"] == before
        assert row(app, "sample")[3] == "7s ago"
        assert "Run sample: cancelled, nothing changed." in notes(app)


async def test_an_unsafe_job_is_refused_in_one_line_without_asking(runs):
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        await select(pilot, "reap")
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ScheduleView)
        (said,) = [n for n in notes(app) if "reap" in n]
        assert said.startswith("reap is not run on request") and "\n" not in said
        assert "sample" in said and "compact_memory" in said and "monitor_storage" in said
        assert "reap" not in control.job_runs(runs.ledger)


async def test_read_only_refuses_to_run_a_job(runs):
    app = app_for(runs, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await open_view(pilot)
        await select(pilot, "sample")
        before = control.job_runs(runs.ledger)["sample"]
        assert view.check_action("run_now", ()) is None  # dimmed, inert
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ScheduleView)
        assert control.job_runs(runs.ledger)["sample"] == before
        assert any("Read-only console: Run now is disabled." in n for n in notes(app))
        # The palette's way in is refused too.
        view.action_run_now()
        await settle(pilot)
        assert control.job_runs(runs.ledger)["sample"] == before


async def test_g_reads_the_runs_again(runs):
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        assert row(app, "reap")[5] == "never ran"
        control.record_job_run(runs.ledger, "reap", NOW - 1, 0.004, now=NOW)
        await pilot.press("g")
        await settle(pilot)
        assert row(app, "reap")[3:] == ["1s ago", "0.00s", "ok", "1s ago"]


async def test_a_queue_that_cannot_be_read_says_so_and_the_jobs_are_still_shown(runs, monkeypatch):
    def unreachable(runtime, **kw):
        from worker.doorbells import QueueProbe

        return QueueProbe("redis", "redis://10.0.4.12:6379", False, error="[b]refused[/b]")

    monkeypatch.setattr(status, "queue_probe", unreachable)
    app = app_for(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        assert "scheduler queue: depth unknown ([b]refused[/b])" in status_line(app)
        assert len(rows(app)) == len(jobs.periodic(runs.settings))


async def test_at_80_columns_the_result_is_cut_and_the_detail_has_it_whole(runs):
    app = app_for(runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_view(pilot)
        compact = row(app, "compact_memory")
        assert compact[5].startswith("FAILED") and compact[5].endswith("…")
        assert compact[3] == "4h00m"  # no "ago": the header says it
        assert table(app).virtual_size.width <= 80
        await select(pilot, "compact_memory")
        assert LOCKED in detail(app)


async def _view(pilot) -> None:
    await settle(pilot)
    await pilot.press("S")
    await settle(pilot)
    await select(pilot, "deliver_alerts")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_view(runs, snap_compare, size):
    assert snap_compare(app_for(runs), terminal_size=size, run_before=_view)
