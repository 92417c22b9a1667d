"""The console's views, in the order of `?` and the palette. A new view is a module here and a
line below; its KEY opens it from anywhere."""

from seer_console.views.base import View, ViewKey
from seer_console.views.history import HistoryView
from seer_console.views.inboxes import InboxesView
from seer_console.views.logs import LogsView
from seer_console.views.parcels import ParcelsView
from seer_console.views.schedule import ScheduleView

VIEWS: tuple[type[View], ...] = (ParcelsView, InboxesView, LogsView, ScheduleView, HistoryView)

__all__ = ["VIEWS", "View", "ViewKey"]
