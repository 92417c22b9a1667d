"""Failed jobs pane: a sortable, filterable table; Enter opens a failure with its traceback."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input

from seer_console import output
from seer_console.panes.base import Pane, PaneCommand, PaneKey
from seer_console.source import ConsoleSnapshot, FailureRow

SORTS = (
    ("failed", lambda r: -r.failed_at),
    ("agent", lambda r: (r.agent, -r.failed_at)),
    ("tries", lambda r: (-r.tries, -r.failed_at)),
    ("error", lambda r: (r.error, -r.failed_at)),
)


class FailedTable(DataTable):
    BINDINGS = [
        Binding("enter", "open", "Details", show=False),
        Binding("s", "sort", "Sort", show=False),
        Binding("slash", "filter", "Filter", show=False),
        Binding("r", "retry", "Retry", show=False),
    ]

    def action_open(self) -> None:
        self.parent_pane().open_selected()

    def action_sort(self) -> None:
        self.parent_pane().next_sort()

    def action_filter(self) -> None:
        self.parent_pane().start_filter()

    def action_retry(self) -> None:
        self.parent_pane().act_retry_selected()

    def parent_pane(self) -> FailedPane:
        return self.query_ancestor(FailedPane)


class FailedPane(Pane):
    pane_id = "failed"
    title = "Failed jobs"
    ROW = 1
    KEYS = (
        PaneKey(
            "r",
            "retry_selected",
            "Retry",
            "retry the selected failed parcel",
            title="Retry the selected failed parcel",
        ),
        PaneKey(
            "R",
            "retry_all",
            "Retry all",
            "put every failed parcel back in the queue",
            title="Retry every failed parcel",
        ),
        PaneKey(
            "X",
            "purge",
            "Purge",
            "delete every failed parcel for good",
            title="Purge every failed parcel",
        ),
    )
    COMMANDS = (
        PaneCommand(
            "Open the selected failed parcel",
            "key enter in Failed jobs: error, traceback, redacted parcel",
            "open_selected",
            mutates=False,
        ),
        PaneCommand(
            "Sort failed jobs by the next column",
            "key s in Failed jobs: failed, agent, tries, error",
            "next_sort",
            mutates=False,
        ),
        PaneCommand(
            "Filter failed jobs",
            "key / in Failed jobs: by agent, error or parcel id",
            "start_filter",
            mutates=False,
        ),
    )
    LOCAL_KEYS = (
        ("enter", "open the selected failure: error, traceback, redacted parcel"),
        ("s", "sort by the next column (failed, agent, tries, error)"),
        ("/", "filter the rows; escape clears the filter"),
        ("up/down", "move the selection"),
    )

    def __init__(self) -> None:
        super().__init__()
        self._rows: tuple[FailureRow, ...] = ()
        self._sort = 0
        self._filter = ""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: agent, error or parcel id", id="failed-filter")
        table = FailedTable(id="failed-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("Parcel", "Agent", "Tries", "Failed", "Error")
        yield table

    def on_mount(self) -> None:
        self.query_one("#failed-filter", Input).display = False

    def on_resize(self) -> None:
        self._fill()

    def on_focus(self) -> None:
        self.query_one(FailedTable).focus()

    def show(self, snapshot: ConsoleSnapshot) -> None:
        self.border_subtitle = ""
        if snapshot.failures is not self._rows and snapshot.failures != self._rows:
            self._rows = snapshot.failures
            self._fill()
        if not self._rows:
            self.border_subtitle = "no failed parcels"
        total = snapshot.status.parcels["failed"]
        self.border_title = f"Failed jobs ({total:,})" + (
            f" · sort: {SORTS[self._sort][0]}" if self._sort else ""
        )

    def _visible(self) -> list[FailureRow]:
        needle = self._filter.lower()
        rows = [
            r for r in self._rows if not needle or needle in f"{r.id} {r.agent} {r.error}".lower()
        ]
        return sorted(rows, key=SORTS[self._sort][1])

    def _fill(self) -> None:
        table = self.query_one(FailedTable)
        selected = self.selected_id()
        table.clear()
        # The error gets what the other columns leave, so the table never scrolls sideways.
        room = max(20, (self.content_region.width or 80) - 8 - 16 - 5 - 8 - 10)
        for r in self._visible():
            # Text cells: a DataTable parses a str cell as markup, and an agent id of `[/]`
            # would crash the console on every start.
            table.add_row(
                Text(r.id[:8]),
                Text(output.one_line(r.agent, 16)),
                str(r.tries),
                output.clock(r.failed_at),
                Text(output.one_line(r.error, room)),
                key=r.id,
            )
        if selected and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))
        if not table.row_count:
            self.border_subtitle = "no failed parcels" if not self._filter else "no match"

    def selected_id(self) -> str | None:
        table = self.query_one(FailedTable)
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None

    def next_sort(self) -> None:
        self._sort = (self._sort + 1) % len(SORTS)
        self.border_title = f"Failed jobs · sort: {SORTS[self._sort][0]}"
        self._fill()

    def start_filter(self) -> None:
        box = self.query_one("#failed-filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._filter = event.value
        self._fill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(FailedTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#failed-filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self._filter = ""
            self._fill()
            self.query_one(FailedTable).focus()

    def open_selected(self) -> None:
        parcel_id = self.selected_id()
        if parcel_id:
            self.console.open_failure(parcel_id)

    def act_retry_selected(self) -> None:
        parcel_id = self.selected_id()
        if not parcel_id:
            self.app.notify("No failed parcel selected.", severity="warning")
            return
        self.console.retry_one(parcel_id)

    def act_retry_all(self) -> None:
        count = len(self._rows)
        if not count:
            self.app.notify("No failed parcels to retry.")
            return
        self.console.confirm(
            f"Retry every failed parcel ({count:,}+)?\n\nThey go back in the queue with "
            "their original contents and fresh tries.",
            "Retry all",
            lambda: self.console.perform(
                "Retry all",
                lambda ops, rt: len(ops.retry_all_failed(rt).ids),
                "{} failed parcels back in the queue",
            ),
        )

    def act_purge(self) -> None:
        if not self._rows:
            self.app.notify("No failed parcels to purge.")
            return
        self.console.confirm(
            "Delete every failed parcel for good?\n\nTheir contents, errors and tracebacks "
            "are gone after this; it cannot be undone.",
            "Purge",
            lambda: self.console.perform(
                "Purge", lambda ops, rt: ops.purge_failed(rt), "purged {} failed parcels"
            ),
            danger=True,
        )
