"""Worker pane: each consumer's supervisord state, pid, uptime, CPU, memory, restarts and
heartbeat; every other host's consumers (state, heartbeat with stale ones marked, pid, CPU and
memory as each measured itself, restarts in the window and in all), view-only; and the keys
that start, stop and restart this host's programs, and roll back."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import humanize
from rich.cells import cell_len
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from seer_console import output
from seer_console.panes.base import Pane, PaneCommand
from seer_console.source import ConsoleSnapshot, PartialSnapshot, WorkerRow

if TYPE_CHECKING:  # the status module pulls in the alert rules: not before the first frame
    from worker.monitoring.status import ConsumerProcess

STATE_STYLE = {"RUNNING": "green", "STARTING": "yellow", "BACKOFF": "yellow", "STOPPED": "yellow"}
PROGRAMS = ("seer-postmaster", "seer-scheduler")
# Other hosts' rows shown on a short terminal (80x24): none, their count in the border
# instead (every row here would be a row the Failed pane cannot have); zoomed, all of them.
SHORT_HOSTS = 0


def _fit(text: Text, parts: list[tuple[str, str]], width: int) -> None:
    """Appends each part after a space, or on a new indented line when it would run past
    the width."""
    for part, style in parts:
        line = text.plain.rsplit("\n", 1)[-1]
        if cell_len(line) + 1 + cell_len(part) > width and line.strip():
            text.append("\n  ")
        else:
            text.append(" ")
        text.append(part, style=style)


def _restarts(w: WorkerRow, window: float) -> str:
    """All restarts, and those not on purpose within the window (consumer_restarts')."""
    crashes = output.counted(w.restarts_recent or 0, "crash", "crashes")
    if w.restarts is None:  # the ledger cannot be read
        return f"restarts unknown ({crashes} in {_window(window)})"
    return f"{output.counted(w.restarts, 'restart')} ({crashes} in {_window(window)})"


def _window(seconds: float) -> str:
    return output.short_age(seconds).replace("m00s", "m").replace("h00m", "h")


def _hidden_hosts(hosts: tuple[WorkerRow, ...]) -> Text | str:
    """The other hosts' consumers a short pane leaves out, counted: how many, on how many
    hosts, how many of them down (stale or gone, in the alarm colour), and the key to see
    them."""
    if not hosts:
        return ""
    count = len({w.host for w in hosts})
    said = Text(f"{len(hosts)} on {count} other host" + ("" if count == 1 else "s"))
    down = sum(1 for w in hosts if w.stale or w.state == "GONE")
    if down:
        said.append(", ")
        said.append(f"{down} down", style="bold red")
    said.append(" · z")
    return said


def _heartbeat(text: Text, age: float | None, stale: bool, width: int) -> None:
    """The heartbeat's age at the end of the line if it fits there, else on a line of its own."""
    if age is None:
        return
    said = f" hb {output.short_age(age)}" + (" STALE" if stale else "")
    line = text.plain.rsplit("\n", 1)[-1]
    if cell_len(line) + len(said) > width:
        text.append("\n ")
    text.append(said, style="bold red" if stale else "dim")


class WorkerPane(Pane):
    pane_id = "worker"
    title = "Worker"
    ROW = 2
    BINDINGS = [
        Binding("up", "select(-1)", "Previous", show=False),
        Binding("down", "select(1)", "Next", show=False),
        Binding("s", "program('start')", "Start"),
        Binding("o", "program('stop')", "Stop"),
        Binding("e", "program('restart')", "Restart"),
        Binding("b", "rollback_stop", "Pause+stop"),
        Binding("m", "rollback_migration", "Migration rollback"),
    ]
    LOCAL_KEYS = (
        ("up/down", "choose seer-postmaster or seer-scheduler"),
        ("s / o / e", "start / stop (gracefully) / restart it (stop and restart ask first)"),
        ("b", "rollback step 1-2: pause the queue and stop seer-postmaster (asks first)"),
        (
            "m",
            "rollback: undo the last migration, if a backup is newer and the workers are "
            "stopped (says what it drops, asks first)",
        ),
    )

    COMMANDS = (
        *(
            PaneCommand(
                f"{verb.capitalize()} {program}",
                f"key {key} in Worker: {verb} {program} through supervisord",
                "act_control",
                (verb, program),
            )
            for program in PROGRAMS
            for verb, key in (("start", "s"), ("stop", "o"), ("restart", "e"))
        ),
        PaneCommand(
            "Roll back: pause and stop the postmaster",
            "key b in Worker: rollback steps 1-2 of the runbook (asks first)",
            "action_rollback_stop",
        ),
        PaneCommand(
            "Roll back the last migration",
            "key m in Worker: undo the last migration, if a backup is newer (asks first)",
            "action_rollback_migration",
        ),
    )

    def __init__(self) -> None:
        super().__init__()
        self.selected = 0
        self._snapshot: ConsoleSnapshot | None = None
        self._partial: PartialSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="worker-rows")

    def show(self, snapshot: ConsoleSnapshot) -> None:
        self._snapshot = snapshot
        if snapshot.hosts or snapshot.status.hosts:
            self._draw(
                snapshot.workers,
                snapshot.status.supervisor,
                snapshot.taken_at,
                hosts=snapshot.hosts,
                window=snapshot.restart_window,
            )
            return
        # A snapshot without the fleet's reading (built by hand): the processes of status.
        shown = {(w.queue, w.pid) for w in snapshot.workers if w.pid}
        others = tuple(
            p
            for c in snapshot.status.consumers
            for p in c.processes
            if not (p.local and (p.queue, p.pid) in shown)
        )
        self._draw(snapshot.workers, snapshot.status.supervisor, snapshot.taken_at, others)

    @property
    def rows(self) -> tuple[WorkerRow, ...]:
        """The rows the selection moves over: this host's programs, then the fleet's."""
        if self._snapshot is not None:
            return self._snapshot.workers + self._shown_hosts(self._snapshot.hosts)
        return self._partial.workers if self._partial else ()

    def _shown_hosts(self, hosts: tuple[WorkerRow, ...]) -> tuple[WorkerRow, ...]:
        if self.short and self.screen.maximized is not self:
            return hosts[:SHORT_HOSTS]
        return hosts

    def show_error(self, message: str, partial: PartialSnapshot | None = None) -> None:
        if partial is None:
            super().show_error(message)
            return
        # The ledger cannot be read (a schema behind the code) but supervisord can: the
        # workers can still be seen, stopped and started.
        self._snapshot = None
        self._partial = partial
        self._draw(partial.workers, partial.supervisor, time.time())

    def _draw(
        self,
        workers: tuple[WorkerRow, ...],
        supervisor: str,
        now: float,
        others: tuple[ConsumerProcess, ...] = (),
        *,
        hosts: tuple[WorkerRow, ...] = (),
        window: float = 600.0,
    ) -> None:
        width = self.content_region.width or 40
        wide = width >= 70
        focused = self.has_focus
        text = Text()
        for index, w in enumerate(workers):
            name = w.program if wide else w.program.removeprefix("seer-")
            marker = "▶" if focused and index == self.selected else " "
            text.append(marker, style="bold")
            text.append(name.ljust(16 if wide else 11))
            text.append(
                # Always a space after the state: NOT RUNNING is longer than the column.
                w.state.ljust(11 if wide else 8) + " ",
                style=STATE_STYLE.get(w.state, "bold red"),
            )
            text.append(f"pid {w.pid or '-'}")
            if not wide:  # beside the pid: the second line is full
                _heartbeat(text, w.heartbeat_age, w.stale, width)
            text.append("  " if wide else "\n  ")
            cpu = "-" if w.cpu_percent is None else f"{w.cpu_percent:.0f}%"
            mem = humanize.naturalsize(w.rss, binary=True, format="%.0f") if w.rss else "-"
            restarts = ""
            if w.restarts is not None:
                restarts = f" {w.restarts} restart" + ("" if w.restarts == 1 else "s")
            label = "mem " if wide else ""
            text.append(f"up {output.short_age(w.uptime)} cpu {cpu} {label}{mem}{restarts}")
            if wide:
                _heartbeat(text, w.heartbeat_age, w.stale, width)
            text.append("\n")
            # Restarts not on purpose in the window (what consumer_restarts counts), beside
            # the last exit: a crash loop reads as one line.
            recent = ""
            if w.restarts_recent:
                recent = f"{w.restarts_recent} crash restarts in {_window(window)}"
            if w.last_exit:
                ago = output.short_age(max(0.0, now - w.last_exit.at))
                text.append(f"  last exit {w.last_exit.short} {ago} ago", style="dim")
                _fit(text, [(f"· {recent}", "bold yellow")] if recent else [], width)
                text.append("\n")
            elif recent:
                text.append(f"  {recent}\n", style="bold yellow")
        # Consumers this host's supervisord does not run: other hosts', or started by hand.
        for p in others:
            text.append(f" {p.host} {p.queue} pid {p.pid}", style="dim")
            _heartbeat(text, p.heartbeat_age, p.stale, width)
            text.append("\n")
        shown = self._shown_hosts(hosts)
        for index, w in enumerate(shown, len(workers)):
            self._host_row(text, w, width, window, focused and index == self.selected)
        text.rstrip()
        self.put("#worker-rows", text)
        self.border_title = f"Worker · supervisord {supervisor}"
        self.border_subtitle = _hidden_hosts(hosts[len(shown) :])

    def _host_row(
        self, text: Text, w: WorkerRow, width: int, window: float, selected: bool
    ) -> None:
        """Another host's consumer: host, queue, pid, heartbeat and state, then CPU, memory
        and restarts, wrapped to the width."""
        text.append("▶" if selected else " ", style="bold")
        # The host's name comes from the ledger: plain text, cut to a column's worth.
        text.append(output.one_line(output.printable(w.host), 24), style="bold")
        text.append(f" {w.queue}")
        bad = w.stale or w.state == "GONE"
        cpu = "-" if w.cpu_percent is None else f"{w.cpu_percent:.0f}%"
        mem = humanize.naturalsize(w.rss, binary=True, format="%.0f") if w.rss else "-"
        parts = [
            (f"pid {w.pid or '-'}", ""),
            (f"hb {output.short_age(w.heartbeat_age)}", "bold red" if bad else "dim"),
            (w.state, STATE_STYLE.get(w.state, "bold red")),
            (f"cpu {cpu}", ""),
            (f"mem {mem}", ""),
            (_restarts(w, window), "bold yellow" if w.restarts_recent else ""),
        ]
        _fit(text, parts, width)
        text.append("\n")

    def _again(self) -> None:
        if self._snapshot:
            self.show(self._snapshot)
        elif self._partial:
            self.show_error("", self._partial)

    def on_focus(self) -> None:
        self._again()

    def on_blur(self) -> None:
        self._again()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("program", "rollback_stop", "rollback_migration"):
            return None if self.console.read_only else True
        return True

    def action_select(self, step: int) -> None:
        self.selected = (self.selected + step) % max(1, len(self.rows) or len(PROGRAMS))
        self._again()

    def act_control(self, verb: str, program: str) -> None:
        """The palette names the program: select it, then act as its key does."""
        rows = self.rows
        local = [i for i, w in enumerate(rows) if w.local and w.program == program]
        self.selected = local[0] if local else PROGRAMS.index(program)
        self.action_select(0)  # shows the selection
        self.action_program(verb)

    def _selected_row(self) -> WorkerRow | None:
        rows = self.rows
        return rows[self.selected] if 0 <= self.selected < len(rows) else None

    def _refuse_remote(self, verb: str, row: WorkerRow) -> bool:
        """A row of another host is shown only: this host's supervisord does not run it."""
        if row.local:
            return False
        self.app.notify(
            f"{verb.capitalize()}: {row.program} on {row.host} is not run by this host's "
            f"supervisord; run `seer supervisor {verb} {row.program}` on {row.host}.",
            severity="warning",
            markup=False,
        )
        return True

    def action_program(self, verb: str) -> None:
        row = self._selected_row()
        if row is not None and self._refuse_remote(verb, row):
            return
        program = row.program if row is not None else PROGRAMS[self.selected % len(PROGRAMS)]

        def run() -> None:
            self.console.perform(
                verb.capitalize(),
                lambda ops, rt: ops.control_program(rt, verb, program),
                "{}",
            )

        if verb == "start":
            run()
            return
        effect = (
            "Parcels stop being delivered until it starts again (they keep queueing)."
            if program == "seer-postmaster"
            else "Monitoring, alerts and compaction stop until it starts again."
        )
        self.console.confirm(
            f"{verb.capitalize()} {program}?\n\n{effect} The running batch finishes first.",
            verb.capitalize(),
            run,
        )

    def action_rollback_stop(self) -> None:
        self.console.confirm(
            "Roll back, steps 1 and 2 of the runbook?\n\nThe postmaster queue is paused and "
            "seer-postmaster is stopped (its running batch finishes). Parcels keep queueing; "
            "monitoring keeps running.",
            "Pause and stop",
            lambda: self.console.perform(
                "Pause and stop", lambda ops, rt: ops.pause_and_stop(rt, by="console"), "{}"
            ),
            danger=True,
        )

    def action_rollback_migration(self) -> None:
        if self.console.read_only:
            return
        self._preview_rollback()

    @work(thread=True, exclusive=True, group="rollback-preview")
    def _preview_rollback(self) -> None:
        """Asks only once the rollback would be allowed, and says what it drops: the same
        checks as `seer migrate --rollback` (a running consumer refuses it)."""
        from worker.ops import operations

        runtime = self.console.source.runtime
        try:
            plan = operations.rollback_preview(runtime.ledger, runtime.layout, 1)
        except Exception as exc:
            self.app.call_from_thread(
                self.app.notify, f"Migration rollback refused: {exc}", severity="warning"
            )
            return
        if plan == operations.NOTHING_TO_ROLL_BACK:
            self.app.call_from_thread(self.app.notify, "Migration rollback: nothing to undo.")
            return
        self.app.call_from_thread(
            self.console.confirm,
            f"Undo the last migration?\n\n{plan}\n\nThe code must match the schema afterwards.",
            "Roll back migration",
            lambda: self.console.perform(
                "Migration rollback",
                lambda ops, rt: ops.migration_rollback(rt.ledger, rt.layout, 1),
                "{}",
            ),
            True,
        )
