"""Messages from the worker threads to the UI thread. The threads share no mutable state with
it: what they learn travels in these, and only the UI thread keeps it.

A newer snapshot message replaces one not yet handled."""

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


class ParcelSent(Message):
    """A test parcel sent from this console, whose delivery it watches for."""

    def __init__(self, parcel_id: str, at: float) -> None:
        super().__init__()
        self.parcel_id = parcel_id
        self.at = at
