"""Modal screens: a confirmation whose default is Cancel, the key help, a failure's detail."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from seer_console import output
from worker.redaction import redact_value


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
            yield Static(self.question, id="confirm-question")
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

    def __init__(self, parcel_id: str, loader, retry, read_only: bool) -> None:
        super().__init__()
        self.parcel_id = parcel_id
        self.loader = loader
        self.retry = retry
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="failure-box"):
            yield Static(f"Loading parcel {self.parcel_id}…", id="failure-text")

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        try:
            row = self.loader(self.parcel_id)
        except Exception as exc:  # shown, not raised: the console must stay up
            text = f"[red]Cannot read parcel {self.parcel_id}: {exc}[/]"
        else:
            text = render_failure(row, self.parcel_id)
        self.app.call_from_thread(self.query_one("#failure-text", Static).update, text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry" and self.read_only:
            return None
        return True

    def action_retry(self) -> None:
        self.dismiss(None)
        self.retry(self.parcel_id)

    def action_close(self) -> None:
        self.dismiss(None)


def render_failure(row: dict[str, Any] | None, parcel_id: str) -> str:
    from rich.markup import escape

    if row is None:
        return f"Parcel {parcel_id} is no longer in the ledger (purged?)."
    payload = row.get("payload")
    shown = json.dumps(redact_value(payload), indent=2, ensure_ascii=False) if payload else "-"
    parts = [
        f"[b]Parcel[/] {row['id']}   [b]state[/] {row['state']}",
        f"[b]Agent[/] {escape(row['to_agent_id'])}   [b]task[/] {escape(row['task_id'])}   "
        f"[b]type[/] {escape(row['type'])}",
        f"[b]Tries[/] {row['attempts']}   [b]worker deaths[/] {row['crashes']}",
        f"[b]Queued[/] {output.when(row['created_at'])}",
        f"[b]Failed[/] {output.when(row['finished_at'])}",
        "",
        f"[b]Error[/]\n{escape(row.get('error') or '-')}",
        "",
        f"[b]Traceback[/]\n{escape(row.get('traceback') or '-')}",
        "",
        f"[b]Parcel (secrets redacted)[/]\n{escape(shown)}",
        "",
        "[dim]r retries this parcel · escape closes[/]",
    ]
    return "\n".join(parts)
