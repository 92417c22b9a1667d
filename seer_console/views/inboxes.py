"""The Inboxes view: the agents with their unread counts, the selected agent's messages unread
first (a keyset page at a time), one message opened (its redacted envelope and headers, its
attachments with their URIs), and marking a message read.

Everything shown is read by worker.parcels.inbox in thread workers, redacted there, and shown
as Text: an agent or an envelope holding "[bold]" shows it as it is.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from seer_console import output
from seer_console.tables import clear_rows
from seer_console.views.base import View, ViewKey
from worker.parcels import inbox

PAGE = 50
AGENTS = 200


def _state(message: inbox.Message) -> Text:
    return Text("read", style="dim") if message.read_at else Text("unread", style="bold cyan")


def pretty(value: Any) -> Text:
    """Indented JSON as plain Text, each line safe for a terminal."""
    shown = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return Text("\n".join(output.printable(line) for line in shown.split("\n")))


def mark_read(view: View, message: inbox.Message, then: Any) -> None:
    """`m`: marks the message read through the console's actions (off the UI thread), then
    calls `then` on the UI thread."""
    if message.read_at is not None:
        view.console.notify(f"Message {message.id} is already read.")
        return
    message_id, now = message.id, view.now()

    def ack(operations: Any, runtime: Any) -> bool:
        changed = inbox.ack(runtime.ledger, message_id, now=now)
        view.app.call_from_thread(then)
        if changed is None:
            raise LookupError(f"there is no message {message_id} any more")
        return changed

    view.console.perform("Mark read", ack, f"Message {message_id} marked read.")


class InboxesView(View):
    view_id = "inboxes"
    view_title = "Inboxes"
    KEY = "I"
    AUTO_FOCUS = "#inbox-agents"
    DESCRIPTION = "agents' inboxes: unread counts, messages unread first, open one, mark it read"
    KEYS = (
        ViewKey(
            "m",
            "mark_read",
            "Mark read",
            "mark the selected message read",
            mutates=True,
            title="Mark the selected message read",
        ),
        ViewKey(
            "u",
            "toggle_unread",
            "Unread only",
            "show only the unread messages, or all of them again (unread first)",
            title="Unread only / all messages",
        ),
        ViewKey("n", "next_page", "Older", "next page of messages", title="Next page"),
        ViewKey("b", "previous_page", "Newer", "previous page of messages", title="Previous page"),
        ViewKey("g", "reload", "Reload", "read the agents and messages again"),
    )
    LOCAL_KEYS = (
        ("enter", "on an agent: go to its messages; on a message: open it"),
        ("tab", "move between the agents and the messages"),
        ("↑ ↓ pgup pgdn", "move through the agents or the messages"),
    )
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    DEFAULT_CSS = """
    InboxesView #inbox-body { height: 1fr; }
    InboxesView.-narrow #inbox-body { layout: vertical; }
    InboxesView.-wide #inbox-body { layout: horizontal; }
    InboxesView #inbox-left { height: 1fr; }
    InboxesView.-narrow #inbox-left { height: auto; max-height: 7; }
    InboxesView.-wide #inbox-left { width: 40; border-right: solid $primary-darken-2; }
    InboxesView #inbox-agents { height: auto; max-height: 100%; }
    InboxesView.-narrow #inbox-agents { max-height: 6; }
    InboxesView #inbox-right { height: 1fr; }
    InboxesView #inbox-status { height: 1; padding: 0 1; color: $text-muted; }
    InboxesView #inbox-status.-error { color: $error; }
    InboxesView #inbox-messages { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.agents: tuple[inbox.AgentInbox, ...] = ()
        self.agent: str | None = None  # whose messages are shown (or being read)
        self.unread_only = False
        self.cursors: list[inbox.Cursor | None] = [None]  # the `after` of each page seen
        self.page: inbox.MessagePage | None = None
        self._asked = 0  # the newest read of messages asked for: older answers are dropped
        self._top = True  # the next page shown starts at its first row (else: the same row)

    def compose_view(self) -> ComposeResult:
        with Horizontal(id="inbox-body"):
            with Vertical(id="inbox-left"):
                agents: DataTable[Any] = DataTable(id="inbox-agents", cursor_type="row")
                agents.add_columns("Agent", "Unread", "Msgs", "Last")
                yield agents
            with Vertical(id="inbox-right"):
                yield Static(Text("Reading the inboxes…"), id="inbox-status")
                table: DataTable[Any] = DataTable(
                    id="inbox-messages", cursor_type="row", zebra_stripes=True
                )
                table.add_columns("Id", "State", "Delivered", "Type", "Att", "Parcel")
                yield table

    def on_mount(self) -> None:
        self.load_agents()

    def available(self, action: str) -> bool:
        if action == "mark_read":
            return self.selected() is not None
        return True

    # -- the agents --------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="inbox-agents")
    def load_agents(self) -> None:
        try:
            found = inbox.agents(self.source.runtime.ledger, limit=AGENTS)
        except Exception as exc:  # said on the status line; the console stays up
            self.app.call_from_thread(self._failed, f"Cannot read the inboxes: {exc}")
            return
        self.app.call_from_thread(self._show_agents, tuple(found))

    def _show_agents(self, found: tuple[inbox.AgentInbox, ...]) -> None:
        self.agents = found
        table = self.query_one("#inbox-agents", DataTable)
        clear_rows(table)
        for n, a in enumerate(found):
            table.add_row(
                Text(output.one_line(a.agent, 16)),
                Text(str(a.unread), style="bold cyan" if a.unread else "dim"),
                Text(str(a.messages)),
                Text(output.short_stamp(a.last_at)),
                key=str(n),
            )
        if not found:
            self.agent = None
            self._show_messages(self._asked, inbox.MessagePage((), None))
            return
        names = [a.agent for a in found]
        wanted = names.index(self.agent) if self.agent in names else 0
        table.move_cursor(row=wanted)
        self.show_agent(names[wanted], keep_page=names[wanted] == self.agent)

    @on(DataTable.RowHighlighted, "#inbox-agents")
    def agent_highlighted(self, event: DataTable.RowHighlighted) -> None:
        chosen = self._agent_of(event.row_key.value)
        if chosen is not None and chosen != self.agent:
            self.show_agent(chosen)

    @on(DataTable.RowSelected, "#inbox-agents")
    def agent_selected(self, event: DataTable.RowSelected) -> None:
        chosen = self._agent_of(event.row_key.value)
        if chosen is not None and chosen != self.agent:
            self.show_agent(chosen)
        self.query_one("#inbox-messages", DataTable).focus()

    def _agent_of(self, key: str | None) -> str | None:
        if key is None or not key.isdigit() or int(key) >= len(self.agents):
            return None
        return self.agents[int(key)].agent

    # -- the messages ------------------------------------------------------------------------

    def show_agent(self, agent: str, keep_page: bool = False) -> None:
        self.agent = agent
        if not keep_page:
            self.cursors = [None]
        self.load_messages(top=not keep_page)

    def load_messages(self, top: bool = True) -> None:
        if self.agent is None:
            return
        self._top = top
        self._asked += 1
        self._read_messages(self._asked, self.agent, self.unread_only, self.cursors[-1])

    @work(thread=True, group="inbox-messages")
    def _read_messages(
        self, asked: int, agent: str, unread: bool, after: inbox.Cursor | None
    ) -> None:
        try:
            page = inbox.messages_page(
                self.source.runtime.ledger,
                agent,
                unread=unread,
                unread_first=True,
                after=after,
                limit=PAGE,
            )
        except Exception as exc:
            self.app.call_from_thread(self._failed, f"Cannot read the messages of {agent}: {exc}")
            return
        self.app.call_from_thread(self._show_messages, asked, page)

    def _failed(self, text: str) -> None:
        found = self.query("#inbox-status")
        if found:
            status = found.first(Static)
            status.set_class(True, "-error")
            status.update(Text(output.one_line(text, 300)))

    def _show_messages(self, asked: int, page: inbox.MessagePage) -> None:
        if asked != self._asked or not self.query("#inbox-messages"):
            return  # a newer read was asked for, or the view is gone
        table = self.query_one("#inbox-messages", DataTable)
        row = 0 if self._top else table.cursor_row
        self.page = page
        clear_rows(table)
        for m in page.messages:
            table.add_row(
                Text(str(m.id)),
                _state(m),
                Text(output.short_stamp(m.created_at)),
                Text(output.one_line(str(m.headers.get("original_type", "")), 20)),
                Text(str(m.headers.get("artifact_count", 0))),
                Text(m.parcel_id[:8]),
                key=str(m.id),
            )
        if page.messages:
            table.move_cursor(row=min(max(row, 0), len(page.messages) - 1))
        status = self.query_one("#inbox-status", Static)
        status.set_class(False, "-error")
        status.update(self._status_text(page))
        self.refresh_bindings()

    def _status_text(self, page: inbox.MessagePage) -> Text:
        text = Text()
        if self.agent is None:
            return Text("No messages delivered yet: no inboxes.")
        shown = next((a for a in self.agents if a.agent == self.agent), None)
        text.append(output.one_line(self.agent, 30), style="bold")
        if shown is not None:
            text.append(f" · {shown.unread} unread of {shown.messages}")
        number = len(self.cursors)
        text.append(" · unread only" if self.unread_only else " · unread first")
        if not page.messages:
            said = "no unread messages" if self.unread_only else "no messages"
            text.append(f" · {said}" if number == 1 else f" · page {number}: nothing older")
            return text
        text.append(f" · page {number}")
        if page.next is not None:
            text.append(" · n: older")
        if number > 1:
            text.append(" · b: newer")
        return text

    def selected(self) -> inbox.Message | None:
        if self.page is None or not self.page.messages:
            return None
        table = self.query_one("#inbox-messages", DataTable)
        return self.page.messages[min(max(table.cursor_row, 0), len(self.page.messages) - 1)]

    @on(DataTable.RowSelected, "#inbox-messages")
    def opened(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.push_screen(MessageScreen(int(event.row_key.value), self))

    # -- keys --------------------------------------------------------------------------------

    def action_mark_read(self) -> None:
        message = self.selected()
        if message is not None:
            mark_read(self, message, self.reload)

    def action_toggle_unread(self) -> None:
        self.unread_only = not self.unread_only
        self.cursors = [None]
        self.load_messages()
        self.console.notify(
            "Unread messages only." if self.unread_only else "Every message, unread first."
        )

    def action_next_page(self) -> None:
        if self.page is None or self.page.next is None:
            self.console.notify("No older messages: this is the last page.")
            return
        self.cursors.append(self.page.next)
        self.load_messages()

    def action_previous_page(self) -> None:
        if len(self.cursors) == 1:
            self.console.notify("This is the first page.")
            return
        self.cursors.pop()
        self.load_messages()

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        """The agents' counts and the page shown, read again."""
        self.load_agents()


# -- one message ------------------------------------------------------------------------------


class MessageScreen(View):
    """One message: its fields, its attachments (name, size, hash, URI) and manifest, its
    redacted envelope and headers; m marks it read. A view of its own (not in VIEWS: opened
    from the Inboxes view only), so the main screen's keys do not fire under it."""

    view_id = "inbox-message"
    view_title = "Message"
    DESCRIPTION = "one message of an agent's inbox"
    AUTO_FOCUS = "#message-box"
    KEYS = (
        ViewKey(
            "m",
            "mark_read",
            "Mark read",
            "mark this message read",
            mutates=True,
            title="Mark this message read",
        ),
        ViewKey("g", "reload", "Reload", "read the message again"),
    )
    LOCAL_KEYS = (("↑ ↓ pgup pgdn", "scroll the message"),)
    DEFAULT_CSS = """
    MessageScreen #message-box { height: 1fr; padding: 0 1; }
    """

    def __init__(self, message_id: int, view: InboxesView) -> None:
        super().__init__()
        self.message_id = message_id
        self.view = view
        self.opened: inbox.OpenedMessage | None = None
        self.sub_title = f"Message {message_id}"

    def compose_view(self) -> ComposeResult:
        with VerticalScroll(id="message-box"):
            yield Static(Text(f"Loading message {self.message_id}…"), id="message-text")

    def on_mount(self) -> None:
        self.load()

    def available(self, action: str) -> bool:
        if action == "mark_read":
            return self.opened is not None and self.opened.message.read_at is None
        return True

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        try:
            opened = inbox.open_message(self.view.source.runtime.ledger, self.message_id)
        except Exception as exc:  # shown, not raised: the console stays up
            said = Text(f"Cannot show message {self.message_id}: {exc}", style="red")
            self.app.call_from_thread(self._show_text, said)
            return
        self.app.call_from_thread(self._show, opened)

    def _show_text(self, text: Text) -> None:
        found = self.query("#message-text")
        if found:
            found.first(Static).update(text)

    def _show(self, opened: inbox.OpenedMessage | None) -> None:
        if not self.query("#message-text"):
            return  # closed while it loaded
        self.opened = opened
        self._show_text(render_message(opened, self.message_id, self.view.now()))
        self.refresh_bindings()

    def action_back(self) -> None:
        if self.app.screen is self:
            self.app.pop_screen()

    def action_reload(self) -> None:
        self.load()

    def action_mark_read(self) -> None:
        if self.opened is None:
            return

        def then() -> None:
            self.load()
            self.view.reload()

        mark_read(self, self.opened.message, then)


def render_message(opened: inbox.OpenedMessage | None, message_id: int, now: float | None) -> Text:
    """Plain Text, never markup: every string came from data (redacted by the inbox)."""
    if opened is None:
        return Text(f"Message {message_id} is not in the ledger.")
    m = opened.message
    text = Text()
    text.append("Message ", style="bold")
    text.append(f"{m.id}   ")
    text.append_text(_state(m))
    if m.read_at:
        text.append(f" {output.when(m.read_at, now)}", style="dim")
    text.append("\n")
    text.append(f"agent     {output.printable(m.to_agent_id)}\n")
    text.append(f"parcel    {output.printable(m.parcel_id)}\n")
    text.append(f"type      {output.printable(m.type)}   stream {output.printable(m.stream)}\n")
    text.append(f"delivered {output.when(m.created_at, now)}\n")
    text.append("\nAttachments", style="bold")
    if not opened.attachments:
        text.append("  none", style="dim")
    for a in opened.attachments:
        text.append("\n  ")
        text.append(output.printable(a.name), style="bold")
        text.append(f"  {output.size(a.size)}  {output.printable(a.mime_type)}\n")
        text.append(f"    sha256 {a.hash}\n", style="dim")
        text.append(f"    {output.printable(a.uri)}")
    if opened.manifest:
        text.append("\n  manifest", style="bold")
        text.append(f"  {output.size(opened.manifest.size)}\n")
        text.append(f"    {output.printable(opened.manifest.uri)}")
    text.append("\n\nEnvelope", style="bold")
    text.append(" (secrets redacted)\n", style="dim")
    text.append_text(pretty(m.envelope))
    text.append("\n\nHeaders", style="bold")
    text.append(" (secrets redacted)\n", style="dim")
    text.append_text(pretty(m.headers))
    return text
