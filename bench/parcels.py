"""Parcel throughput: the Postmaster against a plain Huey consumer draining no-op tasks.

    .venv/bin/python bench/parcels.py [--count 5000] [--repeat 3] [--synchronous full|normal]

Each run, in a fresh temporary directory:

(a) baseline: N no-op tasks enqueued on a plain `huey.SqliteHuey` (results=False, WAL, one commit
    per task through the ordinary task call), drained by a real
    `huey_consumer bench_noop.huey -w 1 -k thread -d 0.1 -m 1` subprocess;
(b) ours: N parcels (200-byte body, one distinct 1 KB text attachment, redaction on) validated,
    queued in the ledger and rung through the real service functions, delivered by a real
    `seer worker postmaster` subprocess.

Both are timed from the bench process, polling every ~2 ms: the first dequeue is the first poll
where the Huey queue holds fewer tasks than its peak (N for (a); for (b) one task per
POSTMASTER_BATCH_SIZE parcels, so N/100 = 50, or 51 when the consumer's start-up hook rang a
doorbell of its own); for (b) a parcel counted in flight or delivered also counts as the first
dequeue, whichever is seen first (a task takes a whole batch, ~0.1 s, so the queue count alone
would be late by up to one batch), and min(claimed_at) is printed as a cross-check. The end is
"queue empty" for (a) and "the ledger's parcels_delivered counter reached N" for (b). Rates are
N / (end - first dequeue).

The temporary directories are removed after the last run, not after each: see main().
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from _common import snapshot_code, stop, tail  # bench/ is sys.path[0] when a bench runs

BIN = Path(sys.executable).parent
POLL = 0.002
PHASE_TIMEOUT = 150.0

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
def noop(parcel_id):
    pass
'''


@dataclass
class Baseline:
    send: float  # enqueueing N tasks
    first: float  # first dequeue seen, seconds after the consumer was started
    drained: float  # queue empty, seconds after the consumer was started
    sync_pragma: int

    @property
    def busy(self) -> float:
        return self.drained - self.first


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

    @property
    def busy(self) -> float:
        return self.last - self.first


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


def run_baseline(tmp: Path, n: int, synchronous: str) -> Baseline:
    path = tmp / "bench_noop.py"
    path.write_text(
        TASK_MODULE.format(synchronous=synchronous.upper(), filename=str(tmp / "huey.db"))
    )
    module = load_task_module(path)
    huey = module.huey
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with huey.storage.db() as cursor:
        sync_pragma = cursor.execute("pragma synchronous").fetchone()[0]

    t_send = time.time()
    for parcel_id in ids:
        module.noop(parcel_id)
    send = time.time() - t_send
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
        deadline = t_start + PHASE_TIMEOUT
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
                raise RuntimeError(f"baseline: {pending} tasks left after {PHASE_TIMEOUT}s")
            check_alive(proc, log, "huey_consumer")
            time.sleep(POLL)
    finally:
        stop(proc)
        huey.storage.close()
    assert first is not None
    return Baseline(send, first - t_start, drained - t_start, sync_pragma)


def make_parcels(n: int) -> list[dict[str, Any]]:
    words = (
        "delivery report for the agent: the build passed, the cache was warm, the logs are "
        "attached below and nothing in them needs attention from an operator right now. "
    )
    parcels = []
    for i in range(n):
        tag = f"parcel {i:06d} {uuid.uuid4()} "
        text = (tag + words * 8)[:1024]
        body = (f"body of parcel {i:06d}: " + words * 2)[:200]
        parcels.append(
            {
                "to_agent_id": f"agent-{i % 10}",
                "task_id": f"task-{i // 100}",
                "stream": "bench",
                "type": "bench.parcel",
                "headers": {"sent_by": "bench/parcels.py"},
                "envelope": {"body": body, "metadata": {"n": i}},
                "attachments": {"report.txt": {"content": text, "mime_type": "text/plain"}},
            }
        )
    return parcels


def run_ours(tmp: Path, n: int, synchronous: str) -> tuple[Ours, dict[str, int]]:
    from worker.parcels import intake as parcel_service
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
    subprocess.run([str(BIN / "seer"), "init"], cwd=tmp, env=env, check=True, capture_output=True)
    settings = load_settings(env)
    assert settings.redact_secrets
    runtime = Runtime.open(settings)
    raw = make_parcels(n)
    log = tmp / "seer_worker.log"
    proc = None
    try:
        huey = runtime.queues.postmaster
        ledger = runtime.ledger
        sync_pragma = ledger.scalar("pragma synchronous")

        t_send = time.time()
        batch = [parcel_service.validate(p, settings.max_parcel_size) for p in raw]
        ids = parcel_service.queue_parcels(ledger, batch)
        runtime.ring(ids)
        send = time.time() - t_send
        tasks = huey.pending_count()
        expected_tasks = -(-n // settings.batch_size)
        assert tasks == expected_tasks, (tasks, expected_tasks)

        with open(log, "wb") as out:
            t_start = time.time()
            proc = subprocess.Popen(
                [str(BIN / "seer"), "worker", "postmaster"],
                cwd=tmp,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        first = first_pending = first_flight = last = None
        peak = tasks
        deadline = t_start + PHASE_TIMEOUT
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
                    f"ours: {delivered} delivered, {pending} tasks left after {PHASE_TIMEOUT}s"
                )
            check_alive(proc, log, "seer worker postmaster")
            time.sleep(POLL)
        stop(proc)
        proc = None
        assert first is not None and last is not None
        # seer.tasks logs "postmaster consumer started: ..., delivering" when its hook rang.
        hook = [x for x in log.read_text(errors="replace").splitlines() if "seer.tasks:" in x]
        startup_ring = bool(hook) and hook[0].rstrip().endswith(", delivering")
        claimed_min, finished_max = ledger.execute(
            "SELECT min(claimed_at), max(finished_at) FROM parcels"
        ).fetchone()
        checks = {
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
            raise RuntimeError(f"ours: wrong result {checks}, expected {expected}")
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
        )
        return result, checks
    finally:
        if proc is not None:
            stop(proc)
        runtime.queues.postmaster.storage.close()
        runtime.close()


def one_run(top: Path, number: int, n: int, synchronous: str) -> tuple[float, float]:
    tmp = top / f"run{number}"
    (tmp / "a").mkdir(parents=True)
    (tmp / "b").mkdir()
    a = run_baseline(tmp / "a", n, synchronous)
    b, checks = run_ours(tmp / "b", n, synchronous)
    rate_a = n / a.busy
    rate_b = n / b.busy
    e2e_a = n / (a.send + a.drained)
    e2e_b = n / (b.send + b.last)
    print(f"run {number}:")
    print(
        f"  (a) huey no-op: enqueue {a.send:6.2f}s | consumer start -> first dequeue "
        f"{a.first:5.2f}s | first dequeue -> drained {a.busy:6.2f}s | {rate_a:7.1f} tasks/s"
        f"  [pragma synchronous={a.sync_pragma}]"
    )

    def since(t: float | None) -> str:
        return "n/a" if t is None else f"{t:.2f}"

    print(
        f"  (b) postmaster: send {b.send:6.2f}s | consumer start -> first dequeue "
        f"{b.first:5.2f}s | first dequeue -> last delivery {b.busy:6.2f}s | "
        f"{rate_b:7.1f} parcels/s  [pragma synchronous={b.sync_pragma}]"
    )
    print(
        f"      cross-checks (s after consumer start): min(claimed_at) {b.claimed_min:.2f}, "
        f"pending<peak seen {since(b.first_pending)}, in flight seen "
        f"{since(b.first_flight)}; max(finished_at) {b.finished_max:.2f} (commit time), "
        f"last delivery seen {b.last:.2f}; tasks rung {b.tasks}"
        f"{' + 1 by the start-up hook' if b.startup_ring else ''}, peak pending seen {b.peak}"
    )
    print(
        f"      queue empty {b.drained - b.last:5.2f}s after the last delivery; "
        "verified: " + ", ".join(f"{k} {v}" for k, v in checks.items())
    )
    ratio = rate_b / rate_a
    ratio_e2e = e2e_b / e2e_a
    print(
        f"  ratio b/a {ratio:.2f} (goal >= 0.6) | end to end with sending: a {e2e_a:.1f}/s, "
        f"b {e2e_b:.1f}/s, ratio {ratio_e2e:.2f}"
    )
    sys.stdout.flush()
    return ratio, ratio_e2e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="parcels / tasks per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs (the disk is noisy)")
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    parser.add_argument(
        "--code",
        default="HEAD",
        help="commit of worker/ and seer_console/ to measure (default HEAD), or 'worktree'",
    )
    args = parser.parse_args(argv)
    print(
        f"parcels benchmark: N={args.count}, synchronous={args.synchronous}, "
        f"repeat={args.repeat}, python {sys.version.split()[0]}"
    )
    ratios = []
    # Every run gets its own fresh directory, all removed only at the end: on ext4 without a
    # journal (this VM's root) the inode allocator skips inodes freed in the last 60-300 s,
    # one by one, so deleting a run's 10,000 blobs would slow the next run's file creation.
    top = Path(tempfile.mkdtemp(prefix="seer-bench-parcels-"))
    print(f"code: {snapshot_code(top / 'code', args.code)}")
    try:
        for number in range(1, args.repeat + 1):
            ratios.append(one_run(top, number, args.count, args.synchronous))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    median = statistics.median(r for r, _ in ratios)
    median_e2e = statistics.median(r for _, r in ratios)
    print(
        f"median ratio b/a {median:.2f} over {len(ratios)} runs (goal >= 0.6: "
        f"{'met' if median >= 0.6 else 'NOT met'}); median end-to-end ratio {median_e2e:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
