"""Messages from the snapshot worker to the panes. A newer one replaces one not yet handled."""

from __future__ import annotations

from textual.message import Message

from seer_console.source import ConsoleSnapshot, PartialSnapshot


class SnapshotReady(Message):
    def __init__(self, snapshot: ConsoleSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady | SnapshotFailed)


class SnapshotFailed(Message):
    def __init__(self, error: str, at: float, partial: PartialSnapshot | None = None) -> None:
        super().__init__()
        self.error = error
        self.at = at
        self.partial = partial  # what can still be shown (supervisord's view), if anything

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady | SnapshotFailed)
