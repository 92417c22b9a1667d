"""Memory compaction: the real Compactor against one plain DELETE, and parcels sent meanwhile.

    .venv/bin/python bench/compaction.py [--keys 1000000] [--agents 1000] [--repeat 2]

In a fresh temporary directory, a storage root is made with `seer init` and its `memory` table
filled with N keys over A agents (rows sorted by primary key, executemany in big transactions).
Exactly half of each agent's keys are expired, chosen by crc32(agent, key), so the expired rows
are scattered and do not follow insertion order; of the live half, every other key is durable
(expires_at NULL) and the rest expire in a day. The WAL is checkpointed (TRUNCATE) and the
filled root is then copied afresh (and fsynced) for every measurement, so all start from the
same bytes, schema and settings (WAL, synchronous=FULL, cache_size -16000, foreign_keys on).

1. Ratio, alternately, `--repeat` times each:
   (a) baseline: one `DELETE FROM memory WHERE expires_at <= ?` (autocommit, its own commit and
       auto-checkpoint included) on a plain sqlite3 connection with the ledger's pragmas;
   (b) ours: `runtime.compactor().run("bench")` through a Runtime opened on the copied root.
   The ratio is (b) / (a) wall time per pair; the median is judged (goal <= 1.5). The ledger
   connection's statements are observed with sqlite3's trace callback (no code is wrapped):
   it counts the write transactions (BEGIN IMMEDIATE) and the time from each BEGIN to the start
   of its COMMIT (the commit's own WAL write and fsync come on top).
   Then one more run of (b), not timed for the ratio, with a second connection doing
   `BEGIN IMMEDIATE; COMMIT` in a loop (1 ms apart) in a thread: its waits are what any other
   writer would wait for the lock, busy-handler sleeps included.
2. Under load: a real `seer worker postmaster` consumer on a fresh copy, warmed up by one
   delivered parcel; then a sender thread (its own Runtime, so its own connections) validates
   and sends one small parcel every 20 ms through `worker.ops.operations.send_parcels`, from just
   before the compaction starts (in the main thread) until 2 s after it ends. Latency is the
   parcel's `finished_at` minus its send time; `finished_at` is taken by the consumer right
   before its delivery transaction asks for the write lock, so a wait for that lock is not in
   it. A watcher thread polls the ledger every 5 ms for delivered parcels, so "seen" latency
   includes that wait (and up to 5 ms of polling). "database is locked" is counted in the
   sender (sqlite3 / peewee OperationalError) and in the consumer's log.

Processes are stopped with SIGINT (kill after 20 s); the temporary directory is removed at
the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import stop, tail  # bench/ is sys.path[0] when a bench runs

BIN = Path(sys.executable).parent
FILL_CHUNK = 100_000
PRAGMAS = (
    "pragma journal_mode=wal",
    "pragma synchronous=FULL",
    "pragma foreign_keys=1",
    "pragma cache_size=-16000",
)
RATIO_GOAL = 1.5
LATENCY_GOAL = 0.5
SEND_INTERVAL = 0.02
TAIL = 2.0
WATCH_POLL = 0.005
DELIVERY_TIMEOUT = 120.0


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); max for q=100."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def environment(root: Path, env_file: Path) -> dict[str, str]:
    return dict(
        os.environ,
        SEER_STORAGE_PATH=str(root),
        SEER_ENV_FILE=str(env_file),
        SEER_SQLITE_SYNCHRONOUS="full",
    )


# -- the data ---------------------------------------------------------------------------------


def rows(keys: int, agents: int, now: float) -> Iterator[tuple]:
    """All rows in primary-key order; per agent exactly half expired, picked by crc32."""
    per_agent = keys // agents
    expired_at = now - 3600
    live_at = now + 86400
    for a in range(agents):
        agent = f"agent-{a:05d}"
        names = [f"key-{k:07d}" for k in range(per_agent)]
        by_hash = sorted(range(per_agent), key=lambda k: zlib.crc32(f"{agent}/{names[k]}".encode()))
        expired = set(by_hash[: per_agent // 2])
        for k, name in enumerate(names):
            value = f'{{"step":{k},"note":"scratch value of {agent} {name}"}}'
            if k in expired:
                yield (agent, name, "ephemeral", value, expired_at, now - 7200)
            elif k % 2:
                yield (agent, name, "durable", value, None, now - 7200)
            else:
                yield (agent, name, "ephemeral", value, live_at, now - 7200)


def fill(ledger_db: Path, keys: int, agents: int) -> tuple[int, int, float]:
    now = time.time()
    conn = sqlite3.connect(ledger_db, isolation_level=None)
    conn.execute("pragma synchronous=OFF")
    conn.execute("pragma cache_size=-200000")
    source = rows(keys, agents, now)
    while True:
        chunk = [row for _, row in zip(range(FILL_CHUNK), source, strict=False)]
        if not chunk:
            break
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO memory (agent_id, key, partition, value, expires_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            chunk,
        )
        conn.execute("COMMIT")
    total = conn.execute("SELECT count(*) FROM memory").fetchone()[0]
    expired = conn.execute(
        "SELECT count(*) FROM memory WHERE expires_at <= ?", (time.time(),)
    ).fetchone()[0]
    busy, log_frames, _ = conn.execute("pragma wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0 and log_frames == 0, (busy, log_frames)
    conn.close()
    return total, expired, now


def copy_root(master: Path, target: Path) -> Path:
    shutil.copytree(master, target)
    for name in ("ledger.db", "queue.db"):
        fd = os.open(target / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return target


# -- ratio ------------------------------------------------------------------------------------


@dataclass
class BaselineRun:
    elapsed: float
    delete: float  # the DELETE statement (it spills pages to the WAL as it goes)
    commit: float  # the COMMIT: the rest of the WAL, its fsync, the auto-checkpoint
    deleted: int


def run_baseline(root: Path) -> BaselineRun:
    conn = sqlite3.connect(root / "ledger.db", timeout=10, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    assert conn.execute("pragma synchronous").fetchone()[0] == 2
    cutoff = time.time()
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    deleted = conn.execute("DELETE FROM memory WHERE expires_at <= ?", (cutoff,)).rowcount
    middle = time.perf_counter()
    conn.execute("COMMIT")
    ended = time.perf_counter()
    conn.close()
    return BaselineRun(ended - started, middle - started, ended - middle, deleted)


class Trace:
    """Statements seen on one sqlite3 connection (its trace callback), with their start times."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str]] = []

    def __call__(self, sql: str) -> None:
        self.events.append((time.perf_counter(), sql.split(None, 1)[0].upper()))

    def end(self) -> None:
        self.events.append((time.perf_counter(), "END"))

    @property
    def transactions(self) -> int:
        return sum(1 for _, kind in self.events if kind == "BEGIN")

    def spans(self, first: str, then: str) -> list[float]:
        """From each `first` statement to the next `then` statement."""
        found, start = [], None
        for at, kind in self.events:
            if kind == first and start is None:
                start = at
            elif kind == then and start is not None:
                found.append(at - start)
                start = None
        return found

    def time_in(self, kind: str) -> float:
        """Seconds from each statement of this kind to the start of the next statement."""
        pairs = zip(self.events, self.events[1:], strict=False)
        return sum(b[0] - a[0] for a, b in pairs if a[1] == kind)


@dataclass
class OursRun:
    elapsed: float
    deleted: int
    agents: int
    status: str
    trace: Trace


def run_ours(root: Path, env_file: Path) -> OursRun:
    from worker.runtime import Runtime
    from worker.settings import load_settings

    runtime = Runtime.open(load_settings(environment(root, env_file)))
    try:
        assert runtime.ledger.scalar("pragma synchronous") == 2
        trace = Trace()
        runtime.ledger.db.connection().set_trace_callback(trace)
        started = time.perf_counter()
        run = runtime.compactor().run("bench")
        elapsed = time.perf_counter() - started
        trace.end()
        runtime.ledger.db.connection().set_trace_callback(None)
        return OursRun(elapsed, run.keys_deleted, run.agents, run.status, trace)
    finally:
        runtime.close()


class LockProbe(threading.Thread):
    """Another writer: `BEGIN IMMEDIATE; COMMIT` in a loop, 1 ms apart, recording BEGIN's waits.

    mode "spin": busy timeout 0, retried every 1 ms, so a wait ends within ~1 ms of the lock's
    release: the longest wait is the longest continuous hold. Mode "busy": SQLite's own busy
    handler (timeout 10 s, as the ledger has), whose sleeps grow to 100 ms: what any other
    writer of the ledger (the consumer, a sender) waits.
    """

    def __init__(self, ledger_db: Path, mode: str) -> None:
        super().__init__(name=f"lock-probe-{mode}", daemon=True)
        self.ledger_db = ledger_db
        self.mode = mode
        self.waits: list[float] = []
        self.errors: list[str] = []
        self.halt = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        timeout = 0 if self.mode == "spin" else 10
        conn = sqlite3.connect(self.ledger_db, timeout=timeout, isolation_level=None)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        self.ready.set()
        try:
            while not self.halt.is_set():
                started = time.perf_counter()
                while True:
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                        break
                    except sqlite3.OperationalError as exc:
                        if self.mode != "spin" or "locked" not in str(exc):
                            self.errors.append(str(exc))
                        time.sleep(0.001)
                self.waits.append(time.perf_counter() - started)
                conn.execute("COMMIT")
                time.sleep(0.001)
        finally:
            conn.close()


def run_ours_probed(root: Path, env_file: Path, mode: str) -> tuple[OursRun, LockProbe]:
    probe = LockProbe(root / "ledger.db", mode)
    probe.start()
    probe.ready.wait()
    try:
        ours = run_ours(root, env_file)
    finally:
        probe.halt.set()
        probe.join()
    return ours, probe


# -- under load -------------------------------------------------------------------------------


def small_parcel(i: int) -> dict:
    return {
        "to_agent_id": f"agent-{i % 10}",
        "task_id": f"bench-compaction-{i // 100}",
        "stream": "bench",
        "type": "bench.parcel",
        "headers": {"sent_by": "bench/compaction.py"},
        "envelope": {"body": f"parcel {i:06d} sent during memory compaction", "metadata": {}},
    }


class Sender(threading.Thread):
    """One parcel every SEND_INTERVAL on a fixed schedule, through the real operation."""

    def __init__(self, settings) -> None:
        super().__init__(name="sender", daemon=True)
        self.settings = settings
        self.sent: dict[str, float] = {}
        self.queued: dict[str, float] = {}  # when send_parcels returned
        self.errors: list[str] = []
        self.not_rung = 0
        self.halt = threading.Event()
        self.ready = threading.Event()
        self.late = 0

    def run(self) -> None:
        import peewee

        from worker.ops import operations
        from worker.parcels import intake as parcel_service
        from worker.runtime import Runtime

        runtime = Runtime.open(self.settings)
        try:
            runtime.queues  # noqa: B018 - opens the queue before timing
            self.ready.set()
            started = time.time()
            i = 0
            while not self.halt.is_set():
                due = started + i * SEND_INTERVAL
                wait = due - time.time()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -SEND_INTERVAL:
                    self.late += 1
                sent_at = time.time()
                try:
                    parcel = parcel_service.validate(small_parcel(i), self.settings.max_parcel_size)
                    rung = operations.send_parcels(runtime, [parcel])
                    returned = time.time()
                except (sqlite3.OperationalError, peewee.OperationalError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    if not rung.notified:
                        self.not_rung += 1
                    self.sent[rung.ids[0]] = sent_at
                    self.queued[rung.ids[0]] = returned
                i += 1
        finally:
            runtime.queues.postmaster.storage.close()
            runtime.close()


class Watcher(threading.Thread):
    """Polls the ledger every WATCH_POLL for delivered parcels; records when each was seen."""

    def __init__(self, ledger_db: Path) -> None:
        super().__init__(name="watcher", daemon=True)
        self.ledger_db = ledger_db
        self.seen: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.ledger_db, timeout=10, isolation_level=None)
        since = 0.0
        try:
            while not self.halt.is_set():
                found = conn.execute(
                    "SELECT id, finished_at FROM parcels "
                    "WHERE state = 'delivered' AND finished_at >= ?",
                    (since,),
                ).fetchall()
                now = time.time()
                for parcel_id, finished in found:
                    if parcel_id not in self.seen:
                        self.seen[parcel_id] = now
                        # Stamps come from one consumer in order; keep a margin all the same.
                        since = max(since, finished - 5.0)
                time.sleep(WATCH_POLL)
        finally:
            conn.close()


@dataclass
class Loaded:
    compaction: OursRun
    latencies: list[float]
    seen: list[float]
    segments: dict[str, list[float]]
    sent: int
    delivered: int
    late: int
    not_rung: int
    sender_errors: list[str]
    log_locked: list[str]
    log_errors: int
    send_span: float
    compaction_span: tuple[float, float]  # wall clock
    timelines: list[tuple[float, ...]]  # sent, returned, claimed_at, finished_at, seen


def run_loaded(root: Path, env_file: Path, log: Path) -> Loaded:
    from worker.ops import operations
    from worker.parcels import intake as parcel_service
    from worker.runtime import Runtime
    from worker.settings import load_settings

    env = environment(root, env_file)
    settings = load_settings(env)
    ledger_db = root / "ledger.db"
    watch = sqlite3.connect(ledger_db, timeout=10, isolation_level=None)
    proc = None
    sender = watcher = None
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "seer"), "worker", "postmaster"],
                cwd=root.parent,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # Warm-up: one parcel delivered proves the consumer is up and polling.
        warm = Runtime.open(settings)
        try:
            parcel = parcel_service.validate(small_parcel(-1), settings.max_parcel_size)
            warm_id = operations.send_parcels(warm, [parcel]).ids[0]
        finally:
            warm.queues.postmaster.storage.close()
            warm.close()
        deadline = time.time() + 60
        state = "SELECT state FROM parcels WHERE id = ?"
        while watch.execute(state, (warm_id,)).fetchone() != ("delivered",):
            if proc.poll() is not None:
                raise RuntimeError(f"seer worker postmaster exited:\n{tail(log)}")
            if time.time() > deadline:
                raise RuntimeError(f"warm-up parcel not delivered in 60 s:\n{tail(log)}")
            time.sleep(0.01)
        time.sleep(0.5)  # let the consumer go idle again, as it would be between parcels

        sender = Sender(settings)
        watcher = Watcher(ledger_db)
        watcher.start()
        sender.start()
        sender.ready.wait()
        compaction_started = time.time()
        compaction = run_ours(root, env_file)
        compaction_ended = time.time()
        time.sleep(TAIL)
        sender.halt.set()
        sender.join()
        send_span = max(sender.sent.values()) - min(sender.sent.values())

        deadline = time.time() + DELIVERY_TIMEOUT
        while any(i not in watcher.seen for i in sender.sent):
            if proc.poll() is not None:
                raise RuntimeError(f"seer worker postmaster exited:\n{tail(log)}")
            if time.time() > deadline:
                missing = sum(1 for i in sender.sent if i not in watcher.seen)
                raise RuntimeError(f"{missing} parcels not delivered in {DELIVERY_TIMEOUT}s")
            time.sleep(0.05)
        watcher.halt.set()
        watcher.join()
        stop(proc)
        proc = None

        stamps = {
            parcel_id: (claimed, finished)
            for parcel_id, claimed, finished in watch.execute(
                "SELECT id, claimed_at, finished_at FROM parcels WHERE state = 'delivered'"
            )
        }
        latencies, seen, timelines = [], [], []
        segments: dict[str, list[float]] = {
            "send -> send_parcels returned": [],
            "returned -> claimed_at": [],
            "claimed_at -> finished_at": [],
            "finished_at -> seen": [],
        }
        for parcel_id, sent_at in sender.sent.items():
            claimed, finished = stamps[parcel_id]
            returned = sender.queued[parcel_id]
            timelines.append((sent_at, returned, claimed, finished, watcher.seen[parcel_id]))
            latencies.append(finished - sent_at)
            seen.append(watcher.seen[parcel_id] - sent_at)
            segments["send -> send_parcels returned"].append(returned - sent_at)
            segments["returned -> claimed_at"].append(claimed - returned)
            segments["claimed_at -> finished_at"].append(finished - claimed)
            segments["finished_at -> seen"].append(watcher.seen[parcel_id] - finished)
        text = log.read_text(errors="replace").splitlines()
        return Loaded(
            compaction=compaction,
            latencies=latencies,
            seen=seen,
            segments=segments,
            sent=len(sender.sent),
            delivered=sum(1 for i in sender.sent if i in stamps),
            late=sender.late,
            not_rung=sender.not_rung,
            sender_errors=sender.errors,
            log_locked=[x for x in text if "locked" in x.lower()],
            log_errors=sum(1 for x in text if "ERROR" in x or "Traceback" in x),
            send_span=send_span,
            compaction_span=(compaction_started, compaction_ended),
            timelines=timelines,
        )
    finally:
        for thread in (sender, watcher):
            if thread is not None:
                thread.halt.set()
        if proc is not None:
            stop(proc)
        watch.close()


# -- diagnosis --------------------------------------------------------------------------------

# The statement of worker/memory/compaction.py's _delete_expired, copied: not importable alone.
COMPACTOR_DELETE = (
    "DELETE FROM memory WHERE agent_id = ? AND key IN (SELECT key FROM memory "
    "WHERE agent_id = ? AND expires_at <= ? ORDER BY key LIMIT ?)"
)
PLAIN_DELETE = "DELETE FROM memory WHERE agent_id = ? AND expires_at <= ?"


def diagnose(fresh, repeat: int) -> None:
    """The deleting alone, each in ONE transaction (no commits between, no sleeps)."""
    from worker.memory.compaction import BATCH

    print(
        "diagnosis: the same deletions in one transaction each, on fresh copies "
        "(DELETE part | COMMIT part):"
    )
    for number in range(1, repeat + 1):
        for name in ("table-wide", "per agent, Compactor's statement", "per agent, plain"):
            root = fresh("diagnose")
            conn = sqlite3.connect(root / "ledger.db", timeout=10, isolation_level=None)
            for pragma in PRAGMAS:
                conn.execute(pragma)
            agents = [r[0] for r in conn.execute("SELECT DISTINCT agent_id FROM memory")]
            cutoff = time.time()
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            deleted = 0
            if name == "table-wide":
                deleted = conn.execute(
                    "DELETE FROM memory WHERE expires_at <= ?", (cutoff,)
                ).rowcount
            for agent in agents if name != "table-wide" else ():
                if name == "per agent, plain":
                    deleted += conn.execute(PLAIN_DELETE, (agent, cutoff)).rowcount
                    continue
                while True:
                    n = conn.execute(COMPACTOR_DELETE, (agent, agent, cutoff, BATCH)).rowcount
                    deleted += n
                    if n < BATCH:
                        break
            middle = time.perf_counter()
            conn.execute("COMMIT")
            ended = time.perf_counter()
            conn.close()
            print(
                f"  {number}. {name:34s} {middle - started:5.2f}s | {ended - middle:5.2f}s | "
                f"total {ended - started:5.2f}s ({deleted:,} rows)"
            )
        sys.stdout.flush()


# -- report -----------------------------------------------------------------------------------


def dist(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {ms(pct(values, 50))}, p99 {ms(pct(values, 99))}, max {ms(max(values))}"


def describe_trace(trace: Trace, indent: str) -> str:
    from worker.memory.compaction import YIELD

    sleeps = max(0, trace.transactions - 3)  # not after the run's first and last transactions
    return (
        f"{indent}{trace.transactions} write transactions; BEGIN -> COMMIT "
        f"{dist(trace.spans('BEGIN', 'COMMIT'))}\n"
        f"{indent}COMMIT -> next BEGIN (commit and its fsync, auto-checkpoint, YIELD sleep) "
        f"{dist(trace.spans('COMMIT', 'BEGIN'))}\n"
        f"{indent}time in DELETE statements {trace.time_in('DELETE'):.2f}s, in COMMIT until the "
        f"next statement {trace.time_in('COMMIT'):.2f}s (of which {sleeps} YIELD sleeps "
        f"{sleeps * YIELD:.2f}s), in agent look-ups {trace.time_in('SELECT'):.2f}s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="memory keys in all")
    parser.add_argument("--agents", type=int, default=1000, help="agents the keys belong to")
    parser.add_argument("--repeat", type=int, default=2, help="baseline/ours pairs")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="at the end, time the deletions alone in one transaction: table-wide, per agent "
        "with the Compactor's statement, per agent with a plain statement",
    )
    args = parser.parse_args(argv)
    if args.keys % args.agents or (args.keys // args.agents) % 2:
        parser.error("--keys must be an even multiple of --agents")
    print(
        f"compaction benchmark: {args.keys:,} keys over {args.agents:,} agents, half expired "
        f"(scattered), repeat={args.repeat}, python {sys.version.split()[0]}, "
        f"sqlite {sqlite3.sqlite_version}"
    )
    sys.stdout.flush()
    top = Path(tempfile.mkdtemp(prefix="seer-bench-compaction-"))
    try:
        return bench(top, args.keys, args.agents, args.repeat, args.diagnose)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def bench(top: Path, keys: int, agents: int, repeat: int, diagnosis: bool) -> int:
    env_file = top / "seer.env"
    env_file.write_text("")
    master = top / "master" / "storage"
    master.parent.mkdir()
    subprocess.run(
        [str(BIN / "seer"), "init"],
        cwd=master.parent,
        env=environment(master, env_file),
        check=True,
        capture_output=True,
    )
    started = time.perf_counter()
    total, expired, _ = fill(master / "ledger.db", keys, agents)
    size = (master / "ledger.db").stat().st_size
    print(
        f"filled in {time.perf_counter() - started:.1f}s: {total:,} keys, {expired:,} expired, "
        f"ledger.db {size / 1e6:.0f} MB (WAL checkpointed)"
    )
    assert total == keys and expired == keys // 2, (total, expired)
    copies = 0

    def fresh(label: str) -> Path:
        nonlocal copies
        copies += 1
        target = top / f"copy{copies}-{label}"
        target.mkdir()
        return copy_root(master, target / "storage")

    # 1. ratio, alternately
    ratios = []
    ours_runs = []
    for number in range(1, repeat + 1):
        base = run_baseline(fresh("baseline"))
        ours = run_ours(fresh("ours"), env_file)
        assert base.deleted == expired, base.deleted
        assert ours.status == "ok" and ours.deleted == expired, (ours.status, ours.deleted)
        ratio = ours.elapsed / base.elapsed
        ratios.append(ratio)
        ours_runs.append(ours)
        print(
            f"pair {number}: (a) one DELETE {base.elapsed:5.2f}s (DELETE {base.delete:.2f}s + "
            f"COMMIT {base.commit:.2f}s, {base.deleted:,} rows) | (b) Compactor.run "
            f"{ours.elapsed:5.2f}s ({ours.deleted:,} keys, {ours.agents} agents) | "
            f"ratio {ratio:.2f}"
        )
        print(describe_trace(ours.trace, "        (b) "))
        sys.stdout.flush()
    median = statistics.median(ratios)
    print(
        f"1. median ratio ours/baseline {median:.2f} over {repeat} pairs "
        f"(goal <= {RATIO_GOAL}: {verdict(median <= RATIO_GOAL)})"
    )

    for mode, what in (
        ("spin", "retrying every 1 ms: longest continuous hold"),
        ("busy", "SQLite's busy handler: what another writer waits"),
    ):
        probed, probe = run_ours_probed(fresh(f"probe-{mode}"), env_file, mode)
        assert probed.status == "ok" and probed.deleted == expired
        print(
            f"   lock probe ({what}), during a further run of ours ({probed.elapsed:.2f}s, "
            f"{probed.trace.transactions} transactions, not in the ratio): "
            f"{len(probe.waits):,} BEGIN IMMEDIATE, wait {dist(probe.waits)}; "
            f"over 100 ms {sum(1 for w in probe.waits if w > 0.1)}; errors {len(probe.errors)}"
        )
        sys.stdout.flush()

    # 2. under load
    root = fresh("loaded")
    loaded = run_loaded(root, env_file, root.parent / "postmaster.log")
    c = loaded.compaction
    assert c.status == "ok" and c.deleted == expired
    locked = [e for e in loaded.sender_errors if "locked" in e.lower()]
    print(
        f"2. under load: compaction {c.elapsed:.2f}s while parcels were sent every "
        f"{SEND_INTERVAL * 1000:.0f} ms for {loaded.send_span:.1f}s "
        f"(unloaded runs above: {', '.join(f'{r.elapsed:.2f}s' for r in ours_runs)})"
    )
    print(describe_trace(c.trace, "   compaction: "))
    lat, seen = loaded.latencies, loaded.seen
    print(
        f"   parcels: {loaded.sent} sent, {loaded.delivered} delivered; sender more than one "
        f"interval behind schedule {loaded.late} times; not rung {loaded.not_rung}"
    )
    print(
        f"   latency send -> finished_at: {dist(lat)} "
        f"(goal p99 < {ms(LATENCY_GOAL)}: {verdict(pct(lat, 99) < LATENCY_GOAL)})"
    )
    print(
        f"   latency send -> seen delivered (5 ms polling, commit wait included): {dist(seen)} "
        f"(same goal: {verdict(pct(seen, 99) < LATENCY_GOAL)})"
    )
    for name, values in loaded.segments.items():
        print(f"     {name:30s} {dist(values)}")
    errors = len(locked) + len(loaded.log_locked)
    print(
        f"   'database is locked': sender {len(locked)} (other sender errors "
        f"{len(loaded.sender_errors) - len(locked)}), consumer log {len(loaded.log_locked)} "
        f"lines (goal 0: {verdict(errors == 0)}); consumer log ERROR/Traceback lines "
        f"{loaded.log_errors}"
    )
    start, end = loaded.compaction_span
    print(
        f"   slowest parcels, seconds after the compaction started (it ended at "
        f"+{end - start:.2f}): sent, send_parcels returned, claimed_at, finished_at, seen"
    )
    for times in sorted(loaded.timelines, key=lambda t: t[-1] - t[0])[-3:]:
        print(
            "     "
            + ", ".join(f"{t - start:+.3f}" for t in times)
            + f"  (latency {ms(times[-1] - times[0])})"
        )
    for line in (loaded.sender_errors + loaded.log_locked)[:5]:
        print(f"     {line}")
    sys.stdout.flush()
    if diagnosis:
        diagnose(fresh, repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
