"""The Parcels view (seer_console/views/parcels.py), driven by Pilot against a real ledger and
CAS filled with fixed parcels: searching, paging, a parcel's life, retry (confirmed), pulling an
artifact to a file, read-only, markup-looking data shown as it is; and its snapshots."""

from __future__ import annotations

import stat

import pytest
from textual.widgets import DataTable, Input, Static

from seer_console.screens import ConfirmScreen
from seer_console.views.parcels import ParcelLifeScreen, ParcelsView, PathPrompt
from tests.console_fixtures import app_for, use_utc
from tests.console_fixtures import settle as settle_rounds
from tests.helpers import wait_for
from tests.parcels_view_fixtures import (
    COUNT,
    FAILED,
    LIFE,
    MARKUP_AGENT,
    NOTES,
    fill_parcels,
    parcel_id,
)

pytestmark = pytest.mark.backends("sqlite")


@pytest.fixture
def filled(runtime):
    use_utc()
    fill_parcels(runtime)
    return runtime


async def settle(pilot) -> None:
    await settle_rounds(pilot, 3)


def table_keys(app, selector: str = "#parcels-table") -> list[str]:
    table = app.screen.query_one(selector, DataTable)
    return [row.key.value for row in table.ordered_rows]


def status(app) -> str:
    return str(app.screen.query_one("#parcels-status", Static).render())


def life_text(app) -> str:
    assert isinstance(app.screen, ParcelLifeScreen)
    return str(app.screen.query_one("#life-text", Static).render())


async def open_view(pilot) -> None:
    await settle(pilot)
    await pilot.press("P")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ParcelsView)


async def search(pilot, text: str) -> None:
    await pilot.press("slash")
    field = pilot.app.screen.query_one("#parcels-filter", Input)
    assert field.has_focus
    field.value = text
    await pilot.press("enter")
    await settle(pilot)


async def open_life(pilot, n: int) -> None:
    await search(pilot, parcel_id(n)[:8])
    assert table_keys(pilot.app) == [parcel_id(n)]
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ParcelLifeScreen)


def state_of(runtime, n: int) -> str:
    return runtime.ledger.scalar("SELECT state FROM parcels WHERE id = ?", (parcel_id(n),))


async def test_search_newest_first_by_filter_line_and_a_bad_term(filled):
    app = app_for(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_view(pilot)
        keys = table_keys(app)
        assert len(keys) == 50 and keys[0] == parcel_id(COUNT - 1) and keys[-1] == parcel_id(10)
        assert "page 1 · 50 parcels, newest first · n: older" in status(app)

        await search(pilot, "agent:ops-bot state:delivered")
        keys = table_keys(app)
        wanted = [parcel_id(n) for n in range(COUNT - 10) if n % 3 == 0 and n % 5 and n != FAILED][
            ::-1
        ]
        assert keys == wanted
        await search(pilot, "task:T-14 since:2h")
        assert table_keys(app) == [parcel_id(n) for n in (44, 43, 42)]

        await search(pilot, "colour:red")
        assert "unknown term 'colour'" in status(app)
        assert app.screen.query_one("#parcels-status").has_class("-error")
        await search(pilot, "")
        assert len(table_keys(app)) == 50
        assert not app.screen.query_one("#parcels-status").has_class("-error")


async def test_paging_older_and_newer(filled):
    app = app_for(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_view(pilot)
        first = table_keys(app)
        await pilot.press("n")
        await settle(pilot)
        second = table_keys(app)
        assert second == [parcel_id(n) for n in range(9, -1, -1)]
        assert not set(first) & set(second) and len(first) + len(second) == COUNT
        assert "page 2 · 10 parcels, newest first · the last page · b: newer" in status(app)
        await pilot.press("n")  # no older page: said, nothing changes
        await settle(pilot)
        assert table_keys(app) == second
        await pilot.press("b")
        await settle(pilot)
        assert table_keys(app) == first
        await pilot.press("b")
        await settle(pilot)
        assert table_keys(app) == first


async def test_enter_opens_the_whole_life_and_escape_comes_back(filled):
    app = app_for(filled)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        await open_life(pilot, LIFE)
        text = life_text(app)
        assert f"Parcel {parcel_id(LIFE)}" in text and "state    delivered" in text
        for said in (
            "sent (queued)",
            "claimed by host seer-prod-1 pid 48211 thread 139900000000001",
            "try 1 failed by host seer-prod-1",
            "OSError: the CAS [i]hiccuped[/i]",
            "claimed by host seer-prod-2 pid 51002",
            f"delivered as message {1000 + LIFE} by host seer-prod-2",
            f"message  {1000 + LIFE} in the inbox of",
        ):
            assert said in text, said
        assert table_keys(app, "#life-artifacts") and len(table_keys(app, "#life-artifacts")) == 1
        manifest = str(app.screen.query_one("#life-manifest", Static).render())
        assert "Manifest" in manifest and parcel_id(LIFE) in manifest
        assert app.screen.check_action("retry", ()) is False  # delivered: nothing to retry
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ParcelsView)


async def test_retry_asks_first_cancel_changes_nothing_confirm_requeues(filled):
    app = app_for(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_view(pilot)
        await open_life(pilot, FAILED)
        assert "r retry" in life_text(app) and app.screen.check_action("retry", ()) is True
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # Cancel is focused
        await settle(pilot)
        assert state_of(filled, FAILED) == "failed"
        assert isinstance(app.screen, ParcelLifeScreen)

        await pilot.press("r")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert state_of(filled, FAILED) == "queued"
        # The life is read again: the retry is there, and nothing more to retry.
        wait_for(lambda: "retried" in life_text(app), 10, "the life read again")
        assert app.screen.check_action("retry", ()) is False


async def test_pull_writes_the_artifact_0600_and_asks_before_overwriting(filled, tmp_path):
    app = app_for(filled)
    dest = tmp_path / "pulled.txt"
    async with app.run_test(size=(100, 30)) as pilot:
        await open_view(pilot)
        await open_life(pilot, LIFE)

        async def pull_to(path) -> None:
            await pilot.press("o")
            await pilot.pause()
            assert isinstance(app.screen, PathPrompt)
            app.screen.query_one("#prompt-path", Input).value = str(path)
            await pilot.press("enter")
            await settle(pilot)

        await pull_to(dest)
        assert dest.read_bytes() == NOTES
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600

        dest.write_bytes(b"mine")
        await pull_to(dest)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert dest.read_bytes() == b"mine"
        await pull_to(dest)
        await pilot.press("y")
        await settle(pilot)
        assert dest.read_bytes() == NOTES

        await pull_to(tmp_path / "no-such-dir" / "x")
        assert not (tmp_path / "no-such-dir").exists()
        await pilot.press("o")
        await pilot.pause()
        await pilot.press("escape")  # the prompt cancelled: nothing written
        await settle(pilot)
        assert isinstance(app.screen, ParcelLifeScreen)


async def test_read_only_disables_retry_and_pull(filled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = app_for(filled, read_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_view(pilot)
        await open_life(pilot, FAILED)
        assert app.screen.check_action("retry", ()) is None  # shown dimmed, inert
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ParcelLifeScreen) and state_of(filled, FAILED) == "failed"
        await pilot.press("escape")
        await settle(pilot)
        await open_life(pilot, LIFE)
        assert app.screen.check_action("pull", ()) is None
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, ParcelLifeScreen)
        assert [p.name for p in tmp_path.iterdir()] == ["storage"]  # nothing pulled here


async def test_markup_looking_data_is_shown_as_it_is(filled):
    app = app_for(filled)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot)
        await search(pilot, f"agent:{MARKUP_AGENT}")
        keys = table_keys(app)
        assert keys and keys[0] == parcel_id(59)
        table = app.screen.query_one("#parcels-table", DataTable)
        assert table.get_row_at(0)[1].plain == MARKUP_AGENT
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("P")
        await settle(pilot)
        await open_life(pilot, FAILED)
        assert "ValueError: envelope [red]boom[/] is not valid" in life_text(app)
        await pilot.press("escape")
        await settle(pilot)
        await open_life(pilot, 59)
        assert f"agent    {MARKUP_AGENT}" in life_text(app)


async def test_recent_deliveries_are_listed_newest_first(filled):
    app = app_for(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_view(pilot)
        recent = str(app.screen.query_one("#parcels-recent", Static).render())
        newest = [n for n in range(COUNT - 10) if n % 5 and n != FAILED][::-1][:5]
        lines = recent.splitlines()
        assert lines[0] == "Recent deliveries"
        assert [line.split()[1] for line in lines[1:]] == [parcel_id(n)[:8] for n in newest]


# -- snapshots ------------------------------------------------------------------------------------


async def _view(pilot) -> None:
    await open_view(pilot)


async def _life(pilot) -> None:
    await open_view(pilot)
    await open_life(pilot, LIFE)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_view(filled, snap_compare, size):
    assert snap_compare(app_for(filled), terminal_size=size, run_before=_view)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_life(filled, snap_compare, size):
    assert snap_compare(app_for(filled), terminal_size=size, run_before=_life)
