"""What the console's DataTables share."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable


def clear_rows(table: DataTable[Any]) -> None:
    """The rows go, and the columns are as wide as their labels again. DataTable.clear() keeps
    the widths the old rows gave the columns, so a column whose text is cut to the room there
    is stays as wide as an earlier, wider cut (the first snapshot can come before the first
    layout, whose width is the one that holds)."""
    table.clear()
    for column in table.columns.values():
        column.content_width = column.label.cell_len
