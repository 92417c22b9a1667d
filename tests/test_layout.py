"""The main screen's layout at the sizes operators use: every pane reachable at 80x24 over SSH,
and at 200x60 no pane more than half empty while another is cut short."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from seer_console.app import SeerConsole
from seer_console.panes import PANES, Pane
from tests.console_fixtures import NOW, FixedSource
from worker.alerts import outbox
from worker.alerts.channels import Notification

pytestmark = pytest.mark.backends("sqlite")


def busy(runtime) -> None:
    """More of everything than a small screen shows: 70 failures, 12 compaction runs, three
    alerts firing and a dozen notifications."""
    ledger = runtime.ledger
    with ledger.write():
        ledger.execute(
            "UPDATE parcels SET state = 'failed', attempts = 3, finished_at = ?, "
            "error = 'TimeoutError: agent inbox store did not answer within 30s' "
            "WHERE state <> 'failed'",
            (NOW - 100,),
        )
        for i in range(8):
            started = NOW - 30 * 3600 - i * 6 * 3600
            ledger.execute(
                "INSERT INTO compaction_runs (trigger, dry_run, started_at, finished_at, agents, "
                "keys_deleted, status, error) VALUES ('schedule', 0, ?, ?, 3, 10, 'ok', NULL)",
                (started, started + 1),
            )
        for rule, level in (("queue_depth", "critical"), ("cas_size", "warning")):
            ledger.execute("DELETE FROM alert_state WHERE rule = ?", (rule,))
            ledger.execute(
                "INSERT INTO alert_state VALUES (?, ?, 1, ?, ?, ?, ?)",
                (rule, level, f"{rule} is {level}", NOW - 600, NOW - 600, NOW - 30),
            )
    for n in range(4):
        note = Notification("queue_depth", "critical", f"Queue {n}", "queue", NOW - 500 + n)
        outbox.enqueue(ledger, note, ["log", "slack", "email"], now=NOW - 500 + n)


def rows_of(pane: Pane) -> tuple[int, int]:
    """(rows the pane has inside its border, rows of content it would show given room)."""
    inner = pane.content_region.height
    wanted = 0
    for child in pane.query("*"):
        if not child.display or child.parent is not pane:
            continue
        if isinstance(child, DataTable):
            wanted += child.row_count + (1 if child.show_header else 0)
        elif isinstance(child, Static):
            wanted += child.virtual_size.height if child.region.height else 0
        else:
            wanted += child.outer_size.height
    return inner, wanted


async def measure(runtime, size):
    app = SeerConsole(FixedSource(runtime), live=False, clock=lambda: NOW)
    async with app.run_test(size=size) as pilot:
        for _ in range(2):
            await app.workers.wait_for_complete()
            await pilot.pause()
        # Panes fit their lines to their width once laid out: one more read, as on a resize.
        app.poll()
        for _ in range(2):
            await app.workers.wait_for_complete()
            await pilot.pause()
        return {pane.id: rows_of(pane) for pane in app.query(Pane)}


def crowded(found: dict[str, tuple[int, int]]) -> list[str]:
    cut = [p for p, (inner, wanted) in found.items() if wanted > inner]
    empty = [p for p, (inner, wanted) in found.items() if inner - wanted > inner / 2]
    return [f"{e} more than half empty while {c} is cut short" for c in cut for e in empty]


@pytest.mark.parametrize("data", ["fixture", "busy"])
async def test_at_200x60_no_pane_is_half_empty_while_another_is_cut_short(filled, data):
    if data == "busy":
        busy(filled)
    found = await measure(filled, (200, 60))
    assert not crowded(found), found
    assert set(found) == {pane.pane_id for pane in PANES}


async def test_at_200x60_the_lists_show_more_than_at_120x40(filled):
    busy(filled)
    big, tall = await measure(filled, (200, 60)), await measure(filled, (120, 40))
    assert big["compaction"][0] > tall["compaction"][0]
    assert big["alerts"][0] > tall["alerts"][0]
    assert big["failed"][0] > tall["failed"][0]


async def test_at_80x24_every_pane_has_a_place_and_a_key(filled):
    busy(filled)
    app = SeerConsole(FixedSource(filled), live=False, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(2):
            await app.workers.wait_for_complete()
            await pilot.pause()
        for number, pane in enumerate(app.query(Pane), start=1):
            assert pane.region.height >= 3, pane.id  # its border and a line at least
            await pilot.press(str(number))
            await pilot.pause()
            assert app.focused is pane or pane in app.focused.ancestors
