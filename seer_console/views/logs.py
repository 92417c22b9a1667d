"""The Logs view (L): the end of the postmaster's, the scheduler's, supervisord's or the
orchestration log at once, followed, searched, its last error found, scrolled back a block at
a time.

Every read is worker/ops/logs.py's (bounded, from where the reader stands, no link followed,
lines redacted and printable), in a thread worker. The view keeps a window of at most
MAX_LOADED lines and reads more above or below as the operator scrolls past it, so a 1 GB log
opens as fast as a small one. A search reads at most SEARCH_LIMIT bytes a key press, then says
where it stopped; the next press goes on from there. Lines are Text, never markup: a log line
quoting `[bold]` shows it as written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from seer_console import output
from seer_console.views.base import View, ViewKey
from worker.files import UnsafeEntry
from worker.ops import logs

# Lines read when a log is opened (or its end asked for): more than any screen is high, so
# that scrolling up starts from loaded lines; still one 64 KiB block of a typical log.
OPEN_LINES = 200
PAGE = 500  # lines read at a time when scrolling past what is loaded
MAX_LOADED = 5000  # lines kept; more is read again from the file when scrolled back to
FOLLOW_EVERY = 0.5  # seconds between looks for new lines while following (as tail -f)
FOLLOW_LINES = 1000  # new lines taken a look; more and the view jumps to the end instead
# What one key press of a search (/, n, N, e) reads at most before it stops and says where:
# a 1 GB log is searched a slice at a time, each answered in well under a second.
SEARCH_LIMIT = 256 * 1024 * 1024
CONTEXT_ABOVE = 100  # lines shown above a match, and below it
CONTEXT_BELOW = 300

LEVEL_STYLES = {
    "CRITICAL": Style(color="red", bold=True),
    "ERROR": Style(color="red"),
    "WARNING": Style(color="yellow"),
    "DEBUG": Style(dim=True),
}
MATCH = Style(color="black", bgcolor="yellow", reverse=False)  # on the reversed line too
CURRENT = Style(reverse=True)
MESSAGE = Style(color="yellow")


def style_line(line: logs.Line, needle: str | None, current: bool) -> Text:
    """A log line as shown: coloured by its level, matches of `needle` marked, the line a
    search or `e` landed on reversed. Text built from the string, never parsed as markup."""
    text = Text(line.text, no_wrap=True, end="")
    level = LEVEL_STYLES.get(line.level or "")
    if level is not None:
        # A span, not Text's own style: Text.render drops its base style when it has no span.
        text.stylize(level)
    if current:
        text.stylize(CURRENT)
    if needle:
        # After the reverse of the current line, so that its matches stand out on it too.
        folded, at = line.text.lower(), 0
        while (at := folded.find(needle, at)) >= 0:
            text.stylize(MATCH, at, at + len(needle))
            at += len(needle)
    return text


class LogLines(ScrollView, can_focus=True):
    """The loaded window of a log, a line a row, through Textual's line API (only the rows on
    screen are rendered, however many are loaded). Tells the view when the operator scrolls
    into either edge of the window, so that it reads more of the file there."""

    DEFAULT_CSS = """
    LogLines { height: 1fr; scrollbar-size-vertical: 1; }
    """

    def __init__(self, on_edge: Callable[[str], None], on_scroll: Callable[[], None]) -> None:
        super().__init__(id="logs-lines")
        self.lines: list[logs.Line] = []
        self.message: Text | None = None  # instead of lines: a missing or refused file
        self.current: int | None = None  # the offset of the line a search landed on
        self.needle: str | None = None  # the search's text, lower case, marked where seen
        self.on_edge = on_edge
        self.on_scroll = on_scroll

    def set_lines(self, lines: list[logs.Line], message: Text | None = None) -> None:
        self.lines = lines
        self.message = message
        width = max((cell_len(line.text) for line in lines), default=0)
        if message is not None:
            width = max(width, message.cell_len)
        self.virtual_size = Size(width, max(len(lines), 1 if message else 0))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if self.message is not None and not self.lines:
            text = self.message if index == 0 else None
        elif 0 <= index < len(self.lines):
            line = self.lines[index]
            text = style_line(line, self.needle, line.offset == self.current)
        else:
            text = None
        if text is None:
            return Strip.blank(width, base)
        strip = Strip(list(text.render(self.app.console)), text.cell_len).apply_style(base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value <= 0 < old_value:
            self.on_edge("top")
        elif new_value >= self.max_scroll_y > old_value:
            self.on_edge("bottom")
        self.on_scroll()

    # A key that scrolls into an edge already reached moves nothing, so no watch fires: these
    # ask for more of the file there instead.
    def action_scroll_up(self) -> None:
        if self.scroll_y <= 0:
            self.on_edge("top")
        super().action_scroll_up()

    def action_page_up(self) -> None:
        if self.scroll_y <= 0:
            self.on_edge("top")
        super().action_page_up()

    def action_scroll_down(self) -> None:
        if self.scroll_y >= self.max_scroll_y:
            self.on_edge("bottom")
        super().action_scroll_down()

    def action_page_down(self) -> None:
        if self.scroll_y >= self.max_scroll_y:
            self.on_edge("bottom")
        super().action_page_down()

    def shown_lines(self) -> tuple[logs.Line, logs.Line] | None:
        """The first and the last line on screen."""
        if not self.lines:
            return None
        top = min(len(self.lines) - 1, max(0, round(self.scroll_y)))
        bottom = min(len(self.lines), top + max(1, self.scrollable_content_region.height)) - 1
        return self.lines[top], self.lines[bottom]

    def index_of(self, offset: int) -> int | None:
        return next((i for i, line in enumerate(self.lines) if line.offset == offset), None)


class LogsView(View):
    view_id = "logs"
    view_title = "Logs"
    KEY = "L"
    AUTO_FOCUS = "#logs-lines"
    DESCRIPTION = "the worker's, supervisord's and the orchestration log: follow, search, errors"
    KEYS = (
        ViewKey("tab", "next_file", "Next log", "the next log file (1-4 choose one)"),
        *(
            ViewKey(
                str(i + 1),
                f"file({i})",
                name,
                f"the {name} log (logs/{logs.FILENAMES[name]})",
                show=False,
                title=f"Show the {name} log",
            )
            for i, name in enumerate(logs.NAMES)
        ),
        # F as in less: f stays the console's freeze, which also pauses following.
        ViewKey("F", "follow", "Follow", "follow the end as lines come (again: stop)"),
        ViewKey("slash", "search", "Search", "search upwards for text (any case)"),
        ViewKey("n", "search_up", "Next", "the next match further up (older)", title="Next match"),
        ViewKey(
            "N", "search_down", "Prev", "the match further down (newer)", title="Previous match"
        ),
        ViewKey(
            "e",
            "last_error",
            "Error",
            "the last ERROR, CRITICAL or traceback (again: the one before)",
        ),
        ViewKey("g", "top", "Top", "the start of the file", show=False, title="Start of the log"),
        ViewKey("G", "end", "End", "the end of the file", show=False, title="End of the log"),
    )
    LOCAL_KEYS = (
        ("up / down", "scroll a line (past what is loaded: reads more of the file)"),
        ("pageup / pagedown", "scroll a page"),
        ("left / right", "scroll sideways along long lines"),
    )
    DEFAULT_CSS = """
    LogsView #logs-files { height: 1; background: $panel; }
    LogsView #logs-status { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    LogsView #logs-search { display: none; height: 1; border: none; padding: 0 1; }
    LogsView #logs-search.-open { display: block; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0  # which of logs.NAMES is shown
        self.following = False
        self.window_start = 0  # the offset of the first loaded line
        self.window_end = 0  # just past the last loaded line
        self.file_size = 0
        self.inode: int | None = None
        self.problem: str | None = None  # the file is missing or refused: said, nothing shown
        self.searching: str | None = None  # the text last searched for
        self.progress: str | None = None  # a search under way, or where it gave up
        # Where a search press gave up (kind, text, direction, offset): the next goes on there.
        self._resume: tuple[str, str, str, int] | None = None
        self._error_at: int | None = None  # the error line `e` landed on
        # Every read carries the generation it was asked in; a read answered after the window
        # was replaced (another file, the end, a match) is dropped, not merged into it.
        self._gen = 0
        self._find_gen = 0
        self._edge_busy = False
        self._follow_busy = False
        self._timer: Timer | None = None
        # The first read of the end, asked for before the view is composed (see prefetch).
        self._early: tuple[int, logs.Chunk | str] | None = None

    @property
    def log_name(self) -> str:
        return logs.NAMES[self.current]

    @property
    def body(self) -> LogLines:
        return self.query_one(LogLines)

    def compose_view(self) -> ComposeResult:
        yield Static(Text(""), id="logs-files")
        yield LogLines(self._edge, self._status)
        yield Input(placeholder="search upwards for (enter; escape cancels)", id="logs-search")
        yield Static(Text(""), id="logs-status")

    def prefetch(self) -> None:
        """Reads the end of the log while the view is being built: by its first frame the
        lines are there, and the first frame shows them (a 1 GB log opens as a small one)."""
        self._gen += 1
        gen, current, source = self._gen, self.current, self.source

        def read() -> None:
            # A problem (missing, refused) is said once the view is there, as any read's.
            self._early = (gen, _read_chunk(source, current, "end", 0, OPEN_LINES, None))
            self.app.call_from_thread(self._early_read, False)

        self.app.run_worker(read, thread=True, group="logs-early", name="logs-prefetch")

    def _early_read(self, mounting: bool) -> None:
        if self._early is None or not (mounting or self.is_mounted):
            return  # read before the view was mounted: on_mount takes it
        (gen, answer), self._early = self._early, None
        if isinstance(answer, str):
            self._failed(gen, "end", answer)
        else:
            self._got(gen, "end", answer)

    def on_mount(self) -> None:
        self._bar()
        if self._early is not None:
            self._early_read(True)
        elif self._gen == 0:  # not prefetched (built another way): read now
            self._reset("end")

    # -- the bars ----------------------------------------------------------------------------

    def _bar(self) -> None:
        bar = Text(no_wrap=True, overflow="ellipsis")
        for i, name in enumerate(logs.NAMES):
            bar.append(f" {i + 1} {name} ", style="reverse bold" if i == self.current else "")
            bar.append(" ")
        self.query_one("#logs-files", Static).update(bar)
        self._status()

    def _status(self) -> None:
        if not self.is_mounted:
            return
        if self.problem is not None:
            parts = [self.problem]
        else:
            parts = [f"logs/{logs.FILENAMES[self.log_name]}", output.size(self.file_size)]
            parts.append(self._position())
        parts.append(
            "FOLLOWING" + (" (frozen)" if self.console.frozen else "")
            if self.following
            else "F follows"
        )
        if self.progress:
            parts.append(self.progress)
        elif self.searching:
            parts.append(f"{self.searching!r}: n up, N down")
        self.query_one("#logs-status", Static).update(Text(" · ".join(parts), no_wrap=True))

    def _position(self) -> str:
        seen = self.body.shown_lines() if self.is_mounted else None
        if seen is None or not self.file_size:
            return "empty" if not self.file_size else ""
        top, bottom = seen
        if top.offset == 0 and bottom.end >= self.file_size:
            return "all of it"
        if bottom.end >= self.file_size:
            return "at the end"
        if top.offset == 0:
            return "at the start"
        return f"at {bottom.end * 100 // self.file_size}%"

    # -- reading -----------------------------------------------------------------------------

    def _reset(self, where: str) -> None:
        """The window replaced by the file's end or start; reads under way are dropped."""
        self._gen += 1
        self._edge_busy = False
        self._read(self._gen, self.current, where, 0, OPEN_LINES, None)

    @work(thread=True, group="logs-read")
    def _read(
        self, gen: int, current: int, where: str, offset: int, count: int, inode: int | None
    ) -> None:
        answer = _read_chunk(self.source, current, where, offset, count, inode)
        if isinstance(answer, str):
            self.app.call_from_thread(self._failed, gen, where, answer)
        else:
            self.app.call_from_thread(self._got, gen, where, answer)

    def _done(self, where: str) -> None:
        if where == "follow":
            self._follow_busy = False
        elif where in ("above", "below"):
            self._edge_busy = False

    def _failed(self, gen: int, where: str, problem: str) -> None:
        self._done(where)
        if gen != self._gen:
            return
        self._gen += 1  # whatever else is on its way is about the file as it was
        self.problem = problem
        self.window_start = self.window_end = self.file_size = 0
        self.inode = None
        self.body.current = None
        self.body.set_lines([], Text(self.problem, style=MESSAGE, no_wrap=True))
        self._status()

    def _got(self, gen: int, where: str, chunk: logs.Chunk) -> None:
        self._done(where)
        if gen != self._gen:
            return
        body = self.body
        self.problem = None
        self.file_size = chunk.size
        if where in ("end", "top") or chunk.restarted:
            if chunk.restarted and where not in ("end", "top"):
                self.console.notify(f"The {self.log_name} log was rotated or truncated: its start.")
            self.window_start, self.window_end, self.inode = chunk.start, chunk.end, chunk.inode
            body.current = None
            body.set_lines(list(chunk.lines))
            if where == "top":
                body.anchor(False)
                body.scroll_home(animate=False)
            else:
                # Anchored, the layout itself puts the last line at the bottom, in the frame
                # that first shows the lines (scroll_end would wait for one more frame).
                body.anchor()
        elif where == "above":
            if chunk.end != self.window_start or not chunk.lines:
                self._status()
                return  # not next to the window any more, or nothing above
            lines = list(chunk.lines) + body.lines
            del lines[MAX_LOADED:]
            self.window_start, self.window_end = chunk.start, lines[-1].end
            y = body.scroll_y
            body.set_lines(lines)
            body.scroll_to(y=y + len(chunk.lines), animate=False)
        else:
            self._append(where, chunk)
        self._status()

    def _append(self, where: str, chunk: logs.Chunk) -> None:
        """Lines below the window: scrolled down to, or new while following. Following reads
        again from the start of the last line, which may have been caught half written."""
        body = self.body
        lines = body.lines
        resumed = where == "follow" and bool(lines)
        if chunk.start != (lines[-1].offset if resumed else self.window_end) or not chunk.lines:
            return
        if resumed and chunk.end == self.window_end and len(chunk.lines) == 1:
            return  # nothing new
        at_bottom = body.scroll_y >= body.max_scroll_y
        lines = (lines[:-1] if resumed else lines) + list(chunk.lines)
        drop = max(0, len(lines) - MAX_LOADED)
        del lines[:drop]
        self.window_start, self.window_end = lines[0].offset, chunk.end
        y = body.scroll_y
        body.set_lines(lines)
        if where == "follow" and (self.following or at_bottom):
            body.scroll_end(animate=False)
        elif drop:
            body.scroll_to(y=max(0, y - drop), animate=False)

    def _edge(self, edge: str) -> None:
        if self._edge_busy or self.problem is not None or not self.is_mounted:
            return
        if edge == "top" and self.window_start > 0:
            self._edge_busy = True
            self._read(self._gen, self.current, "above", self.window_start, PAGE, None)
        elif edge == "bottom" and self.window_end < self.file_size:
            self._edge_busy = True
            self._read(self._gen, self.current, "below", self.window_end, PAGE, self.inode)

    # -- following -----------------------------------------------------------------------------

    def action_follow(self) -> None:
        self.following = not self.following
        if self.following:
            self.body.current = None
            self._start_timer()
            self.follow_now()
        else:
            self._stop_timer()
        self._status()

    def _start_timer(self) -> None:
        if self._timer is None:
            self._timer = self.set_interval(FOLLOW_EVERY, self.follow_now, name="logs-follow")

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def follow_now(self) -> None:
        """One look for new lines (none while frozen or away): the bytes past the window when
        it ends at the file's end, the end itself otherwise (or once the file exists)."""
        if not self.following or not self.is_current:
            return
        if self.console.frozen:
            self._status()  # says so: the freeze is the console's, not a key of this view
            return
        if self._follow_busy:
            return  # the last look is not answered yet: a slow disk gets no pile of reads
        if self.problem is not None or self.window_end < self.file_size or not self.body.lines:
            self._reset("end")
            return
        self._follow_busy = True
        last = self.body.lines[-1]
        self._read(self._gen, self.current, "follow", last.offset, FOLLOW_LINES, self.inode)

    def on_screen_suspend(self) -> None:
        self._stop_timer()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self.following:
            self._start_timer()
            self.follow_now()

    # -- keys ----------------------------------------------------------------------------------

    def _search_open(self) -> bool:
        return self.query_one("#logs-search", Input).has_class("-open")

    def action_file(self, index: int) -> None:
        if index == self.current or self._search_open():
            return
        self.current = index
        self.searching = self.progress = None
        self._resume = self._error_at = None
        self._find_gen += 1
        self.window_start = self.window_end = self.file_size = 0
        self.inode = None
        self.problem = None
        self.body.needle = self.body.current = None
        self.body.set_lines([])
        self._bar()
        self._reset("end")

    def action_next_file(self) -> None:
        self.action_file((self.current + 1) % len(logs.NAMES))

    def action_top(self) -> None:
        self.following = False
        self._stop_timer()
        self._reset("top")
        self._status()

    def action_end(self) -> None:
        self._reset("end")

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
        self.body.needle = text.lower()
        self._resume = None
        seen = self.body.shown_lines()
        self._find("search", text, seen[1].end if seen else None, "backward")

    def _close_search(self) -> None:
        self.query_one("#logs-search", Input).remove_class("-open")
        self.body.focus()

    def action_back(self) -> None:
        if self._search_open():
            self._close_search()
            return
        super().action_back()

    def action_search_up(self) -> None:
        self._search_on("backward")

    def action_search_down(self) -> None:
        self._search_on("forward")

    def _search_on(self, direction: str) -> None:
        if not self.searching:
            self.action_search()
            return
        resume = self._resume
        if resume is not None and resume[:3] == ("search", self.searching, direction):
            self._find("search", self.searching, resume[3], direction)
            return
        body = self.body
        at = body.index_of(body.current) if body.current is not None else None
        if at is not None:
            line = body.lines[at]
            offset: int | None = line.offset if direction == "backward" else line.end
        else:
            seen = body.shown_lines()
            offset = (seen[1].end if direction == "backward" else seen[0].offset) if seen else None
        self._find("search", self.searching, offset, direction)

    def action_last_error(self) -> None:
        resume = self._resume
        if resume is not None and resume[0] == "error":
            offset: int | None = resume[3]
        elif self._error_at is not None and self.body.current == self._error_at:
            offset = self._error_at  # again: the error before this one
        else:
            offset = None
        self._find("error", "", offset, "backward")

    def available(self, action: str) -> bool:
        if action in ("search_up", "search_down"):
            return self.searching is not None
        return True

    def _find(self, kind: str, text: str, offset: int | None, direction: str) -> None:
        self.following = False
        self._stop_timer()
        self._find_gen += 1
        what = f"{text!r}" if kind == "search" else "an error"
        self.progress = f"looking for {what}…"
        self._status()
        self.refresh_bindings()
        self._finding(self._find_gen, self.current, kind, text, offset, direction)

    @work(thread=True, exclusive=True, group="logs-find")
    def _finding(
        self, gen: int, current: int, kind: str, text: str, offset: int | None, direction: str
    ) -> None:
        worker = get_current_worker()
        what = f"{text!r}" if kind == "search" else "an error"
        try:
            log = logs.log_file(self.source.runtime.layout, logs.NAMES[current])
            looked = 0
            while True:
                budget = min(logs.SEARCH_BUDGET, SEARCH_LIMIT - looked)
                if kind == "search":
                    step = logs.search(log, text, offset, direction, budget=budget)
                else:
                    step = logs.last_error(log, offset, budget=budget)
                looked += step.read
                offset = step.offset
                if step.line is not None or step.done or looked >= SEARCH_LIMIT:
                    break
                if worker.is_cancelled:
                    return
                share = _share(step, direction)
                self.app.call_from_thread(
                    self._progress, gen, f"looking for {what}: {share}% of the file looked at"
                )
            if step.line is None:
                where = "above" if direction == "backward" else "below"
                if step.done:
                    said = f"no {what} {where}"
                    resume = None
                else:
                    said = (
                        f"no {what} in the {output.size(looked)} {where} "
                        f"({_share(step, direction)}% of the file looked at): "
                        f"{'e' if kind == 'error' else 'n' if direction == 'backward' else 'N'}"
                        " looks on"
                    )
                    resume = (kind, text, direction, step.offset)
                self.app.call_from_thread(self._not_found, gen, said, resume)
                return
            found = step.line
            above = logs.before(log, found.offset, CONTEXT_ABOVE)
            below = logs.after(log, found.offset, CONTEXT_BELOW)
        except Exception as exc:
            self.app.call_from_thread(self._not_found, gen, _problem(current, exc), None)
            return
        self.app.call_from_thread(self._found, gen, kind, found, above, below)

    def _progress(self, gen: int, text: str) -> None:
        if gen == self._find_gen:
            self.progress = text
            self._status()

    def _not_found(self, gen: int, text: str, resume: tuple[str, str, str, int] | None) -> None:
        if gen != self._find_gen:
            return
        self.progress = text
        self._resume = resume
        self._status()
        self.console.notify(text)

    def _found(
        self, gen: int, kind: str, found: logs.Line, above: logs.Chunk, below: logs.Chunk
    ) -> None:
        if gen != self._find_gen:
            return
        self._gen += 1  # the window is replaced: reads for the old one are dropped
        self._edge_busy = False
        self.progress = None
        self._resume = None
        self._error_at = found.offset if kind == "error" else None
        self.problem = None
        body = self.body
        lines = list(above.lines) + list(below.lines)
        self.window_start, self.window_end = above.start, below.end
        self.file_size, self.inode = below.size, below.inode
        body.current = found.offset
        body.anchor(False)
        body.set_lines(lines)
        index = len(above.lines)
        body.scroll_to(y=max(0, index - body.scrollable_content_region.height // 3), animate=False)
        self._status()


def _read_chunk(
    source: Any, current: int, where: str, offset: int, count: int, inode: int | None
) -> logs.Chunk | str:
    """One read of the view's (in a thread): the lines asked for, or why there are none."""
    try:
        log = logs.log_file(source.runtime.layout, logs.NAMES[current])
        if where == "end":
            return logs.tail(log, count)
        if where == "top":
            return logs.head(log, count)
        if where == "above":
            return logs.before(log, offset, count)
        return logs.after(log, offset, count, inode=inode)  # below, follow
    except Exception as exc:  # missing, a refused link, no storage: said, the view stays
        return _problem(current, exc)


def _share(step: logs.Found, direction: str) -> int:
    """How much of the file a search has looked at, in percent."""
    done = step.size - step.offset if direction == "backward" else step.offset
    return done * 100 // max(1, step.size)


def _problem(current: int, exc: BaseException) -> str:
    """Why a log cannot be shown, in one line: UnsafeEntry's own words (it names the file
    and why it is refused), a missing file as such, another error's reason."""
    shown = f"logs/{logs.FILENAMES[logs.NAMES[current]]}"
    if isinstance(exc, UnsafeEntry):
        return output.one_line(str(exc), 500)
    if isinstance(exc, FileNotFoundError):
        return f"{shown} does not exist (yet): nothing has written it"
    if isinstance(exc, OSError):
        return f"{shown}: {exc.strerror or type(exc).__name__}"
    return output.one_line(f"{shown}: {type(exc).__name__}: {exc}", 500)
