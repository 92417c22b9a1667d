"""Queue pane: depth now and over time, oldest parcel, the last minute's flow, and PAUSED."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from seer_console import output
from seer_console.panes.base import Pane, PaneKey
from seer_console.source import ConsoleSnapshot


class QueuePane(Pane):
    pane_id = "queue"
    title = "Queue"
    ROW = 0
    KEYS = (
        PaneKey(
            "p",
            "pause",
            "Pause",
            "pause the postmaster queue (asks first)",
            title="Pause the postmaster queue",
        ),
        PaneKey(
            "p",
            "resume",
            "Resume",
            "resume the postmaster queue, in order",
            title="Resume the postmaster queue",
        ),
        PaneKey(
            "t",
            "send_test",
            "Test",
            "send a test parcel and watch it arrive",
            title="Send a test parcel",
        ),
    )

    def __init__(self) -> None:
        super().__init__()
        self._paused = False

    def compose(self) -> ComposeResult:
        yield Static("", id="queue-paused")
        yield Static("", id="queue-depth")
        yield Static("", id="queue-history", classes="spark")
        yield Static("", id="queue-flow")

    def show(self, snapshot: ConsoleSnapshot) -> None:
        q = snapshot.status.queue
        if q.paused != self._paused:
            self._paused = q.paused
            self.app.refresh_bindings()
        banner = self.query_one("#queue-paused", Static)
        banner.display = q.paused or bool(q.backoff_reason)
        if q.paused:
            self.put("#queue-paused", f" PAUSED since {output.clock(q.paused_since)} · p resumes ")
        elif q.backoff_reason:
            self.put("#queue-paused", f" BACKING OFF: {output.one_line(q.backoff_reason, 60)} ")
        self.set_class(q.paused, "-paused")
        self.border_title = f"Queue {q.name}" + (" · PAUSED" if q.paused else "")
        level = (
            "critical"
            if q.depth > snapshot.queue_critical
            else "warning"
            if q.depth > snapshot.queue_warning
            else ""
        )
        colour = {"critical": "bold red", "warning": "bold yellow"}.get(level, "bold")
        width = max(10, self.content_region.width or 30)
        depth = Text()
        depth.append(f"{q.depth:,}", style=colour)
        depth.append(f" queued  {q.in_flight:,} in flight")
        oldest = f"oldest {output.short_age(q.oldest_queued_age)}"
        # On a narrow pane "oldest …" gets a line of its own rather than being wrapped apart.
        depth.append(("  " if len(depth) + 2 + len(oldest) <= width else "\n") + oldest)
        self.put("#queue-depth", depth)
        self.set_class(level == "warning", "-warning")
        self.set_class(level == "critical", "-critical")
        self.put("#queue-history", output.spark(snapshot.depth_history, width))
        flow = snapshot.status.flow
        if flow is not None:
            # Counted over the window, never projected: the same figures as `seer status`.
            counts = f"{flow.window:.0f}s: delivered {flow.delivered:,}  failed {flow.failed:,}"
            self.put("#queue-flow", counts if len(counts) + 5 > width else f"last {counts}")
        # The rule lines, where the eye already is.
        self.border_subtitle = f"warn >{snapshot.queue_warning:,} crit >{snapshot.queue_critical:,}"

    def available(self, action: str) -> bool:
        # p pauses a running queue and resumes a paused one; the footer shows which.
        return {"pause": not self._paused, "resume": self._paused}.get(action, True)

    @property
    def paused(self) -> bool:
        return self._paused

    def act_resume(self) -> None:
        self.console.perform("Resume", lambda ops, rt: ops.resume(rt), "queue resumed")

    def act_pause(self) -> None:
        self.console.confirm(
            "Pause the postmaster queue?\n\nThe consumer finishes what it is running and takes "
            "no new parcel; parcels keep queueing. Monitoring keeps running.",
            "Pause",
            lambda: self.console.perform(
                "Pause", lambda ops, rt: ops.pause(rt, by="console"), "queue paused"
            ),
        )

    def act_send_test(self) -> None:
        self.console.send_test_parcel()
