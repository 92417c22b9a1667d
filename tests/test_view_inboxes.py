"""The Inboxes view (seer_console/views/inboxes.py), driven by Pilot against the console's fixed
data (tests/console_fixtures.fill: 40 messages, ten for each of four agents) with a few read:
the agents with their unread counts, an agent's messages unread first, paging, unread only,
a message opened, marking read (from the list and from the message), reload, read-only,
markup-looking data shown as it is; and the snapshots."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from seer_console import output
from seer_console.views import inboxes
from seer_console.views.inboxes import InboxesView, MessageScreen
from tests.console_fixtures import GITHUB_TOKEN, NOW, app_for, settle
from tests.helpers import parcel
from worker.parcels import inbox
from worker.parcels import intake as parcels

pytestmark = pytest.mark.backends("sqlite")

AGENTS = ["researcher", "reviewer", "coder", "planner"]  # newest message first
READ = (1, 5, 9, 2)  # planner's three oldest and one of coder's
MARKUP_AGENT = "[bold]agent[/]"


@pytest.fixture
def mail(filled):
    """The console's data, with four messages read half an hour before NOW."""
    for message_id in READ:
        assert inbox.ack(filled.ledger, message_id, now=NOW - 1800)
    return filled


def message_ids(agent: str) -> list[int]:
    """The agent's messages in the fixed data: the parcels n % 4 == its place, n < 40."""
    place = ["planner", "coder", "reviewer", "researcher"].index(agent)
    return [n + 1 for n in range(40) if n % 4 == place]


def unread_first(agent: str) -> list[int]:
    ids = sorted(message_ids(agent), reverse=True)
    return [i for i in ids if i not in READ] + [i for i in ids if i in READ]


def rows(app, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[cell.plain for cell in table.get_row(row.key)] for row in table.ordered_rows]


def shown_ids(app) -> list[int]:
    return [int(r[0]) for r in rows(app, "#inbox-messages")]


def status(app) -> str:
    return str(app.screen.query_one("#inbox-status", Static).render())


def message_text(app) -> str:
    assert isinstance(app.screen, MessageScreen)
    return str(app.screen.query_one("#message-text", Static).render())


async def until(pilot, predicate, what: str, rounds: int = 200) -> None:
    """Polls (settling the workers between looks) until `predicate()` holds."""
    for _ in range(rounds):
        await settle(pilot, 1)
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"waited in vain for {what}")


async def open_view(pilot) -> InboxesView:
    await settle(pilot)
    await pilot.press("I")
    await until(pilot, lambda: shown_ids(pilot.app), "the first agent's messages")
    assert isinstance(pilot.app.screen, InboxesView)
    return pilot.app.screen


async def open_message(pilot, row: int) -> MessageScreen:
    table = pilot.app.screen.query_one("#inbox-messages", DataTable)
    table.focus()
    table.move_cursor(row=row)
    await pilot.press("enter")
    await until(
        pilot,
        lambda: isinstance(pilot.app.screen, MessageScreen) and pilot.app.screen.opened,
        "the message opened",
    )
    return pilot.app.screen


def add_message(runtime, agent: str, at: float, **fields: str) -> int:
    """A message as the Postmaster writes one, straight into the ledger (fill leaves parcels
    queued that a delivery here would take too)."""
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO messages (parcel_id, to_agent_id, type, stream, headers, envelope, "
            "created_at) VALUES (?, ?, 'postmaster.delivery', 'command.delegation', ?, ?, ?)",
            (
                f"{agent}-parcel",
                agent,
                fields.get("headers", '{"original_type": "pm.task.created"}'),
                fields.get("envelope", '{"body": "hello"}'),
                at,
            ),
        )
    return runtime.ledger.scalar("SELECT max(id) FROM messages")


def read_at(runtime, message_id: int) -> float | None:
    return runtime.ledger.scalar("SELECT read_at FROM messages WHERE id = ?", (message_id,))


async def test_agents_with_their_unread_counts_and_the_first_agents_messages_unread_first(mail):
    app = app_for(mail)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        assert rows(app, "#inbox-agents") == [
            ["researcher", "10", "10", "11-27 11:59"],
            ["reviewer", "10", "10", "11-27 11:59"],
            ["coder", "9", "10", "11-27 11:59"],
            ["planner", "7", "10", "11-27 11:59"],
        ]
        assert shown_ids(app) == unread_first("researcher")
        first = rows(app, "#inbox-messages")[0]
        assert first[1:5] == ["unread", "11-27 11:59", "pm.task.created", "1"]
        assert "researcher · 10 unread of 10 · unread first · page 1" in status(app)


async def test_moving_through_the_agents_shows_each_ones_messages(mail):
    app = app_for(mail)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        for n, agent in enumerate(AGENTS[1:], 1):
            await pilot.press("down")
            await until(pilot, lambda a=agent: shown_ids(app) == unread_first(a), agent)
            assert app.screen.query_one("#inbox-agents", DataTable).cursor_row == n
        states = [r[1] for r in rows(app, "#inbox-messages")]
        assert states == ["unread"] * 7 + ["read"] * 3
        assert "planner · 7 unread of 10" in status(app)
        await pilot.press("enter")  # on an agent: to its messages
        await settle(pilot)
        assert app.screen.query_one("#inbox-messages", DataTable).has_focus
        await pilot.press("tab")  # and back
        assert app.screen.query_one("#inbox-agents", DataTable).has_focus


async def test_enter_opens_the_message_envelope_and_attachments_and_escape_comes_back(mail):
    app = app_for(mail)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        screen = await open_message(pilot, 0)
        opened = inbox.open_message(mail.ledger, unread_first("researcher")[0])
        assert screen.message_id == opened.message.id == 40
        text = message_text(app)
        (attachment,) = opened.attachments
        for said in (
            "Message 40   unread",
            "agent     researcher",
            f"parcel    {opened.message.parcel_id}",
            "type      postmaster.delivery   stream",
            "delivered 2026-11-27 11:59:35 (25 seconds ago)",
            "Attachments",
            f"notes.md  {output.size(attachment.size)}  {attachment.mime_type}",
            f"sha256 {attachment.hash}",
            attachment.uri,
            opened.manifest.uri,
            "Envelope (secrets redacted)",
            '"body": "step 39"',
            "Headers (secrets redacted)",
            '"original_type": "pm.task.created"',
        ):
            assert said in text, said
        assert GITHUB_TOKEN not in text and "[REDACTED:" in text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, InboxesView)
        assert shown_ids(app) == unread_first("researcher")


async def test_m_marks_the_selected_message_read_and_the_lists_follow(mail):
    app = app_for(mail)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await open_view(pilot)
        table = view.query_one("#inbox-messages", DataTable)
        table.focus()
        table.move_cursor(row=1)
        second = unread_first("researcher")[1]
        assert view.selected().id == second
        await pilot.press("m")
        await until(pilot, lambda: read_at(mail, second) is not None, "the message read")
        assert read_at(mail, second) == NOW  # the console's clock
        await until(pilot, lambda: "9 unread of 10" in status(app), "the counts read again")
        assert rows(app, "#inbox-agents")[0][1] == "9"
        ids = shown_ids(app)
        assert ids[-1] == second and [r[1] for r in rows(app, "#inbox-messages")][-1] == "read"
        # A read message: said, nothing written.
        table.move_cursor(row=9)
        await pilot.press("m")
        await settle(pilot)
        assert read_at(mail, second) == NOW


async def test_m_on_an_opened_message_marks_it_read_then_is_gone(mail):
    app = app_for(mail)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        screen = await open_message(pilot, 0)
        assert screen.check_action("mark_read", ()) is True
        await pilot.press("m")
        await until(pilot, lambda: screen.opened.message.read_at == NOW, "the message read again")
        assert "Message 40   read 2026-11-27 12:00:00" in message_text(app)
        assert screen.check_action("mark_read", ()) is False  # read: nothing more to do
        await pilot.press("escape")
        await until(pilot, lambda: "9 unread of 10" in status(app), "the list read again")
        assert shown_ids(app)[-1] == 40


async def test_u_shows_only_the_unread_and_again_everything(mail):
    app = app_for(mail)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        await pilot.press("down", "down", "down")
        await until(pilot, lambda: shown_ids(app) == unread_first("planner"), "planner")
        await pilot.press("u")
        unread = [i for i in unread_first("planner") if i not in READ]
        await until(pilot, lambda: shown_ids(app) == unread, "unread only")
        assert "unread only" in status(app)
        await pilot.press("u")
        await until(pilot, lambda: shown_ids(app) == unread_first("planner"), "all again")
        assert "unread first" in status(app)


async def test_n_and_b_page_older_and_newer(mail, monkeypatch):
    monkeypatch.setattr(inboxes, "PAGE", 4)
    app = app_for(mail)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        await pilot.press("down", "down", "down")
        wanted = unread_first("planner")
        await until(pilot, lambda: shown_ids(app) == wanted[:4], "planner's first page")
        assert "page 1 · n: older" in status(app)
        await pilot.press("n")
        await until(pilot, lambda: shown_ids(app) == wanted[4:8], "page 2")
        assert "page 2 · n: older · b: newer" in status(app)
        await pilot.press("n")
        await until(pilot, lambda: shown_ids(app) == wanted[8:], "page 3")
        assert "page 3 · b: newer" in status(app) and "n: older" not in status(app)
        await pilot.press("n")  # no older page: said, nothing changes
        await settle(pilot)
        assert shown_ids(app) == wanted[8:]
        await pilot.press("b", "b")
        await until(pilot, lambda: shown_ids(app) == wanted[:4], "page 1 again")
        await pilot.press("b")
        await settle(pilot)
        assert shown_ids(app) == wanted[:4]


async def test_g_reads_the_agents_and_messages_again(mail):
    app = app_for(mail)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        add_message(mail, "newcomer", NOW - 5)
        await pilot.press("g")
        await until(pilot, lambda: rows(app, "#inbox-agents")[0][0] == "newcomer", "reloaded")
        assert rows(app, "#inbox-agents")[0][1:3] == ["1", "1"]
        assert shown_ids(app) == unread_first("researcher")  # the agent shown stays


async def test_read_only_dims_m_and_marks_nothing(mail):
    app = app_for(mail, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await open_view(pilot)
        assert view.check_action("mark_read", ()) is None  # shown dimmed, inert
        await pilot.press("m")
        await settle(pilot)
        assert read_at(mail, 40) is None
        screen = await open_message(pilot, 0)
        assert screen.check_action("mark_read", ()) is None
        await pilot.press("m")
        await settle(pilot)
        assert read_at(mail, 40) is None


async def test_markup_looking_data_is_shown_as_it_is(mail):
    item = parcel(MARKUP_AGENT, 1, attachment="[bold]not bold[/bold]")
    item["envelope"]["body"] = "[red]boom[/] and [link=x]y[/link]"
    item["type"] = "[i]odd.type[/i]"
    parcels.queue_parcels(mail.ledger, [parcels.validate(item, mail.settings.max_parcel_size)])
    mail.postmaster().deliver_waiting(now=NOW - 1)
    app = app_for(mail)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        assert rows(app, "#inbox-agents")[0][0] == MARKUP_AGENT
        assert status(app).startswith(MARKUP_AGENT)
        assert rows(app, "#inbox-messages")[0][3] == "[i]odd.type[/i]"
        await open_message(pilot, 0)
        text = message_text(app)
        assert f"agent     {MARKUP_AGENT}" in text
        assert '"body": "[red]boom[/] and [link=x]y[/link]"' in text


async def test_no_messages_yet_is_said(runtime):
    app = app_for(runtime)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("I")
        await until(pilot, lambda: "No messages" in status(app), "the empty inboxes said")
        assert rows(app, "#inbox-agents") == [] and shown_ids(app) == []
        assert app.screen.check_action("mark_read", ()) is False


# -- snapshots ------------------------------------------------------------------------------------


async def _view(pilot) -> None:
    await open_view(pilot)
    await pilot.press("down", "down", "down")  # planner: unread and read messages
    await until(pilot, lambda: shown_ids(pilot.app) == unread_first("planner"), "planner")


async def _message(pilot) -> None:
    await _view(pilot)
    await open_message(pilot, 0)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_view(mail, snap_compare, size):
    assert snap_compare(app_for(mail), terminal_size=size, run_before=_view)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_message(mail, snap_compare, size):
    assert snap_compare(app_for(mail), terminal_size=size, run_before=_message)
