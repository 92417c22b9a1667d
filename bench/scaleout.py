"""Scale-out on PostgreSQL: plain Huey and the Postmaster, each drained by 1 and by 2 consumers.

    .venv/bin/python bench/scaleout.py [--count 5000] [--repeat 3] [--no-sqlite]
        [--server postgresql://postgres@127.0.0.1:5432] [--code HEAD]

The benchmark of issue 12. In one invocation, on one PostgreSQL server, each run does:

(s) bench/parcels.py's SQLite figures, measured by its own functions (`run_baseline`,
    `run_ours`, synchronous FULL): a plain `SqliteHuey` no-op drain and the Postmaster, one
    consumer each, so that the PostgreSQL figures stand beside the embedded default's;
(a) raw Huey: N no-op tasks enqueued on a plain `huey.PostgresHuey(name, dsn=...)`
    (results=False, one transaction + NOTIFY per task through the ordinary task call), drained
    by C real `huey_consumer bench_noop.huey -w 1 -k thread -d 0.1 -m 1` processes (the flags of
    bench/parcels.py's baseline), for C = 1 and C = 2;
(b) Seer: a fresh storage root whose ledger and queue are on the server (SEER_DATABASE_URL,
    QUEUE_CONNECTION=database), `seer init`, N parcels made, validated, queued and rung as
    bench/parcels.py does (200-byte body, one distinct 1 KB attachment, redaction on; one doorbell
    per POSTMASTER_BATCH_SIZE parcels), delivered by C real `seer worker postmaster` processes
    with SEER_HOST_ID=bench-1 .. bench-C, so that they are two hosts to the ledger.

Per run the order is (s), (a) with 1, (b) with 1, (a) with 2, (b) with 2. All C consumers of
a measurement are started together. Timing, as in bench/parcels.py, is from the bench process
polling: the first dequeue is the first poll where the queue holds fewer tasks than its peak (or,
for (b), a parcel is counted in flight or delivered, whichever is seen first); the end is "queue
empty" for (a) and "the ledger's parcels_delivered counter reached N" for (b). Rates are
N / (end - first dequeue). The polls run every ~5 ms (bench/parcels.py: ~2 ms, on a file): each
one is a round trip and a count on the server, which shares the 2 cores with the consumers.

(a) is checked after the consumers have stopped: their logs must show N tasks executed in all
(Huey logs "... executed in" once per task), with the split between consumers and the log's last
execution as cross-checks; "queue empty" could otherwise hide tasks taken and never run.
(b) is checked in the ledger as bench/parcels.py does (messages, deliveries, blobs, counters);
its polls also note which hosts hold parcels in flight, to show that both consumers worked (Seer
quiets Huey's per-task log lines, so its logs cannot tell).

Each measurement prints the CPU its consumers and their server backends used over the window,
and how busy the whole machine was: other sessions share the 2 cores, and a rate, or a scaling
from 1 to 2 consumers, means little without that.

Databases: one throwaway database `seer_bench_<pid>` for (a) (a queue name per measurement) and
one per (b) measurement, `seer_bench_<pid>_r<run>c<consumers>`; all are dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
from _common import snapshot_code, tail  # bench/ is sys.path[0] when a bench runs
from psycopg import sql

BIN = Path(sys.executable).parent
POLL = 0.005
PHASE_TIMEOUT = 150.0
STOP_TIMEOUT = 20.0
CONSUMER_COUNTS = (1, 2)
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"

TASK_MODULE = '''"""No-op Huey task for the scale-out benchmark (written by bench/scaleout.py)."""

from huey import PostgresHuey

huey = PostgresHuey({name!r}, dsn={dsn!r}, results=False)


@huey.task(name="noop")
def noop(parcel_id):
    pass
'''

# Huey's consumer log line, default format: "[2026-12-02 02:40:00,123] INFO:huey:Worker-1:…".
LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] (\w+):([^:]*):[^:]*:(.*)$")


# -- the server ------------------------------------------------------------------------------


def connect(url: str) -> psycopg.Connection[Any]:
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


class Meter:
    """CPU over the measured window (first dequeue to the end): the consumers', their server
    backends' (found by the consumers' client ports in pg_stat_activity) and the machine's, so
    that a rate can be told apart from what the other processes on the 2 cores left it."""

    def __init__(self, server: str, procs: list[subprocess.Popen[bytes]]) -> None:
        self.server = server
        self.server_port = urlsplit(server).port or 5432
        self.procs = procs
        self.marks: list[tuple[float, dict[int, float], dict[int, float], Any]] = []

    def mark(self) -> None:
        """Takes a snapshot; the first call starts the window, the second ends it."""
        consumers: dict[int, float] = {}
        ports: set[int] = set()
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                ps = psutil.Process(proc.pid)
                times = ps.cpu_times()
                consumers[proc.pid] = times.user + times.system
                ports.update(
                    c.laddr.port
                    for c in ps.net_connections("tcp")
                    if c.raddr and c.raddr.port == self.server_port
                )
        backends: dict[int, float] = {}
        with connect(database_url(self.server, "postgres")) as conn:
            rows = conn.execute(
                "SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL"
            ).fetchall()
        for pid, port in rows:
            if port in ports:
                with contextlib.suppress(psutil.Error):
                    times = psutil.Process(pid).cpu_times()
                    backends[pid] = times.user + times.system
        self.marks.append((time.time(), consumers, backends, psutil.cpu_times()))

    def report(self) -> str:
        if len(self.marks) < 2:
            return "cpu: not measured"
        (t0, c0, b0, m0), (t1, c1, b1, m1) = self.marks[0], self.marks[-1]
        wall = t1 - t0

        def used(before: dict[int, float], after: dict[int, float]) -> float:
            return sum(v - before.get(pid, 0.0) for pid, v in after.items())

        consumers, backends = used(c0, c1), used(b0, b1)
        total = sum(m1) - sum(m0)
        idle = (m1.idle + m1.iowait) - (m0.idle + m0.iowait)
        cores = os.cpu_count() or 1
        busy = cores * (1 - idle / total) if total > 0 else 0.0
        return (
            f"cpu over the window: consumers {consumers:.2f}s, their server backends "
            f"{backends:.2f}s ({(consumers + backends) / wall:.2f} cores); machine "
            f"{busy:.2f} of {cores} cores busy"
        )


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

    @property
    def busy(self) -> float:
        return self.drained - self.first


def run_huey(tmp: Path, server: str, dsn: str, queue: str, n: int, count: int) -> HueyRun:
    tmp.mkdir(parents=True)
    path = tmp / "bench_noop.py"
    path.write_text(TASK_MODULE.format(name=queue, dsn=dsn))
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

        with consumers([(command, env, log) for log in logs], tmp) as (t_start, procs):
            meter = Meter(server, procs)

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
        huey.storage.close()
    executed = sum(r.executed for r in read)
    errors = [e for r in read for e in r.errors]
    if executed != n or errors:
        raise RuntimeError(
            f"(a) {count} consumers: {executed} of {n} tasks executed, errors: {errors[:3]}"
        )
    assert first is not None
    return HueyRun(count, send, first - t_start, drained - t_start, read, t_start, meter.report())


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

    @property
    def busy(self) -> float:
        return self.last - self.first


def run_seer(tmp: Path, server: str, url: str, n: int, count: int) -> SeerRun:
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
        SEER_DATABASE_URL=url,
        QUEUE_CONNECTION="database",
        # The sending process is a host of its own, as a web server queueing parcels would be.
        SEER_HOST_ID="bench-0",
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
        hosts = [dict(env, SEER_HOST_ID=f"bench-{i}") for i in range(1, count + 1)]
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
            meter = Meter(server, procs)

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
            cpu=meter.report(),
        )
    finally:
        runtime.queues.postmaster.storage.close()
        runtime.close()


class SeerUnavailable(RuntimeError):
    """Seer cannot be set up on PostgreSQL with this code (`seer init` refuses)."""


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


def print_huey(run: HueyRun, n: int) -> float:
    rate = n / run.busy
    last = max((x.last_done for x in run.logs if x.last_done), default=None)
    print(
        f"  (a) huey no-op,    {run.consumers} consumer{'s' if run.consumers > 1 else ' '}: "
        f"enqueue {run.send:6.2f}s | start -> first dequeue {run.first:5.2f}s | "
        f"first dequeue -> drained {run.busy:6.2f}s | {rate:7.1f} tasks/s"
    )
    print(
        f"      tasks executed per consumer (log; s after start): "
        f"{split(run.logs, run.t_start)}; last executed "
        f"{since(None if last is None else last - run.t_start)}, queue empty seen {run.drained:.2f}"
    )
    print(f"      {run.cpu}")
    return rate


def print_seer(run: SeerRun, n: int) -> float:
    rate = n / run.busy
    print(
        f"  (b) postmaster,    {run.consumers} consumer{'s' if run.consumers > 1 else ' '}: "
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
    return rate


@dataclass
class Figures:
    sqlite: list[tuple[float, float]] = field(default_factory=list)  # (a, b) per run
    huey: dict[int, list[float]] = field(default_factory=dict)  # consumers -> rates
    seer: dict[int, list[float]] = field(default_factory=dict)
    seer_missing: str | None = None  # why (b) could not run


def one_run(
    top: Path, number: int, n: int, dbs: Databases, a_url: str, figures: Figures, sqlite: bool
) -> None:
    tmp = top / f"run{number}"
    print(f"run {number}:")
    if sqlite:
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
        run = run_huey(
            tmp / f"huey-{count}", dbs.server, a_url, f"bench-r{number}-c{count}", n, count
        )
        figures.huey.setdefault(count, []).append(print_huey(run, n))
        sys.stdout.flush()
        if figures.seer_missing:
            continue
        url = dbs.create(f"seer_bench_{os.getpid()}_r{number}c{count}")
        try:
            seer_run = run_seer(tmp / f"seer-{count}", dbs.server, url, n, count)
        except SeerUnavailable as exc:
            figures.seer_missing = str(exc)
            print(f"  (b) postmaster: NOT RUN: {exc}")
            continue
        figures.seer.setdefault(count, []).append(print_seer(seer_run, n))
        sys.stdout.flush()


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def summary(figures: Figures, runs: int) -> None:
    med = statistics.median
    one, two = CONSUMER_COUNTS
    print(f"summary, medians over {runs} runs (rates from the first dequeue to the end):")
    print(f"  {'':24}{'1 consumer':>14}{'2 consumers':>14}{'scaling 1 -> 2':>17}")

    def row(label: str, rates: dict[int, list[float]], unit: str) -> None:
        scaling = [b / a for a, b in zip(rates[one], rates[two], strict=True)]
        print(
            f"  {label:24}{med(rates[one]):>9.1f} {unit}{med(rates[two]):>9.1f} {unit}"
            f"{med(scaling):>14.2f} x   (runs: {', '.join(f'{s:.2f}' for s in scaling)})"
        )

    row("(a) huey no-op", figures.huey, "/s  ")
    if figures.seer_missing or len(figures.seer.get(two, [])) != runs:
        print(f"  (b) postmaster            not measured: {figures.seer_missing}")
    else:
        row("(b) postmaster", figures.seer, "/s  ")
        ratios = {
            c: [b / a for a, b in zip(figures.huey[c], figures.seer[c], strict=True)]
            for c in CONSUMER_COUNTS
        }
        met = all(med(ratios[c]) >= 1.0 for c in CONSUMER_COUNTS)
        print(
            f"  {'b/a (median of runs)':24}{med(ratios[one]):>14.2f}{med(ratios[two]):>14.2f}"
            f"   goal >= 1.0 for both: {'met' if met else 'NOT met'}"
        )
        for c in CONSUMER_COUNTS:
            print(f"      b/a with {c}: runs {', '.join(f'{r:.2f}' for r in ratios[c])}")
    if figures.sqlite:
        a_rates = [a for a, _ in figures.sqlite]
        b_rates = [b for _, b in figures.sqlite]
        ratios_s = [b / a for a, b in figures.sqlite]
        print(
            f"  sqlite, 1 consumer: (a) {med(a_rates):.1f} tasks/s, (b) {med(b_rates):.1f} "
            f"parcels/s, b/a {med(ratios_s):.2f} (runs: "
            f"{', '.join(f'{r:.2f}' for r in ratios_s)}; bench/parcels.py's goal >= 0.6)"
        )


def versions() -> str:
    from importlib.metadata import version

    return f"python {sys.version.split()[0]}, huey {version('huey')}, psycopg {version('psycopg')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="parcels / tasks per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs (the disk is noisy)")
    parser.add_argument(
        "--server", default=DEFAULT_SERVER, help="PostgreSQL server URL, without a database"
    )
    parser.add_argument(
        "--no-sqlite", action="store_true", help="leave out bench/parcels.py's SQLite figures"
    )
    parser.add_argument(
        "--code",
        default="HEAD",
        help="commit of worker/ and seer_console/ to measure (default HEAD), or 'worktree'",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(
        f"scale-out benchmark: N={args.count}, repeat={args.repeat}, consumers "
        f"{' and '.join(map(str, CONSUMER_COUNTS))}, {versions()}, {os.cpu_count()} cpus, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"server: {describe_server(args.server)}")
    # As bench/parcels.py: run directories are removed only at the end (journal-less ext4
    # slows file creation after mass deletions), and the code measured is one fixed commit.
    top = Path(tempfile.mkdtemp(prefix="seer-bench-scaleout-"))
    print(f"code: {snapshot_code(top / 'code', args.code)}")
    dbs = Databases(args.server)
    figures = Figures()
    try:
        a_url = dbs.create(f"seer_bench_{os.getpid()}")
        for number in range(1, args.repeat + 1):
            one_run(top, number, args.count, dbs, a_url, figures, not args.no_sqlite)
    finally:
        dbs.drop_all()
        shutil.rmtree(top, ignore_errors=True)
    summary(figures, args.repeat)
    print(f"total {time.monotonic() - started:.0f} s, load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
