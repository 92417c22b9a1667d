"""Consumer start: `seer worker postmaster` against a bare `huey_consumer` on the same queue.

    .venv/bin/python bench/worker_start.py [--rounds 10] [--code HEAD|<commit>|worktree]

Each round, for each of the two, in a fresh temporary storage root (`seer init` with
SEER_STORAGE_PATH and SEER_ENV_FILE, as bench/parcels.py does): one parcel is validated, queued
in the ledger and rung (worker.parcels.intake, Runtime.ring), so one doorbell waits; then the
consumer is started and timed from just before its process is started to its first dequeue:

(a) `huey_consumer worker.queue.huey_app.postmaster -w 1 -k thread -d 0.1 -m 1 --no-periodic`
    (Huey's own script loading Seer's queue, the runtime opened by worker.queue.huey_app);
(b) `seer worker postmaster` (what supervisord runs).

The bench process polls every ~2 ms; the first dequeue is the first poll where the Huey queue
holds fewer tasks than its peak (1, or 2 when the consumer's start-up hook rang a doorbell of
its own), or the ledger counts the parcel in flight or delivered, whichever is seen first. The
time to its delivery is printed too. The two alternate (a, b in odd rounds, b, a in even ones),
so that a machine getting busier or quieter moves both. Goal: median(b) - median(a) <= 0.1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import snapshot_code, stop, tail  # bench/ is sys.path[0] when a bench runs

BIN = Path(sys.executable).parent
POLL = 0.002
TIMEOUT = 60.0
GOAL = 0.1

COMMANDS = {
    "a": [
        str(BIN / "huey_consumer"),
        "worker.queue.huey_app.postmaster",
        *("-w", "1", "-k", "thread", "-d", "0.1", "-m", "1", "--no-periodic"),
    ],
    "b": [str(BIN / "seer"), "worker", "postmaster"],
}
NAMES = {"a": "huey_consumer", "b": "seer worker"}


@dataclass
class Start:
    first: float  # seconds from just before the process was started to its first dequeue
    delivered: float  # ... to the parcel counted delivered
    hook_rang: bool  # the start-up hook rang a doorbell of its own (the queue's peak was 2)


def one_start(tmp: Path, which: str) -> Start:
    from worker.parcels import intake
    from worker.runtime import Runtime
    from worker.settings import load_settings

    tmp.mkdir(parents=True)
    env_file = tmp / "seer.env"
    env_file.write_text("")
    env = dict(os.environ, SEER_STORAGE_PATH=str(tmp / "storage"), SEER_ENV_FILE=str(env_file))
    subprocess.run([str(BIN / "seer"), "init"], cwd=tmp, env=env, check=True, capture_output=True)
    settings = load_settings(env)
    runtime = Runtime.open(settings)
    huey = runtime.queues.postmaster
    log = tmp / "consumer.log"
    proc = None
    try:
        parcel = {
            "to_agent_id": "agent-1",
            "task_id": "task-1",
            "stream": "bench",
            "type": "bench.start",
            "envelope": {"body": "one doorbell"},
        }
        batch = [intake.validate(parcel, settings.max_parcel_size)]
        runtime.ring(intake.queue_parcels(runtime.ledger, batch))
        assert huey.pending_count() == 1, huey.pending_count()
        with open(log, "wb") as out:
            t_start = time.perf_counter()
            proc = subprocess.Popen(
                COMMANDS[which], cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        first = None
        peak = 1
        while True:
            pending = huey.pending_count()
            flight, delivered = runtime.ledger.execute(
                "SELECT "
                "(SELECT value FROM counters WHERE name = 'parcels_in_flight'), "
                "(SELECT value FROM counters WHERE name = 'parcels_delivered')"
            ).fetchone()
            now = time.perf_counter()
            peak = max(peak, pending)
            if first is None and (pending < peak or flight or delivered):
                first = now
            if delivered:
                break
            if now - t_start > TIMEOUT:
                raise RuntimeError(f"{NAMES[which]}: nothing delivered in {TIMEOUT}s:\n{tail(log)}")
            if proc.poll() is not None:
                raise RuntimeError(f"{NAMES[which]} exited with {proc.returncode}:\n{tail(log)}")
            time.sleep(POLL)
        assert first is not None
        return Start(first - t_start, now - t_start, peak > 1)
    finally:
        if proc is not None:
            stop(proc)
        huey.storage.close()
        runtime.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="starts of each (default 10)")
    parser.add_argument(
        "--code",
        default="HEAD",
        help="commit of worker/ and seer_console/ to measure (default HEAD), or 'worktree'",
    )
    args = parser.parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="seer-bench-worker-start-"))
    print(
        f"worker start benchmark: {args.rounds} rounds, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"code: {snapshot_code(top / 'code', args.code)}")
    starts: dict[str, list[Start]] = {"a": [], "b": []}
    try:
        for number in range(1, args.rounds + 1):
            order = ("a", "b") if number % 2 else ("b", "a")
            for which in order:
                starts[which].append(one_start(top / f"round{number}-{which}", which))
            line = ", ".join(
                f"({w}) {NAMES[w]} first dequeue {starts[w][-1].first:.3f} s, delivered "
                f"{starts[w][-1].delivered:.3f} s"
                + (" [hook rang]" if starts[w][-1].hook_rang else "")
                for w in order
            )
            print(f"round {number:2d}: {line}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(top, ignore_errors=True)
    medians = {w: statistics.median(s.first for s in starts[w]) for w in starts}
    for w in ("a", "b"):
        firsts = sorted(s.first for s in starts[w])
        print(
            f"({w}) {NAMES[w]:14s} first dequeue: median {medians[w]:.3f} s, "
            f"min {firsts[0]:.3f} s, max {firsts[-1]:.3f} s; delivered: median "
            f"{statistics.median(s.delivered for s in starts[w]):.3f} s"
        )
    difference = medians["b"] - medians["a"]
    met = difference <= GOAL
    print(
        f"difference b - a {difference:+.3f} s, ratio b/a {medians['b'] / medians['a']:.2f} "
        f"(goal b - a <= {GOAL} s: {'met' if met else 'NOT met'}); "
        f"load average now {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
