"""Worker pane: each consumer's supervisord state, pid, uptime, CPU, memory, restarts and
heartbeat, the consumers of other hosts (stale ones marked), and the keys that start, stop
and restart them, and roll back."""

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

STATE_STYLE = {"RUNNING": "green", "STARTING": "yellow", "BACKOFF": "yellow"}
PROGRAMS = ("seer-postmaster", "seer-scheduler")


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
        shown = {(w.queue, w.pid) for w in snapshot.workers if w.pid}
        others = tuple(
            p
            for c in snapshot.status.consumers
            for p in c.processes
            if not (p.local and (p.queue, p.pid) in shown)
        )
        self._draw(snapshot.workers, snapshot.status.supervisor, snapshot.taken_at, others)

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
            if w.last_exit:
                ago = output.short_age(max(0.0, now - w.last_exit.at))
                text.append(f"  last exit {w.last_exit.short} {ago} ago\n", style="dim")
        # Consumers this host's supervisord does not run: other hosts', or started by hand.
        for p in others:
            text.append(f" {p.host} {p.queue} pid {p.pid}", style="dim")
            _heartbeat(text, p.heartbeat_age, p.stale, width)
            text.append("\n")
        text.rstrip()
        self.put("#worker-rows", text)
        self.border_title = f"Worker · supervisord {supervisor}"
        self.border_subtitle = ""

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
        self.selected = (self.selected + step) % len(PROGRAMS)
        self._again()

    def act_control(self, verb: str, program: str) -> None:
        """The palette names the program: select it, then act as its key does."""
        self.selected = PROGRAMS.index(program)
        self.action_select(0)  # shows the selection
        self.action_program(verb)

    def action_program(self, verb: str) -> None:
        program = PROGRAMS[self.selected]

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
