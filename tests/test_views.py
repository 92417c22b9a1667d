"""Every view of the console, as an operator moves between them: opened by its key from the
main screen and from any other view, escape back, `?` listing every key, the palette offering
each view and each action, read-only dimming what writes, and every view reachable and drawn
at 80x24 and at 200x60."""

from __future__ import annotations

import pytest

from seer_console.screens import HelpScreen
from seer_console.views import VIEWS, View
from seer_console.views.base import key_label
from tests.console_fixtures import app_for, settle

pytestmark = pytest.mark.backends("sqlite")

VIEW_IDS = [v.view_id for v in VIEWS]


def help_text(app) -> str:
    assert isinstance(app.screen, HelpScreen)
    return str(app.screen.query_one("#help-text").render())


def test_every_view_has_its_own_key_and_a_title():
    keys = [v.KEY for v in VIEWS]
    assert len(set(keys)) == len(keys), keys
    for view in VIEWS:
        assert view.view_id and view.view_title and view.KEY and view.DESCRIPTION, view
        # One letter an operator can type, taken by no key of the main screen.
        assert len(view.KEY) == 1 and view.KEY.isupper(), view.KEY
        own = [k.key for k in view.KEYS]
        assert len(set(own)) == len(own), f"{view.view_id} binds a key twice: {own}"
        assert "escape" not in own and "question_mark" not in own


def test_each_entry_the_main_screen_knows_says_what_its_view_says():
    from seer_console.views import ENTRIES

    assert [e.load() for e in ENTRIES] == list(VIEWS)
    for entry, view in zip(ENTRIES, VIEWS, strict=True):
        said = (entry.view_id, entry.key, entry.title, entry.description)
        assert said == (view.view_id, view.KEY, view.view_title, view.DESCRIPTION)


def test_the_console_starts_without_importing_a_view():
    import subprocess
    import sys

    code = (
        "import sys, seer_console.app; "
        "print(sorted(m for m in sys.modules if m.startswith('seer_console.views.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['seer_console.views.base']"


def test_no_view_key_is_a_key_of_the_main_screen():
    from seer_console.app import GLOBAL_KEYS
    from seer_console.panes import PANES

    taken = {k.key for pane in PANES for k in pane.KEYS} | {k for k, *_ in GLOBAL_KEYS}
    assert not taken & {v.KEY for v in VIEWS}


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_each_view_opens_by_its_key_from_the_main_screen_and_escape_comes_back(filled, size):
    app = app_for(filled)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        main = app.screen
        for view in VIEWS:
            await pilot.press(view.KEY)
            await settle(pilot)
            assert isinstance(app.screen, view), (view.view_id, app.screen)
            # Drawn: the view's widgets have a place on the screen at this size.
            assert app.screen.size.height == size[1]
            await pilot.press("escape")
            await settle(pilot)
            assert app.screen is main, view.view_id


async def test_one_view_opens_another_and_escape_goes_back_to_the_main_screen(filled):
    app = app_for(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        main = app.screen
        await pilot.press(VIEWS[0].KEY)
        await settle(pilot)
        for view in VIEWS[1:]:
            await pilot.press(view.KEY)
            await settle(pilot)
            assert isinstance(app.screen, view)
        # Switching replaces the view: one escape, and the main screen is back.
        assert len(app.screen_stack) == 2
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is main


@pytest.mark.parametrize("view", VIEWS, ids=VIEW_IDS)
async def test_help_on_a_view_lists_each_of_its_keys_and_every_view(filled, view):
    app = app_for(filled)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press(view.KEY)
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = help_text(app)
        assert f"{view.view_title} view" in text
        for key in view.KEYS:
            assert f" {key_label(key.key)} " in text and key.help in text, key
        for key, line in view.LOCAL_KEYS:
            assert key in text and line in text
        for other in VIEWS:
            assert f" {other.KEY} " in text and other.view_title in text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, view)


async def test_help_on_the_main_screen_lists_the_views(filled):
    app = app_for(filled)
    async with app.run_test(size=(100, 60)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = help_text(app)
        for view in VIEWS:
            assert f" {view.KEY} " in text and view.DESCRIPTION in text


@pytest.mark.parametrize("view", VIEWS, ids=VIEW_IDS)
async def test_the_palette_opens_each_view_and_offers_its_actions(filled, view):
    app = app_for(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert f"Open the {view.view_title} view" in titles
        opener = next(
            c
            for c in app.get_system_commands(app.screen)
            if c.title.endswith(view.view_title + " view")
        )
        opener.callback()
        await settle(pilot)
        assert isinstance(app.screen, view)
        on_view = [c.title for c in app.get_system_commands(app.screen)]
        for title, _, _, _ in app.screen.commands():
            assert title in on_view
        # The main screen's pane actions are not offered where their keys do nothing.
        assert "Send a test parcel" not in on_view


@pytest.mark.parametrize("view", VIEWS, ids=VIEW_IDS)
async def test_read_only_dims_every_key_of_a_view_that_writes(filled, view):
    app = app_for(filled, read_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press(view.KEY)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, View)
        for key in view.KEYS:
            allowed = screen.check_action(key.action, ())
            if key.mutates:
                assert allowed is not True, key
        palette = [c.title for c in app.get_system_commands(screen)]
        for key in view.KEYS:
            if key.mutates:
                assert (key.title or key.description) not in palette, key


async def test_main_screen_keys_do_nothing_on_a_view(filled):
    from worker.fleet import control

    view = VIEWS[0]
    app = app_for(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press(view.KEY)
        await settle(pilot)
        if "p" not in {k.key for k in view.KEYS}:
            await pilot.press("p")  # the main screen's pause key
            await settle(pilot)
            assert isinstance(app.screen, view)
            assert not control.is_paused(filled.ledger)
