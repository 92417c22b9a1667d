"""Failed jobs pane: a sortable, filterable table; Enter opens a failure with its traceback.

The `/` filter takes words and fields: `agent:NAME type:TYPE error:TEXT age:>2h age:<30m`
(quote a value with spaces: `error:"did not answer"`); bare words match the id, the agent or
the error. While a filter is set, R and X act on what it shows: every failed parcel it
matches when the operator confirms (the service applies the same filter, not the ids on
screen, which are at most the first 200).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input

from seer_console import output
from seer_console.panes.base import Pane, PaneCommand, PaneKey
from seer_console.source import FAILURE_ROWS, ConsoleSnapshot, FailureRow
from seer_console.tables import clear_rows
from worker.parcels.failures import FailureFilter
from worker.settings import parse_duration

SORTS = (
    ("failed", lambda r: -r.failed_at),
    ("agent", lambda r: (r.agent, -r.failed_at)),
    ("tries", lambda r: (-r.tries, -r.failed_at)),
    ("error", lambda r: (r.error, -r.failed_at)),
)


FILTER_HELP = "agent:NAME type:TYPE error:TEXT age:>2h age:<30m, or words"


def parse_filter(text: str) -> FailureFilter:
    """The `/` box's words as a FailureFilter. ValueError: a field's value is not allowed."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()  # an unclosed quote: taken as it is, not refused while typing
    fields: dict[str, object] = {}
    bare = []
    for word in words:
        key, sep, value = word.partition(":")
        key = key.lower()
        if not sep or key not in ("agent", "type", "error", "age"):
            bare.append(word)
            continue
        if not value:
            raise ValueError(f"{key}: needs a value ({FILTER_HELP})")
        if key != "age":
            fields[key] = value
            continue
        side, age = value[0], value[1:]
        if side not in "<>" or not age:
            raise ValueError(f"age:{value}: say age:>2h (older) or age:<30m (newer)")
        try:
            seconds = parse_duration(age)
        except ValueError as exc:
            raise ValueError(f"age:{value}: {age!r} is not {exc}") from None
        fields["older_than" if side == ">" else "newer_than"] = seconds
    if bare:
        fields["text"] = " ".join(bare)
    return FailureFilter(**fields)  # type: ignore[arg-type]


def admits(f: FailureFilter, row: FailureRow, now: float) -> bool:
    """The filter on a row already on screen, until the ledger's answer comes (which also
    knows each parcel's type)."""
    if f.agent and row.agent != f.agent:
        return False
    if f.error and f.error.lower() not in row.error.lower():
        return False
    if f.text and f.text.lower() not in f"{row.id} {row.agent} {row.error}".lower():
        return False
    if f.older_than is not None and not row.failed_at < now - f.older_than:
        return False
    return f.newer_than is None or row.failed_at >= now - f.newer_than


@dataclass(frozen=True)
class Matched:
    """The ledger's answer for a filter: its first rows, how many match, how many failed."""

    text: str
    rows: tuple[FailureRow, ...]
    count: int
    total: int


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
            "R",
            "retry_shown",
            "Retry shown",
            "with a / filter: retry every failed parcel it shows (asks, with the count)",
            title="Retry the failed parcels shown",
        ),
        PaneKey(
            "X",
            "purge",
            "Purge",
            "delete every failed parcel for good",
            title="Purge every failed parcel",
        ),
        PaneKey(
            "X",
            "purge_shown",
            "Purge shown",
            "with a / filter: delete every failed parcel it shows (asks, with the count)",
            title="Purge the failed parcels shown",
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
            "key / in Failed jobs: agent:, type:, error:, age:>2h, or words",
            "start_filter",
            mutates=False,
        ),
    )
    LOCAL_KEYS = (
        ("enter", "open the selected failure: error, traceback, redacted parcel"),
        ("s", "sort by the next column (failed, agent, tries, error)"),
        ("/", f"filter: {FILTER_HELP}; escape clears it"),
        ("up/down", "move the selection"),
    )

    def __init__(self) -> None:
        super().__init__()
        self._rows: tuple[FailureRow, ...] = ()
        self._sort = 0
        self._filter = ""
        self._parsed = FailureFilter()
        self._bad_filter: str | None = None
        self._matched: Matched | None = None
        self._total = 0
        self._taken_at = 0.0

    def compose(self) -> ComposeResult:
        yield Input(placeholder=f"filter: {FILTER_HELP}", id="failed-filter")
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
        self._taken_at = snapshot.taken_at
        total = snapshot.status.parcels["failed"]
        changed = snapshot.failures is not self._rows and snapshot.failures != self._rows
        if changed or total != self._total:
            self._rows = snapshot.failures
            self._total = total
            if self._parsed:
                self._match()  # the failures changed: what the filter shows may have too
            self._fill()
        self.border_title = f"Failed jobs ({total:,})" + (
            f" · sort: {SORTS[self._sort][0]}" if self._sort else ""
        )
        self._subtitle()

    @property
    def filtered(self) -> bool:
        """A valid filter is set: R and X act on what it shows."""
        return bool(self._parsed) and self._bad_filter is None

    def _subtitle(self) -> None:
        if self._bad_filter is not None:
            self.border_subtitle = Text(f"filter: {self._bad_filter}")
        elif self.filtered:
            matched = self._current()
            if matched is None:
                self.border_subtitle = f"counting… of {self._total:,}"
            else:
                listed = (
                    f" (first {len(matched.rows):,} listed)"
                    if matched.count > len(matched.rows)
                    else ""
                )
                self.border_subtitle = f"{matched.count:,} shown of {matched.total:,}{listed}"
        else:
            self.border_subtitle = "" if self._rows else "no failed parcels"

    def _current(self) -> Matched | None:
        matched = self._matched
        return matched if matched is not None and matched.text == self._filter else None

    def _now(self) -> float | None:
        clock = self.console.clock
        return clock() if clock else None

    def _match(self) -> None:
        self._read_matching(self._filter, self._parsed, self._now())

    @work(thread=True, exclusive=True, group="failed-filter")
    def _read_matching(self, text: str, chosen: FailureFilter, now: float | None) -> None:
        from worker.parcels import failures

        ledger = self.console.source.runtime.ledger
        try:
            with ledger.read():
                found = failures.matching(ledger, chosen, now, limit=FAILURE_ROWS)
                count = failures.count_matching(ledger, chosen, now)
                total = failures.count_failed(ledger)
        except Exception as exc:  # shown, not raised: the console stays up
            self.app.call_from_thread(self.app.notify, f"Filter failed: {exc}", severity="error")
            return
        rows = tuple(
            FailureRow(f.id, f.to_agent_id, f.error or "", f.attempts, f.failed_at) for f in found
        )
        self.app.call_from_thread(self._matched_now, Matched(text, rows, count, total))

    def _matched_now(self, matched: Matched) -> None:
        if matched.text != self._filter:
            return  # an answer for what the box said before
        self._matched = matched
        self._fill()
        self._subtitle()
        self.app.refresh_bindings()

    def _visible(self) -> list[FailureRow]:
        if self._bad_filter is not None:
            return []
        if not self._parsed:
            rows: list[FailureRow] = list(self._rows)
        else:
            matched = self._current()
            if matched is not None:
                rows = list(matched.rows)
            else:
                now = self._now() or self._taken_at
                rows = [r for r in self._rows if admits(self._parsed, r, now)]
        return sorted(rows, key=SORTS[self._sort][1])

    def _fill(self) -> None:
        table = self.query_one(FailedTable)
        selected = self.selected_id()
        clear_rows(table)
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
        self._subtitle()

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
        self._set_filter(event.value)

    def _set_filter(self, text: str) -> None:
        self._filter = text
        try:
            self._parsed = parse_filter(text)
            self._bad_filter = None
        except ValueError as exc:
            self._parsed = FailureFilter()
            self._bad_filter = str(exc)
        if self.filtered:
            self._match()
        self._fill()
        self.app.refresh_bindings()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(FailedTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#failed-filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self._set_filter("")
            self.query_one(FailedTable).focus()

    def available(self, action: str) -> bool:
        # R and X: everything without a filter, what the filter shows with one.
        # A filter that does not parse still counts as one: R must not become "retry all".
        filtering = self.filtered or self._bad_filter is not None
        if action in ("retry_all", "purge"):
            return not filtering
        if action in ("retry_shown", "purge_shown"):
            return filtering
        return True

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
                "{} failed parcel{s} back in the queue",
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
                "Purge", lambda ops, rt: ops.purge_failed(rt), "purged {} failed parcel{s}"
            ),
            danger=True,
        )

    def _shown_for_action(self, verb: str) -> Matched | None:
        if self._bad_filter is not None:
            # Not "everything": a mistyped filter must not turn R into "retry all".
            self.app.notify(f"Fix the filter first: {self._bad_filter}", severity="warning")
            return None
        matched = self._current()
        if matched is None:
            self.app.notify("Still counting what the filter shows; try again in a moment.")
            return None
        if not matched.count:
            self.app.notify(f"No failed parcels match the filter to {verb}.")
            return None
        return matched

    def _act_on_shown(
        self,
        verb: str,
        label: str,
        question: str,
        run: Callable[..., int],
        done: str,
        danger: bool = False,
    ) -> None:
        """Confirm with the count, then `run(ops, runtime, filter, now)` in the console's
        worker: the service applies the filter again when confirmed, so what it acts on is
        what matches then (the count said is what matched when asked)."""
        matched = self._shown_for_action(verb)
        if matched is None:
            return
        chosen, now, said = self._parsed, self._now(), self._parsed.describe()
        count, literal = matched.count, said.replace("{", "{{").replace("}", "}}")
        plural = "s" if count != 1 else ""
        self.console.confirm(
            question.format(count=f"{count:,}", s=plural, said=said),
            label,
            lambda: self.console.perform(
                label, lambda ops, rt: run(ops, rt, chosen, now), f"{done} ({literal})"
            ),
            danger=danger,
        )

    def act_retry_shown(self) -> None:
        self._act_on_shown(
            "retry",
            "Retry shown",
            "Retry the {count} failed parcel{s} shown ({said})?\n\nEvery failed parcel matching "
            "this filter when you confirm goes back in the queue with its original contents "
            "and fresh tries; the notice says how many did.",
            lambda ops, rt, chosen, now: len(ops.retry_failed_matching(rt, chosen, now).ids),
            "{} failed parcel{s} back in the queue",
        )

    def act_purge_shown(self) -> None:
        self._act_on_shown(
            "purge",
            "Purge shown",
            "Delete the {count} failed parcel{s} shown ({said}) for good?\n\nEvery failed "
            "parcel matching this filter when you confirm is deleted with its contents, error "
            "and traceback; it cannot be undone.",
            lambda ops, rt, chosen, now: ops.purge_failed_matching(rt, chosen, now),
            "purged {} failed parcel{s}",
            danger=True,
        )
