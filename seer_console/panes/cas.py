"""CAS pane: size and blobs against the quota, the warning and critical lines, growth."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from seer_console import output
from seer_console.panes.base import Pane
from seer_console.source import ConsoleSnapshot


def quota_bar(used: int, quota: int, warning: int, critical: int, width: int) -> Text:
    """A bar of `width` cells, with the warning and critical lines marked where they fall."""
    width = max(width, 10)
    filled = min(width, round(width * used / quota)) if quota else 0
    warn_at = min(width - 1, int(width * warning / quota)) if quota else width
    crit_at = min(width - 1, int(width * critical / quota)) if quota else width
    level = "critical" if used > critical else "warning" if used > warning else "ok"
    colour = {"ok": "green", "warning": "yellow", "critical": "red"}[level]
    bar = Text()
    for cell in range(width):
        if cell in (warn_at, crit_at):
            bar.append("│", style="bold red" if cell == crit_at else "bold yellow")
        elif cell < filled:
            bar.append("█", style=colour)
        else:
            bar.append("░", style="grey50")
    return bar


class CasPane(Pane):
    pane_id = "cas"
    title = "CAS"
    ROW = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="cas-size")
        yield Static("", id="cas-bar")
        yield Static("", id="cas-growth")
        yield Static("", id="cas-history", classes="spark")

    def show(self, snapshot: ConsoleSnapshot) -> None:
        s = snapshot.status
        quota = s.cas_quota
        pct = 100.0 * s.cas_bytes / quota if quota else 0.0
        level = (
            "CRITICAL"
            if s.cas_bytes > snapshot.critical_bytes
            else "WARNING"
            if s.cas_bytes > snapshot.warning_bytes
            else ""
        )
        self.set_class(level == "WARNING", "-warning")
        self.set_class(level == "CRITICAL", "-critical")
        self.border_title = "CAS" + (f" · {level}" if level else "")
        self.put(
            "#cas-size",
            Text.assemble(
                (output.size(s.cas_bytes), "bold"), f" of {output.size(quota)} · {pct:.1f}%"
            ),
        )
        width = max(10, self.content_region.width or 30)
        self.put(
            "#cas-bar",
            quota_bar(s.cas_bytes, quota, snapshot.warning_bytes, snapshot.critical_bytes, width),
        )
        growth = f"{output.counted(s.cas_blobs, 'blob')} · {output.rate(snapshot.growth_per_day)}"
        if snapshot.growth_per_day and snapshot.growth_per_day > 0 and s.cas_bytes < quota:
            days = (quota - s.cas_bytes) / snapshot.growth_per_day
            growth += f"\nquota full {output.quota_eta(days * 86400, short=True)}"
        self.put("#cas-growth", growth)
        self.put("#cas-history", output.spark(snapshot.cas_history, width, from_zero=False))
        self.border_subtitle = (
            f"warn >{output.size(snapshot.warning_bytes)} "
            f"crit >{output.size(snapshot.critical_bytes)}"
        )
