"""The real consumer: `seer worker` (Huey's consumer in that process) delivering, pausing,
SIGKILLed, and what it logs; a bare `huey_consumer` of worker.queue.huey_app too."""

from __future__ import annotations

import datetime as dt
import logging
import random
import signal
import subprocess
import threading
import time
from collections import Counter

import psutil
import pytest
from huey import MemoryHuey

from tests import blobs
from tests.conftest import BIN
from tests.helpers import kill_while_holding_batches, parcel, wait_for
from worker.fleet import consumers as registry
from worker.fleet import control
from worker.monitoring import metrics
from worker.ops import operations
from worker.parcels import intake as parcels
from worker.queue.consumer import flags
from worker.queue.queues import (
    HealthWorker,
    PausableWorker,
    QueueHealth,
    TickingScheduler,
    quiet_huey_logging,
)
from worker.runtime import Runtime

pytestmark = pytest.mark.queue_facing


def send(runtime: Runtime, items: list[dict]) -> list[str]:
    batch = [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    return list(operations.send_parcels(runtime, batch).ids)


def delivered(runtime: Runtime) -> int:
    return runtime.ledger.counter("parcels_delivered")


def test_worker_delivers_a_parcel_sent_with_the_cli(runtime, cli, consumers):
    consumer = consumers("postmaster")
    sent = cli("send-test-parcel")
    assert sent.code == 0
    parcel_id = sent.out.strip()
    wait_for(lambda: cli("inbox", "seer-test", "--json").json(), 20, "the test parcel")
    (message,) = cli("inbox", "seer-test", "--json").json()
    assert message["parcel_id"] == parcel_id
    assert message["envelope"]["body"] == {"test": True}
    shown = cli("parcel", "show", parcel_id, "--json").json()
    assert shown["state"] == "delivered" and shown["message_id"] == message["id"]
    uri = message["envelope"]["attachments"]["hello.txt"]["uri"]
    pulled = cli("artifacts", "pull", uri)
    assert pulled.code == 0 and pulled.out == "Seer Ops test parcel.\n"
    assert cli("inbox", "ack", str(message["id"])).code == 0
    assert cli("inbox", "seer-test", "--unread", "--json").json() == []
    assert consumer.proc.poll() is None


def test_seer_worker_is_the_consumer_process_it_started(runtime, consumers):
    """No exec and no child: the process started (by supervisord, here by the test) is the
    consumer, under its own command line; the registry has its pid; its log is what
    huey_consumer's would be; SIGTERM (Huey's immediate stop) ends it."""
    consumer = consumers("postmaster")
    send(runtime, [parcel("p", 1)])
    wait_for(lambda: delivered(runtime) == 1, 30, "the delivery")
    pid = consumer.proc.pid
    registered = wait_for(
        lambda: [c.pid for c in registry.consumers(runtime.ledger) if c.alive], 30, "its entry"
    )
    assert registered == [pid]
    process = psutil.Process(pid)
    assert process.cmdline()[-3:] == [str(BIN / "seer"), "worker", "postmaster"]
    assert process.children() == []
    wait_for(lambda: "postmaster consumer started" in consumer.output(), 30, "its start line")
    out = consumer.output()
    assert f"INFO:huey.consumer:MainThread:Huey consumer started with 1 thread, PID {pid}" in out
    assert "Periodic tasks are disabled." in out
    assert "INFO:seer.tasks:postmaster consumer started" in out
    assert "Executing" not in out  # Huey's per-task lines are dropped
    assert consumer.stop(signal.SIGTERM) == 0
    assert "Received SIGTERM" in consumer.output()


def test_a_bare_huey_consumer_of_huey_app_runs_the_same_consumer(runtime, tmp_path):
    """`huey_consumer worker.queue.huey_app.postmaster` with `seer worker`'s flags (README's
    plain equivalent) delivers and logs as `seer worker` does; SIGINT stops it gracefully."""
    log = tmp_path / "bare.log"
    command = [str(BIN / "huey_consumer"), "worker.queue.huey_app.postmaster", *flags("postmaster")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        send(runtime, [parcel("p", 1)])
        wait_for(lambda: delivered(runtime) == 1, 30, "the delivery")
        wait_for(lambda: "postmaster consumer started" in log.read_text(), 30, "its start line")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "INFO:huey.consumer:MainThread:Huey consumer started with 1 thread" in out
    assert "INFO:seer.tasks:postmaster consumer started" in out
    assert "Executing" not in out
    assert "All workers have stopped." in out


def test_pause_holds_parcels_across_a_restart_and_resume_continues_in_order(
    runtime, cli, consumers
):
    assert cli("queue", "pause").code == 0
    consumer = consumers("postmaster")
    ids = send(runtime, [parcel("p", n) for n in range(5)])
    # The consumer is up (it registered) and keeps the parcels queued while paused.
    wait_for(lambda: "alive" in cli("status").out.split("consumer   postmaster:")[1][:8], 20)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert delivered(runtime) == 0
        assert runtime.queues.postmaster.pending_count() >= 1
    assert "PAUSED" in cli("queue", "status").out

    consumer.kill()
    consumer = consumers("postmaster")
    assert control.is_paused(runtime.ledger)
    assert cli("queue", "status", "--json").json()["paused"] is True
    # The window below means something only once the restarted consumer is up (both write
    # to the same log: its start-up line is the second one).
    wait_for(
        lambda: consumer.output().count("postmaster consumer started") == 2,
        20,
        "the restarted consumer's start-up line",
    )
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert delivered(runtime) == 0

    assert cli("queue", "resume").code == 0
    wait_for(lambda: delivered(runtime) == 5, 20, "delivery after resume")
    order = [
        r["parcel_id"] for r in runtime.ledger.rows("SELECT parcel_id FROM messages ORDER BY id")
    ]
    assert order == ids


def test_only_the_postmaster_queue_can_be_paused(runtime):
    control.pause(runtime.ledger)
    assert runtime.queues.postmaster.is_paused()
    postmaster_consumer = runtime.queues.postmaster.create_consumer()
    scheduler_consumer = runtime.queues.scheduler.create_consumer()
    assert postmaster_consumer.worker_class is PausableWorker
    assert not issubclass(scheduler_consumer.worker_class, PausableWorker)


def test_worker_refuses_bad_settings_in_one_line(env, cli):
    assert cli("init").code == 0
    result = subprocess.run(
        [str(BIN / "seer"), "worker"],
        env={**env, "POSTMASTER_TRIES": "lots"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "POSTMASTER_TRIES='lots'" in result.stderr and "whole number" in result.stderr


def test_sigkill_at_random_moments_loses_nothing_and_delivers_once(
    runtime, cli, consumers, monkeypatch
):
    """500 parcels, the consumer SIGKILLed 6 times while it holds parcels, restarted with
    `seer worker` each time: every parcel is delivered exactly once, and the CAS accounting
    matches the disk.

    The kill moments come from what the test observes, not from the clock: a seeded random
    number of deliveries first, then a batch of parcels in flight. A kill that finds the batch
    already committed (the ledger shows none in flight once the consumer is dead) does not
    count, and the next batch in flight is killed instead, so the six land on any machine."""
    # Small batches, so that kills land inside batches rather than between them.
    monkeypatch.setenv("POSTMASTER_BATCH_SIZE", "20")
    # Both kinds of blob in every batch: attachments of ~300 bytes and the manifests are rows
    # of the ledger, attachments of ~2.4 KB files, so a kill lands between the two puts too.
    monkeypatch.setenv("ORCHESTRATION_CAS_SMALL_BLOB_SIZE", "1K")
    rng = random.Random(20261127)
    total = 500
    ids = send(
        runtime,
        [
            parcel(f"agent-{n % 7}", n, attachment=f"file {n} " * (40 if n % 2 else 300))
            for n in range(total)
        ],
    )
    thresholds = sorted(rng.sample(range(0, total - 100), 6))
    kill_while_holding_batches(runtime, lambda: consumers("postmaster"), thresholds, 60)
    assert delivered(runtime) < total

    wait_for(lambda: delivered(runtime) == total, 60, "all parcels delivered after the restarts")
    ledger = runtime.ledger
    caught = ledger.scalar("SELECT count(*) FROM parcels WHERE isolate = 1")
    assert caught > 0, "no kill landed while parcels were in flight"
    assert ledger.scalar("SELECT count(*) FROM parcels WHERE state <> 'delivered'") == 0
    assert ledger.scalar("SELECT count(*) FROM messages") == total
    assert ledger.scalar("SELECT count(DISTINCT parcel_id) FROM messages") == total
    assert {r["parcel_id"] for r in ledger.rows("SELECT parcel_id FROM messages")} == set(ids)
    per_parcel = ledger.rows(
        "SELECT parcel_id, count(*) AS n FROM artifacts GROUP BY parcel_id HAVING count(*) <> 2"
    )
    assert per_parcel == []
    assert ledger.scalar("SELECT count(DISTINCT parcel_id) FROM artifacts") == total

    # Accounting = ledger rows = disk (temp files of the killed workers are cleaned up).
    wait_for(lambda: not list((runtime.layout.cas / "tmp").glob("*")), 20, "temp files removed")
    on_disk = dict(runtime.store.iter_blobs())
    recorded = {r["hash"]: r["size"] for r in ledger.rows("SELECT hash, size FROM blobs")}
    assert on_disk == recorded
    counters = ledger.counters()
    assert counters["cas_blobs"] == len(on_disk) == 2 * total
    assert counters["cas_bytes"] == sum(on_disk.values())
    for digest in rng.sample(sorted(on_disk), 25):
        runtime.store.read(digest)  # verifies the hash
    kinds = Counter(blobs.kind_of(runtime.store, digest) for digest in on_disk)
    assert kinds == {"ledger": total + total // 2, "file": total // 2}


def test_the_scheduler_logs_no_line_per_periodic_check_and_one_per_queue_outage(caplog):
    huey = MemoryHuey("quiet", results=False)
    huey.health = QueueHealth("memory://quiet")

    @huey.periodic_task(lambda moment: True, name="every_check")
    def every_check() -> None:
        pass

    quiet_huey_logging()
    caplog.set_level(logging.INFO)
    scheduler = TickingScheduler(huey, threading.Event(), 1, True)
    scheduler.enqueue_periodic_tasks(dt.datetime.now())
    assert huey.pending_count() == 1, "the job was enqueued"
    assert [r for r in caplog.records if r.name.startswith(("huey", "seer"))] == []

    def refuse(task) -> None:
        raise RuntimeError("queue storage gone")

    huey.enqueue = refuse
    for _ in range(3):  # three checks while the queue is gone: one line
        scheduler.enqueue_periodic_tasks(dt.datetime.now())
    (error,) = [r for r in caplog.records if r.name.startswith(("huey", "seer"))]
    assert error.levelno == logging.WARNING
    assert "queue unreachable: queue storage gone" in error.message
    assert huey.health.down_since is not None

    del huey.enqueue
    huey.health.answered()
    back = [r for r in caplog.records if r.name.startswith(("huey", "seer"))][1:]
    assert [r.message.split(",")[0] for r in back] == ["queue reachable again: memory://quiet"]


def test_the_real_scheduler_consumer_log_has_no_enqueueing_lines(runtime, consumers):
    consumer = consumers("scheduler")
    # The sample job runs after Huey enqueued it, and its log line (if any) is flushed to the
    # consumer's output before the task runs: a recorded sample means the line would be there.
    wait_for(lambda: metrics.history(runtime.ledger, 0), 30, "a metric sample")
    wait_for(lambda: "Huey consumer started" in consumer.output(), 30, "the start-up line")
    assert "Enqueueing periodic task" not in consumer.output()


def test_a_task_this_consumer_does_not_know_is_dropped_and_is_no_outage(caplog):
    huey = MemoryHuey("shared", results=False)
    huey.health = QueueHealth("memory://shared")
    other = MemoryHuey("shared", results=False)  # another release or deployment

    @other.task(name="ghost")
    def ghost() -> None:
        pass

    huey.storage.enqueue(other.serialize_task(ghost.s()))
    caplog.set_level(logging.INFO)
    worker = HealthWorker(huey, threading.Event(), 0.01, 0.05, 1.15)
    worker.loop()
    assert huey.pending_count() == 0, "dropped, as Huey would"
    assert huey.health.down_since is None
    (line,) = [r for r in caplog.records if "does not know" in r.getMessage()]
    assert line.levelno == logging.ERROR and "ghost" in line.getMessage()
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
