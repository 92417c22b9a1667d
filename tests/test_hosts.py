"""Several hosts (issue 14, item 7): the Worker pane lists every host's consumers with state,
heartbeat age (stale ones marked), pid, CPU, memory and restarts; `seer status` and its JSON
list them; the exporter has a series per (queue, host). The local supervisord's programs are
started and stopped as before (tests/test_supervision.py).

The ledger is the console's fixed data (tests/console_fixtures.fill) plus the consumers of
two more hosts, registered and beating through worker.fleet.consumers at fixed times. This
host is seer-prod-1 (SEER_HOST_ID), its programs the pinned supervisord rows of FixedSource.
A consumer on another host is this test process under another host name: its pid and start
time are pinned (the screens must not change with the test's pid), and it is taken for alive
where it registers (as it would be on its own host).
"""

from __future__ import annotations

import re

import pytest
from textual.content import Content

from tests.console_fixtures import HOST, NOW, app_for, fill, settle, use_utc
from worker.fleet import consumers as fleet
from worker.identity import Owner, host_name
from worker.monitoring import exporter
from worker.runtime import Runtime

MiB = 1024**2

# (host, queue, pid, last beat before NOW, CPU percent, resident bytes, crash restarts before
# NOW): seer-prod-2 healthy, seer-prod-3's postmaster silent for 95 s after four crashes.
CONSUMERS = (
    ("seer-prod-2", "postmaster", 51_020, 3.0, 41.5, 96 * MiB, ()),
    ("seer-prod-2", "scheduler", 51_021, 2.0, 0.4, 58 * MiB, ()),
    ("seer-prod-3", "postmaster", 7_302, 95.0, 12.0, 88 * MiB, (420.0, 300.0, 240.0, 180.0)),
    ("seer-prod-3", "scheduler", 7_303, 4.0, 1.0, 60 * MiB, ()),
)


def as_process(monkeypatch: pytest.MonkeyPatch, pid: int) -> None:
    """This test process registers as `pid` on whichever host it names, alive there."""
    monkeypatch.setattr(
        fleet,
        "current_owner",
        lambda host_id=None: Owner(host_name(host_id), pid, 1_000 + pid, 1),
    )
    monkeypatch.setattr(fleet, "is_alive", lambda owner, host=None: True)


def crashed(ledger, queue: str, host: str) -> None:
    """What a consumer killed on its host leaves: its entry dropped by its successor there."""
    with ledger.write():
        ledger.execute("DELETE FROM control WHERE key LIKE ?", (f"{fleet.PREFIX}{queue}:{host}:%",))


def add_hosts(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, consumers=CONSUMERS, at: float = NOW
) -> None:
    """Registers and beats each consumer of `consumers` as its host would, at fixed times
    before `at`."""
    ledger = runtime.ledger
    for host, queue, pid, silent, cpu, rss, crashes in consumers:
        with monkeypatch.context() as patched:
            as_process(patched, pid)
            started = at - 3 * 86400
            registration = fleet.register(ledger, queue, now=started, host_id=host)
            for before in crashes:
                crashed(ledger, queue, host)
                registration = fleet.register(ledger, queue, now=at - before, host_id=host)
            assert registration is not None
            assert fleet.beat(ledger, registration, now=at - silent, usage=(cpu, rss))


@pytest.fixture
def hosts(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    use_utc()
    monkeypatch.setenv("SEER_HOST_ID", HOST)
    fill(runtime)
    add_hosts(runtime, monkeypatch)
    return runtime


def worker_text(app) -> str:
    return str(app.query_one("#worker-rows").render())


def line_of(text: str, host: str, queue: str) -> str:
    """A host's consumer's row, with the lines it wrapped onto (indented) joined to it."""
    rows: list[str] = []
    for line in text.splitlines():
        if line.startswith("  ") and rows:
            rows[-1] += " " + line.strip()
        else:
            rows.append(line)
    (found,) = [row for row in rows if f"{host} {queue}" in row]
    return found


@pytest.mark.backends("sqlite")  # what is drawn; the ledger's engines meet below
async def test_the_worker_pane_lists_every_hosts_consumers(hosts):
    app = app_for(hosts)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        text = worker_text(app)
        # This host's supervisord programs first, then the other hosts', host by host.
        assert text.index("seer-postmaster") < text.index("seer-prod-2")
        assert text.index("seer-prod-2") < text.index("seer-prod-3")
        busy = line_of(text, "seer-prod-2", "postmaster")
        for said in ("pid 51020", "hb 3s", "RUNNING", "cpu 42%", "mem 96 MiB", "0 restarts"):
            assert said in busy, (said, busy)
        quiet = line_of(text, "seer-prod-2", "scheduler")
        assert "pid 51021" in quiet and "hb 2s" in quiet and "mem 58 MiB" in quiet
        # Silent past SEER_HEARTBEAT_TIMEOUT (30 s): stale, marked so, and its crashes counted
        # in SEER_RESTART_ALERT_WINDOW (10 min), as consumer_restarts counts them.
        stale = line_of(text, "seer-prod-3", "postmaster")
        assert "STALE" in stale and "hb 1m35s" in stale and "pid 7302" in stale
        assert "4 restarts (4 crashes in 10m)" in stale
        assert "RUNNING" in line_of(text, "seer-prod-3", "scheduler")
        # The stale mark is in the alarm colour, the live ones are not.
        rendered = app.query_one("#worker-rows").render()
        red = {rendered.plain[s.start : s.end] for s in rendered.spans if "red" in str(s.style)}
        assert "STALE" in red and "hb 1m35s" in red and "hb 3s" not in red
        # The alerts of the fleet: seer-prod-3's postmaster down, and restarting in a loop.
        alerts = str(app.query_one("#alerts-text").render())
        assert "seer-postmaster on seer-prod-3: no heartbeat for 95 s" in alerts
        assert "seer-postmaster on seer-prod-3: 4 restarts in 10 minutes" in alerts


@pytest.mark.backends("sqlite")
async def test_a_short_terminal_counts_the_other_hosts_and_zoom_lists_them(hosts):
    # At 80x24 every line of the Worker pane is one the Failed pane loses: the other hosts'
    # consumers are counted in its border, the down ones in red; zoomed, each has its row.
    app = app_for(hosts)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        pane = app.query_one("#worker")
        assert "seer-prod" not in worker_text(app)
        subtitle = pane.border_subtitle  # as Textual holds it: markup
        assert Content.from_markup(subtitle).plain == "4 on 2 other hosts, 1 down · z"
        assert "red bold]1 down[/" in subtitle
        # The Failed pane keeps its header and two rows, as without other hosts.
        assert app.query_one("#failed DataTable").size.height >= 3
        await pilot.press("4", "z")
        await settle(pilot)
        text = worker_text(app)
        assert text.count("seer-prod-2") == 2 and text.count("seer-prod-3") == 2
        assert "pid 7302" in text and "STALE" in text and not pane.border_subtitle


@pytest.mark.backends("sqlite")
async def test_a_host_name_with_markup_shows_literally(runtime, monkeypatch):
    use_utc()
    monkeypatch.setenv("SEER_HOST_ID", HOST)
    fill(runtime)
    odd = "[bold]web[/bold]-1"
    add_hosts(runtime, monkeypatch, [(odd, "postmaster", 4_001, 1.0, 2.0, 40 * MiB, ())])
    app = app_for(runtime)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        rows = app.query_one("#worker-rows").render()
        assert "[bold]web[/bold]-1 postmaster" in rows.plain
        assert "pid 4001" in rows.plain


@pytest.mark.backends("sqlite")
async def test_another_hosts_row_is_shown_not_acted_on(hosts):
    app = app_for(hosts)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        for _ in range(2):  # past this host's two programs, to seer-prod-2's postmaster
            await pilot.press("down")
        await pilot.press("o")
        await settle(pilot)
        said = [n.message for n in app._notifications]
        assert any(
            "seer-postmaster on seer-prod-2 is not run by this host's supervisord" in m
            for m in said
        ), said


def test_seer_status_lists_every_hosts_consumers(runtime, monkeypatch, cli):
    # `seer status` reads at the ledger's clock: the hosts beat just before it, and a loaded
    # host may take seconds to get from the beat to the reading.
    beat_at = runtime.ledger.now()
    add_hosts(runtime, monkeypatch, at=beat_at)
    result = cli("status")
    late = int(runtime.ledger.now() - beat_at)
    for host, queue, pid, *_ in CONSUMERS:
        (line,) = [
            line
            for line in result.out.splitlines()
            if line.startswith("host ") and f"{host} {queue}:" in line
        ]
        assert f"pid {pid}" in line
    rows = {
        line.split(":")[0]: line for line in result.out.splitlines() if line.startswith("host ")
    }
    busy = rows["host       seer-prod-2 postmaster"]
    ages = re.search(r"heartbeat (\d+)s ago", busy)
    assert ages and 3 <= int(ages[1]) <= 3 + late, busy
    assert ": RUNNING pid 51020, heartbeat " in busy
    assert "s ago, cpu 42%, mem 96.0 MiB, restarts 0" in busy
    stale = rows["host       seer-prod-3 postmaster"]
    ages = re.search(r"heartbeat (\d+)s ago", stale)
    assert ages and 95 <= int(ages[1]) <= 95 + late, stale
    assert ": STALE pid 7302, heartbeat " in stale and "s ago, restarts 4" in stale
    shown = cli("status", "--json").json()
    found = {(h["host"], h["queue"]): h for h in shown["hosts"]}
    assert set(found) == {(h, q) for h, q, *_ in CONSUMERS}
    assert found[("seer-prod-2", "postmaster")]["pid"] == 51_020
    assert found[("seer-prod-2", "postmaster")]["rss"] == 96 * MiB
    assert found[("seer-prod-2", "postmaster")]["cpu_percent"] == 41.5
    assert found[("seer-prod-3", "postmaster")]["restarts"] == 4
    assert shown["rules"]["consumer_restarts"] == "warning"


def test_the_exporter_has_a_series_per_queue_and_host(hosts):
    families = {f.name: f for f in exporter.families(hosts, now=NOW)}

    def value(name: str, host: str, queue: str) -> float:
        (sample,) = [
            s for s in families[name].samples if s.labels == {"queue": queue, "host": host}
        ]
        return sample.value

    assert value("seer_host_consumer_running", "seer-prod-2", "postmaster") == 1
    assert value("seer_host_consumer_running", "seer-prod-3", "scheduler") == 1
    assert value("seer_host_consumer_heartbeat_age_seconds", "seer-prod-3", "postmaster") == 95
    assert value("seer_host_consumer_cpu_percent", "seer-prod-2", "postmaster") == 41.5
    assert value("seer_host_consumer_memory_bytes", "seer-prod-2", "scheduler") == 58 * MiB
    assert value("seer_host_consumer_restarts_recent", "seer-prod-3", "postmaster") == 4
    assert value("seer_host_consumer_restarts_recent", "seer-prod-2", "postmaster") == 0


def _snap_app(runtime: Runtime):
    queued = runtime.ledger.rows("SELECT id FROM parcels WHERE state = 'queued' ORDER BY seq")
    runtime.ring([r["id"] for r in queued])
    return app_for(runtime)


async def _ready(pilot) -> None:
    await settle(pilot)


def test_snapshot_three_hosts_80x24(hosts, snap_compare):
    assert snap_compare(_snap_app(hosts), terminal_size=(80, 24), run_before=_ready)


def test_snapshot_three_hosts_120x40(hosts, snap_compare):
    assert snap_compare(_snap_app(hosts), terminal_size=(120, 40), run_before=_ready)
