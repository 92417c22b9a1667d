"""The Schedule view (S): every periodic job with its schedule, next run, last run (when, how
long, how it went) and last good run, the scheduler queue's depth, and the safe jobs run now.

Everything shown comes from worker.ops.schedule (what `seer schedule` prints), read in a
thread worker; running a job is the service's run_now, in a thread worker too, after a
confirmation that names the job.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.timer import Timer
from textual.widgets import DataTable, Static

from seer_console import output
from seer_console.views.base import View, ViewKey
from worker.ops import schedule

# How often the jobs are read again while the view is on screen and the console is live:
# the fastest jobs run every few seconds, and a read is one ledger query and a queue probe.
REREAD = 5.0
COLUMNS = schedule.COLUMNS  # as `seer schedule` prints them
RESULT = COLUMNS.index("RESULT")
# From this width on, the times say "in 4m12s" and "2h03m ago"; below, the headers say it.
WIDE = 110
# Room kept at the right for a vertical scrollbar, should the jobs outgrow the table.
_SCROLLBAR = 1


def _ago(ts: float | None, now: float, wide: bool) -> str:
    if not ts:
        return "-"
    # Another host's clock may be a little ahead: a run is never "in" the past.
    age = output.short_age(max(0.0, now - ts))
    return f"{age} ago" if wide else age


def _in(ts: float | None, now: float, wide: bool) -> str:
    if not ts:
        return "never"
    age = output.short_age(max(0.0, ts - now))
    return f"in {age}" if wide else age


def row_cells(job: schedule.JobStatus, now: float, wide: bool) -> list[str]:
    """A job's row, RESULT uncut (the table cuts it to the width left)."""
    last = job.last
    return [
        job.name,
        output.one_line(job.schedule, 16),
        _in(job.next_run, now, wide),
        _ago(last.started_at if last else None, now, wide),
        job.took_text,
        output.printable(job.result_line(500)),
        _ago(job.last_ok_at, now, wide),
    ]


def _style(job: schedule.JobStatus) -> str:
    if job.last is None:
        return "dim"
    return "green" if job.last.ok else "bold red"


class ScheduleView(View):
    view_id = "schedule"
    view_title = "Schedule"
    KEY = "S"
    AUTO_FOCUS = "#schedule-table"
    DESCRIPTION = "periodic jobs: schedules, next and last runs, results; run a safe job now"
    KEYS = (
        ViewKey(
            "r",
            "run_now",
            "Run now",
            f"run the selected job now ({', '.join(schedule.SAFE)}; asks first)",
            mutates=True,
            title="Run the selected periodic job now",
        ),
        ViewKey("g", "reload", "Reload", "read the jobs and the queue's depth again"),
    )
    LOCAL_KEYS = (
        ("↑ ↓", "select a job: its times, who ran it and its whole last error are below"),
    )
    DEFAULT_CSS = """
    ScheduleView #schedule-status { height: 1; padding: 0 1; color: $text-muted; }
    ScheduleView #schedule-status.-error { color: $error; }
    ScheduleView #schedule-table { height: auto; max-height: 1fr; }
    ScheduleView #schedule-detail {
        height: auto; border-top: solid $primary-darken-2; padding: 0 1;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.shown: schedule.Schedule | None = None
        self.running: str | None = None  # the job run from here, until it is over
        self._next: Timer | None = None

    def compose_view(self) -> ComposeResult:
        yield Static(Text("Reading the schedule…"), id="schedule-status")
        # No cell padding: the columns are sized to what they hold, one or two spaces apart,
        # so that all seven fit 80 columns with room left for RESULT.
        table: DataTable[Any] = DataTable(
            id="schedule-table", cursor_type="row", zebra_stripes=True, cell_padding=0
        )
        table.add_columns(*COLUMNS)
        yield table
        yield Static(Text(""), id="schedule-detail")

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.reload()

    def on_screen_suspend(self) -> None:
        self._stop_timer()

    def on_resize(self) -> None:
        # RESULT is cut to the width there is: drawn again from what was read, not read again.
        if self.shown is not None:
            self._fill(self.shown)

    # -- reading -----------------------------------------------------------------------------

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        self._stop_timer()
        self._read(self.now())

    @work(thread=True, exclusive=True, group="schedule")
    def _read(self, now: float | None) -> None:
        try:
            shown = schedule.schedule(self.source.runtime, now)
        except Exception as exc:  # said on the status line; the console stays up
            self.app.call_from_thread(self._failed, output.one_line(str(exc), 200))
        else:
            self.app.call_from_thread(self._show, shown)

    def _failed(self, error: str) -> None:
        if not self.is_attached:
            return  # the app is closing
        status = self.query_one("#schedule-status", Static)
        status.set_class(True, "-error")
        status.update(Text(f"Cannot read the schedule: {error}"))
        self._schedule_read()

    def _show(self, shown: schedule.Schedule) -> None:
        if not self.is_attached:
            return
        self.shown = shown
        self._fill(shown)
        self._schedule_read()

    def _fill(self, shown: schedule.Schedule) -> None:
        table = self.query_one("#schedule-table", DataTable)
        row = table.cursor_row
        width = self.size.width or 80
        wide = width >= WIDE
        gap = 2 if width >= WIDE + 30 else 1
        rows = [row_cells(job, shown.taken_at, wide) for job in shown.jobs]
        widths = [max([len(name), *(len(r[i]) for r in rows)]) for i, name in enumerate(COLUMNS)]
        # RESULT gets what the other columns leave: the whole error is in the detail below.
        taken = sum(w for i, w in enumerate(widths) if i != RESULT) + gap * (len(COLUMNS) - 1)
        limit = max(12, width - taken - _SCROLLBAR)
        widths[RESULT] = min(widths[RESULT], limit)
        table.clear(columns=True)
        for i, (name, w) in enumerate(zip(COLUMNS, widths, strict=True)):
            table.add_column(name, width=w + (gap if i < len(COLUMNS) - 1 else 0), key=name)
        for job, cells in zip(shown.jobs, rows, strict=True):
            cells[RESULT] = output.one_line(cells[RESULT], limit)
            # Text, never markup: an error is the job's own words (redacted by the service).
            texts = [Text(c) for c in cells]
            texts[RESULT].stylize(_style(job))
            table.add_row(*texts, key=job.name)
        if shown.jobs:
            table.move_cursor(row=min(row, len(shown.jobs) - 1))
        self._status(shown)
        self._detail()

    def _status(self, shown: schedule.Schedule) -> None:
        status = self.query_one("#schedule-status", Static)
        unknown = shown.depth is None
        status.set_class(unknown, "-error")
        depth = (
            f"{shown.depth:,} waiting"
            if shown.depth is not None
            else f"depth unknown ({output.one_line(shown.depth_error or 'not reachable', 60)})"
        )
        text = f"{shown.queue} queue: {depth} · {time.strftime('%Z')} times"
        if self.running:
            text += f" · running {self.running}…"
        status.update(Text(text))

    def _schedule_read(self) -> None:
        # The next read once this one is shown: reads never overlap. None in tests and
        # snapshots (live False), and none while the console is frozen or the view is away.
        self._stop_timer()
        if self.console.live and not self.console.frozen and self.is_current:
            self._next = self.set_timer(REREAD, self.reload, name="schedule")

    def _stop_timer(self) -> None:
        if self._next is not None:
            self._next.stop()
            self._next = None

    # -- the selected job --------------------------------------------------------------------

    def selected(self) -> schedule.JobStatus | None:
        if self.shown is None or not self.shown.jobs:
            return None
        table = self.query_one("#schedule-table", DataTable)
        return self.shown.jobs[min(max(table.cursor_row, 0), len(self.shown.jobs) - 1)]

    @on(DataTable.RowHighlighted, "#schedule-table")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def _detail(self) -> None:
        found = self.query("#schedule-detail")
        if found and self.shown is not None:
            found.first(Static).update(render_detail(self.selected(), self.shown.taken_at))

    # -- running a job now -------------------------------------------------------------------

    def action_run_now(self) -> None:
        job = self.selected()
        if job is None:
            self.console.notify("No job to run: the schedule is not read yet.")
            return
        if self.read_only:  # the key is inert then; the palette may still get here
            self.console.notify("Read-only console: actions are disabled.", severity="warning")
            return
        try:
            # The service decides what may run: the settings' jobs, no I/O.
            schedule.check_runnable(self.source.runtime, job.name)
        except schedule.NotRunnable as exc:
            self.console.notify(output.one_line(str(exc), 300), severity="warning")
            return
        if self.running:
            self.console.notify(f"{self.running} is running: wait for it to finish.")
            return
        name = job.name
        self.console.confirm(
            f"Run {name} now ({job.description})? It runs here, in the console's process, "
            "recorded as run by the console; the scheduler keeps its own times.",
            f"Run {name}",
            lambda: self._start(name),
        )

    def _start(self, name: str) -> None:
        self.running = name
        if self.shown is not None:
            self._status(self.shown)
        self._run(name)

    @work(thread=True, group="schedule-run")
    def _run(self, name: str) -> None:
        try:
            run = schedule.run_now(self.source.runtime, name, by="console")
        except Exception as exc:  # the job's own error is in the run; this is anything else
            self.app.call_from_thread(self._ran, name, None, output.one_line(str(exc), 200))
        else:
            self.app.call_from_thread(self._ran, name, run, None)

    def _ran(self, name: str, run: Any, error: str | None) -> None:
        self.running = None
        if run is None:
            self.console.notify(f"{name} did not run: {error}", severity="error")
        else:
            self.console.notify(schedule.ran(run), severity="information" if run.ok else "error")
        if self.is_attached:
            self.reload()


def _full(ts: float | None, now: float) -> str:
    return output.when(ts, now) if ts else "never"


def render_detail(job: schedule.JobStatus | None, now: float) -> Text:
    """The selected job: what it does, its times in full, who ran it last, its whole last
    error, and whether `r` runs it. Plain Text, never markup: the error is data."""
    text = Text()
    if job is None:
        return text
    text.append(job.name, style="bold")
    text.append(f"  {job.schedule} · {job.description}\n", style="dim")
    text.append(f"next run  {_full(job.next_run, now)}\n")
    last = job.last
    if last is None:
        text.append("last run  never (since the runs are recorded)\n")
    else:
        text.append(f"last run  {output.when(last.started_at, now)} by {last.by}, ")
        text.append(f"took {job.took_text}\nresult    ")
        if last.ok:
            text.append("ok\n", style="green")
        else:
            text.append("FAILED: ", style="bold red")
            text.append(output.printable(last.error or "no error recorded") + "\n", style="red")
        text.append(f"last ok   {_full(job.last_ok_at, now)}\n")
    if job.safe:
        text.append("r runs it now", style="dim")
    else:
        text.append(f"not run on request: {job.why_not}", style="dim")
    return text
