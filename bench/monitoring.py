"""Monitoring benchmark (issue 5): `seer cas stats`, `seer cas reconcile` vs `du -sb`, the rules.

    .venv/bin/python bench/monitoring.py [--reps 200] [--rounds 11] [--code HEAD]

In one run, in a fresh temporary directory, against storage roots made by `seer init`:

1. `seer cas stats` with 1,000,000 `blobs` rows (raw SQL, no files; the triggers keep the
   counters, checked against count(*) after the fill). The goal (< 10 ms) is judged on the
   answer itself, the in-process `cas_tools.stats(runtime.ledger)`: median and p95 of --reps
   calls. The whole command as a subprocess (median of 10) is printed beside `python -c pass`
   and `python -c "import seer_console.cli"` on the same interpreter, so that the command's
   own share is visible: process start-up and imports are Python's, not the answer's.
2. `seer cas reconcile` over a tree of 100,000 real blobs (100-2000 random bytes each) stored
   with the real `ContentStore.put_many` in chunks of 1000, with matching `blobs` rows, as a
   ratio to `du -sb` of the same directory (goal <= 2.0). One warm-up of each, then --rounds
   rounds of: du, `cas_tools.reconcile(ledger, store, repair=False)` in this process, and the
   `seer cas reconcile --dry-run` subprocess. Median and min of each; the goal is judged on the
   ratio of the medians of the in-process call (the ratio of mins beside it). Then the parts of
   reconcile on their own: the directory scan, the table read, the comparison.
3. The alert rules with 200,000 queued parcels, 100,000 failed ones (finished over 30 days,
   500 of them in the last hour) and 30 days of compaction runs (one every 15 min, every 10th
   failed): `rules.evaluate(settings, rules.read_inputs(ledger))`, median and p95 of --reps
   calls (goal < 20 ms), with read_inputs alone. For scale: Huey's own
   `runtime.queues.postmaster.pending_count()` with 200,000 serialized `deliver` tasks in
   queue.db.

The code measured is the commit --code (default HEAD) of worker/ and seer_console/, unpacked into
the temporary directory and put first on the import path of this process and of every `seer`
started here (others edit the working tree while this runs). Every process started here is a
`subprocess.run` that is waited for; the temporary directory is removed at the end. ~2-3 min.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import median_p95, snapshot_code, timed  # bench/ is sys.path[0] when a bench runs

BIN = Path(sys.executable).parent

STATS_BLOBS = 1_000_000
TREE_BLOBS = 100_000
PUT_CHUNK = 1000
QUEUED = 200_000
FAILED = 100_000
FAILED_LAST_HOUR = 500
TASKS = 200_000
COMPACTION_EVERY = 900.0
CHUNK = 50_000
PROCESS_RUNS = 10
PART_RUNS = 5

STATS_GOAL_MS = 10.0
RECONCILE_GOAL_RATIO = 2.0
RULES_GOAL_MS = 20.0


# -- helpers ------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f} ms"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def environment(root: Path, env_file: Path) -> dict[str, str]:
    return dict(os.environ, SEER_STORAGE_PATH=str(root), SEER_ENV_FILE=str(env_file))


def run_process(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall time of one process, waited for (cwd: the temp dir, so nothing local is imported)."""
    t = time.perf_counter()
    done = subprocess.run(
        argv,
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return time.perf_counter() - t, done.stdout


def other_benchmarks() -> list[str]:
    """Command lines of other processes running a bench/ script (they share disk and cores)."""
    found = subprocess.run(["pgrep", "-fa", "bench/"], capture_output=True, text=True).stdout
    mine = {os.getpid(), os.getppid()}
    return [line for line in found.splitlines() if int(line.split()[0]) not in mine]


def open_fill(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma synchronous = OFF")  # the fill only; the measurements use the defaults
    conn.execute("pragma cache_size = -200000")
    return conn


# -- fills --------------------------------------------------------------------------------------


def fill_big(path: Path, now: float) -> dict[str, float]:
    """1M blobs rows, 300k parcels, compaction runs; raw SQL, big transactions."""
    rng = random.Random(5)
    took: dict[str, float] = {}
    conn = open_fill(path)

    t = time.perf_counter()
    conn.execute("BEGIN")
    # Sequential keys (sorted order) keep the fill fast; stats reads the counters, not the table.
    for start in range(0, STATS_BLOBS, CHUNK):
        conn.executemany(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?)",
            (
                (f"{i:064x}", 100 + i % 4000, now - 40 * 86400 + i * 3.0)
                for i in range(start, min(STATS_BLOBS, start + CHUNK))
            ),
        )
    conn.execute("COMMIT")
    took["blobs"] = time.perf_counter() - t

    t = time.perf_counter()
    payload = json.dumps({"envelope": {"body": "queued by bench/monitoring.py"}})
    insert = (
        "INSERT INTO parcels (id, to_agent_id, task_id, type, stream, state, payload, size, "
        "attempts, created_at, finished_at, error) "
        "VALUES (?, ?, ?, 'bench.parcel', 'bench', ?, ?, ?, ?, ?, ?, ?)"
    )
    conn.execute("BEGIN")
    old = FAILED - FAILED_LAST_HOUR
    finished = [now - 3600 - rng.random() * (30 * 86400 - 3600) for _ in range(old)]
    finished += [now - 60 - rng.random() * 3000 for _ in range(FAILED_LAST_HOUR)]
    finished.sort()  # failed in time order, before the queue, as the Postmaster would leave them
    conn.executemany(
        insert,
        (
            (str(uuid.uuid4()), f"agent-{i % 50}", f"task-{i // 10}", "failed", payload,
             len(payload), 3, f - 60, f, "TimeoutError: agent inbox store did not answer")
            for i, f in enumerate(finished)
        ),
    )  # fmt: skip
    conn.executemany(
        insert,
        (
            (str(uuid.uuid4()), f"agent-{i % 50}", f"task-{i // 10}", "queued", payload,
             len(payload), 0, now - (QUEUED - i) * 0.01, None, None)
            for i in range(QUEUED)
        ),
    )  # fmt: skip
    conn.execute("COMMIT")
    took["parcels"] = time.perf_counter() - t

    t = time.perf_counter()
    runs = int(30 * 86400 / COMPACTION_EVERY)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO compaction_runs (trigger, started_at, finished_at, agents, keys_deleted, "
        "status, error) VALUES ('schedule', ?, ?, 3, 40, ?, ?)",
        (
            (now - (runs - i) * COMPACTION_EVERY, now - (runs - i) * COMPACTION_EVERY + 2.0,
             "failed" if i % 10 == 0 else "ok", "database is locked" if i % 10 == 0 else None)
            for i in range(runs)
        ),
    )  # fmt: skip
    conn.execute("COMMIT")
    took["compaction runs"] = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute("pragma wal_checkpoint(TRUNCATE)")
    took["checkpoint"] = time.perf_counter() - t
    conn.close()
    return took


def check_big(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    counters = dict(conn.execute("SELECT name, value FROM counters"))
    blobs, nbytes = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM blobs").fetchone()
    states = dict(conn.execute("SELECT state, count(*) FROM parcels GROUP BY 1"))
    runs = conn.execute("SELECT count(*) FROM compaction_runs").fetchone()[0]
    conn.close()
    lines = []
    for name, actual in (
        ("cas_blobs", blobs),
        ("cas_bytes", nbytes),
        ("parcels_queued", states.get("queued", 0)),
        ("parcels_failed", states.get("failed", 0)),
    ):
        kept = counters.get(name)
        note = "ok" if kept == actual else "MISMATCH"
        lines.append(f"{name}: counter {kept:,} vs count {actual:,} {note}")
    lines.append(f"compaction_runs rows {runs:,}")
    return lines


def fill_queue(runtime: Any) -> float:
    """TASKS serialized deliver tasks, inserted in one transaction."""
    huey = runtime.queues.postmaster
    storage = huey.storage
    ids = [
        r["id"]
        for r in runtime.ledger.rows(
            "SELECT id FROM parcels WHERE state = 'queued' ORDER BY seq LIMIT ?", (TASKS,)
        )
    ]
    t = time.perf_counter()
    runtime.queues.ring(ids)  # one transaction, as Runtime.ring does
    storage.conn.execute("pragma wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - t


def fill_tree(runtime: Any, ledger_path: Path, now: float) -> tuple[float, float, int]:
    """TREE_BLOBS random blobs through ContentStore.put_many, then their rows; seconds, bytes."""
    rng = random.Random(7)
    store = runtime.store
    rows: list[tuple[str, int, float]] = []
    t = time.perf_counter()
    for start in range(0, TREE_BLOBS, PUT_CHUNK):
        items = [
            rng.randbytes(rng.randint(100, 2000)) for _ in range(min(PUT_CHUNK, TREE_BLOBS - start))
        ]
        for result in store.put_many(items):
            rows.append((result.digest, result.size, now))
    files = time.perf_counter() - t
    t = time.perf_counter()
    rows.sort()
    conn = open_fill(ledger_path)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.execute("pragma wal_checkpoint(TRUNCATE)")
    conn.close()
    return files, time.perf_counter() - t, sum(r[1] for r in rows)


# -- 1. cas stats -------------------------------------------------------------------------------


def bench_stats(runtime: Any, env: dict[str, str], reps: int) -> float:
    from worker.cas import tools as cas_tools

    found = cas_tools.stats(runtime.ledger)
    med, p95 = median_p95(timed(lambda: cas_tools.stats(runtime.ledger), reps))
    print(
        f"cas_tools.stats():        median {ms(med)}, p95 {ms(p95)} over {reps} calls at "
        f"{found.blobs:,} blobs / {found.bytes:,} bytes (goal < {STATS_GOAL_MS:.0f} ms: "
        f"{verdict(med * 1000 < STATS_GOAL_MS)})"
    )
    seer = [str(BIN / "seer"), "cas", "stats"]
    _, shown = run_process(seer, env)  # warm-up, and what it prints
    bare, imports, command = [], [], []
    for _ in range(PROCESS_RUNS):
        bare.append(run_process([sys.executable, "-c", "pass"])[0])
        imports.append(run_process([sys.executable, "-c", "import seer_console.cli"])[0])
        command.append(run_process(seer, env)[0])
    b, i, c = (statistics.median(x) for x in (bare, imports, command))
    print(f"`seer cas stats` process: median {ms(c)} of {PROCESS_RUNS}, printing {shown.strip()!r}")
    print(
        f"  beside it, same interpreter: `python -c pass` {ms(b)}, "
        f"`python -c 'import seer_console.cli'` {ms(i)}"
    )
    print(
        f"  so: Python start-up {ms(b)}, the CLI's imports {ms(i - b)}, the command itself "
        f"(settings, Runtime.open, the counters, print) {ms(c - i)}"
    )
    print(
        "  the goal is judged on the in-process call (the answer); the process figure is "
        "mostly Python start-up and imports"
    )
    return med


# -- 2. cas reconcile vs du ---------------------------------------------------------------------


def cpu_self() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def cpu_children() -> tuple[float, float]:
    """(user, system) CPU seconds of the waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime, r.ru_stime


def cpu_since(before: tuple[float, float], now: tuple[float, float]) -> tuple[float, float]:
    return now[0] - before[0], now[1] - before[1]


def list_only(store: Any) -> int:
    """The scan's walk without its stat calls: the same opens, scandir and name checks (is_file
    comes from the directory entry's type), so scan minus this is the per-file fstatat."""
    from worker.cas.base import PREFIXES

    root_fd = os.open(store.root, os.O_RDONLY | os.O_DIRECTORY)
    names = 0
    try:
        for prefix in PREFIXES:
            try:
                fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root_fd)
            except FileNotFoundError:
                continue
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        name = entry.name
                        if len(name) == 67 and name.endswith(".blob"):
                            names += entry.is_file(follow_symlinks=False)
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    return names


def bench_reconcile(runtime: Any, env: dict[str, str], rounds: int) -> dict[str, float]:
    from worker.cas import tools as cas_tools

    ledger, store = runtime.ledger, runtime.store
    du_argv = ["du", "-sb", str(store.root)]
    seer = [str(BIN / "seer"), "cas", "reconcile", "--dry-run"]

    def du() -> tuple[float, tuple[float, float], str]:
        c = cpu_children()
        took, out = run_process(du_argv)
        return took, cpu_since(c, cpu_children()), out.split()[0]

    def reconcile(processes: int = 2) -> tuple[float, tuple[float, float], Any]:
        # Two processes, as `seer cas reconcile` walks on a machine with two cores or more.
        c, t = cpu_self(), time.perf_counter()
        report = cas_tools.reconcile(ledger, store, repair=False, processes=processes)
        return time.perf_counter() - t, cpu_since(c, cpu_self()), report

    _, _, du_bytes = du()
    _, _, report = reconcile()
    _, shown = run_process(seer, env)
    if not report.in_step or report.disk.blobs != TREE_BLOBS:
        raise RuntimeError(f"the tree is not in step: {report}")
    wall: dict[str, list[float]] = {"du": [], "rec": [], "rec1": [], "proc": []}
    cpu: dict[str, list[tuple[float, float]]] = {"du": [], "rec": []}
    for _ in range(rounds):
        took, used, _ = du()
        wall["du"].append(took)
        cpu["du"].append(used)
        took, used, report = reconcile()
        wall["rec"].append(took)
        cpu["rec"].append(used)
        wall["rec1"].append(reconcile(1)[0])
        wall["proc"].append(run_process(seer, env)[0])
    med = {k: statistics.median(v) for k, v in wall.items()}
    low = {k: min(v) for k, v in wall.items()}
    user = {k: statistics.median(u for u, _ in v) for k, v in cpu.items()}
    system = {k: statistics.median(s for _, s in v) for k, v in cpu.items()}
    print(
        f"tree: {report.disk.blobs:,} blob files, {report.disk.bytes:,} bytes by reconcile, "
        f"{int(du_bytes):,} by du -sb (which adds the directories' own sizes); in step: "
        f"{report.in_step}"
    )
    print(f"`seer cas reconcile --dry-run` prints: {shown.strip()!r}")
    print(f"{rounds} rounds after one warm-up of each (warm cache), wall (CPU medians):")
    print(
        f"  du -sb:                          median {ms(med['du'])}, min {ms(low['du'])} "
        f"(CPU user {ms(user['du'])}, system {ms(system['du'])})"
    )
    print(
        f"  reconcile(repair=False) in-proc: median {ms(med['rec'])}, min {ms(low['rec'])} "
        f"(2 processes, as the CLI; CPU of this process only: user {ms(user['rec'])}, "
        f"system {ms(system['rec'])})"
    )
    print(
        f"  the same, one process:           median {ms(med['rec1'])}, min {ms(low['rec1'])} "
        f"(ratio {med['rec1'] / med['du']:.2f})"
    )
    print(f"  `seer cas reconcile --dry-run`:  median {ms(med['proc'])}, min {ms(low['proc'])}")
    ratio, ratio_min = med["rec"] / med["du"], low["rec"] / low["du"]
    proc_ratio, proc_min = med["proc"] / med["du"], low["proc"] / low["du"]
    print(
        f"  ratio in-process / du: {ratio:.2f} of medians, {ratio_min:.2f} of mins "
        f"(goal <= {RECONCILE_GOAL_RATIO:.1f}, judged on the medians: "
        f"{verdict(ratio <= RECONCILE_GOAL_RATIO)})"
    )
    print(
        f"  ratio process / du:    {proc_ratio:.2f} of medians, {proc_min:.2f} of mins "
        f"(whole command, with Python start-up and imports; du is a C program)"
    )
    print(f"  all du:   {', '.join(f'{x * 1000:.0f}' for x in wall['du'])} ms")
    print(f"  all rec:  {', '.join(f'{x * 1000:.0f}' for x in wall['rec'])} ms")
    print(f"  all proc: {', '.join(f'{x * 1000:.0f}' for x in wall['proc'])} ms")

    # The parts of reconcile on their own (the same calls it makes).
    recorded: dict[str, int] = {}
    disk: dict[str, int] = {}

    def table() -> None:
        nonlocal recorded
        recorded = dict(ledger.execute("SELECT hash, size FROM blobs"))

    def scan() -> None:
        nonlocal disk
        disk = cas_tools._scan(store)

    parts = {
        "directory scan (_scan)": timed(scan, PART_RUNS, warmup=1),
        "  of which the walk without stat": timed(lambda: list_only(store), PART_RUNS, warmup=1),
        "table read (SELECT hash, size)": timed(table, PART_RUNS, warmup=1),
        "comparison (disk == recorded)": timed(lambda: disk == recorded, PART_RUNS, warmup=1),
        "sums of sizes": timed(
            lambda: (sum(disk.values()), sum(recorded.values())), PART_RUNS, warmup=1
        ),
    }
    print(f"  reconcile's parts alone, median of {PART_RUNS}:")
    total = 0.0
    for name, values in parts.items():
        m = statistics.median(values)
        total += 0.0 if name.startswith(" ") else m
        print(f"    {name:32} {ms(m)}")
    print(f"    {'sum of parts':32} {ms(total)} (the whole call: {ms(med['rec'])})")
    scan_med = statistics.median(parts["directory scan (_scan)"])
    walk_med = statistics.median(parts["  of which the walk without stat"])
    print(
        f"  so the scan's {TREE_BLOBS:,} entry.stat() calls (fstatat + stat_result) take "
        f"~{ms(scan_med - walk_med)}, {1e6 * (scan_med - walk_med) / TREE_BLOBS:.1f} µs each, and "
        f"the rest of the scan {ms(walk_med)}; du -sb does the whole walk in {ms(med['du'])}"
    )
    return {"ratio": ratio, "ratio_min": ratio_min, "proc_ratio": proc_ratio}


# -- 3. rules -----------------------------------------------------------------------------------


def bench_rules(runtime: Any, reps: int) -> dict[str, float]:
    from worker.monitoring import rules

    settings, ledger = runtime.settings, runtime.ledger
    readings = rules.evaluate(settings, rules.read_inputs(ledger))
    med, p95 = median_p95(timed(lambda: rules.evaluate(settings, rules.read_inputs(ledger)), reps))
    read_med, read_p95 = median_p95(timed(lambda: rules.read_inputs(ledger), reps))
    inputs = rules.read_inputs(ledger)
    eval_med, _ = median_p95(timed(lambda: rules.evaluate(settings, inputs), reps))
    print(
        f"evaluate(read_inputs()):  median {ms(med)}, p95 {ms(p95)} over {reps} calls (goal < "
        f"{RULES_GOAL_MS:.0f} ms: {verdict(med * 1000 < RULES_GOAL_MS)})"
    )
    print(f"  read_inputs alone {ms(read_med)} (p95 {ms(read_p95)}), evaluate alone {ms(eval_med)}")
    for r in readings:
        print(f"  {r.rule:20} {r.level:8} {r.summary}")

    huey = runtime.queues.postmaster
    took = fill_queue(runtime)
    count = huey.pending_count()
    hmed, hp95 = median_p95(timed(huey.pending_count, reps))
    print(
        f"huey pending_count():     median {ms(hmed)}, p95 {ms(hp95)} at {count:,} queued "
        f"tasks (for scale; {TASKS:,} tasks inserted in {took:.1f} s)"
    )
    return {"rules": med, "pending": hmed}


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200, help="timed in-process calls per figure")
    parser.add_argument("--rounds", type=int, default=11, help="du / reconcile rounds")
    parser.add_argument(
        "--code",
        default="HEAD",
        help="commit of worker/ and seer_console/ to measure (default HEAD), or 'worktree'",
    )
    args = parser.parse_args(argv)
    others = other_benchmarks()
    print(
        f"monitoring benchmark: python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}; other benchmarks "
        f"running: {'; '.join(others) if others else 'none'}"
    )
    top = Path(tempfile.mkdtemp(prefix="seer-bench-monitoring-"))
    started = time.perf_counter()
    try:
        print(f"code: {snapshot_code(top / 'code', args.code)}")
        return run(top, args)
    finally:
        t = time.perf_counter()
        shutil.rmtree(top, ignore_errors=True)
        print(
            f"cleanup {time.perf_counter() - t:.1f} s; total {time.perf_counter() - started:.0f} s"
        )


def run(top: Path, args: argparse.Namespace) -> int:
    from worker.runtime import Runtime
    from worker.settings import load_settings

    env_file = top / "seer.env"
    env_file.write_text("")
    big, tree = top / "big", top / "tree"
    for root in (big, tree):
        subprocess.run(
            [str(BIN / "seer"), "init"],
            env=environment(root, env_file),
            check=True,
            capture_output=True,
            timeout=120,
        )
    big_env, tree_env = environment(big, env_file), environment(tree, env_file)
    now = time.time()

    t = time.perf_counter()
    took = fill_big(big / "ledger.db", now)
    print(
        f"fill (big root): {STATS_BLOBS:,} blobs rows, {QUEUED:,} queued + {FAILED:,} failed "
        f"parcels ({FAILED_LAST_HOUR} in the last hour), compaction runs, in "
        f"{time.perf_counter() - t:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
        + ")"
    )
    for line in check_big(big / "ledger.db"):
        print(f"  {line}")
    runtime = Runtime.open(load_settings(big_env))
    tree_runtime = Runtime.open(load_settings(tree_env))
    files, rows, nbytes = fill_tree(tree_runtime, tree / "ledger.db", now)
    print(
        f"fill (tree root): {TREE_BLOBS:,} blobs of 100-2000 bytes ({nbytes:,} bytes) by "
        f"put_many in chunks of {PUT_CHUNK} in {files:.1f} s, their rows in {rows:.1f} s"
    )
    sys.stdout.flush()

    print("\n1. seer cas stats")
    stats_med = bench_stats(runtime, big_env, args.reps)
    sys.stdout.flush()
    print("\n2. seer cas reconcile vs du -sb")
    rec = bench_reconcile(tree_runtime, tree_env, args.rounds)
    sys.stdout.flush()
    print("\n3. alert rules")
    rule = bench_rules(runtime, args.reps)
    runtime.close()
    tree_runtime.close()

    print(f"\nsummary (load average now {os.getloadavg()[0]:.2f}):")
    rows_out = [
        ("cas stats (in-process)", f"{stats_med * 1000:.3f} ms", f"< {STATS_GOAL_MS:.0f} ms",
         stats_med * 1000 < STATS_GOAL_MS),
        ("reconcile / du -sb", f"{rec['ratio']:.2f}", f"<= {RECONCILE_GOAL_RATIO:.1f}",
         rec["ratio"] <= RECONCILE_GOAL_RATIO),
        ("rules evaluate", f"{rule['rules'] * 1000:.3f} ms", f"< {RULES_GOAL_MS:.0f} ms",
         rule["rules"] * 1000 < RULES_GOAL_MS),
    ]  # fmt: skip
    for name, value, goal, met in rows_out:
        print(f"  {name:24} {value:>10}  goal {goal:8} {verdict(met)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
