"""The Parcels view: find parcels by id prefix, task, agent, type, state and time among
millions (a page at a time, newest first), open one parcel's whole life, retry it or pull its
artifacts; and the deliveries as they arrive.

Everything shown is read by worker.parcels.finder in thread workers, redacted there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from seer_console import output
from seer_console.tables import clear_rows
from seer_console.views.base import View, ViewKey
from worker.parcels import finder

PAGE = 50
RECENT = 5
_STATE_STYLE = {"failed": "red", "delivered": "green", "in_flight": "yellow", "queued": "cyan"}


def _state(state: str) -> Text:
    return Text(state, style=_STATE_STYLE.get(state, ""))


class ParcelsView(View):
    view_id = "parcels"
    view_title = "Parcels"
    KEY = "P"
    # The table, not the filter line: n and b page at once; / goes to the filter.
    AUTO_FOCUS = "#parcels-table"
    DESCRIPTION = "find parcels by id, task, agent, type, state or time; open a parcel's life"
    KEYS = (
        ViewKey("slash", "filter", "Filter", "edit the filter line (enter searches)"),
        ViewKey("n", "next_page", "Older", "next page: older parcels", title="Next page"),
        ViewKey("b", "previous_page", "Newer", "previous page: newer parcels", title="Prev page"),
        ViewKey("g", "search", "Reload", "search again (new parcels come first)"),
    )
    LOCAL_KEYS = (
        ("enter", "in the filter line: search; on a parcel: open its whole life"),
        ("↑ ↓ pgup pgdn", "move through the parcels"),
    )
    DEFAULT_CSS = """
    ParcelsView #parcels-filter { height: 1; margin: 0 1; }
    ParcelsView #parcels-status { height: 1; padding: 0 1; color: $text-muted; }
    ParcelsView #parcels-status.-error { color: $error; }
    ParcelsView #parcels-table { height: 1fr; }
    ParcelsView #parcels-recent {
        height: auto; max-height: 8; border-top: solid $primary-darken-2; padding: 0 1;
    }
    """
    HELP = (
        "agent:A task:T type:X state:queued|in_flight|delivered|failed since:2h until:ISO, "
        "or an id prefix"
    )

    def __init__(self) -> None:
        super().__init__()
        self.query_text = ""
        self.cursors: list[int | None] = [None]  # the `before` of each page seen so far
        self.page: finder.Page | None = None
        self.query_value: finder.Query | None = finder.Query()

    def compose_view(self) -> ComposeResult:
        yield Input(placeholder=self.HELP, id="parcels-filter", compact=True)
        yield Static(Text("Searching…"), id="parcels-status")
        table: DataTable[Any] = DataTable(id="parcels-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("Id", "Agent", "Task", "Type", "State", "Try", "Queued")
        yield table
        yield Static(Text("Recent deliveries: loading…"), id="parcels-recent")

    def on_mount(self) -> None:
        self.search()
        self.load_recent()

    def show(self, snapshot: Any) -> None:
        self.load_recent()

    # -- searching ---------------------------------------------------------------------------

    def _now(self) -> float:
        return self.now() or time.time()

    @on(Input.Submitted, "#parcels-filter")
    def submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value
        self.cursors = [None]
        self.search()
        self.query_one("#parcels-table", DataTable).focus()

    def action_filter(self) -> None:
        self.query_one("#parcels-filter", Input).focus()

    def action_search(self) -> None:
        self.cursors = [None]
        self.search()

    def action_next_page(self) -> None:
        if self.page is None or self.page.next_before is None:
            self.console.notify("No older parcels: this is the last page.")
            return
        self.cursors.append(self.page.next_before)
        self.search()

    def action_previous_page(self) -> None:
        if len(self.cursors) == 1:
            self.console.notify("This is the first page: the newest parcels.")
            return
        self.cursors.pop()
        self.search()

    def search(self) -> None:
        status = self.query_one("#parcels-status", Static)
        try:
            query = finder.parse_filter(self.query_text, self._now())
        except finder.FinderError as exc:
            status.set_class(True, "-error")
            status.update(Text(str(exc)))
            return
        status.set_class(False, "-error")
        self.load_page(query, self.cursors[-1])

    @work(thread=True, exclusive=True, group="parcels-search")
    def load_page(self, query: finder.Query, before: int | None) -> None:
        try:
            page = finder.find_query(self.source.runtime.ledger, query, before=before, limit=PAGE)
        except Exception as exc:  # said on the status line; the console stays up
            self.app.call_from_thread(self._failed, f"Cannot search: {exc}")
            return
        self.app.call_from_thread(self._show_page, page)

    def _failed(self, text: str) -> None:
        status = self.query_one("#parcels-status", Static)
        status.set_class(True, "-error")
        status.update(Text(text))

    def _show_page(self, page: finder.Page) -> None:
        self.page = page
        table = self.query_one("#parcels-table", DataTable)
        clear_rows(table)
        for row in page.rows:
            table.add_row(
                Text(row.id[:8]),
                Text(output.one_line(row.to_agent_id, 14)),
                Text(output.one_line(row.task_id, 12)),
                Text(output.one_line(row.type, 14)),
                _state(row.state),
                Text(str(row.attempts)),
                Text(output.short_stamp(row.created_at)),
                key=row.id,
            )
        number = len(self.cursors)
        more = "n: older" if page.next_before is not None else "the last page"
        back = " · b: newer" if number > 1 else ""
        shown = output.counted(len(page.rows), "parcel")
        said = f"page {number} · {shown}, newest first · {more}{back}"
        if not page.rows:
            said = "No parcel matches." if number == 1 else f"page {number} · nothing older"
        self.query_one("#parcels-status", Static).update(Text(said))

    @on(DataTable.RowSelected, "#parcels-table")
    def opened(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.push_screen(ParcelLifeScreen(event.row_key.value, self))

    # -- recent deliveries -------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="parcels-recent")
    def load_recent(self) -> None:
        try:
            rows = finder.recent(self.source.runtime.ledger, RECENT)
        except Exception as exc:
            self.app.call_from_thread(self._show_recent, Text(f"Recent deliveries: {exc}"))
            return
        self.app.call_from_thread(self._show_recent, render_recent(rows))

    def _show_recent(self, text: Text) -> None:
        found = self.query("#parcels-recent")
        if found:
            found.first(Static).update(text)


def render_recent(rows: tuple[finder.ParcelRow, ...]) -> Text:
    text = Text("Recent deliveries", style="bold")
    if not rows:
        text.append("  none yet", style="dim")
    for row in rows:
        text.append("\n")
        text.append(output.clock(row.finished_at), style="dim")
        text.append(f"  {row.id[:8]}  ")
        text.append(output.one_line(row.to_agent_id, 24))
        text.append(f"  {output.one_line(row.type, 24)}", style="dim")
    return text


# -- a parcel's life ------------------------------------------------------------------------------


class ParcelLifeScreen(View):
    """One parcel's whole life: its fields, every event, its artifacts and manifest; r retries
    a failed parcel, o pulls the selected artifact to a file. A view of its own (not in VIEWS:
    opened from the Parcels view only), so the main screen's keys do not fire under it."""

    view_id = "parcel-life"
    view_title = "Parcel"
    DESCRIPTION = "one parcel's whole life"
    AUTO_FOCUS = "#life-artifacts"
    KEYS = (
        ViewKey("r", "retry", "Retry", "retry this failed parcel (asks first)", mutates=True),
        ViewKey(
            "o",
            "pull",
            "Pull",
            "pull the selected artifact to a file (asks for its name)",
            mutates=True,
            title="Pull an artifact to a file",
        ),
        ViewKey("g", "reload", "Reload", "read the parcel again"),
    )
    LOCAL_KEYS = (("↑ ↓", "select an artifact"),)
    DEFAULT_CSS = """
    ParcelLifeScreen #life-box { height: 1fr; padding: 0 1; }
    ParcelLifeScreen #life-artifacts { height: auto; max-height: 8; margin: 1 0; }
    """

    def __init__(self, parcel_id: str, view: View) -> None:
        super().__init__()
        self.parcel_id = parcel_id
        self.view = view
        self.life: finder.ParcelLife | None = None
        self.sub_title = f"Parcel {parcel_id}"

    def compose_view(self) -> ComposeResult:
        with VerticalScroll(id="life-box"):
            yield Static(Text(f"Loading parcel {self.parcel_id}…"), id="life-text")
            table: DataTable[Any] = DataTable(id="life-artifacts", cursor_type="row")
            table.add_columns("Artifact", "Size", "Hash", "URI")
            yield table
            yield Static(Text(""), id="life-manifest")

    def on_mount(self) -> None:
        self.load()

    def available(self, action: str) -> bool:
        if action in ("retry", "pull"):
            return self.life is not None and action in self.life.actions
        return True

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        runtime = self.view.source.runtime
        try:
            life = finder.life(runtime.ledger, self.parcel_id, store=runtime.store)
        except Exception as exc:  # shown, not raised: the console stays up
            self.app.call_from_thread(
                self._show_error, Text(f"Cannot show parcel {self.parcel_id}: {exc}", style="red")
            )
            return
        self.app.call_from_thread(self._show, life)

    def _show_error(self, text: Text) -> None:
        found = self.query("#life-text")
        if found:
            found.first(Static).update(text)

    def _show(self, life: finder.ParcelLife | None) -> None:
        if not self.query("#life-text"):
            return  # closed while it loaded
        self.life = life
        self.query_one("#life-text", Static).update(
            render_life(life, self.parcel_id, self.view.now())
        )
        table = self.query_one("#life-artifacts", DataTable)
        clear_rows(table)
        table.display = bool(life and life.artifacts)
        for artifact in life.artifacts if life else ():
            table.add_row(
                Text(artifact.name),
                Text(output.size(artifact.size)),
                Text(artifact.hash[:16] + "…"),
                Text(artifact.uri),
                key=artifact.hash,
            )
        manifest = Text()
        if life and life.manifest:
            manifest.append("Manifest ", style="bold")
            manifest.append(f"{output.size(life.manifest.size)}  {life.manifest.uri}\n")
            manifest.append(life.manifest_text or "(not read)")
        self.query_one("#life-manifest", Static).update(manifest)
        self.refresh_bindings()

    def action_back(self) -> None:
        if self.app.screen is self:
            self.app.pop_screen()

    def action_reload(self) -> None:
        self.load()

    def action_retry(self) -> None:
        if self.life is None or "retry" not in self.life.actions:
            return
        pid = self.parcel_id

        def retry(operations: Any, runtime: Any) -> Any:
            rung = operations.retry_failed(runtime, pid)
            self.app.call_from_thread(self.load)
            return False if rung is None else rung  # None: no longer failed

        self.view.console.confirm(
            f"Retry parcel {pid}? It goes back in the queue with fresh tries.",
            "Retry",
            lambda: self.view.console.perform(
                "Retry", retry, f"Parcel {pid} is back in the queue."
            ),
        )

    def selected_artifact(self) -> Any:
        if self.life is None or not self.life.artifacts:
            return None
        table = self.query_one("#life-artifacts", DataTable)
        return self.life.artifacts[min(table.cursor_row, len(self.life.artifacts) - 1)]

    def action_pull(self) -> None:
        artifact = self.selected_artifact()
        if artifact is None:
            return
        if self.read_only:
            self.view.console.notify("Read-only console: actions are disabled.")
            return
        suggested = str(Path.cwd() / Path(artifact.filename).name)

        def chosen(path: str | None) -> None:
            if path:
                self.pull_to(artifact, Path(path).expanduser())

        self.app.push_screen(PathPrompt(f"Pull {artifact.name} to the file:", suggested), chosen)

    def pull_to(self, artifact: Any, dest: Path) -> None:
        console = self.view.console

        def write(operations: Any, runtime: Any) -> str:
            # The caller's file, not the group's: 0600, as `seer artifacts pull -o` leaves it.
            runtime.store.copy_to(artifact.hash, dest, mode=0o600)
            return str(dest)

        def go() -> None:
            console.perform("Pull", write, f"Wrote {dest} ({output.size(artifact.size)}).")

        if not dest.parent.is_dir():
            console.notify(f"There is no directory {dest.parent}.", severity="error")
        elif dest.is_dir():
            console.notify(f"{dest} is a directory: name a file.", severity="error")
        elif dest.exists():
            console.confirm(f"{dest} exists. Overwrite it?", "Overwrite", go, danger=True)
        else:
            go()


def render_life(life: finder.ParcelLife | None, parcel_id: str, now: float | None) -> Text:
    """Plain Text, never markup: every string came from data (redacted by the finder)."""
    if life is None:
        return Text(f"Parcel {parcel_id} is not in the ledger (purged?).")
    text = Text()
    text.append("Parcel ", style="bold")
    text.append(life.id + "\n")
    text.append("state    ")
    text.append_text(_state(life.state))
    text.append(f"   tries {life.attempts}   worker deaths {life.crashes}\n")
    text.append(f"agent    {life.to_agent_id}\n")
    text.append(f"task     {life.task_id}   type {life.type}   stream {life.stream}\n")
    text.append(f"size     {output.size(life.size)}   queued {output.when(life.created_at, now)}\n")
    if life.finished_at:
        text.append(f"finished {output.when(life.finished_at, now)}\n")
    if life.message_id is not None:
        text.append(f"message  {life.message_id} in the inbox of {life.to_agent_id}\n")
    if life.error:
        text.append("error    ")
        text.append(life.error + "\n", style="red")
    text.append("\nLife\n", style="bold")
    for event in life.events:
        text.append(
            f"  {output.stamp(event.at) if event.at else '(time not kept)':19}  ", style="dim"
        )
        style = "red" if event.kind in ("failed", "try_failed") else ""
        text.append(event.describe() + "\n", style=style)
    actions = []
    if "retry" in life.actions:
        actions.append("r retry")
    if "pull" in life.actions:
        actions.append("o pull the selected artifact to a file")
    if life.artifacts:
        text.append("\nArtifacts", style="bold")
    elif actions:
        text.append("\n")
    if actions:
        text.append(("\n" if not life.artifacts else "  ") + " · ".join(actions), style="dim")
    return text


class PathPrompt(ModalScreen[str | None]):
    """Asks for a file name; enter takes it, escape cancels."""

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PathPrompt { align: center middle; }
    PathPrompt #prompt-box {
        width: 70; max-width: 95%; height: auto; border: round $primary; padding: 0 1;
        background: $surface;
    }
    """

    def __init__(self, question: str, value: str) -> None:
        super().__init__()
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(Text(self.question))
            yield Input(value=self.value, id="prompt-path")
            yield Static(Text("enter: write · escape: cancel", style="dim"))

    @on(Input.Submitted, "#prompt-path")
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
