"""The History view (H): queue depth, deliveries and failures per minute, and the CAS's size,
plotted over the last 15 minutes, hour, day or week of the metric history the sampler keeps
in the ledger (so it survives restarts of the worker and of the console).

Reads `metrics.window` in a thread worker when the window changes and again while the view
is on screen; the plots are drawn from what it returned, on the UI thread, only when the data
or the size changes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult, RenderResult
from textual.containers import Grid
from textual.timer import Timer
from textual.widgets import Static
from textual_plotext import PlotextPlot

from seer_console import output
from seer_console.views.base import View, ViewKey

if TYPE_CHECKING:
    from worker.monitoring.metrics import Series

WINDOWS = ("15m", "1h", "24h", "7d")
TITLES = {"15m": "15 min", "1h": "1 hour", "24h": "24 hours", "7d": "7 days"}
EMPTY = "no samples in this window yet"
# How often the data is read again while the view is on screen: a 15-minute window moves
# by a point every 15 s; the others by a point every 30 s or more.
REREAD = {"15m": 15.0, "1h": 30.0, "24h": 60.0, "7d": 60.0}


@dataclass(frozen=True)
class Line:
    label: str
    values: tuple[float | int | None, ...]
    color: str


class HistoryPlot(PlotextPlot):
    """One plot: lines over the window's time axis, with clock labels below and value labels
    (`kind`: counts, per-minute rates or bytes) at the left. A None value breaks the line."""

    DEFAULT_CSS = """
    HistoryPlot {
        border: round $primary 50%;
        border-title-color: $text;
        height: 1fr;
        width: 1fr;
        padding: 0;
    }
    HistoryPlot:focus { border: round $accent; }
    HistoryPlot.-message { content-align: center middle; color: $text-muted; }
    """

    can_focus = True

    def __init__(self, title: str, kind: str, *, id: str) -> None:
        super().__init__(id=id)
        self.border_title = title
        self.kind = kind
        self.series: Series | None = None
        self.lines: tuple[Line, ...] = ()
        self.message = "reading…"
        self.set_class(True, "-message")

    def draw(self, series: Series, lines: Sequence[Line]) -> None:
        self.series, self.lines = series, tuple(lines)
        self.message = EMPTY if series.empty else ""
        self.set_class(bool(self.message), "-message")
        self.refresh()

    def fail(self, error: str) -> None:
        self.message = f"cannot read the history: {error}"
        self.set_class(True, "-message")
        self.refresh()

    def render(self) -> RenderResult:
        if self.message or self.series is None:
            return Text(self.message)
        width, height = self.size.width, self.size.height
        if width < 12 or height < 4:
            return Text("")
        series, plt = self.series, self.plt
        plt.clear_figure()
        # The border frames the plot already: only the axes that carry labels are drawn.
        plt.xaxes(True, False)
        plt.yaxes(True, False)
        present = [v for line in self.lines for v in line.values if v is not None]
        ticks, labels = value_ticks(
            min(present), max(present), self.kind, max(2, (height - 2) // 2)
        )
        plt.yticks(ticks, labels)
        plt.ylim(ticks[0], ticks[-1])
        # The value labels' width is known once they are: the clock labels get what is left.
        room = width - max(len(label) for label in labels) - 3
        plt.xticks(*time_ticks(series.start, series.end, room))
        plt.xlim(series.start, series.end)
        for line in self.lines:
            for xs, ys in segments(series.ts, line.values):
                plt.plot(xs, ys, marker="braille", color=line.color)
        return super().render()


def segments(
    ts: Sequence[float], values: Sequence[float | int | None]
) -> list[tuple[list[float], list[float]]]:
    """The runs of a series between its gaps."""
    runs: list[tuple[list[float], list[float]]] = []
    xs: list[float] = []
    ys: list[float] = []
    for t, v in zip(ts, values, strict=True):
        if v is None:
            if xs:
                runs.append((xs, ys))
            xs, ys = [], []
        else:
            xs.append(t)
            ys.append(float(v))
    if xs:
        runs.append((xs, ys))
    return runs


# Tick steps of the time axis, the finest that leaves room for its labels is taken.
_TIME_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800)


def time_ticks(start: float, end: float, width: int) -> tuple[list[float], list[str]]:
    """Clock labels on whole local minutes, hours or days (as every time the console shows,
    in the host's zone), spaced so that they do not run into each other."""
    offset = time.localtime(start).tm_gmtoff
    for step in _TIME_STEPS:
        form = "%a %d" if step >= 86400 else "%H:%M"
        first = math.ceil((start + offset) / step) * step - offset
        ticks = [float(t) for t in range(int(first), int(end) + 1, step)]
        label_width = len(time.strftime(form, time.localtime(start)))
        if len(ticks) * (label_width + 3) <= max(width, 1):
            break
    return ticks, [time.strftime(form, time.localtime(t)) for t in ticks]


_BYTES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def value_ticks(low: float, high: float, kind: str, count: int) -> tuple[list[float], list[str]]:
    """About `count` ticks on round values covering low..high, labelled for `kind`:
    "count" and "rate" from zero, "bytes" around the data (a store's growth would not show
    against zero), in the unit its size calls for."""
    if kind != "bytes":
        low = 0.0
    unit = 1024 ** min(len(_BYTES) - 1, int(math.log(max(high, 1), 1024))) if kind == "bytes" else 1
    lo, hi = low / unit, high / unit
    if hi - lo <= 0:
        lo, hi = (lo - 1, hi + 1) if kind == "bytes" and lo > 1 else (lo, lo + 1)
    step = _nice((hi - lo) / max(1, count - 1))
    if kind == "count":
        step = max(step, 1.0)  # no half a parcel
    first = math.floor(lo / step) * step
    last = math.ceil(hi / step) * step
    ticks = [first + i * step for i in range(round((last - first) / step) + 1)]
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    if kind == "bytes":
        name = _BYTES[round(math.log(unit, 1024))]
        labels = [f"{t:.{decimals}f} {name}" for t in ticks]
    elif kind == "count":
        labels = [_count(t) for t in ticks]
    else:
        labels = [f"{t:,.{decimals}f}" for t in ticks]
    return [t * unit for t in ticks], labels


def _nice(raw: float) -> float:
    """The round step (1, 2, 2.5 or 5 times a power of ten) at or above `raw`."""
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * 0.999)


def _span(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _count(n: float) -> str:
    if abs(n) >= 10_000:
        return f"{n / 1000:,.0f}k"
    return f"{n:,.0f}" if n == int(n) else f"{n:,.1f}"


# What each plot shows, built from a Series.
PLOTS: tuple[tuple[str, str, str, Callable[[Series], list[Line]]], ...] = (
    (
        "queue-depth",
        "Queue depth (highest)",
        "count",
        lambda s: [Line("queued", s.queue_depth, "cyan")],
    ),
    (
        "delivered",
        "Delivered per minute",
        "rate",
        lambda s: [Line("delivered", s.delivered_per_min, "green")],
    ),
    (
        "failed",
        "Failed per minute",
        "rate",
        lambda s: [Line("failed", s.failed_per_min, "red")],
    ),
    (
        "cas-size",
        "CAS size",
        "bytes",
        lambda s: [Line("CAS", s.cas_bytes, "magenta")],
    ),
)


class HistoryView(View):
    view_id = "history"
    view_title = "History"
    KEY = "H"
    DESCRIPTION = "queue depth, deliveries and failures per minute, CAS size: 15 min to 7 days"
    KEYS = (
        ViewKey("1", "window('15m')", "15m", "plot the last 15 minutes", title="History: 15 min"),
        ViewKey("2", "window('1h')", "1h", "plot the last hour", title="History: 1 hour"),
        ViewKey("3", "window('24h')", "24h", "plot the last 24 hours", title="History: 24 hours"),
        ViewKey("4", "window('7d')", "7d", "plot the last 7 days", title="History: 7 days"),
        ViewKey("w", "next_window", "Window", "the next window (15 min, 1 h, 24 h, 7 days)"),
        ViewKey("r", "reread", "Reread", "read the history again now", show=False),
    )
    LOCAL_KEYS = (("tab / shift+tab", "move between the plots"),)

    DEFAULT_CSS = """
    HistoryView #history-head { height: 1; padding: 0 1; }
    HistoryView #history-plots {
        layout: grid;
        grid-size: 2 2;
        grid-gutter: 0 1;
        height: 1fr;
    }
    """

    window_name: str = "1h"

    def __init__(self) -> None:
        super().__init__()
        self._next: Timer | None = None
        self._read_at: float | None = None
        self._series: Series | None = None

    def compose_view(self) -> ComposeResult:
        yield Static(self._head(), id="history-head")
        with Grid(id="history-plots"):
            for plot_id, title, kind, _ in PLOTS:
                yield HistoryPlot(title, kind, id=f"plot-{plot_id}")

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.reread()

    def on_screen_suspend(self) -> None:
        self._stop_timer()

    # -- keys --------------------------------------------------------------------------------

    def action_window(self, name: str) -> None:
        if name != self.window_name:
            self.window_name = name
            self.reread()

    def action_next_window(self) -> None:
        self.action_window(WINDOWS[(WINDOWS.index(self.window_name) + 1) % len(WINDOWS)])

    def action_reread(self) -> None:
        self.reread()

    # -- reading -----------------------------------------------------------------------------

    def reread(self) -> None:
        self._stop_timer()
        self.query_one("#history-head", Static).update(self._head())
        self._read(self.window_name, self.now())

    @work(thread=True, exclusive=True, group="history")
    def _read(self, name: str, now: float | None) -> None:
        from worker.monitoring import metrics

        try:
            runtime = self.source.runtime
            series = metrics.window(
                runtime.ledger, name, now=now, sample_interval=runtime.settings.sample_interval
            )
        except Exception as exc:  # shown in the plots; the console stays up
            self.app.call_from_thread(self._failed, name, output.one_line(str(exc)))
        else:
            self.app.call_from_thread(self._show_series, series)

    def _show_series(self, series: Series) -> None:
        if series.window != self.window_name or not self.is_attached:
            return  # a read of the window before this one, or the app is closing
        self._series, self._read_at = series, series.end
        for plot_id, _, _, lines in PLOTS:
            self.query_one(f"#plot-{plot_id}", HistoryPlot).draw(series, lines(series))
        self.query_one("#history-head", Static).update(self._head())
        self._schedule()

    def _failed(self, name: str, error: str) -> None:
        if name != self.window_name or not self.is_attached:
            return
        for plot in self.query(HistoryPlot):
            plot.fail(error)
        self._schedule()

    def _schedule(self) -> None:
        # The next read once this one is shown: reads never overlap. None in tests and
        # snapshots (live False), and none while the console is frozen or the view is away.
        self._stop_timer()
        if self.console.live and not self.console.frozen and self.is_current:
            self._next = self.set_timer(REREAD[self.window_name], self.reread, name="history")

    def _stop_timer(self) -> None:
        if self._next is not None:
            self._next.stop()
            self._next = None

    def _head(self) -> Text:
        head = Text()
        for n, name in enumerate(WINDOWS, 1):
            style = "reverse bold" if name == self.window_name else "dim"
            head.append(f" {n} {TITLES[name]} ", style=style)
            head.append(" ")
        series = self._series
        if series is not None and series.window == self.window_name:
            head.append(f" a point each {_span(series.bucket)}", style="dim")
            head.append(f" · to {output.clock(series.end)}", style="dim")
        return head
