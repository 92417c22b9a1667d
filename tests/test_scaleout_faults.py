"""Scale-out under real faults (issue 12): several consumer processes, each its own host
(SEER_HOST_ID), on one ledger; SIGKILLs, a SIGSTOP past the heartbeat timeout, clocks ten
minutes off (faketime), a restart of the PostgreSQL server, two schedulers, a full disk under
the server. Every parcel is delivered exactly once and nothing stays in flight.

Nothing here stands in for the behaviour under test. A hook of the test's own
(`sitecustomize`, on the consumers' PYTHONPATH) can hold a batch before its commit, so that a
fault lands while a consumer holds parcels, and can note the periodic jobs' claims and runs;
that is all it does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from tests import pg_server
from tests.conftest import BIN
from tests.helpers import parcel, wait_for
from tests.test_cli import ok, one_line_failure, pending
from tests.test_disk_full import fill
from worker.ledger import LedgerError
from worker.ops import operations
from worker.parcels import intake as parcels
from worker.parcels.postmaster import Postmaster
from worker.runtime import Runtime

pytestmark = pytest.mark.slow

TAKEN_BACK = "taken back while this consumer was thought dead"

HOOK = '''
"""tests/test_scaleout_faults.py's hooks in the consumers it starts, each off unless asked."""
import os

if os.environ.get("SEER_TEST_SELECT_SLEEP"):
    # libfaketime 0.9.10 breaks Python 3.11's time.sleep, a clock_nanosleep to an absolute
    # monotonic deadline: it hangs, or with --exclude-monotonic fails with EINVAL
    # (wolfcw/libfaketime#426). A relative select() passes through libfaketime untouched.
    import select
    import time

    def _sleep(seconds):
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        select.select([], [], [], seconds)

    time.sleep = _sleep

if os.environ.get("SEER_TEST_HOLD_COMMIT"):
    import pathlib
    import time

    from worker.parcels import postmaster

    _commit = postmaster.Postmaster._commit

    def _held(self, rows, outcome, now):
        # A batch ready to commit waits while the test's directory has no "release" file.
        where = pathlib.Path(os.environ["SEER_TEST_HOLD_COMMIT"])
        deadline = time.monotonic() + 120
        if not (where / "release").exists():
            (where / "holding").write_text(str(len(rows)))
        while not (where / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return _commit(self, rows, outcome, now)

    postmaster.Postmaster._commit = _held
    _release_own = postmaster.Postmaster._release_own

    def _release_noted(self):
        # Notes (in "give-back-failed") each try to give parcels back that raised.
        try:
            return _release_own(self)
        except BaseException as exc:
            where = pathlib.Path(os.environ["SEER_TEST_HOLD_COMMIT"])
            with open(where / "give-back-failed", "a") as out:
                out.write(f"{type(exc).__name__}: {exc}\\n")
            raise

    postmaster.Postmaster._release_own = _release_noted

if os.environ.get("SEER_TEST_RECORD_JOBS"):
    import dataclasses
    import json
    import time

    import worker.queue
    from worker.fleet import control
    from worker.queue import tasks

    def _note(**event):
        event.update(pid=os.getpid(), t=time.time())
        with open(os.environ["SEER_TEST_RECORD_JOBS"], "a") as out:
            out.write(json.dumps(event) + "\\n")

    _claim_slot = control.claim_slot

    def _claim_noted(ledger, job, slot, now=None):
        won = _claim_slot(ledger, job, slot, now)
        _note(event="claim", job=job, slot=slot, won=won)
        return won

    control.claim_slot = _claim_noted
    _register = tasks.register

    def _noted(name, run):
        def run_noted():
            _note(event="run", job=name)
            try:
                run()
            finally:
                _note(event="end", job=name)

        return run_noted

    def _register_noted(queues, jobs):
        periodic = tuple(
            tasks.Periodic(p.name, p.due, _noted(p.name, p.run)) for p in jobs.periodic
        )
        return _register(queues, dataclasses.replace(jobs, periodic=periodic))

    tasks.register = _register_noted
    worker.queue.register = _register_noted
'''


# -- consumers of many hosts -----------------------------------------------------------------


class Proc:
    """A real `seer worker QUEUE` process as host `host` (SEER_HOST_ID), with a log of its own.
    Under a `prefix` (faketime) the consumer is the wrapper's child; `pid` is the consumer's."""

    def __init__(
        self, cwd: Path, queue: str, host: str, env: dict[str, str], prefix: tuple[str, ...] = ()
    ) -> None:
        self.queue, self.host, self.prefix = queue, host, prefix
        self.env = {**env, "SEER_HOST_ID": host}
        self.cwd = cwd
        self.log = cwd / f"{host}-{queue}.log"
        self.popen: subprocess.Popen | None = None
        self.pid = 0

    def start(self) -> Proc:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.popen = subprocess.Popen(
            [*self.prefix, str(BIN / "seer"), "worker", self.queue],
            env=self.env,
            cwd=self.cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        self.pid = self.popen.pid if not self.prefix else self._child()
        return self

    def _child(self) -> int:
        assert self.popen is not None
        wrapper = psutil.Process(self.popen.pid)
        return wait_for(
            lambda: next((c.pid for c in wrapper.children()), 0), 10, f"{self.host}'s consumer"
        )

    @property
    def running(self) -> bool:
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    @property
    def stopped(self) -> bool:
        """SIGSTOPped: the kernel runs none of its threads."""
        return psutil.Process(self.pid).status() == psutil.STATUS_STOPPED

    def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(20)

    def stop(self) -> None:
        """Huey's graceful stop (SIGINT), SIGKILL if it takes too long."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        assert self.popen is not None
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def destroy(self) -> None:
        """Whatever state it is in (stopped included), it and its children are gone after."""
        if self.popen is None:
            return
        pids = [self.pid, self.popen.pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            pids += [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(20)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


Start = Callable[..., Proc]


@pytest.fixture
def fleet(env: dict[str, str], tmp_path: Path) -> Iterator[Start]:
    """start(queue, host, prefix=(), **environment): a consumer process of its own host.
    Every one is killed at the end, stopped or not, whatever the test's outcome."""
    started: list[Proc] = []
    hook = tmp_path / "hook"
    hook.mkdir()
    compile(HOOK, "sitecustomize.py", "exec")  # a broken hook would be skipped, not said
    (hook / "sitecustomize.py").write_text(HOOK)

    def start(queue: str, host: str, prefix: tuple[str, ...] = (), **extra: str) -> Proc:
        environment = {**os.environ, "PYTHONPATH": str(hook), **extra}
        proc = Proc(tmp_path, queue, host, environment, prefix)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.destroy()


@pytest.fixture
def root(
    env: dict[str, str], cli, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Runtime]]:
    """open(**settings): the test's storage root, initialised and opened with these settings
    in the environment (so the test process rings as its consumers deliver: one doorbell a
    batch of their size)."""
    opened: list[Runtime] = []

    def open_root(**settings: str) -> Runtime:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        assert cli("init").code == 0
        opened.append(Runtime.open())
        return opened[-1]

    yield open_root
    for runtime in opened:
        runtime.close()


def hold_dir(tmp_path: Path, name: str) -> Path:
    """A directory for the hold hook (SEER_TEST_HOLD_COMMIT): a consumer given it holds each
    batch before its commit while `release` does not exist there."""
    where = tmp_path / name
    where.mkdir()
    return where


# -- what the ledger says --------------------------------------------------------------------


def send(runtime: Runtime, items: list[dict]) -> list[str]:
    batch = [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    return list(operations.send_parcels(runtime, batch).ids)


def with_attachments(start: int, count: int) -> list[dict]:
    # Each attachment is its own content: one blob a parcel, plus its manifest.
    return [parcel(f"agent-{n % 7}", n, attachment=f"file {n} " * 40) for n in range(start, count)]


def delivered(runtime: Runtime) -> int:
    return runtime.ledger.scalar("SELECT count(*) FROM parcels WHERE state = 'delivered'")


def held_by(runtime: Runtime, host: str, batches_only: bool = False) -> int:
    """Parcels in flight owned by a consumer of `host`; `batches_only`: not one claimed alone
    (after a crash a death is blamed on such a parcel, and killing it again and again would
    fail it on purpose: POSTMASTER_MAX_CRASHES)."""
    alone = " AND claim_size > 1" if batches_only else ""
    return runtime.ledger.scalar(
        f"SELECT count(*) FROM parcels WHERE state = 'in_flight' AND owner LIKE ?{alone}",
        (host + "/%",),
    )


def ids_held_by(runtime: Runtime, host: str) -> set[str]:
    rows = runtime.ledger.rows(
        "SELECT id FROM parcels WHERE state = 'in_flight' AND owner LIKE ?", (host + "/%",)
    )
    return {r["id"] for r in rows}


def assert_each_delivered_once(runtime: Runtime, ids: list[str]) -> None:
    """Every parcel delivered, none left in flight or queued, one message each, one set of
    artifacts each (its attachment and its manifest)."""
    ledger = runtime.ledger
    states = {
        r["state"]: r["n"]
        for r in ledger.rows("SELECT state, count(*) AS n FROM parcels GROUP BY state")
    }
    assert states == {"delivered": len(ids)}, states
    per_parcel = ledger.rows("SELECT parcel_id, count(*) AS n FROM messages GROUP BY parcel_id")
    assert {r["parcel_id"] for r in per_parcel} == set(ids)
    assert [r for r in per_parcel if r["n"] != 1] == []
    artifacts = ledger.rows(
        "SELECT parcel_id, count(*) AS n, count(DISTINCT kind) AS kinds FROM artifacts "
        "GROUP BY parcel_id"
    )
    assert {r["parcel_id"] for r in artifacts} == set(ids)
    assert [r for r in artifacts if (r["n"], r["kinds"]) != (2, 2)] == []


def assert_cas_matches_disk(runtime: Runtime, blobs: int) -> None:
    """The CAS accounting (counters, blob rows) is what is on disk, the killed consumers'
    temp files removed; every blob reads back with its hash."""
    ledger = runtime.ledger
    wait_for(lambda: not list((runtime.layout.cas / "tmp").glob("*")), 30, "temp files removed")
    on_disk = dict(runtime.store.iter_blobs())
    recorded = {r["hash"]: r["size"] for r in ledger.rows("SELECT hash, size FROM blobs")}
    assert on_disk == recorded
    counters = ledger.counters()
    assert counters["cas_blobs"] == len(on_disk) == blobs
    assert counters["cas_bytes"] == sum(on_disk.values())
    for digest in random.Random(7).sample(sorted(on_disk), 25):
        runtime.store.read(digest)  # verifies the hash


# -- 1. SIGKILLs of random consumers ---------------------------------------------------------

HOSTS = ("host-a", "host-b", "host-c")


def queued(runtime: Runtime) -> int:
    return runtime.ledger.scalar("SELECT count(*) FROM parcels WHERE state = 'queued'")


def keep_a_backlog(
    runtime: Runtime, ids: list[str], until: Callable[[], object], what: str, timeout=60.0
) -> None:
    """Polls (every millisecond) until `until()`, sending 100 parcels more into `ids` whenever
    fewer than 50 are queued: a consumer the test waits for keeps claiming batches."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        if queued(runtime) < 50:
            ids.extend(send(runtime, with_attachments(len(ids), len(ids) + 100)))
        time.sleep(0.001)


def consumer_up(runtime: Runtime, proc: Proc) -> bool:
    """Registered in the ledger under its host and pid: its start-up is done."""
    return bool(
        runtime.ledger.scalar(
            "SELECT 1 FROM control WHERE key = ?",
            (f"consumer:{proc.queue}:{proc.host}:{proc.pid}",),
        )
    )


# And on Redis's queue with PostgreSQL's ledger (the task card's production): a doorbell a victim
# took from the list dies with it, as one taken from a table.
@pytest.mark.backends("sqlite", "postgresql", "postgresql+redis")
def test_sigkills_of_random_consumers_of_three_hosts_lose_nothing_and_deliver_once(root, fleet):
    """1,500 parcels with attachments or more (six waves of 250, and 100 more whenever fewer
    than 50 wait, so that each kill finds a backlog), three postmaster consumers (three hosts)
    and a scheduler (a fourth); six SIGKILLs of seeded consumers at seeded moments, each while
    the victim holds a batch. After a kill the victim is restarted at once (its start-up
    recovery gives its parcels back: its pid is dead on its host), or only once the
    scheduler's reaper has given them back (its heartbeat went silent: the other hosts cannot
    check its pid). The last victim stays dead until the other two have finished the drain:
    the doorbell it took with it strands nothing. Then every parcel has one message and one
    set of artifacts, nothing is in flight, and the CAS accounting matches the disk."""
    # Small batches, so that kills land inside batches rather than between them.
    runtime = root(POSTMASTER_BATCH_SIZE="20", SEER_HEARTBEAT_TIMEOUT="5s")
    rng = random.Random(20261212)
    wave = 250
    victims = [rng.choice(HOSTS) for _ in range(6)]
    # Deliveries into its wave before each kill.
    offsets = [rng.randrange(0, wave // 2) for _ in victims]
    # How each victim comes back: at once (start-up recovery) or after the reaper; the last
    # one after the drain.
    comebacks = [*rng.sample(["at once"] * 3 + ["after the reaper"] * 2, 5), "after the drain"]
    fleet("scheduler", "host-s")
    procs = {host: fleet("postmaster", host) for host in HOSTS}
    ids: list[str] = []
    landed = missed = reaped_while_dead = 0

    for victim, offset, comeback in zip(victims, offsets, comebacks, strict=True):
        for proc in procs.values():
            wait_for(lambda p=proc: consumer_up(runtime, p), 30, f"{proc.host} up")
        base = delivered(runtime)
        ids += send(runtime, with_attachments(len(ids), len(ids) + wave))
        wait_for(lambda t=base + offset: delivered(runtime) >= t, 60, f"{offset} deliveries")
        while True:
            keep_a_backlog(
                runtime,
                ids,
                lambda v=victim: held_by(runtime, v, batches_only=True),
                f"a batch in flight on {victim}",
            )
            procs[victim].kill()
            # The dead consumer's: no other process of its host runs.
            held = held_by(runtime, victim)
            if held:
                break
            missed += 1
            assert missed < 50, "the batches commit before a kill lands, 50 times over"
            procs[victim] = fleet("postmaster", victim)
            wait_for(lambda v=victim: consumer_up(runtime, procs[v]), 30, f"{victim} up")
        landed += 1
        if comeback == "after the reaper":
            # Only the heartbeat tells the reaper (host-s) that this one is dead.
            wait_for(lambda v=victim: held_by(runtime, v) == 0, 30, f"{victim}'s parcels reaped")
            reaped_while_dead += held
        if comeback == "after the drain":
            break
        procs[victim] = fleet("postmaster", victim)
    assert landed == 6 and reaped_while_dead > 0 and len(ids) >= 1500

    assert delivered(runtime) < len(ids), "the drain ended before the last kill"
    wait_for(lambda: delivered(runtime) == len(ids), 120, "every parcel delivered by the survivors")
    procs[victim] = fleet("postmaster", victim)
    wait_for(lambda: consumer_up(runtime, procs[victim]), 30, "the last victim's restart")

    assert_each_delivered_once(runtime, ids)
    assert runtime.ledger.scalar("SELECT count(*) FROM parcels WHERE isolate = 1") > 0
    for host in HOSTS:
        log = procs[host].output()
        assert re.search(r"delivered \d+ parcels", log), f"{host} delivered nothing:\n{log}"
        assert "Traceback" not in log, log
    assert all(p.running for p in procs.values())
    assert_cas_matches_disk(runtime, 2 * len(ids))


# -- 2. a consumer frozen (SIGSTOP) while it holds a batch, among others ---------------------


@pytest.mark.backends("postgresql")
def test_a_consumer_frozen_past_the_timeout_is_replaced_by_its_peers_and_its_commit_refused(
    root, fleet, tmp_path
):
    """Three postmaster consumers of three hosts and a scheduler of a fourth; one (host-x)
    holds a batch ready to commit and is SIGSTOPped. Only its silence tells the others: once
    it is past SEER_HEARTBEAT_TIMEOUT the scheduler's reaper gives its batch back and its
    peers deliver it and the rest, all while host-x cannot run an instruction. After SIGCONT
    its commit is refused (said once, in one line), it beats again and delivers anew; every
    parcel has one message. (tests/test_heartbeats.py has the single consumer whose batch the
    test process delivers.)"""
    runtime = root(POSTMASTER_BATCH_SIZE="50", SEER_HEARTBEAT_TIMEOUT="5s")
    hold = hold_dir(tmp_path, "hold-x")
    ids = send(runtime, with_attachments(0, 400))
    # Alone at first, so that the first batch is host-x's.
    frozen = fleet("postmaster", "host-x", SEER_TEST_HOLD_COMMIT=str(hold))
    wait_for(lambda: (hold / "holding").exists(), 30, "host-x holding its batch")
    batch = ids_held_by(runtime, "host-x")
    assert len(batch) == 50 and (hold / "holding").read_text() == "50"
    fleet("scheduler", "host-s")
    peers = [fleet("postmaster", host) for host in ("host-y", "host-z")]
    for proc in peers:
        wait_for(lambda p=proc: consumer_up(runtime, p), 30, f"{proc.host} up")

    os.kill(frozen.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        (hold / "release").write_text("")  # seen only once it runs again
        wait_for(
            lambda: not ids_held_by(runtime, "host-x"), 30, "host-x's batch taken back", step=0.05
        )
        waited = time.monotonic() - stopped
        # Its last beat was at most a second before the stop: not dead before the timeout.
        assert waited > 3.5, f"taken back after {waited:.1f}s, before the 5 s timeout"
        wait_for(lambda: delivered(runtime) == len(ids), 60, "the peers' drain", step=0.05)
        assert frozen.stopped, "delivered while host-x was frozen: by its peers"
    finally:
        os.kill(frozen.pid, signal.SIGCONT)

    wait_for(lambda: TAKEN_BACK in frozen.output(), 20, "the refused commit in host-x's log")
    (line,) = [line for line in frozen.output().splitlines() if TAKEN_BACK in line]
    assert "WARNING" in line and "50 parcels" in line and "not delivered again" in line, line
    assert "delivered" not in frozen.output().replace("not delivered again", "")
    assert_each_delivered_once(runtime, ids)
    # The peers delivered: a batch, or one parcel at a time (the parcels the reaper gave back
    # are suspects in a worker's death, isolated: each is delivered alone). Which of them takes
    # what is the queue's choice: on a loaded host one peer may drain it all before the other
    # dequeues, so it is the peers together that must have delivered.
    said = [proc.output() for proc in peers]
    assert any(re.search(r"delivered (\d+ parcels|parcel )", out) for out in said), said
    for out in said:
        # Their heartbeats kept them alive: nothing of theirs was taken back.
        assert TAKEN_BACK not in out

    # Awake, it beats again, and it delivers again.
    heard = wait_for(
        lambda: runtime.ledger.scalar(
            "SELECT updated_at FROM control WHERE key = ?",
            (f"consumer:postmaster:host-x:{frozen.pid}",),
        ),
        10,
        "host-x's entry",
    )
    wait_for(
        lambda: (
            runtime.ledger.scalar(
                "SELECT updated_at FROM control WHERE key = ?",
                (f"consumer:postmaster:host-x:{frozen.pid}",),
            )
            > heard
        ),
        10,
        "a heartbeat of host-x after SIGCONT",
    )
    more = list(ids)
    keep_a_backlog(
        runtime,
        more,
        lambda: "delivered" in frozen.output().replace("not delivered again", ""),
        "host-x delivering again",
    )
    wait_for(lambda: delivered(runtime) == len(more), 60, "the rest delivered")
    assert_each_delivered_once(runtime, more)
    assert frozen.running
    assert_cas_matches_disk(runtime, 2 * len(more))


# -- 3. clocks ten minutes off (faketime) ------------------------------------------------------


def skewed(offset: str) -> tuple[str, ...]:
    """The command prefix that runs a consumer with its wall clock `offset` off (faketime)."""
    faketime = shutil.which("faketime")
    if faketime is None:
        # A skip would fail CI anyway (a PostgreSQL test that skips fails): say what is missing.
        pytest.fail(
            "the clock-skew test needs the faketime command (Debian package faketime; "
            ".ci/run installs it as root): apt-get install faketime"
        )
    # -m: the consumers are threaded. --exclude-monotonic: a host whose wall clock is off
    # still has a steady monotonic clock (and libfaketime's monotonic clock hangs threads).
    return (faketime, "-m", "--exclude-monotonic", "-f", offset)


# Under faketime, time.sleep needs the hook's fix (see HOOK).
UNDER_FAKETIME = {"SEER_TEST_SELECT_SLEEP": "1"}


def clock_offset(proc: Proc, started: float, read: float) -> tuple[float, float]:
    """Bounds of how far ahead of this machine's clock the consumer's own clock was, from the
    time stamp of its log's first line (written between `started` and `read`)."""
    first = re.search(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),", proc.output(), re.M)
    assert first, proc.output()
    stamped = time.mktime(time.strptime(first.group(1), "%Y-%m-%d %H:%M:%S"))
    return stamped - read - 1, stamped - started + 1


def reap_slot(runtime: Runtime) -> int:
    return int(runtime.ledger.scalar("SELECT value FROM control WHERE key = 'slot:reap'") or 0)


@pytest.mark.backends("postgresql")
def test_consumers_whose_clocks_are_ten_minutes_off_neither_steal_nor_lose(root, fleet, tmp_path):
    """Real consumers under faketime: host-a's clock 10 minutes ahead (a postmaster and the
    only scheduler, so the only reaper), host-b's 10 minutes behind (a postmaster that holds
    its batch before the commit); the lease is 30 s. A lease or a heartbeat read on host-a's
    clock would look 10 minutes old: host-a takes nothing in flight on host-b, nor the five
    parcels a holder without a heartbeat (host-t, this process) claimed, until their lease
    ends on the database's clock. host-b claims parcels queued "10 minutes in its future" and
    commits them. Then the reaper runs behind (host-b's clock) and host-b is SIGKILLed holding
    a batch: it is taken back after the heartbeat timeout, not 10 minutes later. Every parcel
    is delivered once, and every time stamp is the database's."""
    ahead, behind = skewed("+10m"), skewed("-10m")
    runtime = root(POSTMASTER_BATCH_SIZE="50", POSTMASTER_LEASE="30s", SEER_HEARTBEAT_TIMEOUT="5s")
    ledger = runtime.ledger
    began = ledger.now()
    hold = hold_dir(tmp_path, "hold-b")
    ids = send(runtime, with_attachments(0, 300))
    unregistered = Postmaster(
        ledger, runtime.store, dataclasses.replace(runtime.settings, host_id="host-t")
    )
    lone = {p.id for p in unregistered._claim(ledger.now(), 5)}
    lease_ends = ledger.scalar("SELECT max(lease_until) FROM parcels WHERE owner LIKE 'host-t/%'")
    assert len(lone) == 5 and lease_ends <= ledger.now() + 30

    started = time.time()
    slow = fleet("postmaster", "host-b", behind, SEER_TEST_HOLD_COMMIT=str(hold), **UNDER_FAKETIME)
    wait_for(lambda: (hold / "holding").exists(), 30, "host-b holding its batch")
    batch = ids_held_by(runtime, "host-b")
    assert len(batch) == 50
    fast = fleet("postmaster", "host-a", ahead, **UNDER_FAKETIME)
    reaper = fleet("scheduler", "host-a", ahead, **UNDER_FAKETIME)
    wait_for(lambda: reap_slot(runtime), 30, "the first reap")
    first = reap_slot(runtime)

    def neither_stolen() -> bool:
        assert ids_held_by(runtime, "host-b") == batch, "host-b's batch taken"
        if ledger.now() < lease_ends - 0.5:
            assert ids_held_by(runtime, "host-t") == lone, "taken before the lease's end"
        return reap_slot(runtime) >= first + 4  # the reaper has run 3 times since, or more

    wait_for(neither_stolen, 60, "three runs of the reaper ahead", step=0.05)
    (hold / "release").write_text("")
    wait_for(lambda: "delivered 50 parcels" in slow.output(), 30, "host-b's commit")
    assert not ids_held_by(runtime, "host-b") & batch

    def lease_ended() -> bool:
        if ids_held_by(runtime, "host-t") == lone:
            return False
        assert ledger.now() >= lease_ends - 0.5, "taken before the lease's end"
        return True

    wait_for(lease_ended, 60, "host-t's parcels back after their lease", step=0.05)
    wait_for(lambda: delivered(runtime) == len(ids), 60, "the first drain")
    assert_each_delivered_once(runtime, ids)
    for proc in (slow, fast):
        assert TAKEN_BACK not in proc.output(), proc.output()
        # Both peers delivered: a batch, or one parcel at a time (the parcels the reaper gave
        # back are suspects in a worker's death, isolated: each is delivered alone).
        assert re.search(r"delivered (\d+ parcels|parcel )", proc.output()), proc.output()

    # The reaper now runs behind.
    reaper.stop()
    late_reaper = fleet("scheduler", "host-b", behind, **UNDER_FAKETIME)
    (hold / "release").unlink()
    (hold / "holding").unlink()
    keep_a_backlog(runtime, ids, lambda: (hold / "holding").exists(), "host-b holding again")
    again = ids_held_by(runtime, "host-b")
    assert again
    slow.kill()
    wait_for(lambda: not ids_held_by(runtime, "host-b"), 30, "host-b's batch reaped")
    wait_for(lambda: delivered(runtime) == len(ids), 60, "the second drain")
    assert_each_delivered_once(runtime, ids)

    # Faketime was in force, and every time the ledger holds is on the database's clock.
    read = time.time()
    for proc, skew in ((slow, -600), (fast, 600), (reaper, 600), (late_reaper, -600)):
        low, high = clock_offset(proc, started, read)
        assert low <= skew <= high, (proc.host, proc.queue, low, high)
    ended = ledger.now()
    stamps = ledger.row(
        "SELECT min(claimed_at) AS a, max(claimed_at) AS b, min(finished_at) AS c, "
        "max(finished_at) AS d FROM parcels"
    )
    assert stamps is not None
    assert all(began - 1 <= stamp <= ended + 1 for stamp in stamps.values()), (
        began,
        stamps,
        ended,
    )
    assert_cas_matches_disk(runtime, 2 * len(ids))


# -- 4. a restart of the PostgreSQL server during a drain --------------------------------------


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[pg_server.PrivateServer]:
    """A PostgreSQL server of the test's own (tests/pg_server.py), stopped at the end."""
    pg_server.require()
    server = pg_server.PrivateServer(tmp_path)
    try:
        yield server.start()
    finally:
        server.close()


def reachable(read: Callable[[], int]) -> int:
    """`read()`, or -1 while the ledger's server is out of reach."""
    try:
        return read()
    except LedgerError:
        return -1


@pytest.mark.backends("postgresql")
def test_a_restart_and_a_crash_of_the_server_during_a_drain_lose_and_double_nothing(
    private_server, root, fleet
):
    """1,500 parcels, three postmaster consumers and a scheduler on a private PostgreSQL
    server. It is restarted (pg_ctl restart's fast shutdown) a fifth into the drain and
    crashes (SIGKILL of its postmaster, then crash recovery) halfway: the same consumer
    processes, never restarted, reconnect by themselves, beat again and finish the drain;
    every parcel has one message and one set of artifacts."""
    url = private_server.create_database("seer")
    runtime = root(SEER_DATABASE_URL=url, POSTMASTER_BATCH_SIZE="20")
    total = 1500
    ids = send(runtime, with_attachments(0, total))
    procs = [fleet("postmaster", host) for host in HOSTS] + [fleet("scheduler", "host-s")]
    for proc in procs:
        wait_for(lambda p=proc: consumer_up(runtime, p), 30, f"{proc.host} up")
    pids = [proc.pid for proc in procs]

    def count() -> int:
        return reachable(lambda: delivered(runtime))

    def count_once_reachable() -> int:
        # This process's connections broke too: the first tries after a restart may fail.
        return wait_for(lambda: [n for n in [count()] if n >= 0], 30, "the ledger again")[0]

    wait_for(lambda: count() >= total // 5, 60, "a fifth delivered")
    # Mid-drain, read the instant before: hundreds of parcels still to go cannot commit in
    # the milliseconds until the server stops. (Read after it, the count says nothing: the
    # consumers reconnect before this process's pool does and, on a loaded host, had drained
    # 860 and then all 750 that were left before it could read.)
    assert count() < total, "the drain ended before the restart"
    private_server.restart("fast")
    count_once_reachable()
    wait_for(lambda: count() >= total // 2, 60, "half delivered after the restart")
    assert count() < total, "the drain ended before the crash"
    private_server.kill()
    private_server.start()
    back = runtime.ledger.now()  # start() returns once the server accepts connections
    wait_for(lambda: count() == total, 120, "every parcel delivered after the crash")

    assert [proc.pid for proc in procs] == pids and all(proc.running for proc in procs)
    entries = {f"consumer:{p.queue}:{p.host}:{p.pid}" for p in procs}

    def all_beat_again() -> bool:
        beats = runtime.ledger.rows(
            "SELECT key, updated_at FROM control WHERE key LIKE 'consumer:%'"
        )
        assert {r["key"] for r in beats} == entries
        return all(r["updated_at"] > back for r in beats)

    wait_for(all_beat_again, 30, "every consumer's heartbeat after the crash")
    assert_each_delivered_once(runtime, ids)
    assert_cas_matches_disk(runtime, 2 * total)


@pytest.mark.backends("postgresql")
def test_a_batch_waiting_to_commit_through_a_long_outage_is_given_back_and_delivered(
    private_server, root, fleet, tmp_path
):
    """The last batch of a drain is ready to commit when the server goes down, and stays
    down until the consumer has failed to give the batch back too. Its consumer lives and
    beats on, so no reaper takes the parcels from it, and there is no doorbell left: once the
    server is back they are delivered all the same, by the consumer processes that ran
    through the outage, with no new parcel sent."""
    url = private_server.create_database("seer")
    runtime = root(SEER_DATABASE_URL=url, POSTMASTER_BATCH_SIZE="20")
    hold = hold_dir(tmp_path, "hold-a")
    # Only host-a is up when the doorbell rings: the batch is its.
    procs = [
        fleet("postmaster", "host-a", SEER_TEST_HOLD_COMMIT=str(hold)),
        fleet("scheduler", "host-s"),
    ]
    for proc in procs:
        wait_for(lambda p=proc: consumer_up(runtime, p), 30, f"{proc.host} up")
    ids = send(runtime, with_attachments(0, 20))
    wait_for(lambda: (hold / "holding").exists(), 30, "host-a holding the batch")
    procs.append(fleet("postmaster", "host-b"))
    wait_for(lambda: consumer_up(runtime, procs[-1]), 30, "host-b up")
    # A second doorbell (the reaper rings when it sees due parcels and none: it may look
    # between host-a's dequeue and its claim) is taken by host-b, which finds nothing.
    wait_for(lambda: pending(runtime) == 0, 10, "no doorbell left")
    assert queued(runtime) == 0
    pids = [proc.pid for proc in procs]

    private_server.stop("fast")
    (hold / "release").write_text("")
    wait_for(lambda: (hold / "give-back-failed").exists(), 60, "host-a's give-back failing")
    private_server.start()
    wait_for(
        lambda: reachable(lambda: delivered(runtime)) == len(ids),
        60,
        "the batch delivered after the outage",
    )
    assert_each_delivered_once(runtime, ids)
    assert [proc.pid for proc in procs] == pids and all(proc.running for proc in procs)


# -- 5. two schedulers -------------------------------------------------------------------------

MINUTE_JOBS = ("compact_memory", "monitor_storage", "evaluate_rules")  # slots of 60 s
EVERY_5S = ("sample", "reap", "deliver_alerts")  # slots of 5 s here


def job_events(path: Path) -> list[dict]:
    """What the hook noted (SEER_TEST_RECORD_JOBS): each claim of a slot (won or not) and the
    start and end of each run, with the process's pid."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def won(events: list[dict], job: str) -> list[dict]:
    return [e for e in events if e["event"] == "claim" and e["job"] == job and e["won"]]


def runs(events: list[dict], job: str, what: str = "run") -> list[dict]:
    return [e for e in events if e["event"] == what and e["job"] == job]


def settled(events: list[dict], jobs: tuple[str, ...]) -> bool:
    """Every won slot's run of these jobs has started and ended."""
    return all(
        len(runs(events, job)) == len(runs(events, job, "end")) == len(won(events, job))
        for job in jobs
    )


def assert_each_slot_won_once_and_run_once(events: list[dict], job: str, pids: set[int]) -> None:
    """Each slot of `job` won by one scheduler and run once; every scheduler in `pids` asked
    for slots, and each refused claim was for a slot another won; no slot skipped."""
    claims = won(events, job)
    slots = [e["slot"] for e in claims]
    assert len(slots) == len(set(slots)), f"{job}: a slot won twice"
    assert len(runs(events, job)) == len(claims), f"{job}: runs {len(runs(events, job))}"
    assert len(runs(events, job, "end")) == len(claims)
    asked = {e["pid"] for e in events if e["event"] == "claim" and e["job"] == job}
    assert asked == pids, job
    # They raced: refused claims, each for a slot the other won.
    refused = [e for e in events if e["event"] == "claim" and e["job"] == job and not e["won"]]
    winner = {e["slot"]: e["pid"] for e in claims}
    assert refused and all(winner.get(e["slot"]) not in (None, e["pid"]) for e in refused)
    assert slots == list(range(slots[0], slots[0] + len(slots))), f"{job}: skipped {slots}"


@pytest.mark.backends("postgresql")
def test_two_schedulers_run_every_periodic_job_once_per_slot_and_a_kill_misses_none(
    root, fleet, tmp_path
):
    """Two scheduler consumers of two hosts, every job due each minute or every 5 s. Both ask
    for every slot; each slot is won once (a refused claim is for a slot the other won), and
    each won slot runs once, on either consumer's workers (one queue). The hook notes the
    claims and runs; the compaction runs, metric samples and storage reports the jobs record
    agree with it. The one that won the last compaction's slot is SIGKILLed at a quiet moment:
    the other runs the next slot of every job, and no slot is skipped. About 2 to 3 minutes:
    two minute slots with both, one more with one."""
    runtime = root(
        SEER_SAMPLE_INTERVAL="5s",
        ORCHESTRATION_MONITOR_CRON="* * * * *",
        ORCHESTRATION_COMPACTION_CRON="* * * * *",
    )
    noted = tmp_path / "jobs.jsonl"
    pair = [fleet("scheduler", host, SEER_TEST_RECORD_JOBS=str(noted)) for host in ("s1", "s2")]

    def ran_and_ended(job: str, slots: int) -> list[dict] | None:
        events = job_events(noted)
        settle = settled(events, MINUTE_JOBS + EVERY_5S)
        return events if settle and len(won(events, job)) >= slots else None

    before = wait_for(lambda: ran_and_ended("compact_memory", 2), 150, "two compactions", step=0.2)
    (last,) = won(before, "compact_memory")[-1:]
    victim = next(p for p in pair if p.pid == last["pid"])
    survivor = next(p for p in pair if p is not victim)

    def quiet() -> bool:
        # Not inside a run of its own, and past the burst of claims and runs that follows each
        # check (every 5 s): killed between two checks, it takes no claimed slot with it.
        mine = [e for e in job_events(noted) if e["pid"] == victim.pid]
        started = sum(e["event"] == "run" for e in mine)
        ended = sum(e["event"] == "end" for e in mine)
        return started == ended and time.time() - mine[-1]["t"] > 0.5

    wait_for(quiet, 20, "a quiet moment of the victim", step=0.05)
    victim.kill()
    killed = time.time()
    slots_at_kill = {job: max(e["slot"] for e in won(job_events(noted), job)) for job in EVERY_5S}
    wait_for(lambda: ran_and_ended("compact_memory", 3), 75, "the next compaction", step=0.2)
    events = wait_for(
        lambda: (
            all(
                max(e["slot"] for e in won(job_events(noted), job)) >= slots_at_kill[job] + 2
                for job in EVERY_5S
            )
            and ran_and_ended("compact_memory", 3)
        ),
        20,
        "the next slots of the 5-second jobs",
        step=0.2,
    )

    for job in MINUTE_JOBS + EVERY_5S:
        # Both asked for the slots; after the kill only the survivor.
        assert_each_slot_won_once_and_run_once(events, job, {victim.pid, survivor.pid})
        claims = won(events, job)
        assert all(e["pid"] == survivor.pid for e in claims if e["t"] > killed)
        assert any(e["t"] > killed for e in claims), f"{job}: no slot after the kill"

    # What the jobs themselves recorded agrees with the hook.
    compactions = runtime.ledger.rows(
        "SELECT started_at, owner FROM compaction_runs WHERE trigger = 'schedule' ORDER BY id"
    )
    assert [int(r["owner"].split("/")[1]) for r in compactions] == [
        e["pid"] for e in runs(events, "compact_memory")
    ]
    assert [int(r["started_at"]) // 60 for r in compactions] == [
        e["slot"] for e in won(events, "compact_memory")
    ]
    samples = runtime.ledger.scalar("SELECT count(*) FROM metric_samples WHERE resolution = 0")
    assert samples == len(won(events, "sample"))
    reports = [
        line
        for line in (runtime.layout.logs / "orchestration.log").read_text().splitlines()
        if '"storage.report"' in line
    ]
    assert len(reports) == len(won(events, "monitor_storage"))
    assert survivor.running


@pytest.mark.backends("redis", "postgresql+redis")
def test_two_schedulers_on_one_redis_queue_run_each_slot_once(root, fleet, tmp_path):
    """Two scheduler consumers of two hosts on one Redis queue, on either ledger: each
    scheduler's clock thread enqueues the periodic jobs it finds due, either consumer's workers
    take them from the shared list, and the slot claimed in the ledger makes each 5-second
    job's slot run once. Four slots of each with both up: about 25 s. (The test above does it
    for a minute's jobs and a kill, on PostgreSQL's queue.)"""
    runtime = root(SEER_SAMPLE_INTERVAL="5s")
    noted = tmp_path / "jobs.jsonl"
    pair = [fleet("scheduler", host, SEER_TEST_RECORD_JOBS=str(noted)) for host in ("s1", "s2")]
    pids = {proc.pid for proc in pair}

    def four_slots_since_both_asked() -> list[dict] | None:
        events = job_events(noted)
        if not settled(events, EVERY_5S):
            return None
        for job in EVERY_5S:
            claims = [e for e in events if e["event"] == "claim" and e["job"] == job]
            first = {e["pid"]: e["t"] for e in reversed(claims)}  # each one's first claim
            if set(first) != pids:
                return None
            if len([e for e in won(events, job) if e["t"] >= max(first.values())]) < 4:
                return None
        return events

    events = wait_for(four_slots_since_both_asked, 90, "four slots of each job", step=0.2)
    for job in EVERY_5S:
        assert_each_slot_won_once_and_run_once(events, job, pids)
    # What the jobs themselves recorded agrees with the hook.
    samples = runtime.ledger.scalar("SELECT count(*) FROM metric_samples WHERE resolution = 0")
    assert samples == len(won(events, "sample"))
    assert all(proc.running for proc in pair)
    assert runtime.queues.backend == "redis"


# -- 6. a full disk under the PostgreSQL server ------------------------------------------------


@pytest.fixture
def server_on_small_disk(tmp_path: Path, tmpfs) -> Iterator[pg_server.PrivateServer]:
    """A private PostgreSQL server whose data directory is a 64 MB tmpfs of its own (a short
    path: the server's socket lives there), so that its writes really fail with ENOSPC."""
    pg_server.require()
    server = pg_server.PrivateServer(tmp_path)
    try:
        disk = tmpfs(Path(tempfile.mkdtemp(prefix="seer-pgdisk-")), "64m")
        owner = pwd.getpwnam(pg_server.SERVER_USER) if os.geteuid() == 0 else None
        if owner is not None:
            os.chown(disk, owner.pw_uid, owner.pw_gid)
        disk.chmod(0o700)  # the server refuses a data directory others may read
        subprocess.run(["cp", "-a", f"{server.data_dir}/.", str(disk)], check=True)
        server.data_dir = disk
        yield server.start()
    finally:
        server.close()


@pytest.mark.backends("postgresql")
def test_a_full_disk_under_the_server_is_said_in_one_line_and_half_writes_nothing(
    server_on_small_disk, root, cli, fleet
):
    """The ledger and the queue on a PostgreSQL server whose disk fills up: `seer parcel send`
    of a parcel that needs new pages says "disk full" in one line naming the server's
    host:port; no parcel row and no doorbell are left of it, the parcel sent before is
    intact. Once room is made the same command works, and a consumer delivers both."""
    server = server_on_small_disk
    runtime = root(SEER_DATABASE_URL=server.url("postgres"))
    (first,) = ok(cli("parcel", "send", "-", stdin='{"to_agent_id": "a"}')).split()
    with psycopg.connect(server.url(), autocommit=True) as conn:
        # A fresh WAL segment (allocated whole now): what the commits below log fits in it,
        # so the server reports the full disk instead of stopping (a WAL write that fails is
        # a PANIC).
        conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
    filler = fill(server.data_dir)
    rows, doorbells = runtime.ledger.scalar("SELECT count(*) FROM parcels"), pending(runtime)
    big = '{"to_agent_id": "a", "envelope": {"body": "' + "x" * 400_000 + '"}}'

    line = one_line_failure(cli("parcel", "send", "-", stdin=big), 1)
    assert "disk full" in line and f"127.0.0.1:{server.port}" in line, line
    assert "HINT" not in line and "\\n" not in line, line  # PostgreSQL's primary message only
    assert runtime.ledger.scalar("SELECT count(*) FROM parcels") == rows
    assert pending(runtime) == doorbells
    assert cli("parcel", "show", first, "--json").json()["state"] == "queued"
    assert server.running, server.log_tail()

    filler.unlink()
    (second,) = ok(cli("parcel", "send", "-", stdin=big)).split()
    fleet("postmaster", "host-a")
    wait_for(lambda: delivered(runtime) == 2, 30, "both parcels delivered")
    assert {r["parcel_id"] for r in runtime.ledger.rows("SELECT parcel_id FROM messages")} == {
        first,
        second,
    }
