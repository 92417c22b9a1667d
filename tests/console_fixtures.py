"""Deterministic console data: a real ledger filled at a fixed clock, and a source that pins
what cannot be fixed (host name, process ids, CPU). Used by the tests and `make screenshots`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Any, ClassVar

from seer_console.app import SeerConsole
from seer_console.source import ConsoleSnapshot, SnapshotSource, WorkerRow
from worker.alerts import outbox
from worker.alerts.channels import Notification
from worker.doorbells import QueueProbe
from worker.fleet import control
from worker.monitoring import metrics
from worker.monitoring.status import ConsumerStatus
from worker.parcels import intake as parcels
from worker.queue.queues import redis_persistence
from worker.runtime import Runtime

NOW = 1_795_780_800.0  # 2026-11-27 12:00:00 UTC
ROOT = "/srv/seer/storage"
HOST = "seer-prod-1"
GITHUB_TOKEN = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"


# One round trip to the queue's storage, pinned: the real one differs on every read.
LATENCY = 0.0002


class _RedisKeepingNothing:
    """CONFIG GET as a Redis answers that persists nothing, as this machine's does."""

    CONFIG: ClassVar[dict[str, str]] = {
        "appendonly": "no",
        "save": "",
        "maxmemory": "0",
        "maxmemory-policy": "noeviction",
    }

    def config_get(self, name: str) -> dict[str, str]:
        return {name: self.CONFIG[name]}


def redis_probe() -> QueueProbe:
    """The queue on a production Redis that persists nothing, its warning in the words the
    probe uses."""
    kept, warnings = redis_persistence(_RedisKeepingNothing())
    return QueueProbe(
        "redis",
        "redis://10.0.4.12:6379",
        True,
        latency=0.00041,
        depths={"postmaster": 1, "scheduler": 0},
        persistence=kept,
        warnings=warnings,
    )


def app_for(runtime: Runtime, **kw: Any) -> SeerConsole:
    """A console over `runtime` at the fixed clock, refreshed only when a test says so."""
    return SeerConsole(FixedSource(runtime), live=False, clock=lambda: NOW, **kw)


async def settle(pilot: Any, rounds: int = 2) -> None:
    """Until the thread workers a key started are done and their results are on screen: a
    worker's result can start another (a view's search, then its page)."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def use_utc() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()


def fill(runtime: Runtime, *, paused: bool = False) -> None:
    """Delivered, queued and failed parcels, and two hours of samples, all at fixed times."""
    ledger = runtime.ledger
    size = runtime.settings.max_parcel_size
    agents = ["planner", "coder", "reviewer", "researcher"]
    batch = [
        parcels.validate(
            {
                "to_agent_id": agents[n % 4],
                "task_id": f"task-{n:03d}",
                "type": "pm.task.created",
                "envelope": {"body": f"step {n}", "metadata": {"api_key": GITHUB_TOKEN}},
                "attachments": {"notes.md": {"content": f"notes {n}\n" * 20}},
            },
            size,
        )
        for n in range(60)
    ]
    parcels.queue_parcels(ledger, batch, now=NOW - 7200)
    with ledger.write():
        # Fixed ids, so that the screens are the same on every run (and on every engine).
        ledger.executemany(
            "UPDATE parcels SET id = ? WHERE seq = ?",
            [
                (f"{seq * 2654435761 % 4294967296:08x}-5eed-4000-8000-{seq:012d}", seq)
                for seq in [r["seq"] for r in ledger.rows("SELECT seq FROM parcels")]
            ],
        )
    ids = [r["id"] for r in ledger.rows("SELECT id FROM parcels ORDER BY seq")]
    runtime.postmaster().deliver_waiting(now=NOW - 3600, limit=31)
    runtime.postmaster().deliver_waiting(now=NOW - 25, limit=9)  # the last minute's flow
    errors = [
        "TimeoutError: agent inbox store did not answer within 30s",
        "CAS quota exceeded: this parcel needs 52428800 more bytes (ORCHESTRATION_CAS_MAX_SIZE)",
        "ValueError: envelope.metadata.priority must be one of low, normal, high",
        "WorkerDied: the worker died 3 times while delivering this parcel alone",
    ]
    with ledger.write():
        for n, parcel_id in enumerate(ids[40:52]):
            trace = (
                "Traceback (most recent call last):\n"
                '  File "worker/postmaster.py", line 180, in _deliver\n'
                "    self.store.put_many(blobs)\n"
                f"{errors[n % 4]}\n"
            )
            ledger.execute(
                "UPDATE parcels SET state = 'failed', attempts = ?, finished_at = ?, error = ?, "
                "traceback = ? WHERE id = ?",
                (1 + n % 3, NOW - 240 * (n + 1), errors[n % 4], trace, parcel_id),
            )
    # A store of a production size (the counters are what every screen reads), and two hours
    # of samples: a backlog that built up and drained twice, the CAS growing steadily.
    cas, blobs = int(8.6 * 1024**3), 182_340
    with ledger.write():
        ledger.set_counter("cas_bytes", cas)
        ledger.set_counter("cas_blobs", blobs)
    for i in range(480):
        ts = NOW - 7200 + 15 * i
        depth = int(14 + 60 * max(0.0, 1 - abs((i % 160) - 80) / 50)) + (i * 7) % 5
        sample = metrics.Sample(
            ts,
            depth,
            12.0 + i % 7,
            3 + i % 5,
            1 if i % 37 == 0 else 0,
            6,
            cas - (480 - i) * 1_200_000,
            blobs - (480 - i) * 20,
            True,
            True,
            100 + i,
            i // 37,
        )
        metrics.record(ledger, sample)
    # Compaction runs every 6 hours, one failed.
    with ledger.write():
        for i, (keys, agents, status, error) in enumerate(
            [
                (1_204, 31, "ok", None),
                (0, 0, "failed", "OperationalError: database is locked"),
                (3_877, 44, "ok", None),
                (2_410, 38, "ok", None),
            ]
        ):
            started = NOW - 4 * 3600 - i * 6 * 3600
            ledger.execute(
                "INSERT INTO compaction_runs (trigger, dry_run, started_at, finished_at, agents, "
                "keys_deleted, status, error) VALUES (?, 0, ?, ?, ?, ?, ?, ?)",
                ("schedule", started, started + 0.4 + i / 10, agents, keys, status, error),
            )
    # 12 failures in the last hour: the failed_per_hour rule is at warning since 11:32,
    # notified on Slack and in the log; the mail server is refusing for now.
    with ledger.write():
        ledger.execute(
            "INSERT INTO alert_state VALUES ('failed_per_hour', 'warning', 12, "
            "'12 failed parcels in the last hour (warning > 10)', ?, ?, ?)",
            (NOW - 1680, NOW - 1680, NOW - 30),
        )
        for rule, level in rules_ok():
            ledger.execute(
                "INSERT INTO alert_state VALUES (?, ?, 0, '', ?, NULL, ?)",
                (rule, level, NOW - 86400, NOW - 30),
            )
    note = Notification(
        "failed_per_hour",
        "warning",
        "Failed parcels warning",
        "12 failed parcels in the last hour (warning > 10)",
        NOW - 1680,
    )
    outbox.enqueue(ledger, note, ["log", "slack", "email"], now=NOW - 1680)
    with ledger.write():
        ledger.execute(
            "UPDATE alert_outbox SET status = 'sent', attempts = 1, sent_at = created_at + 1 "
            "WHERE channel IN ('log', 'slack')"
        )
        ledger.execute(
            "UPDATE alert_outbox SET attempts = 4, next_attempt_at = ?, last_error = "
            "'SMTP 451 4.3.0 mail server busy, try later' WHERE channel = 'email'",
            (NOW + 50,),
        )
    if paused:
        control.pause(ledger, by="console", now=NOW - 420)


def rules_ok() -> list[tuple[str, str]]:
    return [("cas_size", "ok"), ("queue_depth", "ok"), ("compaction_failures", "ok")]


WORKERS = (
    WorkerRow(
        "seer-postmaster", "postmaster", "RUNNING", 48211, 3 * 86400 + 4000, 3.0, 82 * 1024**2, 1
    ),
    WorkerRow(
        "seer-scheduler", "scheduler", "RUNNING", 48212, 3 * 86400 + 4000, 0.0, 61 * 1024**2, 0
    ),
)


class FixedSource(SnapshotSource):
    """The real snapshot read, at NOW, with host, root, processes and the queue's storage
    pinned (its address and latency; or all of it, given `queue_backend`)."""

    host = HOST

    def __init__(self, runtime: Runtime, queue_backend: QueueProbe | None = None) -> None:
        super().__init__(runtime.settings)
        self._runtime = runtime
        self.host = HOST
        self.workers = WORKERS
        self.queue_backend = queue_backend

    def storage_root(self) -> str:
        return ROOT

    def read(self, now: float | None = None, tracked: tuple[str, ...] = ()) -> ConsoleSnapshot:
        snap = super().read(now=NOW, tracked=tracked)
        consumers = tuple(ConsumerStatus(w.queue, True, (w.pid,), w.state) for w in self.workers)
        problems = tuple(p for p in snap.status.problems if "consumer" not in p)
        probe = self.queue_backend or snap.status.queue_backend
        if self.queue_backend is None and probe is not None:
            probe = replace(
                probe,
                address=f"{ROOT}/queue.db" if probe.backend == "sqlite" else probe.address,
                latency=LATENCY if probe.latency is not None else None,
            )
        status = replace(
            snap.status,
            storage_root=ROOT,
            supervisor="running",
            consumers=consumers,
            problems=problems,
            level="warning" if problems else "ok",
            queue_backend=probe,
            notes=probe.warnings if probe else (),
        )
        return replace(
            snap,
            host=HOST,
            storage_root=ROOT,
            status=status,
            workers=self.workers,
            channels=("log", "slack", "email"),
        )


def payload_of(runtime: Runtime, parcel_id: str) -> dict:
    return json.loads(
        runtime.ledger.scalar("SELECT payload FROM parcels WHERE id = ?", (parcel_id,))
    )
