"""What every pane is: a focusable, zoomable box that renders a snapshot and owns its keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from seer_console.source import ConsoleSnapshot, PartialSnapshot

if TYPE_CHECKING:
    from seer_console.app import SeerConsole


@dataclass(frozen=True)
class PaneKey:
    """A key the pane answers to from anywhere on the main screen (footer, palette, help)."""

    key: str
    action: str
    description: str  # the footer's short label
    help: str
    mutates: bool = True  # disabled in read-only mode
    title: str = ""  # what it does, as the command palette finds it ("Send a test parcel")


@dataclass(frozen=True)
class PaneCommand:
    """One entry of the command palette: a title that says what it does, and the pane's method
    (with its arguments) that does it."""

    title: str
    help: str
    method: str
    args: tuple[object, ...] = ()
    mutates: bool = True


def _seen_as(text: Text) -> tuple[str, str]:
    """What tells two Texts apart on screen: their characters and their styles."""
    return text.plain, repr(text.spans)


class _Title:
    """A pane's border title or subtitle, set only when it changes: Textual repaints the whole
    pane on every set, and the panes set both on every snapshot (each second)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inner = Widget.__dict__[name]

    def __get__(self, obj: Widget | None, objtype: type | None = None) -> object:
        return self if obj is None else self.inner.__get__(obj, objtype)

    def __set__(self, obj: Widget, value: object) -> None:
        key = _seen_as(value) if isinstance(value, Text) else value
        shown = obj.__dict__.setdefault("_titles", {})
        if self.name in shown and shown[self.name] == key:
            return
        shown[self.name] = key
        self.inner.__set__(obj, value)


class Pane(Vertical, can_focus=True):
    """Subclasses set pane_id, title and KEYS, implement show(), and act_<action>() for keys."""

    ALLOW_MAXIMIZE = True
    pane_id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    ROW: ClassVar[int] = 0  # panes of one row sit side by side; rows stack in order
    KEYS: ClassVar[tuple[PaneKey, ...]] = ()
    LOCAL_KEYS: ClassVar[tuple[tuple[str, str], ...]] = ()  # (key, help) when focused
    # Palette entries for what the pane does through its own (focused) keys; KEYS are added.
    COMMANDS: ClassVar[tuple[PaneCommand, ...]] = ()
    border_title = _Title("border_title")  # type: ignore[assignment]
    border_subtitle = _Title("border_subtitle")  # type: ignore[assignment]

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

    @property
    def big(self) -> bool:
        """True on a big terminal (48 rows or more): lists show more."""
        return self.screen.has_class("-big")

    @property
    def laid_out(self) -> bool:
        """Whether the pane has its size: what it shows is fitted to its width (bars,
        sparklines, what goes on a line of its own), and shown before the first layout it
        was fitted to nothing (a fallback width), then shown again a line shorter once laid
        out, which a frame or a snapshot caught in between showed as a blank line."""
        return self.size.width > 0

    def on_mount(self) -> None:
        # Mounted after a snapshot arrived: shown at once, not a refresh later (once laid
        # out, which on_resize sees).
        snapshot = getattr(self.app, "snapshot", None)
        if snapshot is not None and self.laid_out:
            self.show(snapshot)

    def show(self, snapshot: ConsoleSnapshot) -> None:
        raise NotImplementedError

    def on_resize(self) -> None:
        # Lines are fitted to the width (bars, sparklines, what goes on a line of its own): a
        # snapshot that came before the first layout is shown now, and shown again when the
        # terminal is resized.
        console = self.console
        snapshot = getattr(console, "snapshot", None)
        if snapshot is not None and not console.last_error and console.is_running:
            self.show(snapshot)

    def show_error(self, message: str, partial: PartialSnapshot | None = None) -> None:
        """No snapshot: say why briefly; `partial` has what can still be shown, if anything."""
        # Text: the reason quotes an error message, and `[` in it is not markup.
        self.border_subtitle = Text(partial.reason) if partial else "data unavailable"

    def put(self, selector: str, content: object) -> None:
        """Updates a Static only when its content changed, and without a new layout when it
        keeps the length of every line: Textual lays the whole screen out on every update,
        and doing that each second for unchanged panes costs CPU for nothing."""
        cache = self.__dict__.setdefault("_shown", {})
        if not isinstance(content, Text):
            # Never markup: what panes show comes from data (ids, errors, server answers).
            content = Text(str(content))
        key = _seen_as(content)
        lines = tuple(len(line) for line in content.plain.split("\n"))
        previous = cache.get(selector)
        if previous is not None and previous[0] == key:
            return
        cache[selector] = (key, lines)
        same_height = previous is not None and previous[1] == lines
        self.query_one(selector, Static).update(content, layout=not same_height)

    def available(self, action: str) -> bool:
        """Whether a key of this pane applies now (one key may mean two things in turn)."""
        return True

    def commands(self) -> list[PaneCommand]:
        """Every action of the pane that applies now, for the command palette."""
        from_keys = [
            PaneCommand(
                k.title or k.description,
                f"key {_shown(k.key)}: {k.help}",
                f"act_{k.action}",
                mutates=k.mutates,
            )
            for k in self.KEYS
            if self.available(k.action)
        ]
        return from_keys + list(self.COMMANDS)

    def run_command(self, command: PaneCommand) -> None:
        getattr(self, command.method)(*command.args)

    def act(self, action: str) -> None:
        handler: Callable[[], None] | None = getattr(self, f"act_{action}", None)
        if handler is not None:
            handler()


def _shown(key: str) -> str:
    return {"question_mark": "?", "slash": "/"}.get(key, key)
