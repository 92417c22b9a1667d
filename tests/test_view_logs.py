"""The Logs view (L), driven by Pilot against real files in the storage root's logs/: the end
shown at once, each file chosen, following (lines appended to the file show up, a half-written
line too), search up and down with its matches marked, the last error and the one before,
scrolling back through a large file in blocks with a bounded window, a missing file, a log line
that looks like markup, a planted link refused; and its snapshots at 80x24 and 120x40."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from seer_console.views import logs as view_logs
from seer_console.views.logs import MATCH, LogsView, style_line
from tests.console_fixtures import NOW, app_for, settle, use_utc
from worker.ops import logs

pytestmark = pytest.mark.backends("sqlite")

DEADLINE = 10.0  # seconds: 4 xdist workers on 2 busy cores


def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def huey(ts: float, level: str, message: str, name: str = "huey") -> str:
    """A line as Huey's consumer logs it under supervisord: `[time] LEVEL:name:message`."""
    return f"[{_stamp(ts)},{int(ts * 1000) % 1000:03d}] {level}:{name}:{message}"


def postmaster_lines() -> list[str]:
    """An hour of the postmaster's log at fixed times: deliveries, retries, a traceback, the
    markup-looking line of an agent's error, a very long line; the last error at 11:58."""
    lines = []
    agents = ("planner", "coder", "reviewer", "researcher")
    for n in range(48):
        ts = NOW - 3600 + n * 70
        agent = agents[n % 4]
        if n % 11 == 5:
            lines.append(
                huey(ts, "WARNING", f"parcel {n:04x}-5eed to {agent}: try 2 of 5 in 30s", "seer")
            )
        elif n % 17 == 8:
            lines.append(huey(ts, "DEBUG", f"claimed {n % 3 + 1} parcels for {agent}", "seer"))
        else:
            lines.append(
                huey(ts, "INFO", f"Executing worker.tasks.deliver: {n:04x}-5eed-4000 ({agent})")
            )
    lines += [
        huey(NOW - 240, "ERROR", "Unhandled exception in task 00a1-5eed-4000.", "huey.consumer"),
        "Traceback (most recent call last):",
        '  File "worker/postmaster.py", line 180, in _deliver',
        "    self.store.put_many(blobs)",
        "TimeoutError: agent inbox store did not answer within 30s",
        huey(NOW - 200, "INFO", "agent says: [bold]done[/] with [red]task-042[/red] needle"),
        huey(NOW - 150, "CRITICAL", "ledger write failed: disk full (ENOSPC) needle", "seer"),
        huey(NOW - 120, "ERROR", "inbox store refused parcel 00b7-5eed: 503 needle", "seer"),
        huey(NOW - 90, "WARNING", "queue depth 74 over 50 for 5 min", "seer.alerts"),
        huey(NOW - 60, "INFO", "delivered 00c3-5eed to planner in 0.21s " + "x" * 140, "seer"),
        huey(NOW - 30, "INFO", "Executing worker.tasks.sample_metrics: 7d2e-5eed-4000"),
        huey(NOW - 15, "INFO", "worker.tasks.sample_metrics executed in 0.004s"),
    ]
    return lines


LAST = postmaster_lines()[-1]


def logs_dir(runtime) -> Path:
    return runtime.layout.logs


def write(runtime, filename: str, lines: list[str], mode: str = "w") -> Path:
    path = logs_dir(runtime) / filename
    with open(path, mode) as f:
        f.writelines(line + "\n" for line in lines)
    return path


def fill_logs(runtime) -> None:
    """The postmaster's, supervisord's and the orchestration log; the scheduler's is missing."""
    write(runtime, "seer-postmaster.log", postmaster_lines())
    write(
        runtime,
        "supervisord.log",
        [
            f"{_stamp(NOW - 7200)},101 INFO spawned: 'seer-postmaster' with pid 48211",
            f"{_stamp(NOW - 7199)},102 INFO success: seer-postmaster entered RUNNING state",
            f"{_stamp(NOW - 600)},103 WARN exited: seer-scheduler (exit status 1; not expected)",
            f"{_stamp(NOW - 599)},104 CRIT reaped unknown pid 48200",
        ],
    )
    write(
        runtime,
        "orchestration.log",
        [
            '{"ts": 1795780000, "event": "storage_report", "level": "ok", "cas_bytes": 9234}',
            '{"ts": 1795780300, "event": "compaction", "status": "failed", "agents": 0}',
        ],
    )
    scheduler = logs_dir(runtime) / "seer-scheduler.log"
    if scheduler.exists():
        scheduler.unlink()


@pytest.fixture
def logged(runtime):
    use_utc()
    fill_logs(runtime)
    return runtime


async def until(pilot, condition: Callable[[], object], what: str = "") -> None:
    """Pauses until `condition()` holds, DEADLINE seconds at most: never a fixed sleep."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE}s: {what or condition}")
        await pilot.pause(0.02)


def view_of(app) -> LogsView:
    assert isinstance(app.screen, LogsView), app.screen
    return app.screen


def texts(view: LogsView) -> list[str]:
    return [line.text for line in view.body.lines]


def on_screen(view: LogsView) -> list[str]:
    """The rows the body draws now, as plain text."""
    body = view.body
    return [body.render_line(y).text.rstrip() for y in range(body.size.height)]


def status(view: LogsView) -> str:
    return str(view.query_one("#logs-status", Static).render())


def last_shown(view: LogsView) -> str | None:
    seen = view.body.shown_lines()
    return seen[1].text if seen else None


async def open_logs(pilot) -> LogsView:
    await settle(pilot)
    await pilot.press("L")
    view = view_of(pilot.app)
    await until(pilot, lambda: view.body.lines or view.problem, "the log read")
    await settle(pilot)
    return view


async def at_end(pilot, view: LogsView, line: str) -> None:
    await until(pilot, lambda: last_shown(view) == line, f"{line!r} the last line on screen")


async def test_l_opens_the_end_of_the_postmaster_log_at_once(logged):
    app = app_for(logged)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_logs(pilot)
        assert view.log_name == "postmaster"
        assert texts(view) == postmaster_lines()
        await at_end(pilot, view, LAST)
        assert LAST in on_screen(view)
        assert "logs/seer-postmaster.log" in status(view) and "at the end" in status(view)


async def test_each_file_by_its_number_and_tab_the_next(logged):
    app = app_for(logged)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_logs(pilot)
        await pilot.press("3")
        await until(pilot, lambda: view.log_name == "supervisord" and len(view.body.lines) == 4)
        assert view.body.lines[2].level == "WARNING" and view.body.lines[3].level == "CRITICAL"
        await pilot.press("tab")
        await until(pilot, lambda: view.log_name == "orchestration" and len(view.body.lines) == 2)
        assert [line.level for line in view.body.lines] == ["INFO", "ERROR"]
        await pilot.press("tab")  # after the last, the first again
        await until(pilot, lambda: view.log_name == "postmaster" and view.body.lines)
        await at_end(pilot, view, LAST)
        files = str(view.query_one("#logs-files", Static).render())
        assert all(f"{i + 1} {name}" in files for i, name in enumerate(logs.NAMES))


async def test_a_missing_file_says_so_in_one_line_and_following_picks_it_up(logged):
    app = app_for(logged)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_logs(pilot)
        await pilot.press("2")
        await until(pilot, lambda: view.problem is not None)
        said = "logs/seer-scheduler.log does not exist (yet): nothing has written it"
        assert view.problem == said and view.body.lines == []
        assert on_screen(view)[0] == said and not any(on_screen(view)[1:])
        assert said in status(view)
        await pilot.press("F")
        write(logged, "seer-scheduler.log", [huey(NOW, "INFO", "scheduler up")])
        await until(pilot, lambda: texts(view) == [huey(NOW, "INFO", "scheduler up")])
        assert view.problem is None


async def test_follow_shows_new_lines_as_they_are_written_and_F_stops(logged):
    app = app_for(logged)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_logs(pilot)
        await pilot.press("F")
        assert view.following and "FOLLOWING" in status(view)
        new = [huey(NOW + n, "INFO", f"new line {n}") for n in range(3)]
        write(logged, "seer-postmaster.log", new, mode="a")
        await at_end(pilot, view, new[-1])
        assert texts(view)[-4:] == [LAST, *new]
        # A line caught half written is shown, then whole: one line, not two.
        path = logs_dir(logged) / "seer-postmaster.log"
        with open(path, "a") as f:
            f.write(huey(NOW + 5, "ERROR", "half"))
        await at_end(pilot, view, huey(NOW + 5, "ERROR", "half"))
        with open(path, "a") as f:
            f.write(" and the rest\n")
        whole = huey(NOW + 5, "ERROR", "half and the rest")
        await at_end(pilot, view, whole)
        assert texts(view)[-2:] == [new[-1], whole]
        assert view.body.lines[-1].level == "ERROR"
        await pilot.press("F")
        assert not view.following and view._timer is None and "F follows" in status(view)


async def test_following_pauses_when_left_or_frozen_and_survives_a_rotation(logged):
    app = app_for(logged)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_logs(pilot)
        await pilot.press("F")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, LogsView) and view._timer is None
        await pilot.press("L")
        await pilot.pause()
        assert app.screen is view and view.following and view._timer is not None
        await pilot.press("f")  # the console's freeze: following waits too
        assert app.frozen
        await until(pilot, lambda: "FOLLOWING (frozen)" in status(view))
        await pilot.press("f")
        # Rotated as supervisord does: renamed, a new file in its place.
        path = logs_dir(logged) / "seer-postmaster.log"
        os.rename(path, path.with_name("seer-postmaster.log.1"))
        write(logged, "seer-postmaster.log", [huey(NOW + 60, "INFO", "after the rotation")])
        await until(pilot, lambda: texts(view) == [huey(NOW + 60, "INFO", "after the rotation")])


async def test_search_finds_marks_and_moves_up_and_down(logged):
    app = app_for(logged)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_logs(pilot)
        offsets = [line.offset for line in view.body.lines if "needle" in line.text]
        assert len(offsets) == 3
        await pilot.press("slash")
        box = view.query_one("#logs-search", Input)
        assert box.has_focus
        await pilot.press(*"NEEDLE", "enter")  # any case
        await until(pilot, lambda: view.body.current == offsets[2], "the last match")
        assert not box.has_class("-open") and view.body.has_focus
        line = view.body.lines[view.body.index_of(offsets[2])]
        marked = style_line(line, view.body.needle, True)
        at = line.text.lower().index("needle")
        assert any(s.style == MATCH and (s.start, s.end) == (at, at + 6) for s in marked.spans)
        assert "'NEEDLE': n up, N down" in status(view)
        await pilot.press("n")
        await until(pilot, lambda: view.body.current == offsets[1], "the match above")
        await pilot.press("n")
        await until(pilot, lambda: view.body.current == offsets[0])
        await pilot.press("n")
        await until(pilot, lambda: "no 'NEEDLE' above" in status(view))
        assert view.body.current == offsets[0]
        await pilot.press("N")
        await until(pilot, lambda: view.body.current == offsets[1], "the match below")
        await pilot.press("N")
        await pilot.press("N")
        await until(pilot, lambda: "no 'NEEDLE' below" in status(view))
        # escape closes the search line without leaving the view; again, it leaves.
        await pilot.press("slash")
        await pilot.press("escape")
        assert app.screen is view and not box.has_class("-open")


async def test_a_search_stops_after_its_limit_and_n_goes_on(logged, monkeypatch):
    # A limit of two blocks and a file of many: each press reads a bounded slice.
    monkeypatch.setattr(logs, "SEARCH_BLOCK", 64 * 1024)
    monkeypatch.setattr(view_logs, "SEARCH_LIMIT", 2 * 64 * 1024)
    lines = [huey(NOW - 9000, "INFO", "the first line: needle")]
    lines += [huey(NOW - 8000 + n / 100, "INFO", f"filler {n} " + "y" * 60) for n in range(8000)]
    write(logged, "seer-postmaster.log", lines)
    size = (logs_dir(logged) / "seer-postmaster.log").stat().st_size
    assert size > 6 * 128 * 1024
    app = app_for(logged)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_logs(pilot)
        await pilot.press("slash", *"needle", "enter")
        await until(pilot, lambda: "n looks on" in status(view), "a bounded first press")
        assert "no 'needle' in the 128.0 KiB above" in status(view)
        for _ in range(10):
            if view.body.current is not None:
                break
            await pilot.press("n")
            await until(pilot, lambda: "looks on" in status(view) or view.body.current is not None)
        assert view.body.current == 0 and view.body.lines[0].text == lines[0]


async def test_e_jumps_to_the_last_error_and_again_to_the_one_before(logged):
    app = app_for(logged)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_logs(pilot)
        errors = [line for line in view.body.lines if line.level in ("ERROR", "CRITICAL")]
        await pilot.press("e")
        await until(pilot, lambda: view.body.current == errors[-1].offset, "the last error")
        assert "503" in errors[-1].text
        assert errors[-1].text in on_screen(view)
        await pilot.press("e")
        await until(pilot, lambda: view.body.current == errors[-2].offset, "the one before")
        assert errors[-2].level == "CRITICAL"
        await pilot.press("G")
        await at_end(pilot, view, LAST)
        assert view.body.current is None


async def test_scrolling_back_reads_earlier_blocks_and_keeps_a_bounded_window(logged):
    lines = [huey(NOW - 30000 + n, "INFO", f"line {n:05d} " + "z" * 50) for n in range(20000)]
    write(logged, "seer-postmaster.log", lines)
    app = app_for(logged)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_logs(pilot)
        assert texts(view) == lines[-view_logs.OPEN_LINES :]
        assert view.window_start > 0
        starts = [view.window_start]
        for _ in range(14):  # home: the top of what is loaded, and more is read above it
            await pilot.press("home")
            await until(pilot, lambda: view.window_start < starts[-1], "a block above")
            starts.append(view.window_start)
            await settle(pilot)
        loaded = view.body.lines
        assert len(loaded) == view_logs.MAX_LOADED
        assert all(a.end == b.offset for a, b in itertools.pairwise(loaded))
        first = 20000 - view_logs.OPEN_LINES - 14 * view_logs.PAGE
        assert loaded[0].text == lines[first]
        # Where the operator scrolled to stays on screen: the top of the window before.
        assert view.body.shown_lines()[0].text == lines[first + view_logs.PAGE]
        # Down again past what is loaded: read below, the top let go.
        for _ in range(3):
            end = view.window_end
            await pilot.press("end")
            await until(pilot, lambda end=end: view.window_end > end, "a block below")
            await settle(pilot)
        assert len(view.body.lines) == view_logs.MAX_LOADED
        assert view.body.lines[0].offset > starts[-1]
        # g reads the file's start, G its end.
        await pilot.press("g")
        await until(pilot, lambda: view.window_start == 0 and texts(view)[0] == lines[0])
        assert "at the start" in status(view)
        await pilot.press("up")  # at the file's start: nothing above to read
        await pilot.press("G")
        await at_end(pilot, view, lines[-1])
        assert len(view.body.lines) == view_logs.OPEN_LINES


async def test_a_log_line_that_looks_like_markup_is_shown_as_written(logged):
    markup = huey(NOW - 200, "INFO", "agent says: [bold]done[/] with [red]task-042[/red] needle")
    app = app_for(logged)
    async with app.run_test(size=(120, 30)) as pilot:
        view = await open_logs(pilot)
        assert markup in on_screen(view)
        # Searched for, with markup in the search text, the status line says it as typed.
        await pilot.press("slash", *"[/]", "enter")
        await until(pilot, lambda: view.body.current is not None)
        assert view.body.lines[view.body.index_of(view.body.current)].text == markup
        assert "'[/]': n up, N down" in status(view)


async def test_a_planted_link_is_refused_not_followed(logged, tmp_path_factory):
    secret = tmp_path_factory.mktemp("elsewhere") / "shadow"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    path = logs_dir(logged) / "seer-postmaster.log"
    path.unlink()
    path.symlink_to(secret)
    app = app_for(logged)
    async with app.run_test(size=(120, 30)) as pilot:
        view = await open_logs(pilot)
        assert view.problem is not None and "is a symbolic link: refused" in view.problem
        assert view.body.lines == []
        assert not any("SECRET" in row for row in on_screen(view))
        await pilot.press("e")  # nor searched through
        await until(pilot, lambda: "symbolic link" in (view.progress or ""))
        assert not any("SECRET" in row for row in on_screen(view))


async def test_help_lists_the_keys_of_the_view(logged):
    from seer_console.screens import HelpScreen

    app = app_for(logged)
    async with app.run_test(size=(100, 50)) as pilot:
        await open_logs(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").render())
        for words in ("follow the end as lines come", "the last ERROR", "the next match"):
            assert words in text


# -- snapshots ------------------------------------------------------------------------------


async def _opened(pilot) -> None:
    view = await open_logs(pilot)
    await at_end(pilot, view, LAST)


async def _searched(pilot) -> None:
    view = await open_logs(pilot)
    await pilot.press("slash", *"needle", "enter")
    await until(pilot, lambda: view.body.current is not None)
    await settle(pilot)


def test_snapshot_logs_80x24(logged, snap_compare):
    assert snap_compare(app_for(logged), terminal_size=(80, 24), run_before=_opened)


def test_snapshot_logs_120x40_search(logged, snap_compare):
    assert snap_compare(app_for(logged), terminal_size=(120, 40), run_before=_searched)
