"""The README's screenshots are the snapshots the tests draw today, and the README shows
every one of them (tests/screenshots.py says which test draws which)."""

from __future__ import annotations

import pytest

from tests.screenshots import SHOTS, TOP, snapshot


@pytest.mark.parametrize("shot", sorted(SHOTS))
def test_a_screenshot_is_its_current_snapshot_and_in_the_readme(shot):
    assert (TOP / "screenshots" / shot).read_bytes() == snapshot(shot).read_bytes(), (
        "run `make screenshots`"
    )
    assert f"screenshots/{shot}" in (TOP / "README.md").read_text()


def test_every_screenshot_is_drawn_by_a_test():
    assert sorted(p.name for p in (TOP / "screenshots").glob("*.svg")) == sorted(SHOTS)
