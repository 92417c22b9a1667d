"""Lost doorbells cost only delay (issue 13): a doorbell lost to a restart of a Redis that
persists nothing, a FLUSHDB, an eviction or a consumer SIGKILLed after its BRPOP strands no
parcel. Due parcels without a doorbell are rung again within RUNG_AGAIN_WITHIN seconds of the
loss, and each is delivered exactly once; so is a drain of 2,000 parcels across a restart.

Real consumers (a postmaster and the scheduler, whose reaper rings for due parcels when the
queue holds no doorbell) on a private redis-server (tests/redis_server.py) the test may
restart, flush and fill. The only hook (`sitecustomize`, on the consumers' PYTHONPATH) holds a
doorbell just taken off the queue, or fails a parcel's first try once; nothing stands in for
the behaviour under test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import Consumer
from tests.helpers import parcel, wait_for
from tests.redis_server import PrivateRedis
from worker.fleet import consumers as fleet
from worker.fleet import control
from worker.ops import operations
from worker.parcels import intake as parcels
from worker.runtime import Runtime

pytestmark = pytest.mark.backends("redis", "postgresql+redis")

# What issue 13 claims: due parcels whose doorbell was lost are rung again within 10 s. The
# scheduler's reaper looks every TICK (5 s); the slot after the loss may be lost with it (its
# job was in the Redis that restarted), so the next one rings, 10 s after the loss at worst.
RUNG_AGAIN_WITHIN = 10.0
# And on a loaded two-core machine, up to this much more: the doorbell's BRPOP (0.5 s polls),
# the delivery's claim and commit, the reaper's own run, four consumer processes and the test
# sharing the cores. The assertion is on the claim plus this, from the moment of the loss.
MARGIN = 2.5
# Generous deadlines for what is not being measured (starting consumers, filling Redis).
SETUP = 60.0

HOOK = '''
"""tests/test_doorbells.py's hooks in the consumers it starts, each off unless asked."""
import os

if os.environ.get("SEER_TEST_HOLD_DOORBELL"):
    # The first doorbell any consumer of the test takes off the queue is held, before its
    # delivery claims anything, until "release" exists (the test SIGKILLs the holder first).
    import dataclasses
    import pathlib
    import time

    import worker.queue
    from worker.queue import tasks

    _register = tasks.register

    def _register_holding(queues, jobs):
        deliver = jobs.deliver

        def held(parcel_id):
            where = pathlib.Path(os.environ["SEER_TEST_HOLD_DOORBELL"])
            try:
                fd = os.open(where / "holding", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return deliver(parcel_id)
            os.write(fd, f"{os.getpid()} {parcel_id}".encode())
            os.close(fd)
            deadline = time.monotonic() + 120
            while not (where / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            return deliver(parcel_id)

        return _register(queues, dataclasses.replace(jobs, deliver=held))

    tasks.register = _register_holding
    worker.queue.register = _register_holding

if os.environ.get("SEER_TEST_FAIL_ONCE"):
    # The parcel of task "fail-once" fails its first try (a transient error): it waits for
    # its retry, its doorbell in Huey's schedule.
    import pathlib

    from worker.parcels import postmaster

    _prepare = postmaster.Postmaster._prepare

    def _failing_once(self, claimed, now):
        marker = pathlib.Path(os.environ["SEER_TEST_FAIL_ONCE"])
        if claimed.payload and '"fail-once"' in claimed.payload and not marker.exists():
            marker.write_text(claimed.id)
            raise OSError(5, "the test's transient failure")
        return _prepare(self, claimed, now)

    postmaster.Postmaster._prepare = _failing_once
'''


# -- the private Redis, the storage root on it, its consumers ---------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    """start(*redis-server options): the test's own Redis, persisting nothing (a restart
    empties it); killed at the end."""
    servers: list[PrivateRedis] = []

    def start(*extra: str) -> PrivateRedis:
        server = PrivateRedis(tmp_path, extra=extra)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def on_redis(env, cli, monkeypatch, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """open(server, **settings): the test's storage root, its ledger on the backend's, its
    queue on `server` (REDIS_URL overrides the backend's shared Redis), initialised and
    opened; the consumers started afterwards (`consumers`) get the same environment, and the
    test's hooks on their PYTHONPATH."""
    hook = tmp_path / "hook"
    hook.mkdir()
    compile(HOOK, "sitecustomize.py", "exec")  # a broken hook would be skipped, not said
    (hook / "sitecustomize.py").write_text(HOOK)
    opened: list[Runtime] = []

    def open_root(server: PrivateRedis, **settings: str) -> Runtime:
        monkeypatch.setenv("QUEUE_CONNECTION", "redis")
        monkeypatch.setenv("REDIS_URL", server.url())
        monkeypatch.setenv("PYTHONPATH", str(hook))
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        assert cli("init").code == 0
        opened.append(Runtime.open())
        return opened[-1]

    yield open_root
    for runtime in opened:
        runtime.close()


def pid(consumer: Consumer) -> int:
    assert consumer.proc is not None
    return consumer.proc.pid


def running(consumer: Consumer) -> bool:
    return consumer.proc is not None and consumer.proc.poll() is None


def registered(runtime: Runtime, consumer: Consumer) -> bool:
    if not running(consumer):
        raise AssertionError(f"the {consumer.queue} consumer exited:\n{consumer.output()}")
    return any(c.pid == pid(consumer) for c in fleet.consumers(runtime.ledger))


def said(consumer: Consumer, line: str) -> bool:
    return line in consumer.output()


def reaper_running(runtime: Runtime) -> bool:
    return runtime.ledger.scalar("SELECT 1 FROM control WHERE key = 'slot:reap'") is not None


def start_consumers(
    runtime: Runtime, consumers: Callable[..., Consumer], postmasters: int = 1
) -> list[Consumer]:
    """A scheduler (its reaper running) and `postmasters` postmaster consumers, all up."""
    started = [consumers("scheduler")] + [consumers("postmaster") for _ in range(postmasters)]
    for consumer in started:
        wait_for(partial(registered, runtime, consumer), SETUP, f"the {consumer.queue} up")
        if consumer.queue == "postmaster":
            # Its start-up rings for due parcels after it registers: done before any is sent.
            wait_for(partial(said, consumer, "postmaster consumer started"), SETUP, "its start")
    wait_for(lambda: reaper_running(runtime), SETUP, "the scheduler's first reap")
    return started


# -- what the ledger and Redis say ------------------------------------------------------------


def send(runtime: Runtime, items: list[dict]) -> list[str]:
    batch = [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    return list(operations.send_parcels(runtime, batch).ids)


def small(count: int, start: int = 0) -> list[dict]:
    return [parcel(f"agent-{n % 5}", n) for n in range(start, start + count)]


def delivered(runtime: Runtime) -> int:
    return runtime.ledger.scalar("SELECT count(*) FROM parcels WHERE state = 'delivered'")


def doorbells(server: PrivateRedis, runtime: Runtime) -> int:
    """Doorbells waiting in the postmaster queue's list (LLEN of huey.redis.<queue>)."""
    with server.client() as client:
        return client.llen(runtime.queues.postmaster.storage.queue_key)


def scheduled(server: PrivateRedis, runtime: Runtime) -> int:
    """Delayed doorbells in Huey's schedule (ZCARD of huey.schedule.<queue>)."""
    with server.client() as client:
        return client.zcard(runtime.queues.postmaster.storage.schedule_key)


def assert_each_delivered_once(runtime: Runtime, ids: list[str]) -> None:
    """Every parcel delivered, nothing left queued or in flight, one message each."""
    ledger = runtime.ledger
    states = {
        r["state"]: r["n"]
        for r in ledger.rows("SELECT state, count(*) AS n FROM parcels GROUP BY state")
    }
    assert states == {"delivered": len(ids)}, states
    per_parcel = ledger.rows("SELECT parcel_id, count(*) AS n FROM messages GROUP BY parcel_id")
    assert {r["parcel_id"] for r in per_parcel} == set(ids)
    assert [r for r in per_parcel if r["n"] != 1] == []


def delivered_in_time(runtime: Runtime, ids: list[str], lost: float, what: str) -> float:
    """Waits for every parcel to be delivered; returns the seconds since `lost` (monotonic)
    and fails if that is more than the claim and its margin."""
    limit = RUNG_AGAIN_WITHIN + MARGIN
    wait_for(lambda: delivered(runtime) == len(ids), limit + SETUP, what, step=0.05)
    took = time.monotonic() - lost
    assert took <= limit, f"{what}: delivered {took:.1f}s after the loss, over {limit}s"
    assert_each_delivered_once(runtime, ids)
    return took


def paused_with_doorbells(
    runtime: Runtime, server: PrivateRedis, consumers: Callable[..., Consumer], count: int
) -> list[str]:
    """The postmaster queue paused, its consumers up, `count` parcels queued: their doorbells
    wait in Redis, one a batch."""
    control.pause(runtime.ledger)
    start_consumers(runtime, consumers)
    ids = send(runtime, small(count))
    batches = -(-count // runtime.settings.batch_size)
    assert doorbells(server, runtime) == batches
    assert delivered(runtime) == 0
    return ids


# -- the four ways to lose a doorbell ---------------------------------------------------------


def test_doorbells_lost_to_a_restart_of_redis_without_persistence_are_rung_again(
    on_redis, private_redis, consumers
):
    server = private_redis()
    runtime = on_redis(server)
    ids = paused_with_doorbells(runtime, server, consumers, 250)

    lost = time.monotonic()
    server.restart()  # --save '' --appendonly no: it comes back empty
    assert doorbells(server, runtime) == 0
    control.resume(runtime.ledger)
    delivered_in_time(runtime, ids, lost, "the parcels of doorbells lost to a restart")


# What Redis does to its keys is the same whatever the ledger: one ledger suffices.
@pytest.mark.backends("redis")
def test_doorbells_lost_to_flushdb_are_rung_again(on_redis, private_redis, consumers):
    server = private_redis()
    runtime = on_redis(server)
    ids = paused_with_doorbells(runtime, server, consumers, 250)

    with server.client() as client:
        client.flushdb()
    lost = time.monotonic()
    assert doorbells(server, runtime) == 0
    control.resume(runtime.ledger)
    delivered_in_time(runtime, ids, lost, "the parcels of flushed doorbells")


# What Redis does to its keys is the same whatever the ledger: one ledger suffices.
@pytest.mark.backends("redis")
def test_doorbells_lost_to_an_eviction_are_rung_again(on_redis, private_redis, consumers):
    # Evicts any key, the queue's among them, when it holds more than 4 MB: a cache's Redis
    # shared with the queue. The consumers' connections and the doorbells fit in it easily.
    server = private_redis("--maxmemory", "4mb", "--maxmemory-policy", "allkeys-random")
    runtime = on_redis(server)
    ids = paused_with_doorbells(runtime, server, consumers, 250)

    client = server.client()
    queue_key = runtime.queues.postmaster.storage.queue_key
    junk = 0
    deadline = time.monotonic() + SETUP
    while client.exists(queue_key):
        assert time.monotonic() < deadline, "the queue's key never evicted"
        with client.pipeline(transaction=False) as pipe:
            for n in range(junk, junk + 200):
                pipe.set(f"junk:{n}", b"x" * 1024)
            pipe.execute()
        junk += 200
    lost = time.monotonic()
    assert client.info("stats")["evicted_keys"] > 0
    assert doorbells(server, runtime) == 0
    # The pressure goes (the operator raises the limit), at once: what the reaper rings is
    # not evicted in turn, which would only cost another round.
    client.config_set("maxmemory", 0)
    control.resume(runtime.ledger)
    delivered_in_time(runtime, ids, lost, "the parcels of evicted doorbells")


def test_a_doorbell_lost_with_a_consumer_killed_after_its_brpop_is_rung_again(
    on_redis, private_redis, consumers, monkeypatch, tmp_path: Path
):
    hold = tmp_path / "hold"
    hold.mkdir()
    monkeypatch.setenv("SEER_TEST_HOLD_DOORBELL", str(hold))
    server = private_redis()
    runtime = on_redis(server)
    scheduler, first, second = start_consumers(runtime, consumers, postmasters=2)

    (only,) = send(runtime, small(1))
    holding = hold / "holding"
    noted = lambda: holding.exists() and len(holding.read_text().split()) == 2  # noqa: E731
    wait_for(noted, SETUP, "a consumer holding the doorbell", step=0.005)
    held_by, rung_for = holding.read_text().split()
    assert rung_for == only
    holder, other = (first, second) if pid(first) == int(held_by) else (second, first)
    assert pid(holder) == int(held_by)
    # SIGKILLed as soon as it holds the doorbell, which dies with it. (The reaper may ring
    # while it holds it, before its death: a second doorbell costs nothing, and rings for a
    # parcel the queue no longer has a doorbell for, as after the death.)
    lost = time.monotonic()
    holder.kill()
    assert holder.proc is not None and holder.proc.returncode == -9
    delivered_in_time(runtime, [only], lost, "the parcel whose doorbell died with its consumer")
    # Delivered by the other consumer, at the first try: the dead one had claimed nothing (a
    # parcel taken back from a dead consumer has a crash counted and is isolated).
    row = runtime.ledger.row("SELECT attempts, crashes, isolate FROM parcels WHERE id = ?", (only,))
    assert (row["attempts"], row["crashes"], row["isolate"]) == (1, 0, 0)
    # Logged after the commit the ledger showed: waited for, not read at once.
    wait_for(lambda: "delivered parcel " + only in other.output(), SETUP, "the delivery's log line")
    assert running(other) and running(scheduler)


@pytest.mark.parametrize("loss", ["flushdb", "restart"])
# What Redis does to its keys is the same whatever the ledger: one ledger suffices.
@pytest.mark.backends("redis")
def test_a_retry_whose_delayed_doorbell_was_lost_is_rung_after_its_retry_time(
    on_redis, private_redis, consumers, monkeypatch, tmp_path: Path, loss: str
):
    # The first try fails; the retry is due 4 s later, its doorbell in Huey's schedule (a
    # sorted set in Redis): a restart or a FLUSHDB takes it too.
    monkeypatch.setenv("SEER_TEST_FAIL_ONCE", str(tmp_path / "failed-once"))
    server = private_redis()
    runtime = on_redis(server, POSTMASTER_RETRY_DELAY="4s")
    start_consumers(runtime, consumers)

    (retried,) = send(runtime, [parcel("agent-r", 1) | {"task_id": "fail-once"}])
    wait_for(lambda: scheduled(server, runtime) == 1, SETUP, "the retry's delayed doorbell")
    row = runtime.ledger.row(
        "SELECT state, attempts, not_before FROM parcels WHERE id = ?", (retried,)
    )
    assert (row["state"], row["attempts"]) == ("queued", 1)
    if loss == "flushdb":
        with server.client() as client:
            client.flushdb()
    else:
        server.restart()
    assert scheduled(server, runtime) == 0 and doorbells(server, runtime) == 0
    # Lost before its time: it counts from when the retry is due, on the ledger's clock.
    assert runtime.ledger.now() < row["not_before"], "lost too late to mean anything"
    lost = time.monotonic() + (row["not_before"] - runtime.ledger.now())
    delivered_in_time(runtime, [retried], lost, "the retry whose doorbell was lost")
    finished = runtime.ledger.scalar("SELECT finished_at FROM parcels WHERE id = ?", (retried,))
    assert finished >= row["not_before"], "delivered before its retry time"


# -- a drain across a restart ------------------------------------------------------------------


def test_a_drain_of_2000_parcels_across_a_redis_restart_delivers_each_once(
    on_redis, private_redis, consumers
):
    """2,000 small parcels, two postmaster consumers; Redis restarted (without persistence)
    while doorbells wait: the rest of the drain needs no doorbell that was lost."""
    server = private_redis()
    # Small batches: 100 doorbells, and a drain long enough to restart Redis in its middle.
    runtime = on_redis(server, POSTMASTER_BATCH_SIZE="20")
    control.pause(runtime.ledger)
    start_consumers(runtime, consumers, postmasters=2)
    ids = send(runtime, small(2000))
    assert doorbells(server, runtime) == 100

    control.resume(runtime.ledger)
    wait_for(lambda: delivered(runtime) >= 300, SETUP, "the drain under way", step=0.005)
    waiting = doorbells(server, runtime)
    lost = time.monotonic()
    server.restart()
    left = len(ids) - delivered(runtime)
    assert waiting > 0 and left > 0, "the drain ended before the restart: it proved nothing"
    # Its pace is the machine's (two consumers on a loaded two-core machine may take longer
    # than 10 s for the rest): what is claimed is that it never stalls for want of a doorbell
    # for longer than the parcels take to be rung again.
    longest = drained(runtime, len(ids), lost)
    assert longest <= RUNG_AGAIN_WITHIN + MARGIN, f"the drain stalled for {longest:.1f}s"
    assert_each_delivered_once(runtime, ids)


def drained(runtime: Runtime, total: int, since: float) -> float:
    """Waits for `total` deliveries; returns the longest time (from `since`) that no parcel
    was delivered while some were left. Fails on a stall of more than the claim and margin,
    or a drain longer than SETUP."""
    limit = RUNG_AGAIN_WITHIN + MARGIN
    seen = {"count": -1, "progress": since, "longest": 0.0}

    def done() -> bool:
        count, now = delivered(runtime), time.monotonic()
        if count != seen["count"]:
            seen["count"], seen["progress"] = count, now
        seen["longest"] = max(seen["longest"], now - seen["progress"])
        assert seen["longest"] <= limit, (
            f"no delivery for {seen['longest']:.1f}s with {total - count} left"
        )
        return count == total

    wait_for(done, SETUP - (time.monotonic() - since), f"{total} parcels delivered", step=0.05)
    return seen["longest"]
