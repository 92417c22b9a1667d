"""Queue pane: depth now and over time, oldest parcel, the last minute's flow, the queue's
storage (where, latency or UNREACHABLE, both queues' doorbells, what it does not keep), and
PAUSED."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from seer_console import output
from seer_console.panes.base import Pane, PaneKey
from seer_console.source import ConsoleSnapshot
from worker.doorbells import QueueProbe


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
        yield Static("", id="queue-storage")
        yield Static("", id="queue-notes")

    def show(self, snapshot: ConsoleSnapshot) -> None:
        q = snapshot.status.queue
        probe = snapshot.status.queue_backend
        unreachable = probe is not None and not probe.reachable
        # A short terminal (80x24) keeps the pane at four lines, as the CAS beside it: the
        # sparkline goes (as the CAS's does), the storage gets its two lines, and a note goes
        # on the bottom border. Zoomed, the pane has the screen and shows everything.
        short = self.short and self.screen.maximized is not self
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
        self.border_title = (
            f"Queue {q.name}"
            + (" · PAUSED" if q.paused else "")
            + (" · UNREACHABLE" if unreachable else "")
        )
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
        # A queue that does not answer is as loud as a critical depth: nothing is delivered.
        self.set_class(level == "warning" and not unreachable, "-warning")
        self.set_class(level == "critical" or unreachable, "-critical")
        self.query_one("#queue-history", Static).display = not short
        self.put("#queue-history", output.spark(snapshot.depth_history, width))
        flow = snapshot.status.flow
        if flow is not None:
            # Counted over the window, never projected: the same figures as `seer status`.
            counts = f"{flow.window:.0f}s: delivered {flow.delivered:,}  failed {flow.failed:,}"
            self.put("#queue-flow", counts if len(counts) + 5 > width else f"last {counts}")
        self._show_storage(snapshot, probe, width, short)
        noted = bool(short and probe and probe.warnings)
        self.set_class(noted, "-noted")
        if noted and probe:
            # Text: the note is the probe's words, and `[` in them is not markup.
            self.border_subtitle = Text(output.one_line("; ".join(probe.warnings), width))
        else:
            # The rule lines, where the eye already is.
            self.border_subtitle = (
                f"warn >{snapshot.queue_warning:,} crit >{snapshot.queue_critical:,}"
            )

    def _show_storage(
        self, snapshot: ConsoleSnapshot, probe: QueueProbe | None, width: int, short: bool
    ) -> None:
        """Where the queue is, its round trip or UNREACHABLE, both queues' doorbells; and, in
        the warning colour, what the storage does not keep (Redis persisting nothing: a
        restart loses the doorbells, which delays delivery, never loses a parcel)."""
        storage = self.query_one("#queue-storage", Static)
        notes = self.query_one("#queue-notes", Static)
        storage.display = probe is not None
        # Short, the notes are on the bottom border (see show).
        notes.display = bool(probe and probe.warnings) and not short
        if probe is None:
            return
        parts = [Text(_where(probe, snapshot.status.storage_root))]
        if probe.reachable:
            parts.append(Text(f"ping {output.latency(probe.latency)}"))
        else:
            since = snapshot.status.queue_unreachable_since
            down = "UNREACHABLE" + (f" since {output.clock(since)}" if since else "")
            parts.append(Text(down, style="bold red"))
        if probe.depths:
            parts.append(Text(output.doorbells(probe.depths)))
        self.put("#queue-storage", _fitted(parts, width, 2 if short else None))
        if probe.warnings:
            # The stylesheet gives the warning colour; the words say it without colour.
            self.put("#queue-notes", "\n".join(probe.warnings))

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


def _where(probe: QueueProbe, storage_root: str) -> str:
    """`redis://host:port` (the scheme says the kind), `redis unix:///path`, `sqlite
    queue.db` (beside the storage root the header names)."""
    address = probe.address
    if probe.backend == "sqlite" and address.startswith(storage_root.rstrip("/") + "/"):
        address = address[len(storage_root.rstrip("/")) + 1 :]
    if address.startswith(f"{probe.backend}://"):
        return address
    return f"{probe.backend} {address}"


def _fitted(parts: list[Text], width: int, lines: int | None) -> Text:
    """The parts side by side while they fit the width, each on a line of its own
    otherwise (never one broken in two); past `lines` lines the rest are left out, the
    first part shortened to the width instead."""
    fitted = Text()
    line, count = 0, 1
    for n, part in enumerate(parts):
        if n == 0:
            if lines is not None and len(part) > width:
                part = Text(output.one_line(part.plain, width), style=part.style)
            fitted.append_text(part)
            line = len(part)
            continue
        if line + 2 + len(part) <= width:
            fitted.append("  ")
            line += 2 + len(part)
        elif lines is None or count < lines:
            fitted.append("\n")
            line, count = len(part), count + 1
        else:
            break
        fitted.append_text(part)
    return fitted
