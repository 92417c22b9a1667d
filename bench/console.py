"""Console benchmark (issues 3 and 14): snapshot read, metric sample, idle CPU, start to first
frame; parcel searches, a parcel's life and inboxes at a million parcels.

    .venv/bin/python bench/console.py [--reps 50] [--cpu-seconds 30] [--launches 5] [--code HEAD]
        [--section all|issue3|parcels]

In one run, in a fresh temporary directory:

1. Fill. `seer init` a storage root, then fill its ledger with raw SQL in a few big
   transactions (not through the Postmaster): 200,000 queued parcels, 1,000,000 messages,
   100,000 failed parcels (finished over the last 30 days, with an error), 1,000,000 `blobs`
   rows (no files) and ~5,000 raw metric samples; and 200,000 serialized `deliver` tasks in
   the Huey queue. The counters are kept by the schema's triggers; they are checked against
   count(*) once the fill is done (not timed).
2. Reads, median and p95 of --reps calls after 3 warm-up calls: `SnapshotSource.read()`
   (goal < 50 ms), with the supervisord XML-RPC attempts (no supervisord: the socket is
   missing) timed on their own; one metric sample, `metrics.measure` + `metrics.record`
   (goal < 20 ms); Huey's own `pending_count()` at 200,000 queued tasks, for scale. Every SQL
   statement a read runs is caught with sqlite3's trace callback and timed on its own; a
   figure that misses its goal gets its slow statements' EXPLAIN QUERY PLAN.
3. The real `seer-console` (refresh 1 s, the default) in a tmux pane of 80x24 against a small
   initialised root and the big one: process CPU (user + system) over --cpu-seconds after 5 s
   of warm-up, as % of one core (goal < 3%), split into the main (UI) thread and the others
   (psutil's per-thread times); then 10 s frozen (key f: no reads, no pane updates).
4. Start to first frame: from launching `seer-console` in tmux to the first capture of the
   pane (polled every 20 ms) that shows the Queue pane with a depth ("<n> queued"); median of
   --launches (goal < 1.5 s). Baseline in the same run: a minimal Textual app (one
   Static("hello")) timed the same way until "hello" shows.

5. Issue 14 (--section parcels, also in all): another root, its ledger filled with raw SQL
   (~1-2 min): 1,000,000 parcels (200 agents, tasks of 10, 8 types; 100,000 failed after
   three tries, 20,000 queued, 200 in flight, the rest delivered), each with its history
   lines, 1,000,000 messages (a third unread), the artifacts of one delivered parcel in ten,
   then ANALYZE. Median and p95 of 20 calls of `finder.find` by id prefix, task, agent (and,
   for scale, other filters, page 101, time ranges), `finder.life`, `finder.recent` and
   `inbox.messages` (goal < 50 ms each); a figure that misses it gets its statements' plans.
   SQLite only: PostgreSQL is not measured here.

The code measured is the commit --code (default HEAD) of worker/ and seer_console/, unpacked
into the temporary directory and put first on the import path of this process and of every
`seer` / `seer-console` started here: others edit the working tree while this runs. tmux runs
on a private socket (-L) and is killed at the end, with every process started here. ~2.5 min.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from _common import median_p95, snapshot_code, timed  # bench/ is sys.path[0] when a bench runs

BIN = Path(sys.executable).parent
SOCKET = f"seer-bench-{os.getpid()}"
POLL = 0.02
FRAME_TIMEOUT = 20.0

QUEUED = 200_000
MESSAGES = 1_000_000
FAILED = 100_000
BLOBS = 1_000_000
TASKS = 200_000
SAMPLES = 5_000
SAMPLE_EVERY = 15.0
CHUNK = 50_000

READ_GOAL_MS = 50.0
SAMPLE_GOAL_MS = 20.0
CPU_GOAL_PCT = 3.0
FRAME_GOAL_S = 1.5

HELLO_APP = '''"""The start-to-first-frame baseline (written by bench/console.py)."""

from textual.app import App, ComposeResult
from textual.widgets import Static


class Hello(App):
    def compose(self) -> ComposeResult:
        yield Static("hello")


Hello().run()
'''

ERRORS = (
    "TimeoutError: agent inbox store did not answer within 30s",
    "CAS quota exceeded: this parcel needs 52428800 more bytes (ORCHESTRATION_CAS_MAX_SIZE)",
    "ValueError: envelope.metadata.priority must be one of low, normal, high",
    "WorkerDied: the worker died 3 times while delivering this parcel alone",
)


# -- helpers ------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def verdict(value: float, goal: float) -> str:
    return "met" if value < goal else "NOT met"


def environment(root: Path, env_file: Path) -> dict[str, str]:
    return dict(os.environ, SEER_STORAGE_PATH=str(root), SEER_ENV_FILE=str(env_file))


def init_root(root: Path, env_file: Path) -> None:
    subprocess.run(
        [str(BIN / "seer"), "init"],
        env=environment(root, env_file),
        check=True,
        capture_output=True,
    )


# -- 1. fill ------------------------------------------------------------------------------------


def fill_ledger(path: Path, now: float) -> dict[str, float]:
    """Raw SQL, a few big transactions; returns the seconds each part took."""
    rng = random.Random(3)
    took: dict[str, float] = {}
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma synchronous = OFF")  # the fill only; the measurements use the defaults
    conn.execute("pragma cache_size = -200000")
    payload = json.dumps({"envelope": {"body": "queued by bench/console.py"}, "attachments": {}})
    insert_parcel = (
        "INSERT INTO parcels (id, to_agent_id, task_id, type, stream, state, payload, size, "
        "attempts, created_at, finished_at, error, traceback) "
        "VALUES (?, ?, ?, 'bench.parcel', 'bench', ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    t = time.perf_counter()
    conn.execute("BEGIN")
    # Failed first (older parcels), then the queue: the oldest queued is ~33 min old.
    rows = []
    for i in range(FAILED):
        finished = now - rng.random() * 30 * 86400
        error = ERRORS[i % len(ERRORS)]
        trace = f'Traceback (most recent call last):\n  File "worker/postmaster.py"\n{error}\n'
        rows.append(
            (str(uuid.uuid4()), f"agent-{i % 50}", f"task-{i // 10}", "failed", payload,
             len(payload), 3, finished - 60, finished, error, trace)
        )  # fmt: skip
    conn.executemany(insert_parcel, rows)
    rows = [
        (str(uuid.uuid4()), f"agent-{i % 50}", f"task-{i // 10}", "queued", payload,
         len(payload), 0, now - (QUEUED - i) * 0.01, None, None, None)
        for i in range(QUEUED)
    ]  # fmt: skip
    conn.executemany(insert_parcel, rows)
    conn.execute("COMMIT")
    took["parcels"] = time.perf_counter() - t

    t = time.perf_counter()
    headers = json.dumps({"sent_by": "bench/console.py"})
    envelope = json.dumps({"body": "a delivered message of a modest size", "metadata": {}})
    conn.execute("BEGIN")
    for start in range(0, MESSAGES, CHUNK):
        conn.executemany(
            "INSERT INTO messages (parcel_id, to_agent_id, type, stream, headers, envelope, "
            "created_at) VALUES (?, ?, 'agent.inbox.message', 'bench', ?, ?, ?)",
            (
                (f"{i:08x}-0000-4000-8000-{i:012x}", f"agent-{i % 50}", headers, envelope,
                 now - 40 * 86400 + i * 3.0)
                for i in range(start, min(MESSAGES, start + CHUNK))
            ),
        )  # fmt: skip
    conn.execute("COMMIT")
    took["messages"] = time.perf_counter() - t

    t = time.perf_counter()
    conn.execute("BEGIN")
    # Sequential keys (in sorted order) keep the fill fast; nothing measured reads this table.
    for start in range(0, BLOBS, CHUNK):
        conn.executemany(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?)",
            (
                (f"{i:064x}", 1024 + i % 4096, now - 40 * 86400 + i * 3.0)
                for i in range(start, min(BLOBS, start + CHUNK))
            ),
        )
    conn.execute("COMMIT")
    took["blobs"] = time.perf_counter() - t

    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO metric_samples (resolution, ts, queue_depth, oldest_queued_age, delivered, "
        "failed, failed_last_hour, cas_bytes, cas_blobs, postmaster_up, scheduler_up, "
        "delivered_total, failed_total) VALUES (0, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
        (
            (now - (SAMPLES - i) * SAMPLE_EVERY, QUEUED - (SAMPLES - i) * 10, 1800.0, 40,
             i % 3, 139, 2_000_000_000 + i * 100_000, BLOBS - (SAMPLES - i) * 20,
             800_000 + 40 * i, 99_000 + i // 5)
            for i in range(SAMPLES)
        ),
    )  # fmt: skip
    conn.execute("COMMIT")
    took["metric samples"] = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute("pragma wal_checkpoint(TRUNCATE)")
    took["checkpoint"] = time.perf_counter() - t
    conn.close()
    return took


def fill_queue(runtime: Any, ids: list[str]) -> float:
    """TASKS serialized deliver tasks, inserted in one transaction (as Runtime.ring does)."""
    huey = runtime.queues.postmaster
    storage = huey.storage
    t = time.perf_counter()
    runtime.queues.ring(ids[:TASKS])  # one transaction, as Runtime.ring does
    storage.conn.execute("pragma wal_checkpoint(TRUNCATE)")  # autocommit: outside any transaction
    return time.perf_counter() - t


def check_counters(path: Path) -> list[str]:
    """Counters vs count(*): lines to print; a mismatch is said so."""
    conn = sqlite3.connect(path)
    counters = dict(conn.execute("SELECT name, value FROM counters"))
    actual = {f"parcels_{s}": 0 for s in ("queued", "in_flight", "delivered", "failed")}
    actual.update(
        {
            f"parcels_{s}": n
            for s, n in conn.execute("SELECT state, count(*) FROM parcels GROUP BY 1")
        }
    )
    actual["cas_blobs"], actual["cas_bytes"] = conn.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM blobs"
    ).fetchone()
    actual["delivered_total"] = actual["parcels_delivered"]
    actual["failed_total"] = actual["parcels_failed"]
    messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    samples = conn.execute("SELECT count(*) FROM metric_samples").fetchone()[0]
    conn.close()
    lines = []
    for name, value in actual.items():
        kept = counters.get(name)
        note = "ok" if kept == value else "MISMATCH"
        if name.endswith("_total") and kept != value:
            # The running totals' trigger fires on UPDATE OF state only; the Postmaster never
            # inserts a parcel as failed or delivered, this fill does.
            note += " (the fill bypasses it: only an UPDATE to that state counts)"
        lines.append(f"{name}: counter {kept:,} vs count {value:,} {note}")
    lines.append(f"messages rows {messages:,}, metric_samples rows {samples:,}")
    return lines


# -- issue 14: parcels and inboxes at a million ------------------------------------------------

BIG_PARCELS = 1_000_000
BIG_MESSAGES = 1_000_000
BIG_FAILED = 100_000
BIG_QUEUED = 20_000
BIG_IN_FLIGHT = 200
AGENTS = 200
ARTIFACT_EVERY = 10  # one parcel in ten has an attachment (and every delivered one a manifest)
FINDER_REPS = 20
FINDER_GOAL_MS = 50.0
HOST = "bench-host/4242/1700000000/140000000000001"


def _history(*events: tuple[str, float, dict[str, Any]]) -> str:
    return "".join(
        json.dumps({"k": k, "t": t, "o": HOST, **extra}, separators=(",", ":")) + "\n"
        for k, t, extra in events
    )


def fill_parcels(path: Path, now: float) -> tuple[dict[str, float], dict[str, Any]]:
    """1,000,000 parcels (200 agents, tasks of ~10, 8 types; 100,000 failed after three
    tries, 20,000 queued, 200 in flight, the rest delivered, each with its history lines),
    1,000,000 messages (one per delivered parcel, the rest older ones of no parcel still in
    the ledger, a third unread) and the artifacts of one delivered parcel in ten; raw SQL in
    big transactions. Returns the seconds each part took and what the reads look for."""
    rng = random.Random(14)
    took: dict[str, float] = {}
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma synchronous = OFF")
    conn.execute("pragma cache_size = -400000")
    insert = (
        "INSERT INTO parcels (id, to_agent_id, task_id, type, stream, state, payload, size, "
        "attempts, owner, created_at, claimed_at, finished_at, error, history) "
        "VALUES (?, ?, ?, ?, 'bench', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    payload = json.dumps({"envelope": {"body": "queued by bench/console.py"}, "attachments": {}})
    start = now - BIG_PARCELS * 2.0  # a parcel every 2 s: ~23 days
    delivered_ids: list[str] = []
    failed = 0
    t = time.perf_counter()
    conn.execute("BEGIN")
    for chunk in range(0, BIG_PARCELS, CHUNK):
        rows = []
        for i in range(chunk, min(BIG_PARCELS, chunk + CHUNK)):
            pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            created = start + i * 2.0
            agent, task, kind = f"agent-{i % AGENTS}", f"task-{i // 10}", f"bench.type.{i % 8}"
            # Failures spread over the whole range, the queue at the newest end.
            if i >= BIG_PARCELS - BIG_QUEUED:
                row = ("queued", payload, 0, None, None, None, None, None)
            elif i >= BIG_PARCELS - BIG_QUEUED - BIG_IN_FLIGHT:
                row = (
                    "in_flight",
                    payload,
                    0,
                    HOST,
                    now,
                    None,
                    None,
                    _history(("claimed", now, {})),
                )
            elif i % 9 == 7 and failed < BIG_FAILED:
                failed += 1
                error = ERRORS[i % len(ERRORS)]
                history = _history(
                    ("claimed", created + 1, {}),
                    ("try_failed", created + 2, {"attempt": 1, "error": error}),
                    ("claimed", created + 5, {}),
                    ("try_failed", created + 6, {"attempt": 2, "error": error}),
                    ("claimed", created + 9, {}),
                    ("failed", created + 10, {"attempt": 3, "error": error}),
                )
                row = ("failed", payload, 3, None, created + 9, created + 10, error, history)
            else:
                history = _history(("claimed", created + 1, {}), ("delivered", created + 1.5, {}))
                row = ("delivered", None, 1, None, created + 1, created + 1.5, None, history)
                delivered_ids.append(pid)
            state, body, attempts, owner, claimed, finished, error, history = row
            rows.append(
                (pid, agent, task, kind, state, body, len(payload), attempts, owner, created,
                 claimed, finished, error, history)
            )  # fmt: skip
        conn.executemany(insert, rows)
    conn.execute("COMMIT")
    took["parcels"] = time.perf_counter() - t

    t = time.perf_counter()
    headers = json.dumps({"original_type": "bench.type.0", "artifact_count": 0})
    envelope = json.dumps({"body": "a delivered message of a modest size", "metadata": {}})
    older = BIG_MESSAGES - len(delivered_ids)  # messages of parcels purged long ago
    conn.execute("BEGIN")
    message_rows = (
        (
            f"{i:08x}-0000-4000-8000-{i:012x}" if i < older else delivered_ids[i - older],
            f"agent-{i % AGENTS}",
            headers,
            envelope,
            start - (older - i) * 2.0 if i < older else start + (i - older) * 2.0,
            None if i % 3 == 0 else now - 60,
        )
        for i in range(BIG_MESSAGES)
    )
    while True:
        batch = [r for _, r in zip(range(CHUNK), message_rows, strict=False)]
        if not batch:
            break
        conn.executemany(
            "INSERT INTO messages (parcel_id, to_agent_id, type, stream, headers, envelope, "
            "created_at, read_at) VALUES (?, ?, 'postmaster.delivery', 'bench', ?, ?, ?, ?)",
            batch,
        )
    conn.execute("COMMIT")
    took["messages"] = time.perf_counter() - t

    t = time.perf_counter()
    conn.execute("BEGIN")
    rows = []
    for n, pid in enumerate(delivered_ids[::ARTIFACT_EVERY]):
        task = "task-bench"
        digest, manifest = f"{n:064x}", f"{n + 10**9:064x}"
        rows.append((pid, task, "attachment", "notes.txt", digest, "notes.txt", "text/plain",
                     1024, f"fe://artifacts/by-task/{task}/{digest}/notes.txt", now))  # fmt: skip
        rows.append((pid, task, "manifest", "manifest.json", manifest, "manifest.json",
                     "application/json", 300,
                     f"fe://artifacts/by-task/{task}/{manifest}/manifest.json", now))  # fmt: skip
    conn.executemany(
        "INSERT INTO artifacts (parcel_id, task_id, kind, name, hash, filename, mime_type, "
        "size, uri, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")
    took["artifacts"] = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute("ANALYZE")
    conn.execute("pragma wal_checkpoint(TRUNCATE)")
    took["analyze + checkpoint"] = time.perf_counter() - t
    failed_id = conn.execute(
        "SELECT id FROM parcels WHERE state = 'failed' ORDER BY seq LIMIT 1 OFFSET 50000"
    ).fetchone()[0]
    conn.close()
    wanted = {
        "with_artifacts": delivered_ids[ARTIFACT_EVERY * 4000],
        "failed": failed_id,
        "task": f"task-{(BIG_PARCELS // 2) // 10}",
        "agent": f"agent-{AGENTS // 2}",
    }
    return took, wanted


def measure_finder(settings: Any, wanted: dict[str, Any]) -> list[tuple[str, float, bool]]:
    """Median of FINDER_REPS of each console read of issue 14; each against the 50 ms goal."""
    import inspect

    from worker.parcels import finder, inbox
    from worker.runtime import Runtime

    runtime = Runtime.open(settings)
    ledger = runtime.ledger
    conn = ledger.db.connection()
    pid = wanted["with_artifacts"]
    inbox_kw = (
        {"unread_first": True}
        if "unread_first" in inspect.signature(inbox.messages).parameters
        else {}
    )
    page_100_cursor = [None]

    def hundredth_page() -> None:
        before = None
        for _ in range(100):
            before = finder.find(ledger, agent=wanted["agent"], before=before).next_before
        page_100_cursor[0] = before

    hundredth_page()
    cursor = page_100_cursor[0]
    figures: list[tuple[str, Callable[[], Any], bool]] = [
        ("find: id prefix (8 hex)", lambda: finder.find(ledger, id_prefix=pid[:8]), True),
        ("find: id prefix (13, with '-')", lambda: finder.find(ledger, id_prefix=pid[:13]), False),
        ("find: id prefix (1 hex)", lambda: finder.find(ledger, id_prefix=pid[:1]), False),
        ("find: task id", lambda: finder.find(ledger, task_id=wanted["task"]), True),
        ("find: agent (5,000 parcels)", lambda: finder.find(ledger, agent=wanted["agent"]), True),
        (
            "find: agent, page 101",
            lambda: finder.find(ledger, agent=wanted["agent"], before=cursor),
            False,
        ),
        (
            "find: agent + failed",
            lambda: finder.find(ledger, agent=wanted["agent"], state="failed"),
            False,
        ),
        ("find: type", lambda: finder.find(ledger, type="bench.type.3"), False),
        ("find: state failed", lambda: finder.find(ledger, state="failed"), False),
        (
            "find: since 2h",
            lambda: finder.find(ledger, since=ledger.now() - 7200),
            False,
        ),
        (
            "find: a day, 10 days ago",
            lambda: finder.find(
                ledger, since=ledger.now() - 11 * 86400, until=ledger.now() - 10 * 86400
            ),
            False,
        ),
        ("life: a delivered parcel", lambda: finder.life(ledger, pid), True),
        ("life: a failed parcel", lambda: finder.life(ledger, wanted["failed"]), False),
        ("recent deliveries (20)", lambda: finder.recent(ledger), False),
        (
            "inbox: 50 newest of an agent" + (" (unread first)" if inbox_kw else ""),
            lambda: inbox.messages(ledger, wanted["agent"], limit=50, **inbox_kw),
            True,
        ),
        (
            "inbox: 50 unread of an agent",
            lambda: inbox.messages(ledger, wanted["agent"], unread=True, limit=50),
            False,
        ),
    ]
    results = []
    for name, call, asked in figures:
        med, p95 = median_p95(timed(call, FINDER_REPS))
        met = med * 1000 < FINDER_GOAL_MS
        results.append((name, med, met))
        print(
            f"  {name:34} median {ms(med)}, p95 {ms(p95)}"
            + (
                f"  (goal < {FINDER_GOAL_MS:.0f} ms: {'met' if met else 'NOT met'})"
                if asked
                else ""
            )
        )
        if not met:
            with Tracer(conn) as tracer:
                call()
            explain(conn, profile_statements(conn, tracer.statements))
    with Tracer(conn) as tracer:
        finder.life(ledger, pid)
    print(f"  life runs {len(tracer.statements)} statements; plans of the searches:")
    for label, sql in (
        ("id prefix", f"SELECT seq FROM parcels WHERE id >= '{pid[:8]}' AND id < "
         f"'{pid[:7]}{chr(ord(pid[7]) + 1)}' AND substr(id, 1, 8) = '{pid[:8]}' "
         "ORDER BY seq DESC LIMIT 51"),
        ("task", f"SELECT seq FROM parcels WHERE task_id = '{wanted['task']}' "
         "ORDER BY seq DESC LIMIT 51"),
        ("agent", f"SELECT seq FROM parcels WHERE to_agent_id = '{wanted['agent']}' "
         "ORDER BY seq DESC LIMIT 51"),
    ):  # fmt: skip
        print(f"    {label:10} {plan(conn, sql)}")
    runtime.close()
    return results


def fill_history(settings: Any, now: float) -> int:
    """Ninety days of metric history as the sampler and the roll-up leave it: raw every 15 s
    for the last day, per minute for the week, per hour before. Returns the rows written."""
    from worker.monitoring import metrics
    from worker.runtime import Runtime

    def sample(ts: float, n: int) -> Any:
        depth = 20 + (n * 7919) % 400
        cas = 8 * 1024**3 + n * 150_000
        return metrics.Sample(ts, depth, None, 3 + n % 5, n % 3, 0, cas, 0, True, True, 0, 0)

    runtime = Runtime.open(settings)
    rows = 0
    for resolution, step, start, stop in (
        (metrics.HOUR, 3600, 90 * 86400, 7 * 86400),
        (metrics.MINUTE, 60, 7 * 86400, 86400),
        (metrics.RAW, 15, 86400, 0),
    ):
        stamps = [now - age for age in range(start, stop, -step)]
        metrics.record_many(
            runtime.ledger, [sample(ts, i) for i, ts in enumerate(stamps)], resolution
        )
        rows += len(stamps)
    runtime.close()
    return rows


def measure_plots(settings: Any, now: float) -> list[tuple[str, float, bool]]:
    """Each window of the History view, as the view reads it (metrics.window), median of
    FINDER_REPS; the 7-day one against the 50 ms goal."""
    from worker.monitoring import metrics
    from worker.runtime import Runtime

    runtime = Runtime.open(settings)
    results = []
    for name in metrics.WINDOWS:
        med, p95 = median_p95(
            timed(lambda n=name: metrics.window(runtime.ledger, n, now), FINDER_REPS)
        )
        asked = name == "7d"
        met = med * 1000 < FINDER_GOAL_MS
        points = len(metrics.window(runtime.ledger, name, now).ts)
        print(
            f"  {'plot window: ' + name + f' ({points} points)':34} median {ms(med)}, p95 {ms(p95)}"
            + (
                f"  (goal < {FINDER_GOAL_MS:.0f} ms: {'met' if met else 'NOT met'})"
                if asked
                else ""
            )
        )
        if asked:
            results.append((f"plot window: {name}", med, met))
    runtime.close()
    return results


def print_parcel_summary(results: list[tuple[str, float, bool]]) -> None:
    print(f"summary, issue 14 (load average now {os.getloadavg()[0]:.2f}):")
    for name, med, met in results:
        print(
            f"  {name:34} {med * 1000:7.2f} ms  goal < {FINDER_GOAL_MS:.0f} ms "
            f"{'met' if met else 'NOT met'}"
        )


def parcels_section(top: Path) -> list[tuple[str, float, bool]]:
    from worker.settings import load_settings

    env_file = top / "seer.env"
    env_file.write_text("")
    root = top / "million"
    init_root(root, env_file)
    settings = load_settings(environment(root, env_file))
    ledger_path = Path(settings.storage_root) / "ledger.db"
    t = time.perf_counter()
    took, wanted = fill_parcels(ledger_path, time.time())
    print(
        f"issue 14 fill: {BIG_PARCELS:,} parcels ({BIG_FAILED:,} failed, {BIG_QUEUED:,} queued, "
        f"{BIG_IN_FLIGHT} in flight, the rest delivered, each with its history), "
        f"{BIG_MESSAGES:,} messages, {AGENTS} agents, in {time.perf_counter() - t:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
        + f"); ledger.db {ledger_path.stat().st_size / 1e6:.0f} MB"
    )
    now = time.time()
    t = time.perf_counter()
    rows = fill_history(settings, now)
    print(f"metric history: {rows:,} rows (90 days rolled up) in {time.perf_counter() - t:.1f} s")
    print(f"reads (median and p95 of {FINDER_REPS}, after 3 warm-up calls):")
    sys.stdout.flush()
    return measure_finder(settings, wanted) + measure_plots(settings, now)


# -- 2. reads -----------------------------------------------------------------------------------


class Tracer:
    """Collects the statements run on one sqlite3 connection (expanded, with their values)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def __enter__(self) -> Tracer:
        self.conn.set_trace_callback(self.statements.append)
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.set_trace_callback(None)


def profile_statements(
    conn: sqlite3.Connection, statements: list[str], reps: int = 20
) -> list[tuple[float, str]]:
    """Median time of each distinct read-only statement, slowest first."""
    seen: dict[str, int] = {}
    for sql in statements:
        seen[sql] = seen.get(sql, 0) + 1
    out = []
    for sql, count in seen.items():
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        median, _ = median_p95(timed(lambda s=sql: conn.execute(s).fetchall(), reps, warmup=1))
        out.append((median * count, f"{sql}" + (f"  [x{count}]" if count > 1 else "")))
    return sorted(out, reverse=True)


def plan(conn: sqlite3.Connection, sql: str) -> str:
    rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
    return "; ".join(r[-1] for r in rows)


def one_line(sql: str, width: int = 150) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def measure_reads(settings: Any, reps: int) -> dict[str, float]:
    from seer_console.source import SnapshotSource
    from worker.fleet import supervision
    from worker.monitoring import metrics

    results: dict[str, float] = {}
    # The settings of the big root, not the environment again on every read (which names none).
    source = SnapshotSource(settings, reload=False)
    t = time.perf_counter()
    source.read()
    cold = time.perf_counter() - t
    runtime = source.runtime
    ledger = runtime.ledger
    conn = ledger.db.connection()

    read = timed(source.read, reps)
    med, p95 = median_p95(read)
    results["read"] = med
    print(
        f"SnapshotSource.read():   median {ms(med)}, p95 {ms(p95)} over {reps} (goal < "
        f"{READ_GOAL_MS:.0f} ms: {verdict(med * 1000, READ_GOAL_MS)}); first call, opening the "
        f"runtime: {ms(cold)}"
    )

    sock = supervision.socket_path(runtime.layout)

    def attempt() -> None:
        try:
            supervision.Supervisor(sock, timeout=2.0).programs()
        except supervision.SupervisorError:
            return
        raise RuntimeError("supervisord answered: this bench expects none")

    sup_med, sup_p95 = median_p95(timed(attempt, reps))
    print(
        f"  of which supervisord:  median {ms(sup_med)} per XML-RPC attempt, p95 {ms(sup_p95)}; "
        f"a read makes 2 (status + workers): {ms(2 * sup_med)} "
        f"(socket {sock} exists: {sock.exists()})"
    )

    with Tracer(conn) as tracer:
        source.read()
    timings = profile_statements(conn, tracer.statements)
    sql_total = sum(t for t, _ in timings)
    print(
        f"  of which SQL:          {ms(sql_total)} in {len(tracer.statements)} statements "
        f"(each re-run alone, median of 20); the rest, {ms(med - sql_total - 2 * sup_med)}, "
        "is Python (dataclasses, psutil, JSON)"
    )
    for took, sql in timings[:5]:
        print(f"    {ms(took)}  {one_line(sql, 110)}")
    if med * 1000 >= READ_GOAL_MS:
        explain(conn, timings)

    def sample() -> None:
        taken = metrics.measure(ledger, settings.postmaster_queue, settings.scheduler_queue)
        metrics.record(ledger, taken)

    sample_times = timed(sample, reps)
    med, p95 = median_p95(sample_times)
    results["sample"] = med
    measure_med, _ = median_p95(
        timed(
            lambda: metrics.measure(ledger, settings.postmaster_queue, settings.scheduler_queue),
            reps,
        )
    )
    print(
        f"metric sample:           median {ms(med)}, p95 {ms(p95)} over {reps} (goal < "
        f"{SAMPLE_GOAL_MS:.0f} ms: {verdict(med * 1000, SAMPLE_GOAL_MS)}); measure alone "
        f"{ms(measure_med)}, so record (one durable commit) ~{ms(med - measure_med)}"
    )
    with Tracer(conn) as tracer:
        metrics.measure(ledger, settings.postmaster_queue, settings.scheduler_queue)
    timings = profile_statements(conn, tracer.statements)
    for took, sql in timings[:3]:
        print(f"    {ms(took)}  {one_line(sql, 110)}")
    if med * 1000 >= SAMPLE_GOAL_MS:
        explain(conn, timings)

    huey = runtime.queues.postmaster
    med, p95 = median_p95(timed(huey.pending_count, reps))
    results["pending_count"] = med
    print(
        f"huey pending_count():    median {ms(med)}, p95 {ms(p95)} at {huey.pending_count():,} "
        "queued tasks (for scale; the issue says ~12 ms)"
    )
    queue_conn = huey.storage.conn
    print(
        f"  plan: {plan(queue_conn, 'select count(id) from task where queue=' + repr(huey.name))}"
    )
    runtime.close()
    return results


def explain(conn: sqlite3.Connection, timings: list[tuple[float, str]]) -> None:
    print("    slowest statements, with EXPLAIN QUERY PLAN:")
    for took, sql in timings[:3]:
        plain = re.sub(r"\s+\[x\d+\]$", "", sql)
        print(f"    {ms(took)}  {one_line(plain, 150)}")
        print(f"               plan: {plan(conn, plain)}")


# -- 3 and 4. the real console in tmux ----------------------------------------------------------


def tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["tmux", "-L", SOCKET, *args], check=check, capture_output=True, text=True
    )


def capture(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session, check=False).stdout


def launch(session: str, command: str) -> None:
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)


def session_pids(session: str) -> list[int]:
    out = tmux("list-panes", "-t", session, "-F", "#{pane_pid}", check=False).stdout
    return [int(x) for x in out.split()]


def stop_session(session: str) -> None:
    """Kills the tmux session, then any process of its pane that outlives it (by pid)."""
    procs = []
    for pid in session_pids(session):
        try:
            top = psutil.Process(pid)
            procs += [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    tmux("kill-session", "-t", session, check=False)
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        proc.kill()
    psutil.wait_procs(alive, timeout=5)


def console_process(session: str, timeout: float = 10.0) -> psutil.Process:
    """The python process running seer-console in the session's pane."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid in session_pids(session):
            try:
                top = psutil.Process(pid)
                for proc in [top, *top.children(recursive=True)]:
                    if any(part.endswith("seer-console") for part in proc.cmdline()):
                        return proc
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"no seer-console process in tmux session {session}")


def console_command(root: Path, env_file: Path) -> str:
    return (
        f"env SEER_STORAGE_PATH={shlex.quote(str(root))} "
        f"SEER_ENV_FILE={shlex.quote(str(env_file))} "
        f"PYTHONPATH={shlex.quote(os.environ.get('PYTHONPATH', ''))} "
        f"{shlex.quote(str(BIN / 'seer-console'))}"
    )


def has_data(text: str) -> bool:
    return "Queue" in text and re.search(r"\d[\d,]* queued", text) is not None


def cpu_over(proc: psutil.Process, seconds: float) -> tuple[float, float, float, float]:
    """% of one core: in all, user, system, and the main (UI, asyncio) thread's share."""
    before, t0 = proc.cpu_times(), time.perf_counter()
    main_before = next(t.user_time + t.system_time for t in proc.threads() if t.id == proc.pid)
    time.sleep(seconds)
    after, t1 = proc.cpu_times(), time.perf_counter()
    main_after = next(t.user_time + t.system_time for t in proc.threads() if t.id == proc.pid)
    user, system = after.user - before.user, after.system - before.system
    wall = (t1 - t0) / 100.0
    return (user + system) / wall, user / wall, system / wall, (main_after - main_before) / wall


def idle_cpu(name: str, root: Path, env_file: Path, seconds: float) -> float:
    """Live CPU over `seconds`; then, frozen (key f: no reads, no updates), over 10 s."""
    session = f"cpu-{name}"
    launch(session, console_command(root, env_file))
    try:
        proc = console_process(session)
        time.sleep(5.0)
        screen = capture(session)
        if not has_data(screen) or "cannot read state" in screen or not proc.is_running():
            raise RuntimeError(f"console shows no data after 5 s:\n{screen}")
        pct, user, system, main = cpu_over(proc, seconds)
        depth = re.search(r"\d[\d,]* queued[^\n│┃]*", capture(session))
        print(
            f"idle CPU, {name:5} root:   {pct:5.2f}% of one core over {seconds:.0f} s (goal < "
            f"{CPU_GOAL_PCT:.0f}%: {verdict(pct, CPU_GOAL_PCT)}); pane shows "
            f"'{depth.group(0).strip() if depth else '?'}'"
        )
        print(
            f"  user {user:.2f}%, system {system:.2f}%; main (UI) thread {main:.2f}%, other "
            f"threads (snapshot reads, terminal writer) {pct - main:.2f}%"
        )
        tmux("send-keys", "-t", session, "f")
        time.sleep(2.0)
        frozen = "FROZEN" in capture(session)
        still, _, _, _ = cpu_over(proc, 10.0)
        print(
            f"  frozen (f, no reads):  {still:5.2f}% over 10 s (banner FROZEN seen: {frozen}); "
            f"so reading and updating the panes once a second costs {pct - still:.2f}%"
        )
        return pct
    finally:
        stop_session(session)


def views_cpu(top: Path, seconds: float) -> list[tuple[str, float, bool]]:
    """Every view opened once (so each is built and keeps what it keeps: timers, tables,
    plots), then the console's CPU over `seconds` back on the main screen, and over 10 s on
    each view; goal < CPU_GOAL_PCT each. The root is a small initialised one with a few
    delivered and failed parcels and its own logs (the Logs view follows one)."""
    from seer_console.views import VIEWS

    env_file = top / "seer.env"
    env_file.write_text("")
    root = top / "views"
    init_root(root, env_file)
    env = environment(root, env_file)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    for name in ("seer-postmaster.log", "seer-scheduler.log", "orchestration.log"):
        with open(logs / name, "a") as f:
            for n in range(2000):
                f.write(f"2026-12-02 10:{n // 60 % 60:02d}:{n % 60:02d} INFO delivered {n}\n")
    subprocess.run(
        [str(BIN / "seer"), "send-test-parcel"], env=env, check=False, capture_output=True
    )
    session = "views"
    launch(session, console_command(root, env_file))
    results = []
    try:
        proc = console_process(session)
        deadline = time.time() + 15
        while not has_data(capture(session)):
            if time.time() > deadline:
                raise RuntimeError(f"console shows no data:\n{capture(session)}")
            time.sleep(POLL)
        for view in VIEWS:
            tmux("send-keys", "-t", session, view.KEY)
            deadline = time.time() + 10
            while view.view_title not in capture(session):
                if time.time() > deadline:
                    raise RuntimeError(f"view {view.view_title} not shown:\n{capture(session)}")
                time.sleep(POLL)
            time.sleep(1.0)  # its first read done
            tmux("send-keys", "-t", session, "Escape")
            time.sleep(0.5)
        time.sleep(2.0)
        pct, _, _, main = cpu_over(proc, seconds)
        met = pct < CPU_GOAL_PCT
        print(
            f"idle CPU, main screen, all {len(VIEWS)} views built: {pct:5.2f}% of one core over "
            f"{seconds:.0f} s (main thread {main:.2f}%; goal < {CPU_GOAL_PCT:.0f}%: "
            f"{verdict(pct, CPU_GOAL_PCT)})"
        )
        results.append(("idle CPU, all views built", pct, met))
        for view in VIEWS:
            tmux("send-keys", "-t", session, view.KEY)
            time.sleep(3.0)
            pct, _, _, main = cpu_over(proc, 10.0)
            print(
                f"  on the {view.view_title} view ({view.KEY}): {pct:5.2f}% over 10 s (main "
                f"thread {main:.2f}%: {verdict(pct, CPU_GOAL_PCT)})"
            )
            results.append((f"idle CPU on {view.view_title}", pct, pct < CPU_GOAL_PCT))
            tmux("send-keys", "-t", session, "Escape")
            time.sleep(0.5)
        return results
    finally:
        stop_session(session)


def first_frame(session: str, command: str, ready: Callable[[str], bool]) -> float:
    t0 = time.perf_counter()
    launch(session, command)
    try:
        while True:
            if ready(capture(session)):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > FRAME_TIMEOUT:
                raise RuntimeError(f"{session}: no frame in {FRAME_TIMEOUT}s:\n{capture(session)}")
            time.sleep(POLL)
    finally:
        stop_session(session)
        time.sleep(0.3)


def import_seconds(statement: str, runs: int = 5) -> float:
    """Wall time of a fresh interpreter running `statement` (median of `runs`)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, cwd=tempfile.gettempdir())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def frames(name: str, command: str, ready: Callable[[str], bool], launches: int) -> float:
    times = [first_frame(f"frame-{name}-{i}", command, ready) for i in range(launches)]
    med = statistics.median(times)
    print(
        f"first frame, {name:12} median {med:5.2f} s of {launches} "
        f"({', '.join(f'{t:.2f}' for t in times)})"
    )
    return med


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=50, help="timed calls per read figure")
    parser.add_argument("--cpu-seconds", type=float, default=30.0)
    parser.add_argument("--launches", type=int, default=5, help="launches per first-frame figure")
    parser.add_argument(
        "--code",
        default="HEAD",
        help="commit of worker/ and seer_console/ to measure (default HEAD), or 'worktree'",
    )
    parser.add_argument(
        "--section",
        choices=("all", "issue3", "parcels", "views"),
        default="all",
        help="issue 3's figures (snapshot, sample, CPU, first frame), issue 14's parcels, "
        "inboxes and plots at a million, issue 14's idle CPU with every view built, or all "
        "(default)",
    )
    args = parser.parse_args(argv)
    if not shutil.which("tmux"):
        print("console benchmark: tmux is required")
        return 2
    import huey
    import textual

    print(
        f"console benchmark: python {sys.version.split()[0]}, textual {textual.__version__}, "
        f"huey {huey.__version__}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} cpus, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    top = Path(tempfile.mkdtemp(prefix="seer-bench-console-"))
    print(f"code: {snapshot_code(top / 'code', args.code)}")
    started = time.perf_counter()
    try:
        code = run(top, args) if args.section in ("all", "issue3") else 0
        results = []
        if args.section in ("all", "parcels"):
            results += parcels_section(top)
        if args.section in ("all", "views"):
            tmux("new-session", "-d", "-s", "keep-views", "-x", "80", "-y", "24", "sleep 3600")
            tmux("set-option", "-g", "remain-on-exit", "on")
            cpu = views_cpu(top, args.cpu_seconds)
            print_parcel_summary(results)
            for name, pct, met in cpu:
                print(
                    f"  {name:34} {pct:7.2f} %   goal < {CPU_GOAL_PCT:.0f} %  "
                    + ("met" if met else "NOT met")
                )
        elif results:
            print_parcel_summary(results)
        return code
    finally:
        tmux("kill-server", check=False)
        # tmux leaves its socket file behind: remove ours (tmux's default place for -L names).
        tmpdir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmpdir / SOCKET).unlink(missing_ok=True)
        shutil.rmtree(top, ignore_errors=True)
        print(f"total {time.perf_counter() - started:.0f} s")


def run(top: Path, args: argparse.Namespace) -> int:
    from worker.runtime import Runtime
    from worker.settings import load_settings

    env_file = top / "seer.env"
    env_file.write_text("")
    small, big = top / "small", top / "big"
    init_root(small, env_file)
    init_root(big, env_file)
    settings = load_settings(environment(big, env_file))

    now = time.time()
    t = time.perf_counter()
    took = fill_ledger(Path(settings.storage_root) / "ledger.db", now)
    runtime = Runtime.open(settings)
    ids = [
        r["id"]
        for r in runtime.ledger.rows(
            "SELECT id FROM parcels WHERE state = 'queued' ORDER BY seq LIMIT ?", (TASKS,)
        )
    ]
    took["huey tasks"] = fill_queue(runtime, ids)
    runtime.close()
    fill_total = time.perf_counter() - t
    ledger_mb = (Path(settings.storage_root) / "ledger.db").stat().st_size / 1e6
    queue_mb = (Path(settings.storage_root) / "queue.db").stat().st_size / 1e6
    print(
        f"fill: {QUEUED:,} queued + {FAILED:,} failed parcels, {MESSAGES:,} messages, "
        f"{BLOBS:,} blobs rows, {SAMPLES:,} samples, {TASKS:,} huey tasks in "
        f"{fill_total:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()) + ")"
    )
    print(f"      ledger.db {ledger_mb:.0f} MB, queue.db {queue_mb:.0f} MB")
    for line in check_counters(Path(settings.storage_root) / "ledger.db"):
        print(f"      {line}")
    sys.stdout.flush()

    reads = measure_reads(settings, args.reps)
    sys.stdout.flush()

    # One server for every launch (none pays for starting it); a pane whose command dies stays
    # open, so that a crash of the console is shown rather than an empty capture.
    tmux("new-session", "-d", "-s", "keep", "-x", "80", "-y", "24", "sleep 3600")
    tmux("set-option", "-g", "remain-on-exit", "on")
    cpu_small = idle_cpu("small", small, env_file, args.cpu_seconds)
    cpu_big = idle_cpu("big", big, env_file, args.cpu_seconds)
    sys.stdout.flush()

    hello = top / "hello_app.py"
    hello.write_text(HELLO_APP)
    base = frames(
        "hello app:",
        f"{shlex.quote(sys.executable)} {shlex.quote(str(hello))}",
        lambda text: "hello" in text,
        args.launches,
    )
    frame_small = frames("small root:", console_command(small, env_file), has_data, args.launches)
    frame_big = frames("big root:", console_command(big, env_file), has_data, args.launches)
    for name, value in (("small", frame_small), ("big", frame_big)):
        print(
            f"  {name} root: {value:.2f} s (goal < {FRAME_GOAL_S} s: "
            f"{verdict(value, FRAME_GOAL_S)}), {value - base:+.2f} s over the minimal app"
        )
    bare = import_seconds("pass")
    ours = import_seconds("import seer_console.app")
    theirs = import_seconds("import textual.app, textual.widgets")
    print(
        f"  start-up imports (fresh python, median of 5): `import seer_console.app` "
        f"{ours:.2f} s, `import textual.app, textual.widgets` {theirs:.2f} s, bare python "
        f"{bare:.2f} s: the console's own imports account for {ours - theirs:.2f} s"
    )

    print(f"summary (load average now {os.getloadavg()[0]:.2f}):")
    rows = [
        ("SnapshotSource.read()", f"{reads['read'] * 1000:.1f} ms", f"< {READ_GOAL_MS:.0f} ms",
         reads["read"] * 1000 < READ_GOAL_MS),
        ("metric sample", f"{reads['sample'] * 1000:.1f} ms", f"< {SAMPLE_GOAL_MS:.0f} ms",
         reads["sample"] * 1000 < SAMPLE_GOAL_MS),
        ("idle CPU, small root", f"{cpu_small:.2f}%", f"< {CPU_GOAL_PCT:.0f}%",
         cpu_small < CPU_GOAL_PCT),
        ("idle CPU, big root", f"{cpu_big:.2f}%", f"< {CPU_GOAL_PCT:.0f}%",
         cpu_big < CPU_GOAL_PCT),
        ("first frame, small root", f"{frame_small:.2f} s", f"< {FRAME_GOAL_S} s",
         frame_small < FRAME_GOAL_S),
        ("first frame, big root", f"{frame_big:.2f} s", f"< {FRAME_GOAL_S} s",
         frame_big < FRAME_GOAL_S),
    ]  # fmt: skip
    for name, value, goal, met in rows:
        print(f"  {name:24} {value:>9}  goal {goal:8} {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
