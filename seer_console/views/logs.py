"""The Logs view: the end of the postmaster's, the scheduler's, supervisord's or the
orchestration log at once, followed, searched, scrolled back a block at a time.

Every read is worker/ops/logs.py's, in a thread worker; the view keeps a window of at most
MAX_LOADED lines and reads more above or below as the operator scrolls, so a 1 GB log opens
as fast as a small one. Lines are Text (a log quoting `[bold]` shows it as written).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from seer_console import output
from seer_console.views.base import View, ViewKey
from worker.ops import logs

MAX_LOADED = 5000  # lines kept in memory; more is read again from the file when needed
PAGE = 500  # lines read at a time when scrolling past what is loaded
FOLLOW_EVERY = 0.5  # seconds between looks for new lines while following

LEVEL_STYLES = {
    "CRITICAL": Style(color="red", bold=True),
    "ERROR": Style(color="red"),
    "WARNING": Style(color="yellow"),
    "DEBUG": Style(dim=True),
}
HIGHLIGHT = Style(reverse=True)


class LogLines(ScrollView, can_focus=True):
    """The loaded window of a log, one line a row (Textual's line API: only what is on
    screen is rendered). Tells the view when a scroll reaches either edge."""

    DEFAULT_CSS = """
    LogLines { height: 1fr; scrollbar-size-vertical: 1; }
    """

    def __init__(self, on_edge: Callable[[str], None], **kw: Any) -> None:
        super().__init__(**kw)
        self.lines: list[logs.Line] = []
        self.highlight: int | None = None  # the offset of the line found by a search
        self.on_edge = on_edge

    def set_lines(self, lines: list[logs.Line]) -> None:
        self.lines = lines
        width = max((len(line.text) for line in lines), default=0)
        self.virtual_size = Size(width, len(lines))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        index = round(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        if not 0 <= index < len(self.lines):
            return Strip.blank(width, self.rich_style)
        line = self.lines[index]
        style = LEVEL_STYLES.get(line.level or "")
        text = Text(line.text, style=style or "", no_wrap=True, end="")
        if line.offset == self.highlight:
            text.stylize(HIGHLIGHT)
        strip = Strip(list(text.render(self.app.console)), text.cell_len)
        x = round(self.scroll_offset.x)
        return strip.crop_extend(x, x + width, self.rich_style)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value <= 0 and old_value > 0:
            self.on_edge("top")
        elif new_value >= self.max_scroll_y and old_value < self.max_scroll_y:
            self.on_edge("bottom")

    def line_index(self, offset: int) -> int | None:
        return next((i for i, line in enumerate(self.lines) if line.offset == offset), None)

    def bottom_offset(self) -> int | None:
        """Where the last line on screen ends: a new search starts there, going up."""
        if not self.lines:
            return None
        index = min(len(self.lines), round(self.scroll_offset.y) + self.size.height) - 1
        return self.lines[max(0, index)].end


class LogsView(View):
    view_id = "logs"
    view_title = "Logs"
    KEY = "L"
    DESCRIPTION = "the worker's, supervisord's and the orchestration log: follow, search, errors"
    KEYS = (
        ViewKey("tab", "next_file", "Next log", "the next log file (1-4 choose one)"),
        ViewKey("f", "follow", "Follow", "follow the end of the log as lines come (on/off)"),
        ViewKey("slash", "search", "Search", "search upwards for text (any case)"),
        ViewKey("n", "search_next('backward')", "Next", "the next match, further up", show=False),
        ViewKey("N", "search_next('forward')", "Prev", "the match below, further down", show=False),
        ViewKey("e", "last_error", "Last error", "jump to the last ERROR/CRITICAL or traceback"),
        ViewKey("g", "top", "Top", "the start of the file (its first lines)", show=False),
        ViewKey("G", "end", "End", "the end of the file", show=False),
        *(
            ViewKey(str(i + 1), f"file({i})", name, f"the {name} log", show=False)
            for i, name in enumerate(logs.NAMES)
        ),
    )
    LOCAL_KEYS = (
        ("up / down", "scroll a line"),
        ("pageup / pagedown", "scroll a page (reading more of the file past either end)"),
    )
    DEFAULT_CSS = """
    LogsView #logs-files { height: 1; background: $panel; }
    LogsView #logs-status { height: 1; background: $panel; color: $text-muted; }
    LogsView #logs-search { display: none; height: 1; border: none; padding: 0 1; }
    LogsView #logs-search.-open { display: block; }
    """

    files: ClassVar[tuple[str, ...]] = logs.NAMES

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.following = False
        self.window_start = 0  # offset of the first loaded line
        self.window_end = 0  # just past the last loaded line
        self.file_size = 0
        self.inode: int | None = None
        self.problem: str | None = None
        self.searching: str | None = None  # the text last searched for
        self.progress: str | None = None
        self._busy = False  # a read above or below is on its way
        self._timer: Any = None

    def compose_view(self) -> ComposeResult:
        yield Static("", id="logs-files")
        yield LogLines(self._edge, id="logs-lines")
        yield Input(placeholder="search upwards for… (enter; escape cancels)", id="logs-search")
        yield Static("", id="logs-status")

    def on_mount(self) -> None:
        self.query_one(LogLines).focus()
        self._bar()
        self.open_end()

    @property
    def body(self) -> LogLines:
        return self.query_one(LogLines)

    def _log(self) -> logs.LogFile:
        """Off the UI thread only: the runtime's layout."""
        return logs.log_file(self.source.runtime.layout, self.files[self.current])

    # -- the bars ----------------------------------------------------------------------------

    def _bar(self) -> None:
        bar = Text()
        for i, name in enumerate(self.files):
            style = "reverse bold" if i == self.current else ""
            bar.append(f" {i + 1} {name} ", style=style)
            bar.append(" ")
        self.query_one("#logs-files", Static).update(bar)
        self._status()

    def _status(self) -> None:
        parts: list[str] = []
        if self.problem:
            parts.append(self.problem)
        else:
            parts.append(f"{output.size(self.file_size)}")
            if self.file_size:
                shown = (
                    "end"
                    if self.window_end >= self.file_size
                    else f"{self.window_end * 100 // self.file_size}%"
                )
                parts.append(f"at {shown}" + (" · start" if self.window_start == 0 else ""))
        parts.append("FOLLOWING" if self.following else "f follows")
        if self.progress:
            parts.append(self.progress)
        elif self.searching:
            parts.append(f"search {self.searching!r}: n up, N down")
        self.query_one("#logs-status", Static).update(Text(" · ".join(parts)))

    # -- reading -----------------------------------------------------------------------------

    def _height(self) -> int:
        return max(40, self.body.size.height * 3)

    def open_end(self) -> None:
        self._read("end", self.current, self._height())

    @work(thread=True, exclusive=True, group="logs-read")
    def _read(
        self, where: str, current: int, count: int, offset: int = 0, inode: int | None = None
    ) -> None:
        try:
            log = logs.log_file(self.source.runtime.layout, self.files[current])
            if where == "end":
                chunk = logs.tail(log, count)
            elif where == "top":
                chunk = logs.head(log, count)
            elif where == "above":
                chunk = logs.before(log, offset, count)
            else:  # below, and following
                chunk = logs.after(log, offset, count, inode=inode)
        except FileNotFoundError:
            self.app.call_from_thread(self._failed, current, "does not exist (yet)")
        except OSError as exc:
            self.app.call_from_thread(self._failed, current, str(exc))
        else:
            self.app.call_from_thread(self._got, current, where, chunk)

    def _failed(self, current: int, why: str) -> None:
        if current != self.current:
            return
        self._busy = False
        self.problem = f"logs/{logs.FILENAMES[self.files[current]]} {why}"
        self.body.set_lines([])
        self.window_start = self.window_end = self.file_size = 0
        self.inode = None
        self._status()

    def _got(self, current: int, where: str, chunk: logs.Chunk) -> None:
        if current != self.current:
            return  # an answer about the log shown before
        self._busy = False
        self.problem = None
        body = self.body
        self.file_size = chunk.size
        if chunk.restarted:
            self.notify(f"{self.files[current]} log rotated or truncated: from its start")
        if where in ("end", "top") or chunk.restarted:
            body.highlight = None
            body.set_lines(list(chunk.lines))
            self.window_start, self.window_end, self.inode = chunk.start, chunk.end, chunk.inode
            if where == "top":
                body.scroll_home(animate=False)
            else:
                body.scroll_end(animate=False)
        elif where == "above":
            lines = list(chunk.lines) + body.lines
            drop = max(0, len(lines) - MAX_LOADED)
            if drop:
                lines = lines[:-drop]
                self.window_end = lines[-1].end
            body.set_lines(lines)
            self.window_start = chunk.start
            body.scroll_to(y=len(chunk.lines), animate=False)
        else:  # below or following
            if chunk.inode != self.inode or not chunk.lines:
                self.inode = chunk.inode
                self._status()
                return
            at_bottom = body.scroll_y >= body.max_scroll_y
            lines = body.lines + list(chunk.lines)
            drop = max(0, len(lines) - MAX_LOADED)
            if drop:
                lines = lines[drop:]
                self.window_start = lines[0].offset
            body.set_lines(lines)
            self.window_end = chunk.end
            if self.following or at_bottom:
                body.scroll_end(animate=False)
            elif drop:
                body.scroll_to(y=max(0, body.scroll_y - drop), animate=False)
        self._status()

    def _edge(self, edge: str) -> None:
        if self._busy or self.problem:
            return
        if edge == "top" and self.window_start > 0:
            self._busy = True
            self._read("above", self.current, PAGE, self.window_start)
        elif edge == "bottom" and self.window_end < self.file_size:
            self._busy = True
            self._read("below", self.current, PAGE, self.window_end, self.inode)

    # -- following -----------------------------------------------------------------------------

    def action_follow(self) -> None:
        self.following = not self.following
        if self.following:
            self.follow_now()
            if self.console.live and self._timer is None:
                self._timer = self.set_interval(FOLLOW_EVERY, self.follow_now, name="follow")
        elif self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._status()

    def follow_now(self) -> None:
        """One look for new lines; the end itself when the window is elsewhere in the file."""
        if not self.following or not self.is_current:
            return
        if self.problem or self.window_end < self.file_size:
            self.open_end()
        else:
            self._read("below", self.current, 1000, self.window_end, self.inode)

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self._timer is not None:
            self._timer.resume()

    # -- keys ----------------------------------------------------------------------------------

    def action_file(self, index: int) -> None:
        if index == self.current:
            return
        self.current = index
        self.searching = self.progress = None
        self.inode = None
        self.window_start = self.window_end = self.file_size = 0
        self.body.set_lines([])
        self._bar()
        self.open_end()

    def action_next_file(self) -> None:
        self.action_file((self.current + 1) % len(self.files))

    def action_top(self) -> None:
        self.following = False
        self._read("top", self.current, self._height())
        self._status()

    def action_end(self) -> None:
        self.open_end()

    def action_search(self) -> None:
        box = self.query_one("#logs-search", Input)
        box.add_class("-open")
        box.value = self.searching or ""
        box.focus()

    @on(Input.Submitted, "#logs-search")
    def _submitted(self, event: Input.Submitted) -> None:
        self._close_search()
        text = event.value.strip()
        if not text:
            return
        self.searching = text
        self.following = False
        self._find(self.current, "search", text, self.body.bottom_offset(), "backward")

    def _close_search(self) -> None:
        self.query_one("#logs-search", Input).remove_class("-open")
        self.body.focus()

    def action_back(self) -> None:
        box = self.query_one("#logs-search", Input)
        if box.has_class("-open"):
            self._close_search()
            return
        super().action_back()

    def action_search_next(self, direction: str) -> None:
        if not self.searching:
            self.action_search()
            return
        body = self.body
        index = body.line_index(body.highlight) if body.highlight is not None else None
        if index is None:
            offset = body.bottom_offset()
        else:
            line = body.lines[index]
            offset = line.offset if direction == "backward" else line.end
        self._find(self.current, "search", self.searching, offset, direction)

    def action_last_error(self) -> None:
        self.following = False
        self._find(self.current, "error", "", None, "backward")

    def available(self, action: str) -> bool:
        if action == "search_next":
            return self.searching is not None
        return True

    @work(thread=True, exclusive=True, group="logs-find")
    def _find(self, current: int, kind: str, text: str, offset: int | None, direction: str) -> None:
        worker = get_current_worker()
        what = f"{text!r}" if kind == "search" else "the last error"
        try:
            log = logs.log_file(self.source.runtime.layout, self.files[current])
            looked = 0
            while not worker.is_cancelled:
                if kind == "search":
                    step = logs.search(log, text, offset, direction)
                else:
                    step = logs.last_error(log, offset)
                looked += step.read
                if step.line is not None or step.done:
                    break
                offset = step.offset
                share = 100 - step.offset * 100 // max(1, step.size)
                if direction == "forward":
                    share = step.offset * 100 // max(1, step.size)
                self.app.call_from_thread(
                    self._progress, current, f"looking for {what}: {share}% of the file"
                )
            else:
                return
            if step.line is None:
                where = "above" if direction == "backward" else "below"
                self.app.call_from_thread(self._not_found, current, f"no {what} {where}")
                return
            found = step.line
            above = logs.before(log, found.offset, 100)
            below = logs.after(log, found.offset, 300, inode=None)
        except OSError as exc:
            self.app.call_from_thread(self._not_found, current, str(exc))
            return
        self.app.call_from_thread(self._found, current, found, above, below)

    def _progress(self, current: int, text: str) -> None:
        if current == self.current:
            self.progress = text
            self._status()

    def _not_found(self, current: int, text: str) -> None:
        if current == self.current:
            self.progress = None
            self._status()
            self.notify(text)

    def _found(self, current: int, found: logs.Line, above: logs.Chunk, below: logs.Chunk) -> None:
        if current != self.current:
            return
        self.progress = None
        body = self.body
        lines = list(above.lines) + list(below.lines)
        body.highlight = found.offset
        body.set_lines(lines)
        self.window_start, self.window_end, self.file_size, self.inode = (
            above.start,
            below.end,
            below.size,
            below.inode,
        )
        index = len(above.lines)
        body.scroll_to(y=max(0, index - body.size.height // 3), animate=False)
        self._status()
