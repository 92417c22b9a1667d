"""Issue 13, item 5: the queue's storage as operators see it, in `seer status` (text and
JSON), `seer queue status`, `seer metrics` and the console's Queue pane: where it is, whether
it answers and how fast, both queues' doorbells, and a Redis that persists nothing."""

from __future__ import annotations

import json
import re
import socket

import pytest
import redis
from textual.color import Color

from seer_console.app import SeerConsole
from seer_console.source import SnapshotSource
from tests.console_fixtures import settle
from tests.helpers import parcel
from tests.redis_server import PrivateRedis
from worker.runtime import Runtime

NOT_PERSISTED = "Redis persists nothing (appendonly no, save ''): a restart loses the doorbells"
PROBE_FIELDS = {
    "backend",
    "address",
    "reachable",
    "error",
    "latency",
    "depths",
    "persistence",
    "warnings",
}


def send(cli, n: int = 1) -> None:
    """`n` sends of one parcel each: a doorbell each."""
    for i in range(n):
        result = cli("parcel", "send", "-", stdin=json.dumps(parcel("agent-q", i)))
        assert result.code == 0, result


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for every seer_queue_ sample of the exposition."""
    found = {}
    for line in text.splitlines():
        if line.startswith("seer_queue_"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def nobody_listens() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_client(runtime: Runtime) -> redis.Redis:
    return redis.Redis.from_url(runtime.settings.redis_url)


# -- seer status, seer queue status ------------------------------------------------------------


@pytest.mark.backends("sqlite")
def test_status_row_on_sqlite_names_the_queue_file_its_doorbells_and_disk(runtime, cli):
    send(cli, 2)
    out = cli("status").out
    queue_db = runtime.layout.queue_db
    (row,) = [line for line in out.splitlines() if line.startswith("backend ")]
    assert re.fullmatch(
        rf"backend    sqlite {re.escape(str(queue_db))}, ping [\d.]+ ms, doorbells: postmaster "
        r"2, scheduler 0, persistence disk",
        row,
    ), row
    assert "note " not in out
    shown = cli("status", "--json").json()
    probe = shown["queue_backend"]
    assert set(probe) == PROBE_FIELDS
    assert (probe["backend"], probe["address"]) == ("sqlite", str(queue_db))
    assert probe["reachable"] is True and probe["error"] is None
    assert probe["depths"] == {"postmaster": 2, "scheduler": 0}
    assert probe["persistence"] == "disk" and probe["latency"] > 0
    assert shown["notes"] == [] and shown["queue_unreachable_since"] is None


@pytest.mark.backends("redis")
def test_status_row_and_note_on_a_redis_that_persists_nothing(runtime, cli):
    # This machine's Redis runs with appendonly no and save "" (.ci/run starts it so): a real
    # case of the note, not a made-up one.
    send(cli, 3)
    address = runtime.settings.queue_address  # redis://127.0.0.1:6379
    result = cli("status")
    lines = result.out.splitlines()
    (row,) = [line for line in lines if line.startswith("backend ")]
    assert re.fullmatch(
        rf"backend    redis {re.escape(address)}, ping [\d.]+ ms, doorbells: postmaster 3, "
        r"scheduler 0, persistence none",
        row,
    ), row
    notes = [line for line in lines if line.startswith("note ")]
    assert len(notes) == 1 and NOT_PERSISTED in notes[0]
    assert "delivery is delayed, never lost" in notes[0]
    # After the problems; and a note is no problem: the level is the consumers' alone.
    assert lines.index(notes[0]) > max(i for i, x in enumerate(lines) if x.startswith("problem"))
    assert not any("persists" in line for line in lines if line.startswith("problem"))

    shown = cli("status", "--json").json()
    probe = shown["queue_backend"]
    assert set(probe) == PROBE_FIELDS
    assert probe["backend"] == "redis" and probe["address"] == address
    assert probe["reachable"] is True and probe["error"] is None
    assert probe["depths"] == {"postmaster": 3, "scheduler": 0}
    assert probe["persistence"] == "none"
    assert shown["notes"] == probe["warnings"] and NOT_PERSISTED in shown["notes"][0]

    queue = cli("queue", "status").out.splitlines()
    assert [x.split(", ping ")[0] for x in queue if x.startswith("backend ")] == [
        row.split(", ping ")[0]
    ]
    assert notes[0] in queue
    as_json = cli("queue", "status", "--json").json()
    assert as_json["name"] == "postmaster" and as_json["depth"] == 3
    assert as_json["queue_backend"]["depths"] == probe["depths"]
    assert as_json["notes"] == shown["notes"]


@pytest.mark.backends("sqlite")
def test_an_unreachable_redis_is_said_in_the_row_and_is_critical(env, cli, monkeypatch):
    port = nobody_listens()
    monkeypatch.setenv("QUEUE_CONNECTION", "redis")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    assert cli("init").code == 0
    result = cli("status")
    assert result.code == 2
    (row,) = [line for line in result.out.splitlines() if line.startswith("backend ")]
    assert row.startswith(f"backend    redis redis://127.0.0.1:{port}, UNREACHABLE: "), row
    assert "refused" in row.lower() and "doorbells" not in row
    assert f"problem    queue unreachable: redis://127.0.0.1:{port}" in result.out
    probe = cli("status", "--json").json()["queue_backend"]
    assert probe["reachable"] is False and probe["latency"] is None and probe["depths"] == {}
    assert "UNREACHABLE" in cli("queue", "status").out


# -- seer metrics ------------------------------------------------------------------------------


@pytest.mark.backends("redis")
def test_metrics_count_the_doorbells_that_are_in_redis(runtime, cli):
    assert cli("queue", "pause").code == 0  # nothing takes a doorbell meanwhile
    send(cli, 4)
    queues = runtime.queues
    queues.scheduler.storage.enqueue(b"a periodic job's task")
    client = redis_client(runtime)
    try:
        in_redis = {
            "postmaster": client.llen(queues.postmaster.storage.queue_key),
            "scheduler": client.llen(queues.scheduler.storage.queue_key),
        }
    finally:
        client.close()
    assert in_redis == {"postmaster": 4, "scheduler": 1}
    result = cli("metrics")
    assert result.code == 0, result
    found = samples(result.out)
    address = runtime.settings.queue_address
    assert found[f'seer_queue_up{{address="{address}",backend="redis"}}'] == 1
    assert found['seer_queue_doorbells{queue="postmaster"}'] == in_redis["postmaster"]
    assert found['seer_queue_doorbells{queue="scheduler"}'] == in_redis["scheduler"]
    assert 0 < found["seer_queue_latency_seconds"] < 5
    assert found['seer_queue_persistent{persistence="none"}'] == 0
    # The ledger's depth is the record's: four parcels, whatever the doorbells.
    assert found["seer_queue_depth"] == 4


@pytest.mark.backends("sqlite")
def test_metrics_on_sqlite_say_the_queue_file_is_up_and_on_disk(runtime, cli):
    send(cli, 1)
    found = samples(cli("metrics").out)
    address = str(runtime.layout.queue_db)
    assert found[f'seer_queue_up{{address="{address}",backend="sqlite"}}'] == 1
    assert found['seer_queue_doorbells{queue="postmaster"}'] == 1
    assert found['seer_queue_doorbells{queue="scheduler"}'] == 0
    assert found['seer_queue_persistent{persistence="disk"}'] == 1


@pytest.mark.backends("sqlite")
def test_metrics_of_an_unreachable_redis_are_up_0_and_nothing_it_could_not_tell(
    env, cli, monkeypatch
):
    port = nobody_listens()
    monkeypatch.setenv("QUEUE_CONNECTION", "redis")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    assert cli("init").code == 0
    result = cli("metrics")
    assert result.code == 0, result
    found = samples(result.out)
    assert found[f'seer_queue_up{{address="redis://127.0.0.1:{port}",backend="redis"}}'] == 0
    # Left out, not 0: a doorbell count or a latency of 0 would be a lie.
    for name in ("seer_queue_latency_seconds", "seer_queue_doorbells", "seer_queue_persistent"):
        assert not any(key.startswith(name) for key in found), name
    assert found["seer_queue_depth"] == 0


# -- the console -------------------------------------------------------------------------------


def shown(app, selector: str) -> str:
    return str(app.query_one(selector).render())


@pytest.mark.backends("redis")
@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_queue_pane_shows_redis_its_doorbells_and_its_warning(runtime, cli, size):
    send(cli, 2)
    app = SeerConsole(SnapshotSource(runtime.settings), live=False)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        storage = shown(app, "#queue-storage")
        assert storage.startswith(f"{runtime.settings.queue_address}  ping "), storage
        assert "doorbells: postmaster 2, scheduler 0" in storage
        pane = app.query_one("#queue")
        assert not pane.has_class("-critical") and "UNREACHABLE" not in pane.border_title
        warning = Color.parse(app.theme_variables["warning"])
        notes = app.query_one("#queue-notes")
        if size == (120, 40):
            assert notes.display and "Redis persists nothing" in shown(app, "#queue-notes")
            assert "delivery is delayed, never lost" in shown(app, "#queue-notes")
            assert notes.styles.color == warning  # the warning colour, as the theme has it
        else:
            # Short: four lines, as the CAS beside it has; the note on the bottom border,
            # in the warning colour, instead of the rule lines.
            assert not notes.display and pane.outer_size.height == 2 + 4
            assert str(pane.border_subtitle).startswith("Redis persists nothing")
            assert pane.styles.border_subtitle_color == warning


@pytest.mark.backends("sqlite")
async def test_queue_pane_shows_a_redis_that_stops_answering_and_comes_back(
    env, cli, monkeypatch, tmp_path
):
    with PrivateRedis(tmp_path) as server:
        monkeypatch.setenv("QUEUE_CONNECTION", "redis")
        monkeypatch.setenv("REDIS_URL", server.url())
        assert cli("init").code == 0
        app = SeerConsole(SnapshotSource(), live=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            address = f"redis://127.0.0.1:{server.port}"
            assert shown(app, "#queue-storage").startswith(f"{address}  ping ")
            assert "doorbells: postmaster 0, scheduler 0" in shown(app, "#queue-storage")
            assert "Redis persists nothing" in str(app.query_one("#queue").border_subtitle)

            server.stop()
            app.poll()
            await settle(pilot)
            pane = app.query_one("#queue")
            assert shown(app, "#queue-storage").startswith(f"{address}  UNREACHABLE")
            assert "doorbells" not in shown(app, "#queue-storage")
            assert "UNREACHABLE" in pane.border_title and pane.has_class("-critical")
            assert f"queue unreachable: {address}" in shown(app, "#banner")

            server.start()
            app.poll()
            await settle(pilot)
            assert "ping" in shown(app, "#queue-storage")
            assert not pane.has_class("-critical")
            assert "queue unreachable" not in shown(app, "#banner")


@pytest.fixture
def polls(runtime, monkeypatch):
    """The console's source on `runtime`, counting a database's queue once an hour: each
    call is one poll and gives the doorbells it shows."""
    import seer_console.source as source_module

    monkeypatch.setattr(source_module, "DEPTH_SECONDS", 3600.0)
    source = SnapshotSource(runtime.settings)

    def doorbells() -> dict[str, int]:
        probe = source.read().status.queue_backend
        assert probe is not None and probe.reachable
        return probe.depths

    return doorbells


@pytest.mark.backends("sqlite")
def test_the_console_counts_a_database_queue_every_few_seconds(polls, cli, monkeypatch):
    import seer_console.source as source_module

    assert polls() == {"postmaster": 0, "scheduler": 0}
    send(cli, 1)
    # The last count is shown until DEPTH_SECONDS have passed: a count grows with queue.db.
    assert polls() == {"postmaster": 0, "scheduler": 0}
    monkeypatch.setattr(source_module, "DEPTH_SECONDS", 0.0)
    monkeypatch.setattr(source_module, "DEPTH_SHARE", 1.0)  # the next count as soon as may be
    assert polls() == {"postmaster": 1, "scheduler": 0}


@pytest.mark.backends("sqlite")
def test_a_slow_count_waits_in_proportion_before_the_next(polls, cli, monkeypatch):
    import seer_console.source as source_module

    # Past DEPTH_SECONDS, but a count may take at most DEPTH_SHARE of the time: one that took
    # any time at all waits about a million times as long at this share.
    monkeypatch.setattr(source_module, "DEPTH_SECONDS", 0.0)
    monkeypatch.setattr(source_module, "DEPTH_SHARE", 1e-6)
    assert polls() == {"postmaster": 0, "scheduler": 0}
    send(cli, 1)
    assert polls() == {"postmaster": 0, "scheduler": 0}
    monkeypatch.setattr(source_module, "DEPTH_SHARE", 1.0)
    assert polls() == {"postmaster": 1, "scheduler": 0}


@pytest.mark.backends("redis")
def test_the_console_counts_redis_every_poll(polls, cli):
    assert polls() == {"postmaster": 0, "scheduler": 0}
    send(cli, 1)
    assert polls() == {"postmaster": 1, "scheduler": 0}  # LLEN: O(1), every poll
