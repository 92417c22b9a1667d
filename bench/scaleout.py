"""Scale-out: plain Huey and the Postmaster, each drained by 1 and by 2 consumers, with the
queue on PostgreSQL (issue 12) and on Redis (issue 13).

    .venv/bin/python bench/scaleout.py [--queue all|postgresql|redis] [--count 5000]
        [--repeat 3] [--no-sqlite] [--server postgresql://postgres@127.0.0.1:5432]
        [--redis redis://127.0.0.1:6379/15] [--code HEAD] [--profile DIR] [--object-store]

`--queue all` (the default, what `make bench` runs) measures both sections in one invocation,
the PostgreSQL section first in every run; `--queue postgresql` is issue 12's benchmark as it
was, `--queue redis` issue 13's alone.

PostgreSQL section (issue 12), on one PostgreSQL server; each run does:

(s) bench/parcels.py's SQLite figures, measured by its own functions (`run_baseline`,
    `run_ours`, synchronous FULL): a plain `SqliteHuey` no-op drain and the Postmaster, one
    consumer each, so that the PostgreSQL figures stand beside the embedded default's
    (`--no-sqlite` leaves them out);
(a) raw Huey: N no-op tasks enqueued on a plain `huey.PostgresHuey(name, dsn=...)`
    (results=False, one transaction + NOTIFY per task through the ordinary task call), drained
    by C real `huey_consumer bench_noop.huey -w 1 -k thread -d 0.1 -m 1` processes (the flags of
    bench/parcels.py's baseline), for C = 1 and C = 2;
(b) Seer: a fresh storage root whose ledger and queue are on the server (SEER_DATABASE_URL,
    QUEUE_CONNECTION=database), `seer init`, N parcels made, validated, queued and rung as
    bench/parcels.py does (200-byte body, one distinct 1 KB attachment, redaction on; one doorbell
    per POSTMASTER_BATCH_SIZE parcels), delivered by C real `seer worker postmaster` processes
    with SEER_HOST_ID=bench-1 .. bench-C, so that they are two hosts to the ledger.
Per run the order is (s), (a) with 1, (b) with 1, (a) with 2, (b) with 2.

`--object-store` (issue 16) adds to the PostgreSQL section a (b) whose CAS is on a private
Ceph RGW the bench starts (tests/rgw_server.py), a bucket per measurement, every blob an object
(ORCHESTRATION_CAS_SMALL_BLOB_SIZE=0: with the default threshold the 1 KB attachments and the
manifests would be rows of the ledger, and RGW would see none): the drain of a deployment
whose hosts share no disk, against the same (a).

Redis section (issue 13), on one Redis database of the bench's own (`--redis`, default number
15: the test suite takes 1 to 4 of the shared server, one per xdist worker, and 0 is left to
whoever else uses it); each run does:

(a) raw Huey: N no-op tasks enqueued on a plain `huey.RedisHuey(name, url=..., results=False)`
    (one LPUSH per task through the ordinary task call; blocking BRPOP dequeues), drained by C
    `huey_consumer` processes with the same flags as above;
(b) Seer with QUEUE_CONNECTION=redis and REDIS_URL on the same database, the parcels and
    consumers as above, the ledger (i) on PostgreSQL (SEER_DATABASE_URL, a database of its own
    per measurement) and (ii) on SQLite under the storage root (SEER_SQLITE_SYNCHRONOUS=full).
Per run the order is (a) with 1, (b)(i) with 1, (b)(ii) with 1, then the same with 2. b/a is
each (b) over the (a) of the same run and consumer count.

The Redis database is emptied (FLUSHDB, never FLUSHALL) before and after every measurement,
and at the end. Every queue of the bench is named `seer_bench_…` (Seer's through
POSTMASTER_QUEUE and SEER_SCHEDULER_QUEUE), so every key of ours contains ".seer_bench_": a
database holding any other key is someone else's, and the bench stops before flushing it.

Durability is the servers' own and the same for both sides of a ratio: the bench prints the
PostgreSQL server's fsync and synchronous_commit and the Redis server's appendonly,
appendfsync and save; a Seer ledger on SQLite runs with synchronous FULL, as bench/parcels.py's.

All C consumers of a measurement are started together. Timing is the same for every (a) and
(b), from the bench process polling every ~5 ms (bench/parcels.py: ~2 ms, on a file): the first
dequeue is the first poll where the queue holds fewer tasks than its peak (or, for (b), a parcel
is counted in flight or delivered, whichever is seen first); the end is "queue empty" for (a)
and "the ledger's parcels_delivered counter reached N" for (b). Rates are
N / (end - first dequeue). Each poll is a round trip to the queue (LLEN on Redis, a count on
PostgreSQL) and, for (b), a read of the ledger's counters.

(a) is checked after the consumers have stopped: their logs must show N tasks executed in all
(Huey logs "... executed in" once per task), with the split between consumers and the log's last
execution as cross-checks; "queue empty" could otherwise hide tasks taken and never run.
(b) is checked in the ledger as bench/parcels.py does (messages, deliveries, blobs, counters);
its polls also note which hosts hold parcels in flight, to show that both consumers worked (Seer
quiets Huey's per-task log lines, so its logs cannot tell). The raw consumers do write those two
INFO lines per task, as Huey does by default; Seer's do not.

Each measurement prints the CPU its consumers, their PostgreSQL backends (found by the
consumers' client ports in pg_stat_activity) and the Redis server (INFO cpu: the whole server,
which others share) used over the window, and how busy the whole machine was: other sessions
share the 2 cores, and a rate, or a scaling from 1 to 2 consumers, means little without that.

`--profile DIR` runs every consumer under cProfile (a sitecustomize.py put first on their
PYTHONPATH profiles each thread and writes DIR/<section>-<measurement>-c<i>-<pid>-<thread>.prof
when the thread ends) and prints the top functions of each measurement's worker threads, by
each thread's CPU time (`--profile-clock cpu`, the default: what other sessions' load changes
least) or by wall time (`wall`: the waits for the servers and the disk too). cProfile slows
Python code several-fold, unevenly: read its rates as no figures, and the profiles for where
the time goes.

Databases: one throwaway database `seer_bench_<pid>` for the PostgreSQL section's (a) (a queue
name per measurement) and one per (b) measurement on PostgreSQL,
`seer_bench_<pid>_<section>r<run>c<consumers>`; all are dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import parcels  # bench/parcels.py: its SQLite measurement and its parcels
import psutil
import psycopg
import redis
from _common import snapshot_code, tail  # bench/ is sys.path[0] when a bench runs
from psycopg import sql

BIN = Path(sys.executable).parent
POLL = 0.005
PHASE_TIMEOUT = 150.0
STOP_TIMEOUT = 20.0
CONSUMER_COUNTS = (1, 2)
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
SECTIONS = ("postgresql", "redis")
# Every queue of the bench is named so: its Redis keys all contain ".seer_bench_".
QUEUE_PREFIX = "seer_bench_"
SEER_QUEUES = {
    "POSTMASTER_QUEUE": f"{QUEUE_PREFIX}postmaster",
    "SEER_SCHEDULER_QUEUE": f"{QUEUE_PREFIX}scheduler",
}

POSTGRES_TASK_MODULE = '''"""No-op Huey task of bench/scaleout.py (written by it)."""

from huey import PostgresHuey

huey = PostgresHuey({name!r}, dsn={dsn!r}, results=False)


@huey.task(name="noop")
def noop(parcel_id):
    pass
'''

REDIS_TASK_MODULE = '''"""No-op Huey task of bench/scaleout.py (written by it)."""

from huey import RedisHuey

huey = RedisHuey({name!r}, url={url!r}, results=False)


@huey.task(name="noop")
def noop(parcel_id):
    pass
'''

# Put first on a consumer's PYTHONPATH with --profile: every thread under cProfile.
PROFILE_HOOK = '''"""Profiles every thread of this process (bench/scaleout.py --profile)."""

import os

_out = os.environ.get("SEER_BENCH_PROFILE")
if _out:
    import atexit
    import cProfile
    import threading
    import time

    # cpu: each thread's own CPU time (waits cost nothing: what a shared machine's load
    # changes least); wall: time.perf_counter, waits included.
    _clock = time.thread_time if os.environ.get("SEER_BENCH_PROFILE_CLOCK") == "cpu" else None
    _run = threading.Thread.run

    def _profile():
        return cProfile.Profile(_clock) if _clock else cProfile.Profile()

    def _profiled_run(self):
        profile = _profile()
        profile.enable()
        try:
            _run(self)
        finally:
            profile.disable()
            profile.dump_stats(f"{_out}-{os.getpid()}-{self.name}.prof")

    threading.Thread.run = _profiled_run
    _main = _profile()

    def _dump_main():
        _main.disable()
        _main.dump_stats(f"{_out}-{os.getpid()}-MainThread.prof")

    _main.enable()
    atexit.register(_dump_main)
'''

# Huey's consumer log line, default format: "[2026-12-02 02:40:00,123] INFO:huey:Worker-1:…".
LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] (\w+):([^:]*):[^:]*:(.*)$")


# -- the servers -----------------------------------------------------------------------------


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection; a server full of other sessions' clients ("too many clients
    already": the test suite shares it) is waited for, up to a minute."""
    for _ in range(60):
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc):
                raise
            time.sleep(1.0)
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def database_url(server: str, name: str) -> str:
    return f"{server.rstrip('/')}/{name}"


class Databases:
    """The throwaway databases of one invocation, all dropped by `drop_all()`."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.names: list[str] = []

    def create(self, name: str) -> str:
        with connect(database_url(self.server, "postgres")) as conn:
            # A database of this name is a leftover of an earlier invocation with our pid.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.names.append(name)
        return database_url(self.server, name)

    def drop_all(self) -> None:
        with connect(database_url(self.server, "postgres")) as conn:
            for name in self.names:
                # FORCE: a consumer that did not stop in time must not keep its database.
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.names.clear()


def describe_server(server: str) -> str:
    with connect(database_url(server, "postgres")) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', "
                "'wal_sync_method')"
            ).fetchall()
        )
    shown = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
    return f"PostgreSQL {version} at {server} ({shown})"


class BenchRedis:
    """The bench's own database on a shared Redis: emptied with FLUSHDB, and only while every
    key in it is one of the bench's (named after a `seer_bench_` queue)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        self.db = int(self.client.connection_pool.connection_kwargs.get("db", 0))
        if self.db == 0:
            raise SystemExit(
                f"--redis {url}: database 0 is everybody's; name a database of the bench's own "
                "(redis://host:port/N, N from 1 to 15; the test suite uses 1 to 4)"
            )

    def flush(self) -> None:
        foreign = [
            key
            for key in self.client.scan_iter(count=1000)
            if f".{QUEUE_PREFIX}".encode() not in key
        ]
        if foreign:
            shown = ", ".join(k.decode(errors="replace") for k in foreign[:3])
            raise RuntimeError(
                f"Redis database {self.db} holds {len(foreign)} keys that are not the bench's "
                f"({shown}…): not flushed; pass --redis with a database of the bench's own"
            )
        self.client.flushdb()

    def cpu(self) -> float:
        """The server's CPU seconds so far (user + system, all its clients)."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def describe(self) -> str:
        server = self.client.info("server")
        config: dict[str, str] = {}
        for name in ("appendonly", "appendfsync", "save", "maxmemory-policy"):
            with contextlib.suppress(redis.exceptions.ResponseError):
                config |= self.client.config_get(name)
        shown = ", ".join(f"{k}={v!r}" if k == "save" else f"{k}={v}" for k, v in config.items())
        host = urlsplit(self.url)
        return (
            f"Redis {server['redis_version']} at {host.hostname}:{host.port or 6379}, "
            f"database {self.db} ({shown})"
        )

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class Servers:
    pg: str | None  # PostgreSQL server URL, without a database
    redis: BenchRedis | None


# -- consumers -------------------------------------------------------------------------------


@contextmanager
def consumers(
    commands: list[tuple[list[str], dict[str, str], Path]], cwd: Path
) -> Iterator[tuple[float, list[subprocess.Popen[bytes]]]]:
    """Starts every (command, environment, log) together; yields (start time, processes) and
    stops them all when the block ends, even when it raises."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t_start = time.time()
        for command, env, log in commands:
            with open(log, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
                    )
                )
        yield t_start, procs
    finally:
        stop_all(procs)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT (Huey's graceful stop) to all at once, so that they stop side by side; a second
    SIGINT would not be graceful, so a process that outlasts the timeout is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"  ! pid {proc.pid} did not stop on SIGINT in {STOP_TIMEOUT}s: killed")
            proc.kill()
            proc.wait()


def check_alive(procs: list[subprocess.Popen[bytes]], logs: list[Path], what: str) -> None:
    for proc, log in zip(procs, logs, strict=True):
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} (pid {proc.pid}) exited with {proc.returncode}:\n{tail(log)}"
            )


@dataclass
class Mark:
    when: float
    consumers: dict[int, float]
    backends: dict[int, float]
    redis: float
    machine: Any


class Meter:
    """CPU over the measured window (first dequeue to the end): the consumers', their
    PostgreSQL backends' (found by the consumers' client ports in pg_stat_activity), the Redis
    server's and the machine's, so that a rate can be told apart from what the other processes
    on the 2 cores left it."""

    def __init__(self, servers: Servers, procs: list[subprocess.Popen[bytes]]) -> None:
        self.servers = servers
        self.pg_port = (urlsplit(servers.pg).port or 5432) if servers.pg else None
        self.procs = procs
        self.marks: list[Mark] = []
        # Opened now, before the window: a connection made at a mark would take its time.
        self.conn = connect(database_url(servers.pg, "postgres")) if servers.pg else None

    def mark(self) -> None:
        """Takes a snapshot; the first call starts the window, the second ends it."""
        consumers: dict[int, float] = {}
        ports: set[int] = set()
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                ps = psutil.Process(proc.pid)
                times = ps.cpu_times()
                consumers[proc.pid] = times.user + times.system
                if self.pg_port:
                    ports.update(
                        c.laddr.port
                        for c in ps.net_connections("tcp")
                        if c.raddr and c.raddr.port == self.pg_port
                    )
        backends: dict[int, float] = {}
        if ports and self.conn:
            rows = self.conn.execute(
                "SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL"
            ).fetchall()
            for pid, port in rows:
                if port in ports:
                    with contextlib.suppress(psutil.Error):
                        times = psutil.Process(pid).cpu_times()
                        backends[pid] = times.user + times.system
        cpu = self.servers.redis.cpu() if self.servers.redis else 0.0
        self.marks.append(Mark(time.time(), consumers, backends, cpu, psutil.cpu_times()))

    def report(self, items: int) -> tuple[str, float | None]:
        """The window's line, and the CPU of ours (consumers, their backends, redis-server)
        per item in ms: on 2 saturated cores it, not the wait for a commit, sets the rate."""
        if self.conn:
            self.conn.close()
        if len(self.marks) < 2:
            return "cpu: not measured", None
        m0, m1 = self.marks[0], self.marks[-1]
        wall = m1.when - m0.when

        def used(before: dict[int, float], after: dict[int, float]) -> float:
            return sum(v - before.get(pid, 0.0) for pid, v in after.items())

        consumers, backends = used(m0.consumers, m1.consumers), used(m0.backends, m1.backends)
        redis_cpu = m1.redis - m0.redis
        total = sum(m1.machine) - sum(m0.machine)
        idle = (m1.machine.idle + m1.machine.iowait) - (m0.machine.idle + m0.machine.iowait)
        cores = os.cpu_count() or 1
        busy = cores * (1 - idle / total) if total > 0 else 0.0
        parts = [f"consumers {consumers:.2f}s"]
        if self.servers.pg:
            parts.append(f"their PostgreSQL backends {backends:.2f}s")
        if self.servers.redis:
            parts.append(f"redis-server {redis_cpu:.2f}s")
        ours = consumers + backends + redis_cpu
        per_item = 1000 * ours / items
        return (
            f"cpu over the window: {', '.join(parts)} ({ours / wall:.2f} cores, "
            f"{per_item:.3f} ms per item); machine {busy:.2f} of {cores} cores busy"
        ), per_item


@dataclass
class ConsumerLog:
    executed: int = 0  # "... executed in" lines: one per task run
    first_task: float | None = None  # its first "Executing", Unix time
    last_done: float | None = None  # its last "executed in", Unix time
    errors: list[str] = field(default_factory=list)


def read_consumer_log(path: Path) -> ConsumerLog:
    result = ConsumerLog()
    for line in path.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp, level, _logger, message = match.groups()
        # Local time with milliseconds, as logging's default asctime writes it.
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if message.startswith("Executing ") and result.first_task is None:
            result.first_task = when
        elif " executed in " in message:
            result.executed += 1
            result.last_done = when
        if level in ("ERROR", "CRITICAL"):
            result.errors.append(message)
    return result


def poll_until(
    step: Callable[[float], bool],
    procs: list[subprocess.Popen[bytes]],
    logs: list[Path],
    what: str,
    t_start: float,
    describe: Callable[[], str],
) -> None:
    """Calls step(now) every POLL seconds until it returns True; fails past PHASE_TIMEOUT or
    when a consumer dies."""
    deadline = t_start + PHASE_TIMEOUT
    while True:
        now = time.time()
        if step(now):
            return
        if now > deadline:
            raise RuntimeError(f"{what}: {describe()} after {PHASE_TIMEOUT}s")
        check_alive(procs, logs, what)
        time.sleep(POLL)


@dataclass(frozen=True)
class Profiling:
    """--profile: where the hook lives and where the profiles go."""

    hook: Path  # the directory holding sitecustomize.py
    out: Path
    clock: str  # "cpu" or "wall"

    @classmethod
    def make(cls, top: Path, out: Path, clock: str) -> Profiling:
        hook = top / "profile-hook"
        hook.mkdir(parents=True)
        (hook / "sitecustomize.py").write_text(PROFILE_HOOK)
        out.mkdir(parents=True, exist_ok=True)
        return cls(hook, out, clock)

    def environment(self, env: dict[str, str], label: str) -> dict[str, str]:
        path = env.get("PYTHONPATH", "")
        return dict(
            env,
            PYTHONPATH=f"{self.hook}{os.pathsep}{path}" if path else str(self.hook),
            SEER_BENCH_PROFILE=str(self.out / label),
            SEER_BENCH_PROFILE_CLOCK=self.clock,
        )

    def summary(self, label: str, top: int = 25) -> None:
        """The worker threads' profiles of one measurement (all its consumers), merged."""
        files = sorted(self.out.glob(f"{label}-c*-Worker*.prof"))
        if not files:
            print(f"      profile: no worker thread profile under {self.out}/{label}-*")
            return
        stats = pstats.Stats(*map(str, files), stream=sys.stdout)
        print(
            f"      profile of the worker threads, {self.clock} clock ({len(files)} files "
            f"{self.out}/{label}-*):"
        )
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)


def _consumer_env(
    env: dict[str, str], profiling: Profiling | None, label: str, index: int
) -> dict[str, str]:
    return env if profiling is None else profiling.environment(env, f"{label}-c{index}")


# -- (a) raw Huey ----------------------------------------------------------------------------


@dataclass
class HueyRun:
    consumers: int
    send: float  # enqueueing N tasks
    first: float  # first dequeue seen, seconds after the consumers were started
    drained: float  # queue empty, seconds after the consumers were started
    logs: list[ConsumerLog]
    t_start: float
    cpu: str
    cpu_ms: float | None  # CPU of ours per task, ms

    @property
    def busy(self) -> float:
        return self.drained - self.first


def run_huey(
    tmp: Path,
    servers: Servers,
    module_text: str,
    n: int,
    count: int,
    profiling: Profiling | None,
    label: str,
) -> HueyRun:
    tmp.mkdir(parents=True)
    path = tmp / "bench_noop.py"
    path.write_text(module_text)
    module = parcels.load_task_module(path)
    huey = module.huey
    ids = [str(uuid.uuid4()) for _ in range(n)]
    try:
        t_send = time.time()
        for parcel_id in ids:
            module.noop(parcel_id)
        send = time.time() - t_send
        assert huey.pending_count() == n, huey.pending_count()

        env = dict(os.environ, PYTHONPATH=str(tmp))
        command = [str(BIN / "huey_consumer"), "bench_noop.huey"]
        command += ["-w", "1", "-k", "thread", "-d", "0.1", "-m", "1"]
        logs = [tmp / f"huey_consumer-{i}.log" for i in range(1, count + 1)]
        first: float | None = None
        drained = 0.0
        peak = n
        pending = n
        commands = [
            (command, _consumer_env(env, profiling, label, i), log) for i, log in enumerate(logs, 1)
        ]
        with consumers(commands, tmp) as (t_start, procs):
            meter = Meter(servers, procs)

            def step(now: float) -> bool:
                nonlocal first, drained, peak, pending
                pending = huey.pending_count()
                peak = max(peak, pending)
                if first is None and pending < peak:
                    first = now
                    meter.mark()
                if pending == 0:
                    drained = now
                    meter.mark()
                    return True
                return False

            poll_until(step, procs, logs, "huey_consumer", t_start, lambda: f"{pending} left")
        # Stopped (gracefully): every task a consumer took has run or its log says otherwise.
        read = [read_consumer_log(log) for log in logs]
    finally:
        storage = huey.storage
        if hasattr(storage, "pool"):  # Redis: the connection pool
            storage.pool.disconnect()
        else:
            storage.close()
    executed = sum(r.executed for r in read)
    errors = [e for r in read for e in r.errors]
    if executed != n or errors:
        raise RuntimeError(
            f"(a) {count} consumers: {executed} of {n} tasks executed, errors: {errors[:3]}"
        )
    assert first is not None
    return HueyRun(count, send, first - t_start, drained - t_start, read, t_start, *meter.report(n))


# -- (b) Seer --------------------------------------------------------------------------------


@dataclass
class SeerRun:
    consumers: int
    send: float  # validate + queue_parcels + ring
    first: float  # earliest first-dequeue signal, seconds after the consumers were started
    first_pending: float | None
    first_flight: float | None
    tasks: int  # doorbells rung (one per batch)
    startup_rings: int  # consumers whose start-up hook rang a doorbell of its own
    last: float  # parcels_delivered reached N
    drained: float  # queue empty after the last delivery
    peak: int
    claimed_min: float  # min(claimed_at) - consumers' start, cross-check
    finished_max: float  # max(finished_at) - consumers' start, cross-check (commit time)
    holding: dict[str, int]  # host -> polls that saw it hold parcels in flight
    checks: dict[str, int]
    cpu: str
    cpu_ms: float | None  # CPU of ours per parcel, ms

    @property
    def busy(self) -> float:
        return self.last - self.first


def run_seer(
    tmp: Path,
    servers: Servers,
    settings_env: dict[str, str],
    n: int,
    count: int,
    profiling: Profiling | None,
    label: str,
) -> SeerRun:
    """`settings_env`: where the ledger and the queue are (SEER_DATABASE_URL, QUEUE_CONNECTION,
    REDIS_URL, ...); the storage root is made under `tmp`."""
    from worker.parcels import intake as parcel_service
    from worker.runtime import Runtime
    from worker.settings import load_settings

    tmp.mkdir(parents=True)
    env_file = tmp / "seer.env"
    env_file.write_text("")
    env = dict(
        os.environ,
        SEER_STORAGE_PATH=str(tmp / "storage"),
        SEER_ENV_FILE=str(env_file),
        # The sending process is a host of its own, as a web server queueing parcels would be.
        SEER_HOST_ID="bench-0",
        **settings_env,
    )
    done = subprocess.run(
        [str(BIN / "seer"), "init"], cwd=tmp, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SeerUnavailable(
            f"`seer init` exited with {done.returncode}: {(done.stderr or done.stdout).strip()}"
        )
    settings = load_settings(env)
    assert settings.redact_secrets
    runtime = Runtime.open(settings)
    raw = parcels.make_parcels(n)
    logs = [tmp / f"seer_worker-{i}.log" for i in range(1, count + 1)]
    try:
        ledger = runtime.ledger
        t_send = time.time()
        batch = [parcel_service.validate(p, settings.max_parcel_size) for p in raw]
        ids = parcel_service.queue_parcels(ledger, batch)
        runtime.ring(ids)
        send = time.time() - t_send
        tasks = runtime.queues.pending_count()
        expected_tasks = -(-n // settings.batch_size)
        assert tasks == expected_tasks, (tasks, expected_tasks)

        command = [str(BIN / "seer"), "worker", "postmaster"]
        hosts = [
            _consumer_env(dict(env, SEER_HOST_ID=f"bench-{i}"), profiling, label, i)
            for i in range(1, count + 1)
        ]
        first = first_pending = first_flight = last = None
        drained = 0.0
        peak = tasks
        pending = tasks
        delivered = 0
        # Owner tokens begin with the host ("bench-1/pid/…"): which hosts hold parcels, per poll.
        holding: Counter[str] = Counter()

        with consumers(
            [(command, host, log) for host, log in zip(hosts, logs, strict=True)], tmp
        ) as (t_start, procs):
            meter = Meter(servers, procs)

            def step(now: float) -> bool:
                nonlocal first, first_pending, first_flight, last, drained, peak, pending
                nonlocal delivered
                pending = runtime.queues.pending_count()
                counts = ledger.counters()
                peak = max(peak, pending)
                delivered = counts.get("parcels_delivered", 0)
                if first_pending is None and pending < peak:
                    first_pending = now
                in_flight = counts.get("parcels_in_flight", 0)
                if first_flight is None and (in_flight or delivered):
                    first_flight = now
                if in_flight:
                    owners = ledger.rows(
                        "SELECT DISTINCT owner FROM parcels WHERE state = 'in_flight'"
                    )
                    holding.update({(r["owner"] or "?").split("/")[0] for r in owners})
                if first is None and (first_pending or first_flight):
                    first = now
                    meter.mark()
                if last is None and delivered >= n:
                    last = now
                    meter.mark()
                if last is not None and pending == 0:
                    drained = now
                    return True
                return False

            poll_until(
                step,
                procs,
                logs,
                "seer worker postmaster",
                t_start,
                lambda: f"{delivered} delivered, {pending} tasks left",
            )
        assert first is not None and last is not None
        cpu, cpu_ms = meter.report(n)
        # seer.tasks logs "postmaster consumer started: ..., delivering" when its hook rang.
        startup_rings = 0
        for log in logs:
            hook = [x for x in log.read_text(errors="replace").splitlines() if "seer.tasks:" in x]
            startup_rings += bool(hook) and hook[0].rstrip().endswith(", delivering")
        times = ledger.row(
            "SELECT min(claimed_at) AS claimed, max(finished_at) AS finished FROM parcels"
        )
        assert times is not None
        counters = ledger.counters()
        checks = {
            "messages": ledger.scalar("SELECT count(*) FROM messages"),
            "parcels delivered": ledger.scalar(
                "SELECT count(*) FROM parcels WHERE state = 'delivered'"
            ),
            "parcels_delivered counter": counters.get("parcels_delivered", 0),
            "blobs rows": ledger.scalar("SELECT count(*) FROM blobs"),
            "cas_blobs counter": counters.get("cas_blobs", 0),
            "blob files": sum(1 for _ in runtime.store.iter_blobs()),
            "artifacts rows": ledger.scalar("SELECT count(*) FROM artifacts"),
        }
        expected = {
            "messages": n,
            "parcels delivered": n,
            "parcels_delivered counter": n,
            "blobs rows": 2 * n,
            "cas_blobs counter": 2 * n,
            "blob files": 2 * n,
            "artifacts rows": 2 * n,
        }
        if checks != expected:
            raise RuntimeError(f"(b) {count} consumers: wrong result {checks}, expected {expected}")
        return SeerRun(
            consumers=count,
            send=send,
            first=first - t_start,
            first_pending=None if first_pending is None else first_pending - t_start,
            first_flight=None if first_flight is None else first_flight - t_start,
            tasks=tasks,
            startup_rings=startup_rings,
            last=last - t_start,
            drained=drained - t_start,
            peak=peak,
            claimed_min=float(times["claimed"]) - t_start,
            finished_max=float(times["finished"]) - t_start,
            holding=dict(sorted(holding.items())),
            checks=checks,
            cpu=cpu,
            cpu_ms=cpu_ms,
        )
    finally:
        runtime.queues.postmaster.storage.close()
        runtime.close()


class SeerUnavailable(RuntimeError):
    """Seer cannot be set up on this pair of backends with this code (`seer init` refuses)."""


# -- one run, the summary --------------------------------------------------------------------


def since(t: float | None) -> str:
    return "n/a" if t is None else f"{t:.2f}"


def split(logs: list[ConsumerLog], t_start: float) -> str:
    """Per consumer: tasks executed and its first task's time after the start."""
    parts = []
    for i, log in enumerate(logs, 1):
        first = None if log.first_task is None else log.first_task - t_start
        parts.append(f"#{i} {log.executed} (first at {since(first)})")
    return ", ".join(parts)


def plural(count: int) -> str:
    return f"{count} consumer{'s' if count > 1 else ' '}"


def print_huey(run: HueyRun, n: int, what: str) -> tuple[float, float | None]:
    rate = n / run.busy
    last = max((x.last_done for x in run.logs if x.last_done), default=None)
    print(
        f"  (a) {what:<19} {plural(run.consumers)}: "
        f"enqueue {run.send:6.2f}s | start -> first dequeue {run.first:5.2f}s | "
        f"first dequeue -> drained {run.busy:6.2f}s | {rate:7.1f} tasks/s"
    )
    print(
        f"      tasks executed per consumer (log; s after start): "
        f"{split(run.logs, run.t_start)}; last executed "
        f"{since(None if last is None else last - run.t_start)}, queue empty seen {run.drained:.2f}"
    )
    print(f"      {run.cpu}")
    return rate, run.cpu_ms


def print_seer(run: SeerRun, n: int, what: str) -> tuple[float, float | None]:
    rate = n / run.busy
    print(
        f"  (b) {what:<19} {plural(run.consumers)}: "
        f"send    {run.send:6.2f}s | start -> first dequeue {run.first:5.2f}s | "
        f"first dequeue -> last delivery {run.busy:6.2f}s | {rate:7.1f} parcels/s"
    )
    print(
        f"      cross-checks (s after start): min(claimed_at) {run.claimed_min:.2f}, "
        f"pending<peak seen {since(run.first_pending)}, in flight seen "
        f"{since(run.first_flight)}; max(finished_at) {run.finished_max:.2f} (commit time), "
        f"last delivery seen {run.last:.2f}; tasks rung {run.tasks}"
        + (f" + {run.startup_rings} by start-up hooks" if run.startup_rings else "")
        + f", peak pending seen {run.peak}"
    )
    print(
        "      polls that saw a host hold parcels in flight: "
        + (", ".join(f"{h} {k}" for h, k in run.holding.items()) or "none")
        + f"; queue empty {run.drained - run.last:5.2f}s after the last delivery; verified: "
        + ", ".join(f"{k} {v}" for k, v in run.checks.items())
    )
    print(f"      {run.cpu}")
    return rate, run.cpu_ms


@dataclass
class Figures:
    sqlite: list[tuple[float, float]] = field(default_factory=list)  # (a, b) per run
    # section -> consumers -> rates per run
    huey: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    # (section, ledger) -> consumers -> rates per run
    seer: dict[tuple[str, str], dict[int, list[float]]] = field(default_factory=dict)
    # the same keys -> CPU of ours per item (ms) per run
    huey_cpu: dict[str, dict[int, list[float | None]]] = field(default_factory=dict)
    seer_cpu: dict[tuple[str, str], dict[int, list[float | None]]] = field(default_factory=dict)
    # (section, ledger) -> why (b) could not run
    missing: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerChoice:
    """One (b) of a section: where its ledger is."""

    name: str  # "postgresql", "sqlite", or "postgresql+rgw" (the CAS on the bench's Ceph RGW)
    shown: str  # how the output names it


@dataclass
class Context:
    top: Path
    n: int
    servers: Servers
    dbs: Databases | None
    a_url: str | None  # the PostgreSQL section's (a) database
    figures: Figures
    sqlite: bool  # the PostgreSQL section's (s)
    profiling: Profiling | None
    rgw_env: dict[str, str] | None = None  # --object-store: the private RGW's AWS_* settings


SECTION_LEDGERS = {
    "postgresql": (LedgerChoice("postgresql", "postmaster (pg)"),),
    "redis": (
        LedgerChoice("postgresql", "postmaster redis+pg"),
        LedgerChoice("sqlite", "postmaster redis+sq"),
    ),
}
SECTION_HUEY = {"postgresql": "huey pg no-op", "redis": "huey redis no-op"}


def one_run(ctx: Context, section: str, number: int) -> None:
    tmp = ctx.top / f"run{number}-{section}"
    n, figures = ctx.n, ctx.figures
    print(f"run {number}, queue on {'PostgreSQL' if section == 'postgresql' else 'Redis'}:")
    if section == "postgresql" and ctx.sqlite:
        a = parcels.run_baseline(_fresh(tmp / "sqlite-a"), n, "full")
        b, checks = parcels.run_ours(_fresh(tmp / "sqlite-b"), n, "full")
        rate_a, rate_b = n / a.busy, n / b.busy
        figures.sqlite.append((rate_a, rate_b))
        print(
            f"  (s) sqlite, bench/parcels.py's measurement, 1 consumer: huey no-op "
            f"{rate_a:7.1f} tasks/s, postmaster {rate_b:7.1f} parcels/s, b/a "
            f"{rate_b / rate_a:.2f} [enqueue {a.send:.2f}s, send {b.send:.2f}s; verified: "
            f"messages {checks['messages']}, blob files {checks['blob files']}]"
        )
    # Each (b) right after its (a): the other sessions' load on the machine drifts within a
    # run, and b/a is the figure judged.
    for count in CONSUMER_COUNTS:
        label = f"{section}-r{number}-a{count}"
        queue = f"{QUEUE_PREFIX}r{number}_c{count}"
        if section == "postgresql":
            assert ctx.a_url
            module = POSTGRES_TASK_MODULE.format(name=queue, dsn=ctx.a_url)
            servers = Servers(ctx.servers.pg, None)
        else:
            assert ctx.servers.redis
            module = REDIS_TASK_MODULE.format(name=queue, url=ctx.servers.redis.url)
            servers = Servers(None, ctx.servers.redis)
        with _flushed(servers):
            run = run_huey(tmp / f"huey-{count}", servers, module, n, count, ctx.profiling, label)
        rate, cpu_ms = print_huey(run, n, SECTION_HUEY[section])
        figures.huey.setdefault(section, {}).setdefault(count, []).append(rate)
        figures.huey_cpu.setdefault(section, {}).setdefault(count, []).append(cpu_ms)
        if ctx.profiling:
            ctx.profiling.summary(label)
        sys.stdout.flush()
        for ledger in SECTION_LEDGERS[section]:
            key = (section, ledger.name)
            if key in figures.missing:
                continue
            label = f"{section}-r{number}-b{count}-{ledger.name}"
            settings_env, servers = seer_environment(ctx, section, ledger, number, count)
            try:
                with _flushed(servers):
                    seer_run = run_seer(
                        tmp / f"seer-{count}-{ledger.name}",
                        servers,
                        settings_env,
                        n,
                        count,
                        ctx.profiling,
                        label,
                    )
            except SeerUnavailable as exc:
                figures.missing[key] = str(exc)
                print(f"  (b) {ledger.shown}: NOT RUN: {exc}")
                continue
            rate, cpu_ms = print_seer(seer_run, n, ledger.shown)
            figures.seer.setdefault(key, {}).setdefault(count, []).append(rate)
            figures.seer_cpu.setdefault(key, {}).setdefault(count, []).append(cpu_ms)
            if ctx.profiling:
                ctx.profiling.summary(label)
            sys.stdout.flush()


def seer_environment(
    ctx: Context, section: str, ledger: LedgerChoice, number: int, count: int
) -> tuple[dict[str, str], Servers]:
    """The settings that put one (b)'s ledger and queue where its section and ledger say,
    and the servers it uses."""
    env: dict[str, str] = {}
    pg: str | None = None
    if ledger.name.startswith("postgresql"):
        assert ctx.dbs
        objects = ledger.name == "postgresql+rgw"
        env["SEER_DATABASE_URL"] = ctx.dbs.create(
            f"seer_bench_{os.getpid()}_{section[:2]}{'o' if objects else ''}r{number}c{count}"
        )
        pg = ctx.dbs.server
        if objects:
            assert ctx.rgw_env
            # Every blob an object (the 1 KB attachment and the manifest alike): with the
            # default threshold they would be rows of the ledger, and RGW would see none.
            env |= ctx.rgw_env | {
                "ORCHESTRATION_CAS_URL": f"s3://seer-bench-{os.getpid()}-r{number}c{count}/cas",
                "ORCHESTRATION_CAS_SMALL_BLOB_SIZE": "0",
            }
    else:
        env["SEER_SQLITE_SYNCHRONOUS"] = "full"
    if section == "postgresql":
        env["QUEUE_CONNECTION"] = "database"
        return env, Servers(pg, None)
    assert ctx.servers.redis
    env |= {"QUEUE_CONNECTION": "redis", "REDIS_URL": ctx.servers.redis.url, **SEER_QUEUES}
    return env, Servers(pg, ctx.servers.redis)


@contextmanager
def _flushed(servers: Servers) -> Iterator[None]:
    """The bench's Redis database, if the measurement uses one, empty before and after it."""
    if servers.redis:
        servers.redis.flush()
    try:
        yield
    finally:
        if servers.redis:
            servers.redis.flush()


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def summary(figures: Figures, sections: list[str], runs: int) -> None:
    med = statistics.median
    one, two = CONSUMER_COUNTS
    print(f"summary, medians over {runs} runs (rates from the first dequeue to the end):")
    print(f"  {'':26}{'1 consumer':>14}{'2 consumers':>14}{'scaling 1 -> 2':>17}")

    def row(label: str, rates: dict[int, list[float]], unit: str) -> None:
        scaling = [b / a for a, b in zip(rates[one], rates[two], strict=True)]
        print(
            f"  {label:26}{med(rates[one]):>9.1f} {unit}{med(rates[two]):>9.1f} {unit}"
            f"{med(scaling):>14.2f} x   (runs: {_runs(scaling)})"
        )

    for section in sections:
        print(f"  queue on {'PostgreSQL' if section == 'postgresql' else 'Redis'}:")
        huey = figures.huey.get(section, {})
        row(f"(a) {SECTION_HUEY[section]}", huey, "/s  ")
        for ledger in SECTION_LEDGERS[section]:
            key = (section, ledger.name)
            rates = figures.seer.get(key, {})
            if key in figures.missing or len(rates.get(two, [])) != runs:
                print(f"  (b) {ledger.shown:22} not measured: {figures.missing.get(key)}")
                continue
            row(f"(b) {ledger.shown}", rates, "/s  ")
            ratios = {
                c: [b / a for a, b in zip(huey[c], rates[c], strict=True)] for c in CONSUMER_COUNTS
            }
            if ledger.name == "postgresql+rgw":
                goal = "no goal (issue 16 records it): every blob an object on RGW"
            elif section == "postgresql":
                met = all(med(ratios[c]) >= 1.0 for c in CONSUMER_COUNTS)
                goal = f"goal >= 1.0 for both (issue 12): {'met' if met else 'NOT met'}"
            elif ledger.name == "postgresql":
                met = med(ratios[two]) >= 1.0
                goal = f"goal >= 1.0 with 2 (issue 13): {'met' if met else 'NOT met'}"
            else:
                goal = "no goal"
            print(
                f"  {'    b/a (median of runs)':26}{med(ratios[one]):>14.2f}"
                f"{med(ratios[two]):>14.2f}   {goal}"
            )
            for c in CONSUMER_COUNTS:
                print(f"      b/a with {c}: runs {_runs(ratios[c])}")
    cpu_summary(figures, sections)
    if figures.sqlite:
        a_rates = [a for a, _ in figures.sqlite]
        b_rates = [b for _, b in figures.sqlite]
        ratios_s = [b / a for a, b in figures.sqlite]
        print(
            f"  sqlite, 1 consumer: (a) {med(a_rates):.1f} tasks/s, (b) {med(b_rates):.1f} "
            f"parcels/s, b/a {med(ratios_s):.2f} (runs: {_runs(ratios_s)}; bench/parcels.py's "
            "goal >= 0.6)"
        )


def cpu_summary(figures: Figures, sections: list[str]) -> None:
    """CPU of ours per item, and (a)'s over (b)'s: what b/a would be where the CPU is all
    that limits both (two saturated cores), whatever else the machine ran meanwhile."""

    def med(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    def shown(value: float | None, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    print(
        "CPU of ours per item (consumers + their PostgreSQL backends + redis-server), ms, "
        "medians; and (a)'s over (b)'s, run by run:"
    )
    print(f"  {'':26}{'1 consumer':>14}{'2 consumers':>14}")
    for section in sections:
        huey = figures.huey_cpu.get(section, {})
        label = f"(a) {SECTION_HUEY[section]}"
        one, two = (med(huey.get(c, [])) for c in CONSUMER_COUNTS)
        print(f"  {label:26}{shown(one):>14}{shown(two):>14}")
        for ledger in SECTION_LEDGERS[section]:
            seer = figures.seer_cpu.get((section, ledger.name), {})
            if not seer:
                continue
            label = f"(b) {ledger.shown}"
            one, two = (med(seer.get(c, [])) for c in CONSUMER_COUNTS)
            ratios = {
                c: [
                    None if a is None or b is None else a / b
                    for a, b in zip(huey.get(c, []), seer.get(c, []), strict=False)
                ]
                for c in CONSUMER_COUNTS
            }
            print(
                f"  {label:26}{shown(one):>14}{shown(two):>14}   cpu a/b "
                + "; ".join(
                    f"with {c}: {shown(med(r), 2)} (runs " + ", ".join(shown(x, 2) for x in r) + ")"
                    for c, r in ratios.items()
                )
            )


def versions() -> str:
    from importlib.metadata import version

    return (
        f"python {sys.version.split()[0]}, huey {version('huey')}, psycopg {version('psycopg')}, "
        f"redis-py {version('redis')}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--queue",
        choices=(*SECTIONS, "all"),
        default="all",
        help="where the queue is: postgresql (issue 12), redis (issue 13) or all (default)",
    )
    parser.add_argument("--count", type=int, default=5000, help="parcels / tasks per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs (the disk is noisy)")
    parser.add_argument(
        "--server", default=DEFAULT_SERVER, help="PostgreSQL server URL, without a database"
    )
    parser.add_argument(
        "--redis",
        default=DEFAULT_REDIS,
        help="Redis database of the bench's own, flushed before and after each measurement "
        f"(default {DEFAULT_REDIS})",
    )
    parser.add_argument(
        "--no-sqlite", action="store_true", help="leave out bench/parcels.py's SQLite figures"
    )
    parser.add_argument(
        "--object-store",
        action="store_true",
        help="add to the PostgreSQL section a (b) with the CAS on a private Ceph RGW "
        "(tests/rgw_server.py), every blob an object (issue 16)",
    )
    parser.add_argument(
        "--code",
        default="HEAD",
        help="commit of worker/ and seer_console/ to measure (default HEAD), or 'worktree'",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every consumer under cProfile and keep the profiles in DIR (slows the rates)",
    )
    parser.add_argument(
        "--profile-clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="with --profile: each thread's CPU time (default; waits cost nothing) or wall time",
    )
    args = parser.parse_args(argv)
    sections = list(SECTIONS) if args.queue == "all" else [args.queue]
    started = time.monotonic()
    print(
        f"scale-out benchmark: queue on {' and '.join(sections)}, N={args.count}, "
        f"repeat={args.repeat}, consumers {' and '.join(map(str, CONSUMER_COUNTS))}, "
        f"{versions()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}"
    )
    # Every section has a (b) with its ledger on PostgreSQL.
    print(f"server: {describe_server(args.server)}")
    bench_redis = BenchRedis(args.redis) if "redis" in sections else None
    if bench_redis:
        print(f"redis: {bench_redis.describe()}")
        print("sqlite ledger (redis section): synchronous=full, WAL")
    if args.profile:
        print("PROFILING: every consumer runs under cProfile; its rates are no figures")
    # As bench/parcels.py: run directories are removed only at the end (journal-less ext4
    # slows file creation after mass deletions), and the code measured is one fixed commit.
    top = Path(tempfile.mkdtemp(prefix="seer-bench-scaleout-"))
    print(f"code: {snapshot_code(top / 'code', args.code)}")
    dbs = Databases(args.server)
    figures = Figures()
    rgw = None
    if args.object_store:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.rgw_server import PrivateRgw

        rgw = PrivateRgw(top / "rgw").start()
        # The bench's own checks open the consumers' CAS too.
        os.environ.update(rgw.env())
        print(f"object store: private Ceph RGW at {rgw.endpoint} (one mon, one BlueStore OSD)")
        SECTION_LEDGERS["postgresql"] += (LedgerChoice("postgresql+rgw", "postmaster pg+rgw"),)
    try:
        if bench_redis:
            bench_redis.flush()
        ctx = Context(
            top=top,
            n=args.count,
            servers=Servers(args.server, bench_redis),
            dbs=dbs,
            a_url=dbs.create(f"seer_bench_{os.getpid()}") if "postgresql" in sections else None,
            figures=figures,
            sqlite=not args.no_sqlite,
            rgw_env=rgw.env() if rgw else None,
            profiling=(
                Profiling.make(top, args.profile.resolve(), args.profile_clock)
                if args.profile
                else None
            ),
        )
        for number in range(1, args.repeat + 1):
            for section in sections:
                one_run(ctx, section, number)
        summary(figures, sections, args.repeat)
        print(
            f"total {time.monotonic() - started:.0f} s, load average now "
            f"{os.getloadavg()[0]:.2f}; removing the run directories"
        )
        sys.stdout.flush()
    finally:
        if rgw is not None:
            rgw.stop()
        dbs.drop_all()
        if bench_redis:
            bench_redis.flush()
            bench_redis.close()
        # Slow here (ext4 with discard: each unlink waits for its blocks' discard).
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
