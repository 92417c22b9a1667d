"""Worker pane: each consumer's supervisord state, pid, uptime, CPU, memory and restarts."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import DataTable

from seer_console import output
from seer_console.panes.base import Pane
from seer_console.source import ConsoleSnapshot

STATE_STYLE = {"RUNNING": "green", "STARTING": "yellow", "BACKOFF": "yellow"}


class WorkerPane(Pane):
    pane_id = "worker"
    title = "Worker"

    def compose(self) -> ComposeResult:
        table = DataTable(id="worker-table", cursor_type="none", show_cursor=False)
        table.add_columns("Program", "State", "PID", "Uptime", "CPU", "Memory", "Restarts")
        table.can_focus = False
        yield table

    def show(self, snapshot: ConsoleSnapshot) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for w in snapshot.workers:
            style = STATE_STYLE.get(w.state, "bold red")
            table.add_row(
                w.program,
                f"[{style}]{w.state}[/]",
                str(w.pid or "-"),
                output.age(w.uptime) if w.uptime is not None else "-",
                "-" if w.cpu_percent is None else f"{w.cpu_percent:.0f}%",
                output.size(w.rss) if w.rss else "-",
                str(w.restarts),
            )
        self.border_title = f"Worker · supervisord {snapshot.status.supervisor}"
        self.border_subtitle = ""
