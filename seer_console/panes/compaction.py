"""Compaction pane: recent memory compaction runs (failed ones stand out), and the next one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from seer_console import output
from seer_console.panes.base import Pane, PaneKey
from seer_console.source import ConsoleSnapshot

if TYPE_CHECKING:
    # Not at start-up: the console's first frame waits for every module imported before it.
    from worker.memory.compaction import Run


class CompactionPane(Pane):
    pane_id = "compaction"
    title = "Compaction"
    ROW = 2
    KEYS = (
        PaneKey(
            "c",
            "compact",
            "Compact",
            "compact agents' memory now (asks first)",
            title="Compact agents' memory now",
        ),
    )

    def compose(self) -> ComposeResult:
        yield Static("", id="compaction-runs")

    def show(self, snapshot: ConsoleSnapshot) -> None:
        wide = (self.content_region.width or 40) >= 60
        text = Text()
        rows = snapshot.compactions[: 2 if self.short else 10 if self.big else 6 if wide else 3]
        if not rows:
            text.append("no compaction has run yet\n", style="dim")
        for run in rows:
            failed = run.status == "failed"
            style = "bold red" if failed else ("yellow" if run.status == "running" else "")
            when = output.clock(run.started_at)
            # The trigger as recorded (schedule, manual, console): `seer compaction` says the same.
            trigger = run.trigger
            took = f"{run.duration:.1f}s" if run.duration is not None else "…"
            line = f"{when[:5]} {trigger:<8} {run.keys_deleted:>6,} keys"
            if wide:
                line = f"{when} {trigger:<8} {run.keys_deleted:>7,} keys {run.agents:>4} agents"
                line += f" {took:>6}"
                line += f"  {run.status}" + (" (dry run)" if run.dry_run else "")
                if run.error:
                    line += f": {output.one_line(run.error, 40)}"
            elif failed or run.status == "running":
                line += f" {run.status.upper()}"  # in place of the time: the line must fit
            else:
                line += f" {took:>5}"
            text.append(line + "\n", style=style)
        text.append(f"next {output.clock(snapshot.next_compaction)}", style="dim")
        self.put("#compaction-runs", text)
        failures = snapshot.compaction_failures_24h
        self.border_title = "Compaction" + (f" · {failures} FAILED in 24h" if failures else "")
        self.set_class(failures > 3, "-critical")
        self.set_class(0 < failures <= 3, "-warning")
        self.border_subtitle = ""

    def act_compact(self) -> None:
        self.console.confirm(
            "Compact agents' memory now?\n\nExpired ephemeral keys of every agent are deleted "
            "in short transactions; parcel delivery goes on meanwhile.",
            "Compact",
            lambda: self.console.perform(
                "Compaction",
                lambda ops, rt: _said(ops.compact_memory(rt, "console")),
                "{}",
            ),
        )


def _said(run: Run) -> str:
    """A compaction run in one line; a failed one is an error (the console shows it red)."""
    if run.status != "ok":
        raise RuntimeError(f"compaction failed: {run.error}")
    return f"compaction: {run.summary()}"
