"""Parcel throughput: the Postmaster against a plain Huey consumer, per attachment size.

    .venv/bin/python bench/parcels.py [--count N] [--repeat 3] [--synchronous full|normal]
        [--attachment-size BYTES | --sizes 1024,65536,1048576] [--baseline-payload]
        [--in-process] [--profile DIR [--profile-clock wall|cpu]] [--dir DIR] [--code HEAD]

Each run, in a fresh temporary directory, for one attachment size S (default 1024 bytes):

(a) baseline: N tasks enqueued on a plain `huey.SqliteHuey` (results=False, WAL, one commit
    per task through the ordinary task call), drained by a real
    `huey_consumer bench_noop.huey -w 1 -k thread -d 0.1 -m 1` subprocess. At the default S the
    tasks are no-ops whose one argument is a parcel id, as in every earlier result (issue 15's
    figures compare to that). At any other S, or with --baseline-payload, each task also
    carries a distinct `str` of S bytes (ASCII), so Huey writes as many bytes into its SQLite
    queue at enqueue, and reads them back at dequeue, as ours has in each parcel's attachment;
(b) ours: N parcels (200-byte body, one distinct text attachment of S bytes, redaction on)
    validated, queued in the ledger and rung through the real service functions, delivered by
    a real `seer worker postmaster` subprocess. Both sides use the same SQLite durability
    (`--synchronous`, FULL by default: Huey's storage gets the pragma, ours
    SEER_SQLITE_SYNCHRONOUS).

An attachment is a unique prefix (parcel number and a UUID) and then plain English text
repeated: cheap to make at any size, distinct per parcel (two blobs per parcel: the attachment
and the manifest) and with nothing in it that redaction would replace (the ledger's
attachment sizes are checked to be exactly S). S is 64 bytes to 256 MiB: SQLite holds a whole
parcel (and Huey a whole task) as one value, and the bench holds all N parcels in memory at
once. When a parcel's JSON is over POSTMASTER_MAX_PARCEL_SIZE (32M unless the environment sets
it), the bench raises that setting for `seer init` / `seer worker` and its own intake.

`--count` defaults to 5000, or for big attachments to as many as make 500 MiB of attachments
per run (64 KiB: 5000, 320 MiB; 1 MiB: 500); the output says which. `--sizes` runs several sizes
in one invocation, each with its own `--repeat` runs and median, then prints a summary table.
The disk under `--dir` (default the system's temporary directory) must have room for all of
an invocation's run directories, about 4 x N x S per run: they are removed only at the end (see
main()), and the bench refuses to start without that room.

Both sides are timed from the bench process, polling every ~2 ms: the first dequeue is the first
poll where the Huey queue holds fewer tasks than its peak (N for (a); for (b) one task per
POSTMASTER_BATCH_SIZE parcels, so N/100 = 50, or 51 when the consumer's start-up hook rang a
doorbell of its own); for (b) a parcel counted in flight or delivered also counts as the first
dequeue, whichever is seen first (a task takes a whole batch, ~0.1 s, so the queue count alone
would be late by up to one batch), and min(claimed_at) is printed as a cross-check. The end is
"queue empty" for (a) and "the ledger's parcels_delivered counter reached N" for (b). Rates are
N / (end - first dequeue). With big parcels a claim takes long enough (SQLite rewrites each
claimed row, its payload included) for the first parcel to be seen in flight well after
min(claimed_at): past a 50 ms gap the run also prints the rate counted from min(claimed_at).
Issue 15's goal, judged at the default size: median b/a >= 1.0 and
no run below 0.85 in one invocation.

`--in-process`: (b) is delivered by the bench process itself, `runtime.postmaster()
.deliver_waiting()` in a loop until nothing is left (the doorbells stay on the queue, nobody
consumes them), with each phase of a batch wrapped in a timer (wall and this thread's CPU):
claim, `_prepare`, the dedupe lookup, `store.put_many`, `_commit`; it prints a per-phase table
(ms per batch, µs per parcel). Its rate has no Huey consumer around it: no goal is judged.

`--profile DIR` runs (b) under cProfile and prints the top functions by cumulative and by own
time. With `--in-process` the bench's loop is profiled (DIR/<size>-run<i>-in-process.prof) and
the timers' table is printed too; otherwise the real consumer is (a sitecustomize.py put
first on its PYTHONPATH profiles every thread of the `seer worker` process, which runs Huey's
consumer itself: DIR/<size>-run<i>-<pid>-<thread>.prof, Worker-1 read), with the same per-phase
table read from its profile (each phase as called from the Postmaster). `--profile-clock`: wall
(default: the fsync waits too) or cpu (each thread's CPU time). cProfile slows Python code
several-fold: profiled rates are no figures, and no goal is judged.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import importlib.util
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from _common import snapshot_code, stop, tail  # bench/ is sys.path[0] when a bench runs

BIN = Path(sys.executable).parent
POLL = 0.002
PHASE_TIMEOUT = 150.0
# Added to PHASE_TIMEOUT per byte of attachments (a run's phase moves at least 2 MB/s).
TIMEOUT_PER_BYTE = 1 / 2e6

DEFAULT_SIZE = 1024  # the attachment of every earlier result
DEFAULT_COUNT = 5000
RUN_DATA = 500 * 2**20  # attachments per run when --count is not given
MIN_SIZE = 64  # room for each attachment's distinct prefix
MAX_SIZE = 256 * 2**20
GOAL_MEDIAN = 1.0  # issue 15, at the default size
GOAL_MIN = 0.85
# What a run directory holds, per byte of attachments: (a)'s queue with payloads, the ledger's
# payloads and its WAL (all queued in one transaction), the CAS.
DISK_FACTOR = 4
DISK_SLACK = 2**30

WORDS = (
    "delivery report for the agent: the build passed, the cache was warm, the logs are "
    "attached below and nothing in them needs attention from an operator right now. "
)

TASK_MODULE = '''"""No-op Huey task for the parcels benchmark (written by bench/parcels.py)."""

from huey import SqliteHuey
from huey.storage import SqliteStorage

SYNCHRONOUS = {synchronous!r}


class SynchronousStorage(SqliteStorage):
    """Huey's SqliteStorage plus `pragma synchronous` (Huey's fsync option knows FULL/OFF only)."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute(f"pragma synchronous={{SYNCHRONOUS}}")
        return conn


# FULL is SQLite's default on this build: then the storage is Huey's own, untouched.
huey = SqliteHuey(
    "bench",
    filename={filename!r},
    results=False,
    storage_class=None if SYNCHRONOUS == "FULL" else SynchronousStorage,
)


@huey.task(name="noop")
def noop(parcel_id, payload=None):
    pass
'''

# Put first on the consumer's PYTHONPATH with --profile (as bench/scaleout.py does): every
# thread of the process under cProfile, each written out when it ends.
PROFILE_HOOK = '''"""Profiles every thread of this process (bench/parcels.py --profile)."""

import os

_out = os.environ.get("SEER_BENCH_PROFILE")
if _out:
    import atexit
    import cProfile
    import threading
    import time

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

# The phases of a batch: (label, the Postmaster method's caller, the method). The timers of
# --in-process wrap the same methods; store.put_many is the runtime's store's.
PHASES = (
    ("claim", "deliver_waiting", "_claim"),
    ("_prepare", "_deliver", "_prepare"),
    ("known blobs (dedupe lookup)", "_deliver", "_known_blobs"),
    ("store.put_many", "_deliver", "put_many"),
    ("_commit", "_deliver", "_commit"),
)


@dataclass
class Baseline:
    send: float  # enqueueing N tasks
    first: float  # first dequeue seen, seconds after the consumer was started
    drained: float  # queue empty, seconds after the consumer was started
    sync_pragma: int
    payload: int = 0  # bytes of str each task carries (0: none, the no-op of every result)

    @property
    def busy(self) -> float:
        return self.drained - self.first


@dataclass
class PhaseRow:
    name: str
    calls: int
    wall: float  # seconds in all (cumulative, from the profile: its clock)
    cpu: float | None  # this thread's CPU seconds (timers only)


@dataclass
class Phases:
    source: str  # what measured them
    batches: int
    rows: list[PhaseRow]
    clock: str = "wall"  # of PhaseRow.wall: "cpu" from a profile on the CPU clock


@dataclass
class Ours:
    send: float  # validate + queue_parcels + ring
    first: float  # earliest first-dequeue signal, seconds after the consumer was started
    first_pending: float | None  # first poll with pending below its peak (queue count alone)
    first_flight: float | None  # first poll with a parcel in flight or delivered
    tasks: int  # Huey tasks put on the queue by the ring (one per batch)
    startup_ring: bool  # the consumer's start-up hook rang a doorbell of its own (its log says)
    last: float  # parcels_delivered reached N
    drained: float  # Huey queue empty after the last delivery
    peak: int
    claimed_min: float  # min(claimed_at) - consumer start, cross-check
    finished_max: float  # max(finished_at) - consumer start, cross-check (commit time)
    sync_pragma: int
    in_process: bool = False  # delivered by the bench process (--in-process): no consumer
    phases: list[Phases] = field(default_factory=list)
    profile: list[Path] = field(default_factory=list)  # the .prof files of (b)
    max_parcel_size: int | None = None  # POSTMASTER_MAX_PARCEL_SIZE set by the bench

    @property
    def busy(self) -> float:
        return self.last - self.first


class Checks(dict[str, int]):
    """What run_ours verified. "blob files", its name before the CAS could keep blobs in the
    ledger, still answers (bench/scaleout.py reads it); it is not printed."""

    def __missing__(self, key: str) -> int:
        if key == "blob files":
            return self["blobs in the store"]
        raise KeyError(key)


def check_alive(proc: subprocess.Popen, log: Path, what: str) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(log)}")


def load_task_module(path: Path) -> ModuleType:
    # Same module name as the consumer imports: Huey names tasks "<module>.<name>".
    spec = importlib.util.spec_from_file_location("bench_noop", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=4)
def _filler(size: int) -> str:
    return WORDS * (size // len(WORDS) + 1)


def distinct_text(tag: str, size: int) -> str:
    """`size` ASCII characters (so bytes): `tag`, then WORDS repeated; one copy of the filler."""
    assert len(tag) <= size, (tag, size)
    return tag + _filler(size)[: size - len(tag)]


def run_baseline(tmp: Path, n: int, synchronous: str, payload: int = 0) -> Baseline:
    """(a); `payload`: bytes of distinct str each task carries besides its id (0: none)."""
    path = tmp / "bench_noop.py"
    path.write_text(
        TASK_MODULE.format(synchronous=synchronous.upper(), filename=str(tmp / "huey.db"))
    )
    module = load_task_module(path)
    huey = module.huey
    ids = [str(uuid.uuid4()) for _ in range(n)]
    # Made before the clock starts, as ours makes its parcels.
    payloads = (
        [distinct_text(f"payload {i:06d} {ids[i]} ", payload) for i in range(n)] if payload else []
    )
    with huey.storage.db() as cursor:
        sync_pragma = cursor.execute("pragma synchronous").fetchone()[0]

    t_send = time.time()
    if payload:
        for parcel_id, text in zip(ids, payloads, strict=True):
            module.noop(parcel_id, text)
    else:
        for parcel_id in ids:
            module.noop(parcel_id)
    send = time.time() - t_send
    del payloads
    assert huey.pending_count() == n, huey.pending_count()

    log = tmp / "huey_consumer.log"
    env = dict(os.environ, PYTHONPATH=str(tmp))
    command = [str(BIN / "huey_consumer"), "bench_noop.huey"]
    command += ["-w", "1", "-k", "thread", "-d", "0.1", "-m", "1"]
    with open(log, "wb") as out:
        t_start = time.time()
        proc = subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        first = None
        peak = n
        timeout = PHASE_TIMEOUT + n * payload * TIMEOUT_PER_BYTE
        deadline = t_start + timeout
        while True:
            pending = huey.pending_count()
            now = time.time()
            peak = max(peak, pending)
            if first is None and pending < peak:
                first = now
            if pending == 0:
                drained = now
                break
            if now > deadline:
                raise RuntimeError(f"baseline: {pending} tasks left after {timeout:.0f}s")
            check_alive(proc, log, "huey_consumer")
            time.sleep(POLL)
    finally:
        stop(proc)
        huey.storage.close()
    assert first is not None
    return Baseline(send, first - t_start, drained - t_start, sync_pragma, payload)


def make_parcel(i: int, size: int = DEFAULT_SIZE) -> dict[str, Any]:
    tag = f"parcel {i:06d} {uuid.uuid4()} "
    body = (f"body of parcel {i:06d}: " + WORDS * 2)[:200]
    return {
        "to_agent_id": f"agent-{i % 10}",
        "task_id": f"task-{i // 100}",
        "stream": "bench",
        "type": "bench.parcel",
        "headers": {"sent_by": "bench/parcels.py"},
        "envelope": {"body": body, "metadata": {"n": i}},
        "attachments": {
            "report.txt": {"content": distinct_text(tag, size), "mime_type": "text/plain"}
        },
    }


def make_parcels(n: int, size: int = DEFAULT_SIZE) -> list[dict[str, Any]]:
    return [make_parcel(i, size) for i in range(n)]


def parcel_json_size(n: int, size: int) -> int:
    """Bytes of the largest of make_parcels(n, size) as JSON (the last: its numbers are the
    longest), as the intake measures a parcel against POSTMASTER_MAX_PARCEL_SIZE."""
    from worker.parcels.intake import dumps

    return len(dumps(make_parcel(n - 1, size)).encode("utf-8"))


def max_parcel_size_needed(n: int, size: int, limit: int) -> int | None:
    """POSTMASTER_MAX_PARCEL_SIZE for these parcels when `limit` is too small (whole MiB)."""
    need = parcel_json_size(n, size)
    return None if need <= limit else -(-need // 2**20) * 2**20


class PhaseTimer:
    """--in-process: wall and CPU time of each phase of every batch, by wrapping the
    Postmaster's methods (the class's, for the run) and the store's put_many (the instance's)."""

    def __init__(self, postmaster_class: type, store: Any) -> None:
        self.totals: dict[str, list[float]] = {}
        self._active = [0]  # phases running (one thread)
        self._undo: list[Callable[[], None]] = []
        for name, attr in [("deliver_waiting", "deliver_waiting")] + [
            (label, attr) for label, _, attr in PHASES if attr != "put_many"
        ]:
            original = postmaster_class.__dict__[attr]
            setattr(postmaster_class, attr, self._wrap(name, original))
            self._undo.append(functools.partial(setattr, postmaster_class, attr, original))
        store.put_many = self._wrap("store.put_many", store.put_many)
        self._undo.append(functools.partial(delattr, store, "put_many"))

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        record = self.totals.setdefault(name, [0, 0.0, 0.0])
        wall, cpu = time.perf_counter, time.thread_time
        outer = name == "deliver_waiting"
        active = self._active

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            # A phase called inside another (the dedupe lookup again in _commit) is the
            # other's time, as in the profile's table: it is counted once.
            if not outer and active[0]:
                return fn(*args, **kwargs)
            active[0] += not outer
            w, c = wall(), cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                record[0] += 1
                record[1] += wall() - w
                record[2] += cpu() - c
                active[0] -= not outer

        return timed

    def remove(self) -> None:
        for undo in reversed(self._undo):
            undo()

    def phases(self, source: str) -> Phases:
        rows = [PhaseRow(label, *self._row(label)) for label, _, _ in PHASES]
        total = PhaseRow("deliver_waiting, in all", *self._row("deliver_waiting"))
        rows.append(other_row(rows, total))
        rows.append(total)
        return Phases(source, int(self.totals["_commit"][0]), rows)

    def _row(self, name: str) -> tuple[int, float, float]:
        calls, wall, cpu = self.totals[name]
        return int(calls), wall, cpu


def other_row(rows: list[PhaseRow], total: PhaseRow) -> PhaseRow:
    cpu = None
    if total.cpu is not None:
        cpu = total.cpu - sum(r.cpu or 0.0 for r in rows)
    return PhaseRow(
        "other (release, pause, backoff)", 0, total.wall - sum(r.wall for r in rows), cpu
    )


def phases_from_profile(stats: pstats.Stats, source: str, clock: str) -> Phases:
    """The phases' calls and cumulative time, each as called from its caller in
    worker/parcels/postmaster.py (put_many: whichever store class)."""
    table: dict[Any, Any] = stats.stats  # (file, line, function) -> (cc, nc, tt, ct, callers)

    def called(caller: str, func: str) -> tuple[int, float]:
        calls, cum = 0, 0.0
        for key, (_, _, _, _, callers) in table.items():
            if key[2] != func:
                continue
            for where, figures in callers.items():
                if where[2] == caller and where[0].endswith("postmaster.py"):
                    calls += figures[1]
                    cum += figures[3]
        return calls, cum

    rows = [PhaseRow(label, *called(caller, func), None) for label, caller, func in PHASES]
    calls = cum = 0
    for key, (_, nc, _, ct, _) in table.items():
        if key[2] == "deliver_waiting" and key[0].endswith("postmaster.py"):
            calls, cum = calls + nc, cum + ct
    total = PhaseRow("deliver_waiting, in all", calls, cum, None)
    rows += [other_row(rows, total), total]
    return Phases(source, rows[4].calls, rows, clock)


def print_phases(phases: Phases, n: int) -> None:
    batches = max(phases.batches, 1)
    with_cpu = any(r.cpu is not None for r in phases.rows)
    plural = "" if phases.batches == 1 else "es"
    print(f"      phases, {phases.source}: {phases.batches} batch{plural}, {n} parcels")
    seconds = f"{phases.clock} s"
    head = f"        {'phase':32} {'calls':>6} {seconds:>8} {'ms/batch':>9} {'µs/parcel':>10}"
    print(head + (f" | {'cpu s':>7} {'ms/batch':>9} {'µs/parcel':>10}" if with_cpu else ""))
    for r in phases.rows:
        line = (
            f"        {r.name:32} {r.calls or '':>6} {r.wall:8.3f} {r.wall / batches * 1e3:9.2f} "
            f"{r.wall / n * 1e6:10.1f}"
        )
        if r.cpu is not None:
            line += f" | {r.cpu:7.3f} {r.cpu / batches * 1e3:9.2f} {r.cpu / n * 1e6:10.1f}"
        print(line)


@dataclass(frozen=True)
class Profiling:
    """--profile: where the hook lives, where the profiles go, which clock."""

    hook: Path  # the directory holding sitecustomize.py
    out: Path
    clock: str  # "wall" or "cpu"

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

    def profiler(self) -> cProfile.Profile:
        return cProfile.Profile(time.thread_time) if self.clock == "cpu" else cProfile.Profile()

    def consumer_files(self, label: str) -> list[Path]:
        return sorted(self.out.glob(f"{label}-*-Worker-*.prof"))


def print_profile(files: list[Path], clock: str, top: int = 25) -> None:
    stats = pstats.Stats(*map(str, files), stream=sys.stdout)
    stats.strip_dirs()
    print(f"      profile ({clock} clock): top {top} by cumulative time, {len(files)} file(s):")
    for name in files:
        print(f"        {name}")
    stats.sort_stats("cumulative").print_stats(top)
    print(f"      top {top} by own time:")
    stats.sort_stats("tottime").print_stats(top)
    sys.stdout.flush()


def run_ours(
    tmp: Path,
    n: int,
    synchronous: str,
    size: int = DEFAULT_SIZE,
    *,
    in_process: bool = False,
    profiling: Profiling | None = None,
    label: str = "",
) -> tuple[Ours, Checks]:
    """(b); `size`: bytes of each parcel's text attachment."""
    from worker.parcels import intake as parcel_service
    from worker.parcels.postmaster import Postmaster
    from worker.runtime import Runtime
    from worker.settings import load_settings

    env_file = tmp / "seer.env"
    env_file.write_text("")
    env = dict(
        os.environ,
        SEER_STORAGE_PATH=str(tmp / "storage"),
        SEER_ENV_FILE=str(env_file),
        SEER_SQLITE_SYNCHRONOUS=synchronous,
    )
    max_parcel_size = max_parcel_size_needed(n, size, load_settings(env).max_parcel_size)
    if max_parcel_size is not None:
        env["POSTMASTER_MAX_PARCEL_SIZE"] = str(max_parcel_size)
    subprocess.run([str(BIN / "seer"), "init"], cwd=tmp, env=env, check=True, capture_output=True)
    settings = load_settings(env)
    assert settings.redact_secrets
    runtime = Runtime.open(settings)
    raw = make_parcels(n, size)
    log = tmp / "seer_worker.log"
    proc = None
    timeout = PHASE_TIMEOUT + n * size * TIMEOUT_PER_BYTE
    phases: list[Phases] = []
    profile_files: list[Path] = []
    try:
        huey = runtime.queues.postmaster
        ledger = runtime.ledger
        sync_pragma = ledger.scalar("pragma synchronous")

        t_send = time.time()
        batch = [parcel_service.validate(p, settings.max_parcel_size) for p in raw]
        ids = parcel_service.queue_parcels(ledger, batch)
        runtime.ring(ids)
        send = time.time() - t_send
        del raw, batch, ids
        tasks = huey.pending_count()
        expected_tasks = -(-n // settings.batch_size)
        assert tasks == expected_tasks, (tasks, expected_tasks)

        first_pending = first_flight = None
        if in_process:
            timer = PhaseTimer(Postmaster, runtime.store)
            profiler = profiling.profiler() if profiling else None
            t_start = time.time()
            try:
                if profiler:
                    profiler.enable()
                while runtime.postmaster().deliver_waiting().claimed:
                    if time.time() > t_start + timeout:
                        raise RuntimeError(f"ours, in process: not done after {timeout:.0f}s")
            finally:
                if profiler:
                    profiler.disable()
                timer.remove()
            first = t_start
            last = drained = time.time()
            peak = tasks
            startup_ring = False
            timed_by = "in process, timers (wall / this thread's CPU)"
            phases.append(timer.phases(timed_by + (" under cProfile" if profiler else "")))
            if profiler and profiling:
                path = profiling.out / f"{label}-in-process.prof"
                profiler.dump_stats(path)
                profile_files.append(path)
        else:
            worker_env = profiling.environment(env, label) if profiling else env
            with open(log, "wb") as out:
                t_start = time.time()
                proc = subprocess.Popen(
                    [str(BIN / "seer"), "worker", "postmaster"],
                    cwd=tmp,
                    env=worker_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            first = last = None
            peak = tasks
            deadline = t_start + timeout
            while True:
                pending = huey.pending_count()
                counts = dict(
                    ledger.execute(
                        "SELECT name, value FROM counters "
                        "WHERE name IN ('parcels_in_flight', 'parcels_delivered')"
                    ).fetchall()
                )
                now = time.time()
                peak = max(peak, pending)
                delivered = counts["parcels_delivered"]
                if first_pending is None and pending < peak:
                    first_pending = now
                if first_flight is None and (counts["parcels_in_flight"] or delivered):
                    first_flight = now
                if first is None and (first_pending or first_flight):
                    first = now
                if last is None and delivered >= n:
                    last = now
                if last is not None and pending == 0:
                    drained = now
                    break
                if now > deadline:
                    raise RuntimeError(
                        f"ours: {delivered} delivered, {pending} tasks left after {timeout:.0f}s"
                    )
                check_alive(proc, log, "seer worker postmaster")
                time.sleep(POLL)
            stop(proc)
            proc = None
            assert first is not None and last is not None
            # seer.tasks logs "postmaster consumer started: ..., delivering" when its hook rang.
            hook = [x for x in log.read_text(errors="replace").splitlines() if "seer.tasks:" in x]
            startup_ring = bool(hook) and hook[0].rstrip().endswith(", delivering")
            if profiling:
                profile_files = profiling.consumer_files(label)
                if profile_files:
                    stats = pstats.Stats(*map(str, profile_files))
                    phases.append(
                        phases_from_profile(
                            stats,
                            f"the consumer's profile (cumulative, {profiling.clock} clock)",
                            profiling.clock,
                        )
                    )
        claimed_min, finished_max = ledger.execute(
            "SELECT min(claimed_at), max(finished_at) FROM parcels"
        ).fetchone()
        checks = Checks(
            {
                "messages": ledger.scalar("SELECT count(*) FROM messages"),
                "parcels delivered": ledger.scalar(
                    "SELECT count(*) FROM parcels WHERE state = 'delivered'"
                ),
                "parcels_delivered counter": ledger.scalar(
                    "SELECT value FROM counters WHERE name = 'parcels_delivered'"
                ),
                "blobs rows": ledger.scalar("SELECT count(*) FROM blobs"),
                "cas_blobs counter": ledger.scalar(
                    "SELECT value FROM counters WHERE name = 'cas_blobs'"
                ),
                "blobs in the store": sum(1 for _ in runtime.store.iter_blobs()),
                "artifacts rows": ledger.scalar("SELECT count(*) FROM artifacts"),
                f"attachments of {size} bytes": ledger.scalar(
                    "SELECT count(*) FROM artifacts WHERE kind = 'attachment' AND size = ?",
                    (size,),
                ),
            }
        )
        expected = {
            "messages": n,
            "parcels delivered": n,
            "parcels_delivered counter": n,
            "blobs rows": 2 * n,
            "cas_blobs counter": 2 * n,
            "blobs in the store": 2 * n,
            "artifacts rows": 2 * n,
            f"attachments of {size} bytes": n,
        }
        if checks != expected:
            raise RuntimeError(f"ours: wrong result {dict(checks)}, expected {expected}")
        result = Ours(
            send=send,
            first=first - t_start,
            first_pending=None if first_pending is None else first_pending - t_start,
            first_flight=None if first_flight is None else first_flight - t_start,
            tasks=tasks,
            startup_ring=startup_ring,
            last=last - t_start,
            drained=drained - t_start,
            peak=peak,
            claimed_min=claimed_min - t_start,
            finished_max=finished_max - t_start,
            sync_pragma=sync_pragma,
            in_process=in_process,
            phases=phases,
            profile=profile_files,
            max_parcel_size=max_parcel_size,
        )
        return result, checks
    finally:
        if proc is not None:
            stop(proc)
        runtime.queues.postmaster.storage.close()
        runtime.close()


@dataclass(frozen=True)
class Options:
    synchronous: str
    baseline_payload: bool  # the default size's baseline carries its payload too
    in_process: bool
    profiling: Profiling | None


@dataclass(frozen=True)
class RunResult:
    ratio: float
    ratio_e2e: float


def payload_of(size: int, opts: Options) -> int:
    return size if size != DEFAULT_SIZE or opts.baseline_payload else 0


def disk_used(path: Path) -> int:
    used = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                used += os.lstat(os.path.join(root, name)).st_blocks * 512
    return used


def one_run(top: Path, number: int, n: int, size: int, opts: Options) -> RunResult:
    tmp = top / f"s{size}-run{number}"
    (tmp / "a").mkdir(parents=True)
    (tmp / "b").mkdir()
    a = run_baseline(tmp / "a", n, opts.synchronous, payload_of(size, opts))
    b, checks = run_ours(
        tmp / "b",
        n,
        opts.synchronous,
        size,
        in_process=opts.in_process,
        profiling=opts.profiling,
        label=f"{size}-run{number}",
    )
    rate_a = n / a.busy
    rate_b = n / b.busy
    e2e_a = n / (a.send + a.drained)
    e2e_b = n / (b.send + b.last)

    def mb(rate: float) -> str:
        return "" if size == DEFAULT_SIZE else f" {rate * size / 1e6:6.1f} MB/s"

    print(f"run {number} ({size}-byte attachments, N={n}):")
    what = f"huey no-op + {a.payload}-byte str" if a.payload else "huey no-op"
    print(
        f"  (a) {what}: enqueue {a.send:6.2f}s | consumer start -> first dequeue "
        f"{a.first:5.2f}s | first dequeue -> drained {a.busy:6.2f}s | {rate_a:7.1f} tasks/s"
        f"{mb(rate_a)}  [pragma synchronous={a.sync_pragma}]"
    )

    def since(t: float | None) -> str:
        return "n/a" if t is None else f"{t:.2f}"

    if b.in_process:
        print(
            f"  (b) postmaster, in process: send {b.send:6.2f}s | deliver_waiting() loop "
            f"{b.busy:6.2f}s | {rate_b:7.1f} parcels/s{mb(rate_b)}  "
            f"[pragma synchronous={b.sync_pragma}]"
        )
        print(
            f"      cross-checks (s after the loop's start): min(claimed_at) "
            f"{b.claimed_min:.2f}; max(finished_at) {b.finished_max:.2f} (commit time), loop "
            f"end {b.last:.2f}; tasks rung {b.tasks}, left on the queue (no consumer)"
        )
    else:
        print(
            f"  (b) postmaster: send {b.send:6.2f}s | consumer start -> first dequeue "
            f"{b.first:5.2f}s | first dequeue -> last delivery {b.busy:6.2f}s | "
            f"{rate_b:7.1f} parcels/s{mb(rate_b)}  [pragma synchronous={b.sync_pragma}]"
        )
        print(
            f"      cross-checks (s after consumer start): min(claimed_at) {b.claimed_min:.2f}, "
            f"pending<peak seen {since(b.first_pending)}, in flight seen "
            f"{since(b.first_flight)}; max(finished_at) {b.finished_max:.2f} (commit time), "
            f"last delivery seen {b.last:.2f}; tasks rung {b.tasks}"
            f"{' + 1 by the start-up hook' if b.startup_ring else ''}, peak pending seen {b.peak}"
        )
        gap = b.first - b.claimed_min
        if gap > 0.05:
            # A claim commits only when all its rows are updated: with big parcels the poll
            # sees the first in flight well after the claim began.
            print(
                f"      the first claim began {gap:.2f}s before the first dequeue seen: counted "
                f"from min(claimed_at), {n / (b.last - b.claimed_min):.1f} parcels/s, "
                f"b/a {n / (b.last - b.claimed_min) / rate_a:.2f}"
            )
    print(
        (
            "      "
            if b.in_process
            else f"      queue empty {b.drained - b.last:5.2f}s after the last delivery; "
        )
        + "verified: "
        + ", ".join(f"{k} {v}" for k, v in checks.items())
    )
    print(
        f"      run directory {mib(disk_used(tmp))} MiB (kept until the end)"
        + (
            f"; POSTMASTER_MAX_PARCEL_SIZE={b.max_parcel_size} for these parcels"
            if b.max_parcel_size
            else ""
        )
    )
    for phases in b.phases:
        print_phases(phases, n)
    if opts.profiling:
        if b.profile:
            print_profile(b.profile, opts.profiling.clock)
        else:
            print(f"      profile: none written under {opts.profiling.out}")
    ratio = rate_b / rate_a
    ratio_e2e = e2e_b / e2e_a
    flag = ""
    judged = not (payload_of(size, opts) or opts.profiling or opts.in_process)
    if size == DEFAULT_SIZE and judged and ratio < GOAL_MIN:
        flag = f" (below {GOAL_MIN})"
    print(
        f"  ratio b/a {ratio:.2f}{flag} | end to end with sending: a {e2e_a:.1f}/s, "
        f"b {e2e_b:.1f}/s, ratio {ratio_e2e:.2f}"
    )
    sys.stdout.flush()
    return RunResult(ratio, ratio_e2e)


def parse_size(text: str) -> int:
    """An attachment size: bytes, or a number with K or M (binary): 65536, 64K, 1M."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)(?:i?B)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: bytes, or a number with K or M (64K, 1M)")
    size = int(match.group(1)) * {"": 1, "k": 2**10, "m": 2**20}[match.group(2).lower()]
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise argparse.ArgumentTypeError(
            f"{text!r}: an attachment of {MIN_SIZE} bytes (room for its distinct prefix) to "
            f"{MAX_SIZE // 2**20} MiB (a parcel is one SQLite value; all N are held in memory)"
        )
    return size


def parse_sizes(text: str) -> list[int]:
    sizes = [parse_size(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("one size at least, e.g. 1024,65536,1048576")
    if len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: a size given twice")
    return sizes


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of 1 or more")
    return value


def mib(size: int) -> str:
    return f"{size / 2**20:.1f}" if size < 10 * 2**20 else f"{size / 2**20:.0f}"


def count_for(size: int, given: int | None) -> tuple[int, str]:
    if given is not None:
        return given, "--count"
    count = max(1, min(DEFAULT_COUNT, RUN_DATA // size))
    if count == DEFAULT_COUNT:
        return count, "the default"
    return count, f"--count not given: {RUN_DATA // 2**20} MiB of attachments per run at most"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--count",
        type=positive,
        help=f"parcels / tasks per run (default {DEFAULT_COUNT}; fewer for big attachments: "
        f"{RUN_DATA // 2**20} MiB of attachments per run at most)",
    )
    parser.add_argument("--repeat", type=positive, default=3, help="runs per size (noisy disk)")
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--attachment-size",
        type=parse_size,
        default=DEFAULT_SIZE,
        metavar="BYTES",
        help=f"bytes of each parcel's text attachment (default {DEFAULT_SIZE}; 64K, 1M)",
    )
    which.add_argument(
        "--sizes",
        type=parse_sizes,
        metavar="LIST",
        help="several attachment sizes in one invocation, e.g. 1024,65536,1048576",
    )
    parser.add_argument(
        "--baseline-payload",
        action="store_true",
        help=f"at {DEFAULT_SIZE} bytes too, each baseline task carries its attachment's bytes "
        "(other sizes always do; the default size's goal is against the no-op)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="deliver (b) in the bench process, with each phase of a batch timed",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="run (b) under cProfile, profiles in DIR"
    )
    parser.add_argument("--profile-clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the run directories go (default: the system's temporary directory)",
    )
    parser.add_argument(
        "--code",
        default="HEAD",
        help="commit of worker/ and seer_console/ to measure (default HEAD), or 'worktree'",
    )
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"--dir {args.dir}: no such directory")
    sizes: list[int] = args.sizes or [args.attachment_size]
    counts = {size: count_for(size, args.count) for size in sizes}
    need = sum(DISK_FACTOR * n * (size + 2048) * args.repeat for size, (n, _) in counts.items())
    free = shutil.disk_usage(args.dir).free
    print(
        f"parcels benchmark: attachments of {', '.join(map(str, sizes))} bytes, "
        f"synchronous={args.synchronous}, repeat={args.repeat}, python {sys.version.split()[0]}"
    )
    print(
        f"disk: {free / 2**30:.1f} GiB free under {args.dir}; the run directories take about "
        f"{need / 2**30:.1f} GiB until the end"
    )
    if need + DISK_SLACK > free:
        print(f"not enough room under {args.dir}: give --dir on a disk with more, or --count")
        return 2
    if args.profile or args.in_process:
        print(
            "PROFILING: (b) runs under cProfile, its rates are no figures"
            if args.profile
            else "IN PROCESS: (b) is delivered by the bench process, no consumer"
        )
    # Every run gets its own fresh directory, all removed only at the end: on ext4 without a
    # journal (this VM's root) the inode allocator skips inodes freed in the last 60-300 s,
    # one by one, so deleting a run's 10,000 blobs would slow the next run's file creation.
    top = Path(tempfile.mkdtemp(prefix="seer-bench-parcels-", dir=args.dir))
    summary: list[tuple[int, int, int, list[RunResult]]] = []
    try:
        print(f"code: {snapshot_code(top / 'code', args.code)}")
        from worker.settings import load_settings

        empty = top / "empty.env"
        empty.write_text("")
        limit = load_settings(dict(os.environ, SEER_ENV_FILE=str(empty))).max_parcel_size
        opts = Options(
            synchronous=args.synchronous,
            baseline_payload=args.baseline_payload,
            in_process=args.in_process,
            profiling=(
                Profiling.make(top, args.profile.resolve(), args.profile_clock)
                if args.profile
                else None
            ),
        )
        for size in sizes:
            n, why = counts[size]
            raised = max_parcel_size_needed(n, size, limit)
            payload = payload_of(size, opts)
            print(
                f"== attachments of {size} bytes: N={n} ({why}; {mib(n * size)} MiB of "
                "attachments per run); parcel JSON up to "
                f"{parcel_json_size(n, size)} bytes"
                + (
                    f" (POSTMASTER_MAX_PARCEL_SIZE raised to {raised}, from {limit})"
                    if raised
                    else ""
                )
                + "; baseline tasks "
                + (f"carry a distinct {payload}-byte str" if payload else "are no-ops, no payload")
            )
            sys.stdout.flush()
            results = [one_run(top, i, n, size, opts) for i in range(1, args.repeat + 1)]
            summary.append((size, n, payload, results))
            print(size_line(size, n, payload, results, opts))
        print_summary(summary, opts)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


def goal(size: int, n: int, payload: int, results: list[RunResult], opts: Options) -> str | None:
    if size != DEFAULT_SIZE:
        return None
    text = f"median b/a >= {GOAL_MEDIAN} and no run below {GOAL_MIN}"
    if opts.profiling or opts.in_process:
        return f"{text}: n/a ({'profiled' if opts.profiling else 'in process'})"
    if payload:
        return f"{text}: n/a (--baseline-payload: the goal is against the no-op baseline)"
    ratios = [r.ratio for r in results]
    met = statistics.median(ratios) >= GOAL_MEDIAN and min(ratios) >= GOAL_MIN
    note = "" if n == DEFAULT_COUNT else f" (at N={n}: the goal's runs are N={DEFAULT_COUNT})"
    return f"{text}: {'met' if met else 'NOT met'}{note}"


def size_line(size: int, n: int, payload: int, results: list[RunResult], opts: Options) -> str:
    ratios = [r.ratio for r in results]
    line = (
        f"{size} bytes: median ratio b/a {statistics.median(ratios):.2f} over {len(ratios)} "
        f"runs (min {min(ratios):.2f}); median end-to-end ratio "
        f"{statistics.median(r.ratio_e2e for r in results):.2f}"
    )
    reached = goal(size, n, payload, results, opts)
    return line + (f"; goal: {reached}" if reached else "")


def print_summary(summary: list[tuple[int, int, int, list[RunResult]]], opts: Options) -> None:
    print()
    print("summary:")
    print(f"  {'attachment':>10} {'count':>6}  {'baseline':<20} {'runs b/a':<24} median   min")
    for size, n, payload, results in summary:
        ratios = [r.ratio for r in results]
        baseline = f"+ {payload}-byte str" if payload else "no-op"
        runs = " ".join(f"{r:.2f}" for r in ratios)
        print(
            f"  {size:>10} {n:>6}  {baseline:<20} {runs:<24} {statistics.median(ratios):6.2f} "
            f"{min(ratios):5.2f}"
        )
        reached = goal(size, n, payload, results, opts)
        if reached:
            print(f"  {'':>10} goal at {size} bytes: {reached}")


if __name__ == "__main__":
    sys.exit(main())
