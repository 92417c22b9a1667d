"""What every pane is: a focusable, zoomable box that renders a snapshot and owns its keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Static

from seer_console.source import ConsoleSnapshot, PartialSnapshot

if TYPE_CHECKING:
    from seer_console.app import SeerConsole


@dataclass(frozen=True)
class PaneKey:
    """A key the pane answers to from anywhere on the main screen (footer, palette, help)."""

    key: str
    action: str
    description: str
    help: str
    mutates: bool = True  # disabled in read-only mode


class Pane(Vertical, can_focus=True):
    """Subclasses set pane_id, title and KEYS, implement show(), and act_<action>() for keys."""

    ALLOW_MAXIMIZE = True
    pane_id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    ROW: ClassVar[int] = 0  # panes of one row sit side by side; rows stack in order
    KEYS: ClassVar[tuple[PaneKey, ...]] = ()
    LOCAL_KEYS: ClassVar[tuple[tuple[str, str], ...]] = ()  # (key, help) when focused

    def __init__(self) -> None:
        super().__init__(id=self.pane_id, classes="pane")
        self.border_title = self.title

    @property
    def console(self) -> SeerConsole:
        return self.app  # type: ignore[return-value]

    @property
    def short(self) -> bool:
        """True on a short terminal: show fewer lines."""
        return self.screen.has_class("-short")

    def show(self, snapshot: ConsoleSnapshot) -> None:
        raise NotImplementedError

    def show_error(self, message: str, partial: PartialSnapshot | None = None) -> None:
        """No snapshot: say why briefly; `partial` has what can still be shown, if anything."""
        self.border_subtitle = partial.reason if partial else "data unavailable"

    def put(self, selector: str, content: object) -> None:
        """Updates a Static only when its content changed, and without a new layout when it
        keeps the length of every line: Textual lays the whole screen out on every update,
        and doing that each second for unchanged panes costs CPU for nothing."""
        cache = self.__dict__.setdefault("_shown", {})
        if isinstance(content, Text):
            key: object = (content.plain, repr(content.spans))
            lines = tuple(len(line) for line in content.plain.split("\n"))
        else:
            key = repr(content)
            lines = tuple(len(line) for line in str(content).split("\n"))
        previous = cache.get(selector)
        if previous is not None and previous[0] == key:
            return
        cache[selector] = (key, lines)
        same_height = previous is not None and previous[1] == lines
        self.query_one(selector, Static).update(content, layout=not same_height)

    def available(self, action: str) -> bool:
        """Whether a key of this pane applies now (one key may mean two things in turn)."""
        return True

    def act(self, action: str) -> None:
        handler: Callable[[], None] | None = getattr(self, f"act_{action}", None)
        if handler is not None:
            handler()
