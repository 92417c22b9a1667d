"""Modal screens: a confirmation whose default is Cancel, the key help, a failure's detail."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from seer_console import output

if TYPE_CHECKING:
    from worker.parcels.failures import ParcelEntry


class ConfirmScreen(ModalScreen[bool]):
    """Asks before anything destructive or disruptive. Enter on the focused Cancel cancels."""

    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Confirm"),
        Binding("left,right", "app.focus_next", "Switch", show=False),
    ]

    def __init__(self, question: str, confirm_label: str, danger: bool = False) -> None:
        super().__init__(classes="confirm")
        self.question = question
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.question), id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(
                    f"{self.confirm_label} (y)",
                    id="confirm",
                    variant="error" if self.danger else "warning",
                )

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        self.dismiss(True)


class HelpScreen(ModalScreen[None]):
    """Every key, generated from the bindings themselves so that it cannot fall behind."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, sections: Iterable[tuple[str, list[tuple[str, str]]]], note: str) -> None:
        super().__init__()
        self.sections = list(sections)
        self.note = note

    def compose(self) -> ComposeResult:
        lines = ["[b]Seer Ops console — keys[/]", ""]
        for title, keys in self.sections:
            lines.append(f"[b]{title}[/]")
            lines += [f"  [reverse] {key} [/]  {text}" for key, text in keys]
            lines.append("")
        lines.append(self.note)
        with VerticalScroll(id="help-box"):
            yield Static("\n".join(lines), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)


class FailureScreen(ModalScreen[None]):
    """One failed parcel: error, traceback and the parcel with its secrets redacted."""

    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("r", "retry", "Retry this parcel"),
    ]

    def __init__(self, parcel_id: str, loader, retry, read_only: bool, now=None) -> None:
        super().__init__()
        self.now = now
        self.parcel_id = parcel_id
        self.loader = loader
        self.retry = retry
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="failure-box"):
            yield Static(Text(f"Loading parcel {self.parcel_id}…"), id="failure-text")

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        try:
            row = self.loader(self.parcel_id)
            text = render_failure(row, self.parcel_id, self.now() if self.now else None)
        except Exception as exc:  # shown, not raised: the console stays up (too deep, gone…)
            text = Text(f"Cannot show parcel {self.parcel_id}: {exc}", style="red")
        self.app.call_from_thread(self._show, text)

    def _show(self, text: Text) -> None:
        # Closed while it loaded (escape at once): nothing to update, nothing to fail.
        found = self.query("#failure-text")
        if found:
            found.first(Static).update(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry" and self.read_only:
            return None
        return True

    def action_retry(self) -> None:
        self.dismiss(None)
        self.retry(self.parcel_id)

    def action_close(self) -> None:
        self.dismiss(None)


DETAIL_LIMIT = 20_000


def render_failure(row: ParcelEntry | None, parcel_id: str, now: float | None = None) -> Text:
    """Plain Text, not markup: tracebacks and JSON keep their indentation and brackets."""
    if row is None:
        return Text(f"Parcel {parcel_id} is no longer in the ledger (purged?).")
    payload = row.payload
    # failures.parcel() redacted it, ids and keys included. Bounded: a 32 MB parcel laid out
    # in full would hold the UI thread for minutes; the CLI prints it whole.
    shown = json.dumps(payload, indent=2, ensure_ascii=False) if payload else "-"
    if len(shown) > DETAIL_LIMIT:
        more = len(shown) - DETAIL_LIMIT
        shown = (
            shown[:DETAIL_LIMIT]
            + f"\n… {more:,} more characters: `seer parcel show {parcel_id} --json` prints it all"
        )
    text = Text()

    def field(label: str, value: object, end: str = "   ") -> None:
        text.append(f"{label} ", style="bold")
        text.append(f"{value}{end}")

    field("Parcel", row.id)
    field("state", row.state, "\n")
    field("Agent", row.to_agent_id)
    field("task", row.task_id)
    field("type", row.type, "\n")
    field("Tries", row.attempts)
    field("worker deaths", row.crashes, "\n")
    field("Queued", output.when(row.created_at, now), "\n")
    field("Failed", output.when(row.finished_at, now), "\n\n")
    for title, body in (
        ("Error", row.error or "-"),
        ("Traceback", (row.traceback or "-").rstrip()),
        ("Parcel (secrets redacted)", shown),
    ):
        text.append(f"{title}\n", style="bold")
        text.append(f"{body}\n\n")
    text.append("r retries this parcel · escape closes", style="dim")
    return text
