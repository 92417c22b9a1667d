"""Worker pane: each consumer's supervisord state, pid, uptime, CPU, memory and restarts."""

from __future__ import annotations

import humanize
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from seer_console import output
from seer_console.panes.base import Pane
from seer_console.source import ConsoleSnapshot

STATE_STYLE = {"RUNNING": "green", "STARTING": "yellow", "BACKOFF": "yellow"}


class WorkerPane(Pane):
    pane_id = "worker"
    title = "Worker"
    ROW = 2

    def compose(self) -> ComposeResult:
        yield Static("", id="worker-rows")

    def show(self, snapshot: ConsoleSnapshot) -> None:
        wide = (self.content_region.width or 40) >= 70
        text = Text()
        for w in snapshot.workers:
            name = w.program if wide else w.program.removeprefix("seer-")
            text.append(name.ljust(16 if wide else 11))
            text.append(
                w.state.ljust(12 if wide else 9), style=STATE_STYLE.get(w.state, "bold red")
            )
            text.append(f"pid {w.pid or '-'}")
            text.append("  " if wide else "\n  ")
            cpu = "-" if w.cpu_percent is None else f"{w.cpu_percent:.0f}%"
            mem = humanize.naturalsize(w.rss, binary=True, format="%.0f") if w.rss else "-"
            restarts = f"{w.restarts} restart" + ("" if w.restarts == 1 else "s")
            label = "mem " if wide else ""
            text.append(f"up {output.short_age(w.uptime)} cpu {cpu} {label}{mem} {restarts}\n")
        text.rstrip()
        self.query_one("#worker-rows", Static).update(text)
        self.border_title = f"Worker · supervisord {snapshot.status.supervisor}"
        self.border_subtitle = ""
