"""The Failed jobs pane's filter, from the keyboard: `/` narrows the table and says how many
match, R and X then act on what it shows (every failed parcel matching when confirmed), each
asking with the count; a filter that does not parse never turns R into "retry all".

The fixture's 12 failures (tests/console_fixtures.fill): three per agent, each agent with one
error (planner: TimeoutError, coder: CAS quota, reviewer: ValueError, researcher: WorkerDied),
failed 4, 8, ... 48 minutes before NOW.
"""

from __future__ import annotations

import pytest

from seer_console.screens import ConfirmScreen
from tests.console_fixtures import NOW, app_for, settle

pytestmark = pytest.mark.backends("sqlite")


def failed(runtime) -> dict[str, str]:
    """Failed parcel id -> its agent."""
    return {
        r["id"]: r["to_agent_id"]
        for r in runtime.ledger.rows("SELECT id, to_agent_id FROM parcels WHERE state='failed'")
    }


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def filter_by(pilot, text: str) -> None:
    await pilot.press("3", "slash", *text)
    await settle(pilot)
    await pilot.press("enter")  # back to the table, the filter kept
    await settle(pilot)


async def test_a_filter_narrows_the_table_and_counts_what_it_matches(filled):
    app = app_for(filled)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        pane = app.query_one("#failed")
        table = pane.query_one("#failed-table")
        assert table.row_count == 12
        await filter_by(pilot, "agent:coder")
        assert table.row_count == 3
        assert str(pane.border_subtitle) == "3 shown of 12"
        coder = {i for i, agent in failed(filled).items() if agent == "coder"}
        assert {row.key.value for row in table.ordered_rows} == coder


async def test_retry_shown_asks_with_the_count_and_retries_only_what_matches(filled):
    app = app_for(filled)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await filter_by(pilot, 'agent:coder error:"quota exceeded"')
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Retry the 3 failed parcels shown (agent coder" in app.screen.question
        await pilot.press("enter")  # the focused button is Cancel
        await settle(pilot)
        assert len(failed(filled)) == 12
        assert any("Retry shown: cancelled, nothing changed." in n for n in notes(app))

        await pilot.press("R")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        left = failed(filled)
        assert len(left) == 9 and "coder" not in left.values()
        queued = filled.ledger.scalar(
            "SELECT count(*) FROM parcels WHERE state = 'queued' AND to_agent_id = 'coder'"
        )
        assert queued >= 3
        assert any("3 failed parcels back in the queue" in n for n in notes(app))


async def test_purge_shown_deletes_what_the_age_and_error_filter_match(filled):
    app = app_for(filled)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        # TimeoutErrors failed 4, 20 and 36 minutes ago: one is older than half an hour.
        await filter_by(pilot, 'error:"did not answer" age:>30m')
        pane = app.query_one("#failed")
        assert str(pane.border_subtitle) == "1 shown of 12"
        (doomed,) = [row.key.value for row in pane.query_one("#failed-table").ordered_rows]
        await pilot.press("X")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question.startswith("Delete the 1 failed parcel shown (")
        await pilot.press("tab", "enter")  # from Cancel to Purge shown
        await settle(pilot)
        left = failed(filled)
        assert len(left) == 11 and doomed not in left
        assert filled.ledger.scalar("SELECT count(*) FROM parcels WHERE id = ?", (doomed,)) == 0


async def test_a_filter_that_matches_nothing_acts_on_nothing(filled):
    app = app_for(filled)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await filter_by(pilot, "agent:nobody")
        await pilot.press("X")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("No failed parcels match the filter to purge." in n for n in notes(app))
        assert len(failed(filled)) == 12


async def test_a_bad_filter_is_named_and_R_does_not_become_retry_all(filled):
    app = app_for(filled)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await filter_by(pilot, "age:2h")
        pane = app.query_one("#failed")
        assert "age:>2h" in str(pane.border_subtitle)  # what to write instead
        assert pane.query_one("#failed-table").row_count == 0
        for key in ("R", "X"):
            await pilot.press(key)
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen), key
        assert any(n.startswith("Fix the filter first: age:2h") for n in notes(app))
        assert len(failed(filled)) == 12


async def test_escape_clears_the_filter_and_R_means_every_failure_again(filled):
    app = app_for(filled)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await filter_by(pilot, "agent:planner")
        await pilot.press("slash", "escape")
        await settle(pilot)
        pane = app.query_one("#failed")
        assert pane.query_one("#failed-table").row_count == 12
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question.startswith("Retry every failed parcel (12+)?")


def palette(app) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


async def test_the_palette_offers_the_filtered_actions_only_while_a_filter_is_set(filled):
    app = app_for(filled)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        titles = palette(app)
        assert "Retry every failed parcel" in titles
        assert "Retry the failed parcels shown" not in titles
        await filter_by(pilot, "agent:reviewer")
        titles = palette(app)
        assert "Retry every failed parcel" not in titles
        assert {"Retry the failed parcels shown", "Purge the failed parcels shown"} <= set(titles)
        (purge,) = [
            c for c in app.get_system_commands(app.screen) if c.title.startswith("Purge the")
        ]
        purge.callback()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Delete the 3 failed parcels shown" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert "reviewer" not in failed(filled).values() and len(failed(filled)) == 9


async def test_read_only_refuses_the_filtered_actions(filled):
    app = app_for(filled, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await filter_by(pilot, "agent:coder")
        await pilot.press("R", "X")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert len(failed(filled)) == 12
    assert NOW  # the fixture's clock: the ages above are from it
