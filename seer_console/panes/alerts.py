"""Alerts pane: active alerts with level and since when; recent notifications and retries."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from seer_console import output
from seer_console.panes.base import Pane, PaneKey
from seer_console.source import ConsoleSnapshot

LEVEL_STYLE = {"critical": "bold white on red", "warning": "bold black on yellow"}
STATUS_STYLE = {"sent": "green", "pending": "yellow", "sending": "yellow", "failed": "bold red"}


class AlertsPane(Pane):
    pane_id = "alerts"
    title = "Alerts"
    ROW = 3
    KEYS = (
        PaneKey(
            "a",
            "test_alert",
            "Test alert",
            "send a test alert through every channel",
            title="Send a test alert",
        ),
    )

    def compose(self) -> ComposeResult:
        yield Static("", id="alerts-text")

    def show(self, snapshot: ConsoleSnapshot) -> None:
        width = self.content_region.width or 76
        text = Text()
        if not snapshot.alerts:
            text.append("no active alerts", style="green")
            text.append(f" · channels: {', '.join(snapshot.channels) or 'none'}\n", style="dim")
        for alert in snapshot.alerts[: 2 if self.short else 8 if self.big else 4]:
            text.append(f" {alert.level.upper()} ", style=LEVEL_STYLE.get(alert.level, ""))
            text.append(f" since {output.clock(alert.since)} ")
            text.append(output.one_line(alert.summary or alert.rule, max(20, width - 26)) + "\n")
        room = 1 if self.short else 8 if self.big else 3
        for d in snapshot.deliveries[: room if snapshot.alerts else room + 1]:
            when = output.clock(d.sent_at or d.created_at)
            text.append(f"{when} {d.channel:<5} ")
            text.append(f"{d.status:<7}", style=STATUS_STYLE.get(d.status, ""))
            retry = f" try {d.attempts}" if d.attempts > 1 or d.status == "pending" else ""
            error = f" {d.last_error}" if d.last_error and d.status != "sent" else ""
            line = f" {d.title}{retry}{error}"
            text.append(output.one_line(line, max(20, width - 22)) + "\n")
        text.rstrip()
        self.put("#alerts-text", text)
        worst = snapshot.alerts[0].level if snapshot.alerts else None
        self.border_title = "Alerts" + (f" · {len(snapshot.alerts)} active" if worst else "")
        self.set_class(worst == "critical", "-critical")
        self.set_class(worst == "warning", "-warning")
        self.border_subtitle = ""

    def act_test_alert(self) -> None:
        def call(ops, runtime):
            return ops.send_test_alert(runtime)

        self.console.perform("Test alert", call, "{}")
