"""What every view is: a full screen of its own (parcels, inboxes, logs, schedule, history),
opened by one key from anywhere, with its keys in the footer, in `?` and in the palette.

The main screen's panes answer "is anything wrong right now"; a view answers "which one, why,
since when". A view reads what it shows itself, in a thread worker (never on the UI thread),
and may also follow the live snapshot the app reads every second (`show`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalGroup
from textual.screen import Screen
from textual.widgets import Footer, Header

if TYPE_CHECKING:
    from seer_console.app import SeerConsole
    from seer_console.source import ConsoleSnapshot

# Shown at the right edge of every footer, whatever the focused widget's keys push out.
ALWAYS_IN_FOOTER = ("help", "quit", "back")


class ConsoleFooter(Footer):
    """The footer, with help, back and quit held at its right edge: the screen's own keys
    come first and would otherwise push them out of an 80-column screen."""

    def compose(self) -> ComposeResult:
        always = []
        for widget in super().compose():
            if getattr(widget, "action", None) in ALWAYS_IN_FOOTER:
                always.append(widget)
            else:
                yield widget
        if always:
            yield HorizontalGroup(*always, id="footer-always")


@dataclass(frozen=True)
class ViewKey:
    """A key of a view: its binding, its footer label, its line in `?` and its palette entry.
    The view implements `action_<action>()`."""

    key: str  # Textual's key name: "r", "slash", "enter", "ctrl+r"
    action: str
    description: str  # the footer's short label
    help: str  # the line in `?`
    mutates: bool = False  # shown dimmed and inert in read-only mode
    show: bool = True  # in the footer (else only in `?` and the palette)
    title: str = ""  # what it does, as the command palette finds it ("Retry the N shown")


class View(Screen):
    """Subclasses set view_id, view_title, KEY and KEYS, and implement compose_view().

    - Opened by KEY from the main screen or any other view; `escape` goes back (to the main
      screen, or out of a sub-screen the view pushed); `?` lists the keys of this view.
    - Installed once: its state (filters, the selected row, the scroll) survives leaving
      and coming back.
    - `show(snapshot)` gets every live snapshot while the view is on screen, and the latest
      one when it comes back on screen.
    - `available(action)`: whether a key applies now (hidden from the footer otherwise).
    """

    view_id: ClassVar[str] = ""
    view_title: ClassVar[str] = ""
    KEY: ClassVar[str] = ""  # opens the view from anywhere ("P")
    KEYS: ClassVar[tuple[ViewKey, ...]] = ()
    # Keys its widgets handle themselves (a table's arrows, an input's enter): `?` only.
    LOCAL_KEYS: ClassVar[tuple[tuple[str, str], ...]] = ()
    DESCRIPTION: ClassVar[str] = ""  # one line: what the view is for (the palette's help)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Before Textual's own __init_subclass__, which merges BINDINGS once per class.
        if "KEYS" in cls.__dict__:
            own = [b for b in cls.__dict__.get("BINDINGS", [])]
            cls.BINDINGS = own + [
                Binding(k.key, k.action, k.description, show=k.show) for k in cls.KEYS
            ]
        super().__init_subclass__(**kwargs)

    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "back", "Back"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self) -> None:
        super().__init__(id=f"view-{self.view_id}", classes="view")
        self.sub_title = self.view_title

    @property
    def console(self) -> SeerConsole:
        return self.app  # type: ignore[return-value]

    @property
    def read_only(self) -> bool:
        return bool(getattr(self.app, "read_only", False))

    @property
    def source(self) -> Any:
        """The snapshot source: `.runtime` (ledger, store, settings) is for thread workers."""
        return self.console.source

    def now(self) -> float | None:
        """The console's clock (fixed in tests and snapshots), None for the ledger's."""
        clock = getattr(self.app, "clock", None)
        return clock() if clock else None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        yield from self.compose_view()
        yield ConsoleFooter(compact=True, show_command_palette=False)

    def compose_view(self) -> ComposeResult:
        raise NotImplementedError
        yield  # pragma: no cover

    def prefetch(self) -> None:
        """Called once, when the view is created and before it is built: a view may start its
        first read here (in a thread), so that its first frame already has it."""

    def show(self, snapshot: ConsoleSnapshot) -> None:
        """A new live snapshot, on the UI thread (default: nothing)."""

    def on_screen_resume(self) -> None:
        snapshot = getattr(self.app, "snapshot", None)
        if snapshot is not None:
            self.show(snapshot)

    def available(self, action: str) -> bool:
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        key = next((k for k in self.KEYS if k.action == action), None)
        if key is None:
            return True
        if not self.available(action):
            return False
        return None if self.read_only and key.mutates else True

    def action_back(self) -> None:
        self.console.leave_view(self)

    def action_help(self) -> None:
        self.console.show_help(self)

    def help_keys(self) -> list[tuple[str, str]]:
        """This view's keys for `?`: bindings first, then what its widgets handle."""
        ro = " (disabled: read-only)"
        keys = [
            (key_label(k.key), k.help + (ro if self.read_only and k.mutates else ""))
            for k in self.KEYS
        ]
        return keys + list(self.LOCAL_KEYS)

    def commands(self) -> list[tuple[str, str, str, bool]]:
        """Palette entries: (title, help, action, mutates) of the keys that apply now."""
        return [
            (k.title or k.description, f"key {key_label(k.key)}: {k.help}", k.action, k.mutates)
            for k in self.KEYS
            if self.available(k.action)
        ]


def key_label(key: str) -> str:
    """A Textual key name as the operator types it."""
    return {"question_mark": "?", "slash": "/", "escape": "esc"}.get(key, key)
