"""Heartbeats and the reaper on many hosts: a consumer silent past SEER_HEARTBEAT_TIMEOUT is
dead, on any host; one wrongly taken for dead cannot deliver twice; times are the ledger's.

Three "hosts" run on one machine here: each is a SEER_HOST_ID, so none can check another's
pid and only heartbeats (or, for a holder that never registered, its lease) tell.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import other_ledger, parcel, wait_for
from worker.fleet import consumers as fleet
from worker.identity import current_owner, host_name
from worker.ledger import LedgerBusy
from worker.monitoring import status
from worker.ops import jobs
from worker.parcels import intake as parcels
from worker.parcels import postmaster
from worker.parcels.postmaster import Postmaster
from worker.schedules import Every

T = 1_900_000_000.0  # the ledger's time at which the tests' hosts register and claim
TAKEN_BACK = "taken back while this consumer was thought dead"


def send(runtime, n: int, now: float | None = None) -> list[str]:
    items = [
        parcels.validate(parcel("agent", i), runtime.settings.max_parcel_size) for i in range(n)
    ]
    return parcels.queue_parcels(runtime.ledger, items, now=now)


def as_host(runtime, host: str, timeout: float = 30.0):
    """The runtime's settings as a process on `host` reads them."""
    return dataclasses.replace(runtime.settings, host_id=host, heartbeat_timeout=timeout)


def held_by(runtime, owner_host: str) -> int:
    return runtime.ledger.scalar(
        "SELECT count(*) FROM parcels WHERE state = 'in_flight' AND owner LIKE ?",
        (owner_host + "/%",),
    )


def entry(runtime, queue: str = "postmaster") -> dict | None:
    return runtime.ledger.row(
        "SELECT key, value, updated_at FROM control WHERE key LIKE ?", (f"consumer:{queue}:%",)
    )


# -- a real consumer's heartbeat -------------------------------------------------------------


@pytest.mark.queue_facing
def test_a_consumer_beats_every_second_and_registers_again_if_its_entry_goes(
    runtime, cli, consumers, monkeypatch
):
    monkeypatch.setenv("SEER_HEARTBEAT_TIMEOUT", "6s")  # a beat a second
    consumer = consumers("postmaster")
    first = wait_for(lambda: entry(runtime), 30, "the consumer's entry")
    assert json.loads(first["value"])["token"].split("/")[1] == str(consumer.proc.pid)
    wait_for(lambda: entry(runtime)["updated_at"] > first["updated_at"], 10, "a heartbeat")
    beat = entry(runtime)["updated_at"]
    wait_for(lambda: entry(runtime)["updated_at"] > beat, 10, "the next heartbeat")

    shown = cli("status", "--json").json()["consumers"][0]
    assert shown["alive"] is True and shown["pids"] == [consumer.proc.pid]
    (process,) = shown["processes"]
    assert process["pid"] == consumer.proc.pid and process["local"] is True
    assert process["stale"] is False and 0 <= process["heartbeat_age"] < 6
    text = cli("status").out
    assert f"pid {consumer.proc.pid}, " in text.split("heartbeat  postmaster: ")[1]

    # Dropped (a peer took it for dead, or forgot it): it is back at the next beat.
    with runtime.ledger.write():
        runtime.ledger.execute("DELETE FROM control WHERE key = ?", (first["key"],))
    again = wait_for(lambda: entry(runtime), 10, "the entry written again")
    assert json.loads(again["value"]) == json.loads(first["value"])
    wait_for(lambda: "registered again" in consumer.output(), 10, "the log line")


@pytest.mark.queue_facing
def test_the_scheduler_reaps_a_silent_hosts_parcels_within_the_timeout_and_10_seconds(
    runtime, consumers, monkeypatch
):
    monkeypatch.setenv("SEER_HEARTBEAT_TIMEOUT", "5s")
    scheduler = consumers("scheduler")
    wait_for(lambda: entry(runtime, "scheduler"), 30, "the scheduler's entry")
    send(runtime, 4)
    fleet.register(runtime.ledger, "postmaster", host_id="host-b")
    silent_since = time.monotonic()
    claimed = Postmaster(runtime.ledger, runtime.store, as_host(runtime, "host-b", 5.0))
    assert len(claimed._claim(now=runtime.ledger.now(), limit=100)) == 4  # leased for 10 min
    # Stale after 5 s, taken back at the next run of the reaper (every 5 s), and 5 s of slack
    # for a loaded test machine (the scheduler's threads share their time with other jobs).
    wait_for(lambda: held_by(runtime, "host-b") == 0, 5 + 10 + 5, "the reaper", step=0.1)
    took = time.monotonic() - silent_since
    assert took > 4, f"taken back after {took:.1f}s, before the heartbeat was 5 s old"
    assert runtime.ledger.scalar("SELECT count(*) FROM parcels WHERE state = 'queued'") == 4
    assert scheduler.proc.poll() is None


def test_two_threads_of_one_consumer_starting_together_register_it_once(runtime):
    # The scheduler's two worker threads run the start-up hook at the same moment.
    barrier = threading.Barrier(4)
    said: list[object] = []

    def start() -> None:
        barrier.wait()
        said.append(fleet.register(runtime.ledger, "scheduler", host_id="host-b"))
        runtime.ledger.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len([s for s in said if s is not None]) == 1, said
    assert fleet.starts(runtime.ledger) == {"scheduler": 1}


def test_the_heartbeat_interval_is_a_sixth_of_the_timeout_within_1_to_5_seconds():
    assert fleet.heartbeat_interval(30) == 5
    assert fleet.heartbeat_interval(12) == 2
    assert fleet.heartbeat_interval(5) == 1
    assert fleet.heartbeat_interval(3600) == 5


def test_the_reaper_runs_often_enough_to_return_parcels_soon_after_the_timeout(runtime):
    (reap,) = [j for j in jobs.periodic(runtime.settings) if j.name == "reap"]
    # Stale at the timeout, taken back at the next run: within the timeout and ~10 s.
    assert isinstance(reap.rule, Every) and reap.rule.seconds <= 5


# -- other hosts -----------------------------------------------------------------------------


def claim_as(runtime, host: str, now: float = T) -> int:
    pm = Postmaster(runtime.ledger, runtime.store, as_host(runtime, host))
    return len(pm._claim(now=now, limit=100))


def test_a_stale_consumer_of_another_host_is_reaped_before_its_lease_a_fresh_one_is_not(
    runtime,
):
    send(runtime, 5, now=T - 1)
    fleet.register(runtime.ledger, "postmaster", now=T, host_id="host-b")
    host_c = fleet.register(runtime.ledger, "postmaster", now=T, host_id="host-c")
    assert host_c is not None
    assert claim_as(runtime, "host-b") == 5  # isolated by nothing: one batch
    # host-c beats on; host-b has been silent since T.
    assert fleet.beat(runtime.ledger, host_c, now=T + 31)
    reaper = as_host(runtime, "host-a")

    assert postmaster.recover(runtime.ledger, reaper, now=T + 30).requeued == 0
    assert held_by(runtime, "host-b") == 5
    # 31 s of silence: dead, though its lease (10 minutes) runs until T + 600.
    assert postmaster.recover(runtime.ledger, reaper, now=T + 31).requeued == 5
    assert held_by(runtime, "host-b") == 0
    assert runtime.ledger.scalar("SELECT max(lease_until) FROM parcels") is None

    # host-c's batch is left alone while it beats.
    assert claim_as(runtime, "host-c", now=T + 31) == 1  # isolated now: one at a time
    assert postmaster.recover(runtime.ledger, reaper, now=T + 50).requeued == 0
    assert held_by(runtime, "host-c") == 1
    assert postmaster.recover(runtime.ledger, reaper, now=T + 62).requeued == 1


def test_a_holder_that_never_registered_is_judged_by_its_lease(runtime):
    send(runtime, 2, now=T - 1)
    assert claim_as(runtime, "host-d") == 2  # no entry, no heartbeat: a `seer` command, say
    reaper = as_host(runtime, "host-a")
    assert postmaster.recover(runtime.ledger, reaper, now=T + 599).requeued == 0
    assert postmaster.recover(runtime.ledger, reaper, now=T + 601).requeued == 2


def test_status_lists_every_hosts_consumers_with_their_heartbeats(runtime, cli):
    fleet.register(runtime.ledger, "postmaster", now=T, host_id="host-b")
    fleet.register(runtime.ledger, "postmaster", now=T + 35, host_id="host-c")
    fleet.register(runtime.ledger, "scheduler", now=T + 38, host_id="host-c")
    snap = status.snapshot(
        dataclasses.replace(runtime, settings=as_host(runtime, "host-a")), now=T + 40
    )
    postmaster_status, scheduler_status = snap.consumers
    seen = {(p.host, p.stale, round(p.heartbeat_age)) for p in postmaster_status.processes}
    assert seen == {("host-b", True, 40), ("host-c", False, 5)}
    assert postmaster_status.alive and postmaster_status.pids == (os.getpid(),)
    assert [(p.host, p.local) for p in scheduler_status.processes] == [("host-c", False)]
    text = "\n".join(status_lines(snap))
    assert f"heartbeat  postmaster: host-b pid {os.getpid()}, 40s ago STALE" in text
    assert f"heartbeat  postmaster: host-c pid {os.getpid()}, 5s ago\n" in text
    assert f"heartbeat  scheduler: host-c pid {os.getpid()}, 2s ago" in text
    assert snap.as_dict()["consumers"][0]["processes"][0]["stale"] is True


def status_lines(snap) -> list[str]:
    from seer_console.cli.status import status_lines

    return status_lines(snap)


async def test_the_worker_pane_lists_other_hosts_consumers_and_marks_the_stale(runtime):
    from seer_console.app import SeerConsole
    from seer_console.source import SnapshotSource

    fleet.register(runtime.ledger, "postmaster", now=T, host_id="host-b")
    fleet.register(runtime.ledger, "postmaster", now=T + 38, host_id="host-c")
    app = SeerConsole(
        SnapshotSource(as_host(runtime, "host-a"), reload=False), live=False, clock=lambda: T + 40
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        rows = app.query_one("#worker-rows")
        text = "\n".join(rows.render_line(y).text.rstrip() for y in range(rows.size.height))
    pid = os.getpid()
    assert f"host-b postmaster pid {pid} hb 40s STALE" in text, text
    assert f"host-c postmaster pid {pid} hb 2s" in text and "hb 2s STALE" not in text, text


# -- the fence -------------------------------------------------------------------------------


def test_a_commit_refused_for_parcels_taken_back_says_so_once_per_batch(runtime):
    ids = send(runtime, 4)
    slow = runtime.postmaster()
    rows = slow._claim(now=T, limit=10)
    # The reaper took the worker for dead; another worker delivered the parcels meanwhile.
    with runtime.ledger.write():
        runtime.ledger.execute("UPDATE parcels SET state = 'queued', owner = NULL")
    other = Postmaster(
        runtime.ledger, runtime.store, runtime.settings, owner=current_owner("host-b")
    )
    assert other.deliver_waiting(now=T + 40).delivered == 4
    said: list[logging.LogRecord] = []
    logger = logging.getLogger("seer.postmaster")
    # On the logger itself: whether or not "seer" propagates in this process.
    handler = logging.Handler(logging.WARNING)
    handler.emit = said.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        assert slow._deliver(rows, now=T + 41).delivered == 0
    finally:
        logger.removeHandler(handler)
    warned = [r.getMessage() for r in said]
    assert len(warned) == 1 and TAKEN_BACK in warned[0], warned
    assert warned[0].startswith("4 parcels (") and "not delivered again" in warned[0]
    assert f"{ids[0]} … {ids[-1]}" in warned[0]
    assert runtime.ledger.scalar("SELECT count(*) FROM messages") == 4


# -- time is the ledger's ----------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-900.0, 900.0], ids=["host-slow", "host-fast"])
def test_a_host_whose_clock_is_off_neither_steals_nor_loses_parcels(runtime, monkeypatch, skew):
    """Host A's clock is 15 minutes off the ledger's; it claims, delivers, reaps and reports
    on the ledger's clock (ledger.now()), so its skew changes nothing. (A real clock skew on a
    real PostgreSQL server is tested with faketime elsewhere.)"""
    ledger = runtime.ledger
    ledger_clock = [T]
    monkeypatch.setattr(ledger, "now", lambda: ledger_clock[0])
    send(runtime, 3)  # queued at T, due at T
    fleet.register(ledger, "postmaster", host_id="host-b")
    assert claim_as(runtime, "host-b", now=ledger.now()) == 3
    send(runtime, 2)

    ledger_clock[0] = T + 20
    host_a = as_host(runtime, "host-a")
    monkeypatch.setattr(time, "time", lambda: T + 20 + skew)  # the host's own clock
    # Not stolen: host-b was heard from 20 s ago (not 920), its lease is far (not gone).
    assert postmaster.recover(ledger, host_a).requeued == 0
    assert held_by(runtime, "host-b") == 3
    # Not lost: the two queued at T are due on the ledger's clock (a slow host would wait).
    pm = Postmaster(ledger, runtime.store, host_a)
    assert pm.deliver_waiting().delivered == 2
    assert ledger.rows("SELECT DISTINCT finished_at FROM parcels WHERE state = 'delivered'") == [
        {"finished_at": T + 20}
    ]
    snap = status.snapshot(dataclasses.replace(runtime, settings=host_a))
    (beat,) = snap.consumers[0].processes
    assert (beat.host, beat.heartbeat_age, beat.stale) == ("host-b", 20.0, False)

    ledger_clock[0] = T + 31  # now host-b is silent past the timeout, on the ledger's clock
    assert postmaster.recover(ledger, host_a).requeued == 3


def test_periodic_slots_are_claimed_on_the_ledgers_clock(runtime, monkeypatch):
    """Two schedulers whose hosts' clocks are 30 minutes apart run the reaper once a slot,
    and the one behind takes over at once when the other stops."""
    ledger_clock = [T]
    monkeypatch.setattr(runtime.ledger, "now", lambda: ledger_clock[0])

    def reaper_of_a_host():
        (job,) = [j for j in jobs.periodic(runtime.settings) if j.name == "reap"]
        return jobs.once(runtime, job)

    ahead, behind = reaper_of_a_host(), reaper_of_a_host()
    assert ahead(dt.datetime.fromtimestamp(T + 900))
    assert not behind(dt.datetime.fromtimestamp(T - 900))  # the same slot: run once
    ledger_clock[0] = T + 5  # the host ahead stopped; on its own clock the other would wait
    assert behind(dt.datetime.fromtimestamp(T - 895))
    slot = runtime.ledger.scalar("SELECT value FROM control WHERE key = 'slot:reap'")
    assert int(slot) == int(T + 5) // 5


# -- a consumer stopped (SIGSTOP) while it holds a batch --------------------------------------

HOLD_HOOK = """
import os, pathlib, time

from worker.parcels import postmaster

_commit = postmaster.Postmaster._commit


def _held(self, rows, outcome, now):
    # The test's hook: a batch ready to commit waits until the test releases it.
    where = pathlib.Path(os.environ["SEER_TEST_HOLD_COMMIT"])
    (where / "holding").write_text(str(len(rows)))
    deadline = time.monotonic() + 120
    while not (where / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return _commit(self, rows, outcome, now)


postmaster.Postmaster._commit = _held
"""


def hold_commits(monkeypatch, tmp_path: Path) -> Path:
    """Makes the consumers started from now on hold each batch before its commit, until
    `release` exists in the returned directory (a sitecustomize on their PYTHONPATH)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD_HOOK)
    hold = tmp_path / "hold"
    hold.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(hook))
    monkeypatch.setenv("SEER_TEST_HOLD_COMMIT", str(hold))
    return hold


def every_thread_stopped(pid: int) -> bool:
    """Each thread of the process is in the stopped state (T in /proc/PID/task/TID/stat)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # a thread that has just exited
            continue
        if stat[stat.rindex(")") + 2] not in "Tt":
            return False
    return True


def stop_outside_a_write(runtime, pid: int) -> None:
    """SIGSTOPs the process, at a moment it holds no write transaction (its heartbeat thread
    writes every second): a stopped writer would hold up the reaper on SQLite."""
    probe = other_ledger(runtime, lock_timeout=0.3)
    for _ in range(50):
        os.kill(pid, signal.SIGSTOP)
        # The stop is not done when kill() returns: on a loaded machine a thread ran on for
        # milliseconds, long enough to see the release and commit (seen in the suite).
        wait_for(lambda: every_thread_stopped(pid), 10, "every thread of the consumer stopped")
        try:
            with probe.write():
                pass
            break
        except LedgerBusy:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
    else:
        raise AssertionError("the consumer always held the write lock when stopped")
    probe.close()


@pytest.mark.queue_facing
def test_a_stopped_consumer_is_reaped_after_the_timeout_and_its_late_commit_is_refused(
    runtime, consumers, monkeypatch, tmp_path
):
    monkeypatch.setenv("SEER_HEARTBEAT_TIMEOUT", "5s")
    hold = hold_commits(monkeypatch, tmp_path)
    reaper = dataclasses.replace(runtime.settings, heartbeat_timeout=5.0)
    ids = send(runtime, 3)  # no doorbell: the consumer rings for them as it starts
    consumer = consumers("postmaster")
    holding = hold / "holding"
    # Its content, not only the file: write_text creates it empty first.
    said = wait_for(lambda: holding.exists() and holding.read_text(), 30, "the batch held")
    pid = consumer.proc.pid
    assert said == "3"
    assert held_by(runtime, host_name(runtime.settings.host_id)) == 3

    stop_outside_a_write(runtime, pid)
    stopped = time.monotonic()
    try:
        (hold / "release").write_text("")  # seen only once it runs again
        # Its pid lives and its heartbeat is fresh: not dead yet.
        assert postmaster.recover(runtime.ledger, reaper).requeued == 0
        wait_for(
            lambda: postmaster.recover(runtime.ledger, reaper).requeued,
            20,
            "the stopped consumer's parcels taken back",
            step=0.2,
        )
        waited = time.monotonic() - stopped
        assert waited > 3.5, f"taken back after {waited:.1f}s, before the 5 s timeout"
        rows = runtime.ledger.rows("SELECT state, isolate FROM parcels")
        assert rows == [{"state": "queued", "isolate": 1}] * 3
        # Delivered by another consumer (this process) while the stopped one sleeps.
        assert runtime.postmaster().deliver_waiting().delivered == 3
    finally:
        os.kill(pid, signal.SIGCONT)

    wait_for(lambda: TAKEN_BACK in consumer.output(), 20, "the refused commit in its log")
    (line,) = [line for line in consumer.output().splitlines() if TAKEN_BACK in line]
    assert "WARNING" in line and "3 parcels" in line and "not delivered again" in line, line
    per_parcel = runtime.ledger.rows(
        "SELECT parcel_id, count(*) AS n FROM messages GROUP BY parcel_id ORDER BY parcel_id"
    )
    assert per_parcel == [{"parcel_id": i, "n": 1} for i in sorted(ids)]
    assert runtime.ledger.scalar("SELECT count(*) FROM parcels WHERE state = 'delivered'") == 3
    # Awake again, it beats again: no longer stale.
    host = runtime.settings.host_id
    fresh = lambda: [  # noqa: E731
        c for c in consumers_of(runtime, host) if c.pid == pid and not c.stale
    ]
    wait_for(fresh, 10, "a fresh heartbeat after SIGCONT")
    assert consumer.proc.poll() is None


def consumers_of(runtime, host: str) -> list[fleet.ConsumerInfo]:
    return fleet.consumers(runtime.ledger, host_id=host, timeout=5.0)


def huey_handles_signals(pid: int) -> bool:
    """Huey's consumer has set its signal handlers: SIGHUP and SIGTERM are caught, which Python
    alone does not do. Huey sets them only once every thread has started, and the first
    thread's start-up hook registers the consumer before that: a SIGINT in between is a
    KeyboardInterrupt in the main thread (exit -2, a traceback, no shutdown hooks)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            caught = int(line.split()[1], 16)
            return all(caught >> (signum - 1) & 1 for signum in (signal.SIGHUP, signal.SIGTERM))
    return False


@pytest.mark.queue_facing
@pytest.mark.slow
@pytest.mark.parametrize("queue", ["postmaster", "scheduler"])
def test_a_consumer_stopped_gracefully_leaves_no_entry_one_killed_leaves_its_silence(
    runtime, consumers, queue
):
    consumer = consumers(queue)
    wait_for(lambda: entry(runtime, queue), 30, "the consumer to register")
    wait_for(lambda: huey_handles_signals(consumer.proc.pid), 30, "Huey's signal handlers")
    assert consumer.stop() == 0  # SIGINT: Huey's graceful stop runs the shutdown hooks
    assert entry(runtime, queue) is None
    assert "Traceback" not in consumer.output()
    killed = consumers(queue)
    wait_for(lambda: entry(runtime, queue), 30, "the second consumer to register")
    killed.kill()
    assert entry(runtime, queue) is not None  # for the reaper to judge by its heartbeat


def test_a_cas_check_that_hangs_does_not_hold_up_the_heartbeat(runtime):
    # On an object store that is down, the look for the newest blob waits as long as the
    # client's retries and timeouts: the beats go on meanwhile, and its answer comes later.
    release = threading.Event()
    looks: list[int] = []

    def slow_check() -> str | None:
        looks.append(1)
        assert release.wait(60)
        return "f" * 64

    registration = fleet.register(runtime.ledger, "postmaster", host_id="host-slow")
    assert registration is not None
    heartbeat = fleet.Heartbeat(other_ledger(runtime), registration, 0.05, slow_check).start()
    try:
        wait_for(lambda: looks, 30, "the CAS check to start")
        token = current_owner("host-slow").process_token
        first = fleet.last_heartbeats(runtime.ledger)[token]
        wait_for(
            lambda: fleet.last_heartbeats(runtime.ledger)[token] > first + 0.2,
            30,
            "beats while the check hangs",
        )
        assert len(looks) == 1  # one look at a time
        assert registration.value.get("cas_missing") is None
        release.set()
        wait_for(lambda: registration.value.get("cas_missing") == "f" * 64, 30, "its answer")
    finally:
        release.set()
        heartbeat.stop()


def test_a_failing_cas_check_is_said_once_and_its_recovery_once(runtime, caplog):
    # A store that stays down for an hour would otherwise write a warning every few beats.
    down = threading.Event()
    down.set()
    looks: list[int] = []

    def check() -> str | None:
        looks.append(1)
        if down.is_set():
            raise OSError("object store s3://bucket/cas cannot be reached")
        return None

    caplog.set_level(logging.INFO, logger="seer")
    registration = fleet.register(runtime.ledger, "postmaster", host_id="host-down")
    assert registration is not None
    heartbeat = fleet.Heartbeat(other_ledger(runtime), registration, 0.02, check).start()
    try:
        wait_for(lambda: len(looks) >= 3, 30, "three looks at a store that is down")
        down.clear()
        seen = len(looks)
        wait_for(lambda: len(looks) >= seen + 2, 30, "two looks once it is back")
    finally:
        heartbeat.stop()
    said = [r.getMessage() for r in caplog.records if "CAS check" in r.getMessage()]
    assert said == [
        "CAS check failed, retrying: object store s3://bucket/cas cannot be reached",
        "CAS check works again",
    ]
