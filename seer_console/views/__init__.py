"""The console's views, in the order of `?` and the palette. A new view is a module here and a
line below; its KEY opens it from anywhere.

The app knows the views by these entries and imports a view's module only when it is opened
(or warmed, once the first snapshot is on screen): the modules pull in the parcel finder, the
inbox, the log reader and plotext, ~150 ms that the console's first frame need not wait for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from seer_console.views.base import View, ViewKey


@dataclass(frozen=True)
class ViewEntry:
    """What the main screen needs of a view before its module is imported: its key, title
    and one line (the footer, `?`, the palette), and where its class is. tests/test_views.py
    checks that each entry says what its class says."""

    view_id: str
    key: str
    title: str
    description: str
    module: str
    name: str

    def load(self) -> type[View]:
        return getattr(importlib.import_module(self.module), self.name)


def _entry(view_id: str, key: str, title: str, description: str, name: str) -> ViewEntry:
    return ViewEntry(view_id, key, title, description, f"seer_console.views.{view_id}", name)


ENTRIES: tuple[ViewEntry, ...] = (
    _entry(
        "parcels",
        "P",
        "Parcels",
        "find parcels by id, task, agent, type, state or time; open a parcel's life",
        "ParcelsView",
    ),
    _entry(
        "inboxes",
        "I",
        "Inboxes",
        "agents' inboxes: unread counts, messages unread first, open one, mark it read",
        "InboxesView",
    ),
    _entry(
        "logs",
        "L",
        "Logs",
        "the worker's, supervisord's and the orchestration log: follow, search, errors",
        "LogsView",
    ),
    _entry(
        "schedule",
        "S",
        "Schedule",
        "periodic jobs: schedules, next and last runs, results; run a safe job now",
        "ScheduleView",
    ),
    _entry(
        "history",
        "H",
        "History",
        "queue depth, deliveries and failures per minute, CAS size: 15 min to 7 days",
        "HistoryView",
    ),
)


def __getattr__(name: str) -> tuple[type[View], ...]:
    # VIEWS, the classes themselves, imported on first use (the tests, a view opened).
    if name == "VIEWS":
        return tuple(entry.load() for entry in ENTRIES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ENTRIES", "VIEWS", "View", "ViewEntry", "ViewKey"]
