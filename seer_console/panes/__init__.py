"""The panes of the main screen, in order. A new pane is a module here and a line below."""

from seer_console.panes.alerts import AlertsPane
from seer_console.panes.base import Pane, PaneKey
from seer_console.panes.cas import CasPane
from seer_console.panes.compaction import CompactionPane
from seer_console.panes.failed import FailedPane
from seer_console.panes.queue import QueuePane
from seer_console.panes.worker import WorkerPane

PANES: tuple[type[Pane], ...] = (
    QueuePane,
    CasPane,
    FailedPane,
    WorkerPane,
    CompactionPane,
    AlertsPane,
)

__all__ = ["PANES", "Pane", "PaneKey"]
