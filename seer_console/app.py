"""`seer-console`: watch and steer Seer Ops from a terminal, over SSH.

One thread worker reads a snapshot of everything on screen and posts it; the panes only
render. The next read is scheduled when one finishes, so reads never overlap and the UI
thread never waits on the database, supervisord or the disk.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Header, Static

from seer_console import output
from seer_console.messages import ParcelSent, SnapshotFailed, SnapshotReady
from seer_console.panes import PANES, Pane, PaneKey
from seer_console.screens import ConfirmScreen, FailureScreen, HelpScreen
from seer_console.source import ConsoleSnapshot, SnapshotSource
from seer_console.views import ENTRIES, View
from seer_console.views.base import ConsoleFooter, key_label
from worker.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from worker.parcels.failures import ParcelEntry

GLOBAL_KEYS: tuple[tuple[str, str, str, str], ...] = (
    # key, action, footer label, help
    ("f", "freeze", "Freeze", "stop or restart the live refresh"),
    ("z", "zoom", "Zoom", "fill the screen with the focused pane (escape restores)"),
    ("question_mark", "help", "Help", "this list of keys"),
    ("q", "quit", "Quit", "leave the console (the worker keeps running)"),
)
# What the palette calls the global actions (quit is Textual's own "Quit").
GLOBAL_TITLES = {
    "freeze": "Freeze or resume the live refresh",
    "zoom": "Zoom the focused pane to fill the screen",
    "help": "Help: every key of the console",
}
JUMP_KEYS = min(len(PANES), 9)
BIG_HEIGHT = 48
NAV_KEYS = (
    ("tab / shift+tab", "move between panes"),
    (f"1-{JUMP_KEYS}", "jump to a pane"),
    ("ctrl+p", "command palette: every action by name"),
)


def _pane_bindings() -> list[Binding]:
    seen: dict[str, str] = {}
    bindings = []
    for pane in PANES:
        for k in pane.KEYS:
            if seen.get(k.key, pane.pane_id) != pane.pane_id:
                raise RuntimeError(f"key {k.key!r} of {pane.pane_id} is taken by {seen[k.key]}")
            seen[k.key] = pane.pane_id
            bindings.append(Binding(k.key, f"pane('{pane.pane_id}', '{k.action}')", k.description))
    return bindings


class SeerConsole(App):
    CSS_PATH = "seer.tcss"
    TITLE = "Seer Ops"
    ENABLE_COMMAND_PALETTE = True
    # On a short terminal (80x24 over SSH) the panes drop their least useful lines so that
    # every pane keeps a place on the screen; on a big one (200x60) the lists grow, so that the
    # room the failed jobs do not need goes to the lists that have more to show.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall"), (BIG_HEIGHT, "-big")]
    BINDINGS = [
        *_pane_bindings(),
        # Freeze and zoom stay out of the footer (room for the actions); help and the palette
        # list them.
        *(
            Binding(key, action, label, show=key not in ("f", "z"))
            for key, action, label, _ in GLOBAL_KEYS
        ),
        *(Binding(str(i + 1), f"jump({i})", show=False) for i in range(JUMP_KEYS)),
        # The views: from the main screen and from each other (a view's own keys come first).
        *(Binding(v.key, f"view('{v.view_id}')", v.title, show=False) for v in ENTRIES),
        Binding("escape", "minimize", show=False),
    ]

    def __init__(
        self,
        source: Any = None,
        *,
        read_only: bool = False,
        refresh: float | None = None,
        clock: Callable[[], float] | None = None,
        live: bool = True,
    ) -> None:
        super().__init__()
        self.source = source or SnapshotSource()
        self.read_only = read_only
        # None: the ledger's clock, read with each snapshot (off the UI thread).
        self.clock = clock
        self.refresh_every = refresh or 1.0
        self.frozen = False
        self.live = live
        self.snapshot: ConsoleSnapshot | None = None
        self.last_error: str | None = None
        # Test parcels sent from here, and when. Only the UI thread touches it: the action
        # thread posts ParcelSent, the snapshot thread is handed a tuple of its ids.
        self._tracked: dict[str, float] = {}
        self._banner_shown: tuple[tuple[str, ...], bool] | None = None
        self._views_warm = False

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        yield Static("", id="banner")
        with Vertical(id="panes"):
            for row in sorted({pane.ROW for pane in PANES}):
                members = [pane for pane in PANES if row == pane.ROW]
                with Horizontal(classes="pane-row", id=f"row-{row}"):
                    for pane in members:
                        yield pane()
        yield ConsoleFooter(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        try:
            root = self.source.storage_root()
        except SettingsError as exc:
            root = f"settings error: {exc}"
        host = getattr(self.source, "host", "")
        self.sub_title = f"{host} · {root}" + (" · READ-ONLY" if self.read_only else "")
        self._banner()
        self.query_one(Pane).focus()
        self.poll()

    def _banner(self) -> None:
        parts = []
        if self.read_only:
            parts.append("READ-ONLY: actions are disabled")
        if self.frozen:
            parts.append("FROZEN: f resumes the live refresh")
        if self.last_error:
            parts.append(self.last_error)
        elif self.snapshot and self.snapshot.status.problems:
            parts += list(self.snapshot.status.problems)
        found = self.query("#banner")
        if not found:
            return  # the app is closing: its widgets are gone, a late snapshot has nowhere to go
        banner = found.first(Static)
        shown = (tuple(parts), bool(self.last_error))
        if shown == self._banner_shown:
            return  # unchanged: an update would lay the whole screen out again, each second
        self._banner_shown = shown
        # Text, not markup: problems and errors quote data (ids, paths, server answers). One
        # line high whatever it says: laid out again only when it appears or goes.
        banner.update(Text(" · ".join(parts)), layout=banner.display != bool(parts))
        banner.display = bool(parts)
        banner.set_class(bool(self.last_error), "-error")

    # -- the snapshot loop -----------------------------------------------------------------

    def poll(self) -> None:
        self._read(self.clock() if self.clock else None, tuple(self._tracked))

    @work(thread=True, exclusive=True, group="snapshot")
    def _read(self, now: float | None, tracked: tuple[str, ...]) -> None:
        try:
            snapshot = self.source.read(now=now, tracked=tracked)
        except Exception as exc:  # any failure is shown in the panes; the console stays up
            at = time.time() if now is None else now
            self.post_message(SnapshotFailed(_describe(exc), at, getattr(exc, "partial", None)))
        else:
            self.post_message(SnapshotReady(snapshot))

    def _next_poll(self) -> None:
        if self.live and not self.frozen:
            self.set_timer(self.refresh_every, self.poll, name="next-poll")

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if not self.is_running or not self.screen_stack:
            # A read that finished while the app shuts down: its panes are going (and once
            # its screens are popped, even querying for them raises ScreenStackError).
            return
        self.snapshot = message.snapshot
        self.last_error = None
        for pane in self.query(Pane):
            # A pane still composing or not yet laid out gets the snapshot when it has its size
            # (Pane.on_resize): the first read can come back before the last pane has its
            # widgets, or its width to fit its lines to.
            if pane.is_mounted and pane.laid_out:
                pane.show(message.snapshot)
        if isinstance(self.screen, View):
            self.screen.show(message.snapshot)
        self._announce_arrivals(message.snapshot)
        self._banner()
        self._next_poll()
        if not self._views_warm:
            self._views_warm = True
            self._warm_views()

    @work(thread=True, group="warm-views")
    def _warm_views(self) -> None:
        """The views' modules, imported once the first snapshot is on screen: a view opened
        later does not wait for its import (the Logs view opens a 1 GB log in < 100 ms)."""
        for entry in ENTRIES:
            entry.load()

    def on_snapshot_failed(self, message: SnapshotFailed) -> None:
        if not self.is_running or not self.screen_stack:
            return
        since = f" (last good data {output.clock(self.snapshot.taken_at)})" if self.snapshot else ""
        self.last_error = f"cannot read state: {message.error}{since}"
        for pane in self.query(Pane):
            if pane.is_mounted:
                pane.show_error(message.error, message.partial)
        self._banner()
        self._next_poll()

    def on_parcel_sent(self, message: ParcelSent) -> None:
        self._tracked[message.parcel_id] = message.at

    def _announce_arrivals(self, snapshot: ConsoleSnapshot) -> None:
        for parcel_id, state in snapshot.tracked.items():
            if state in ("delivered", "failed") and parcel_id in self._tracked:
                took = snapshot.taken_at - self._tracked.pop(parcel_id)
                if state == "delivered":
                    self.notify(f"Test parcel {parcel_id[:8]} delivered (seen {took:.1f}s after)")
                else:
                    self.notify(f"Test parcel {parcel_id[:8]} FAILED", severity="error")

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The main screen's keys: on a view, the same letter is the view's or nothing.
        if action in ("jump", "zoom", "pane") and isinstance(self.screen, View):
            return False
        if action != "pane":
            return True
        pane_id, name = (str(p) for p in parameters)
        panes = self.query(f"#{pane_id}")
        if panes and not panes.first(Pane).available(name):
            return False  # hidden: the same key does the other thing now
        key = next(k for p in PANES if p.pane_id == pane_id for k in p.KEYS if k.action == name)
        # Shown dimmed and inert in read-only mode.
        return None if self.read_only and key.mutates else True

    def on_key(self, event: events.Key) -> None:
        # Read-only shows the action keys dimmed (check_action gives None); pressing one says
        # why nothing happens rather than nothing at all.
        if not self.read_only:
            return
        active = self.screen.active_bindings.get(event.key)
        if active is not None and not active.enabled:
            label = active.binding.description or _key(event.key)
            self.notify(f"Read-only console: {label} is disabled.", severity="warning")

    def action_pane(self, pane_id: str, action: str) -> None:
        self.query_one(f"#{pane_id}", Pane).act(action)

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self._banner()
        if not self.frozen:
            self.poll()

    def action_zoom(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()
            return
        focused = self.focused
        pane = focused if isinstance(focused, Pane) else None
        if pane is None and focused is not None:
            pane = next((a for a in focused.ancestors if isinstance(a, Pane)), None)
        if pane is not None:
            self.screen.maximize(pane, container=False)

    def action_minimize(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()

    def action_jump(self, index: int) -> None:
        panes = list(self.query(Pane))
        if index < len(panes):
            panes[index].focus()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_sections(), self._help_note()))

    # -- views -------------------------------------------------------------------------------

    def action_view(self, view_id: str) -> None:
        """Opens a view: over the main screen, or in place of the view on screen."""
        if isinstance(self.screen, View) and self.screen.view_id == view_id:
            return
        if not self.is_screen_installed(view_id):
            view = next(v for v in ENTRIES if v.view_id == view_id).load()()
            view.prefetch()
            self.install_screen(view, name=view_id)
        if isinstance(self.screen, View):
            self.switch_screen(view_id)
        elif len(self.screen_stack) == 1:
            self.push_screen(view_id)
        # A modal (a confirmation, the help) is on top: its own keys decide, nothing opens.

    def leave_view(self, view: View) -> None:
        """escape on a view: back to the main screen."""
        if self.screen is view:
            self.pop_screen()

    def show_help(self, view: View) -> None:
        sections = [
            (f"{view.view_title} view", view.help_keys()),
            ("Views", self.view_keys()),
            (
                "Everywhere",
                [
                    ("q", "leave the console (the worker keeps running)"),
                    ("f", "stop or restart the live refresh"),
                    ("ctrl+p", "command palette: every action by name"),
                ],
            ),
        ]
        self.push_screen(HelpScreen(sections, self._help_note()))

    def view_keys(self) -> list[tuple[str, str]]:
        keys = [(v.key, f"{v.title}: {v.description}") for v in ENTRIES]
        return [*keys, ("escape", "back: out of a view, to the main screen")]

    def _help_note(self) -> str:
        note = f"Refresh every {self.refresh_every:g}s. "
        if self.read_only:
            note += "Read-only: every action that changes something is disabled."
        else:
            note += "Destructive or disruptive actions ask first; Cancel is the default."
        return note

    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        sections = [("Everywhere", [(_key(k), h) for k, _, _, h in GLOBAL_KEYS] + list(NAV_KEYS))]
        if ENTRIES:
            sections.append(("Views", self.view_keys()))
        for pane in PANES:
            keys = [(_key(k.key), k.help + _ro(k, self.read_only)) for k in pane.KEYS]
            keys += list(pane.LOCAL_KEYS)
            if keys:
                sections.append((f"{pane.title} pane", keys))
        sections.append(
            (
                "In a confirmation",
                [
                    ("enter", "the focused button (Cancel first)"),
                    ("y", "confirm"),
                    ("n / escape", "cancel"),
                ],
            )
        )
        return sections

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action of every pane on `screen`, titled by what it does (the palette matches
        titles only), and the global ones."""
        yield from super().get_system_commands(screen)
        for view in ENTRIES:
            if not (isinstance(screen, View) and screen.view_id == view.view_id):
                yield SystemCommand(
                    f"Open the {view.title} view",
                    f"key {view.key}: {view.description}",
                    lambda v=view.view_id: self.action_view(v),
                )
        if isinstance(screen, View):
            for title, text, action, mutates in screen.commands():
                if self.read_only and mutates:
                    continue
                yield SystemCommand(title, text, lambda s=screen, a=action: s.run_action(a))
            return
        for pane in screen.query(Pane):
            for command in pane.commands():
                if self.read_only and command.mutates:
                    continue
                yield SystemCommand(
                    command.title,
                    command.help,
                    lambda p=pane, c=command: p.run_command(c),
                )
        for key, action, _, text in GLOBAL_KEYS:
            if action in GLOBAL_TITLES:
                yield SystemCommand(
                    GLOBAL_TITLES[action],
                    f"key {_key(key)}: {text}",
                    getattr(self, f"action_{action}"),
                )

    # -- helpers the panes use ---------------------------------------------------------------

    def confirm(
        self, question: str, label: str, then: Callable[[], object], danger: bool = False
    ) -> None:
        if self.read_only:
            self.notify("Read-only console: actions are disabled.", severity="warning")
            return

        def done(confirmed: bool | None) -> None:
            if confirmed:
                then()
            else:
                self.notify(f"{label}: cancelled, nothing changed.")

        self.push_screen(ConfirmScreen(question, label, danger), done)

    @work(thread=True, group="actions")
    def perform(self, label: str, call: Callable[[Any, Any], Any], done: str) -> None:
        """Runs a service call off the UI thread and says how it went."""
        from worker.ops import operations

        if self.read_only:
            self.call_from_thread(self.notify, "Read-only console: actions are disabled.")
            return
        try:
            result = call(operations, self.source.runtime)
        except Exception as exc:
            self.call_from_thread(
                self.notify, f"{label} failed: {_describe(exc)}", severity="error"
            )
            return
        text = done.format(result, s=output.plural_s(result)) if "{}" in done else done
        if result is False:
            text = f"{label}: nothing to change"
        # A result that says it did not fully work (a channel that did not take a test alert).
        severity = "warning" if getattr(result, "ok", True) is False else "information"
        self.call_from_thread(self.notify, text, severity=severity)
        self.call_from_thread(self.refresh_now)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Textual's notify, but plain text by default: every message here quotes data (an
        error from a server, a parcel id, a path), and `[` in data is not markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def refresh_now(self) -> None:
        if not self.frozen:
            self.poll()

    def send_test_parcel(self) -> None:
        if self.read_only:
            return
        clock = self.clock

        def call(ops, runtime):
            # On the clock the snapshots are taken on, so that "delivered in 2s" is right.
            sent_at = clock() if clock else runtime.ledger.now()
            rung = ops.send_test_parcel(runtime)
            self.post_message(ParcelSent(rung.ids[0], sent_at))
            return rung.ids[0][:8] + ("" if rung.notified else f" ({rung.warning})")

        self.perform("Test parcel", call, "Test parcel {} queued; watching for its delivery")

    def retry_one(self, parcel_id: str) -> None:
        def call(ops, runtime):
            return ops.retry_failed(runtime, parcel_id) is not None

        self.perform("Retry", call, f"Parcel {parcel_id[:8]} back in the queue")

    def open_failure(self, parcel_id: str) -> None:
        self.push_screen(
            FailureScreen(
                parcel_id,
                _failure_loader(self.source),
                self.retry_one,
                self.read_only,
                now=self.clock,
            )
        )


def _failure_loader(source: Any) -> Callable[[str], ParcelEntry | None]:
    def load(parcel_id: str) -> ParcelEntry | None:
        from worker.parcels import failures

        return failures.parcel(source.runtime.ledger, parcel_id)

    return load


def _key(key: str) -> str:
    return key_label(key)


def _ro(key: PaneKey, read_only: bool) -> str:
    return " (disabled: read-only)" if read_only and key.mutates else ""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return output.one_line(text, 160)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seer-console",
        description="The Seer Ops console: live queue, CAS, failures and worker; keys to act.",
    )
    parser.add_argument("--read-only", action="store_true", help="watch only: no action works")
    parser.add_argument("--refresh", type=float, help="seconds between refreshes (default 1)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"seer-console: {exc}", file=sys.stderr)
        return 2
    if args.refresh is not None and not 0.2 <= args.refresh <= 60:
        print("seer-console: --refresh must be from 0.2 to 60 seconds", file=sys.stderr)
        return 2
    app = SeerConsole(
        SnapshotSource(settings),
        read_only=args.read_only,
        refresh=args.refresh or settings.console_refresh,
    )
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
