"""Agents' memory and its compaction: the service, the CLI, the schedule, the real consumer."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import other_ledger, wait_for
from worker.identity import current_owner
from worker.memory import compaction
from worker.memory.compaction import Compactor
from worker.memory.service import MemoryError_
from worker.schedules import Cron

T0 = 1_800_000_000.0


def test_task_card_tinker_check(runtime):
    """set_ephemeral, get returns the value, time passes the TTL, compact, get returns nothing;
    durable keys survive."""
    memory = runtime.memory()
    memory.set_ephemeral("test-agent", "temp-key", "value", now=T0)
    memory.set_durable("test-agent", "keep", {"a": 1}, now=T0)
    assert memory.get("test-agent", "temp-key", now=T0 + 10) == "value"
    later = T0 + 24 * 3600 + 1
    assert compaction.compact(runtime.ledger, "test-agent", now=later) == 1
    assert memory.get("test-agent", "temp-key", now=later) is None
    assert memory.get("test-agent", "keep", now=later) == {"a": 1}


def test_expired_key_reads_as_absent_before_compaction(runtime):
    memory = runtime.memory()
    memory.set_ephemeral("a", "k", 1, ttl=60, now=T0)
    assert memory.get("a", "k", now=T0 + 59) == 1
    assert memory.get("a", "k", now=T0 + 60) is None
    assert [e.key for e in memory.keys("a", now=T0 + 61)] == []
    assert runtime.ledger.scalar("SELECT count(*) FROM memory") == 1


def test_values_are_json_within_the_size_limit(runtime, monkeypatch):
    memory = runtime.memory()
    with pytest.raises(MemoryError_, match="not JSON-serialisable"):
        memory.set_durable("a", "k", {1, 2})
    with pytest.raises(MemoryError_, match="not JSON-serialisable"):
        memory.set_durable("a", "k", float("nan"))
    monkeypatch.setenv("ORCHESTRATION_MEMORY_MAX_VALUE_SIZE", "100")
    from worker.runtime import Runtime

    small = Runtime.open().memory()
    with pytest.raises(MemoryError_, match="over the limit of 100"):
        small.set_durable("a", "k", "x" * 200)
    assert runtime.ledger.scalar("SELECT count(*) FROM memory") == 0


def test_keys_by_partition_and_forget(runtime):
    memory = runtime.memory()
    memory.set_durable("a", "d1", 1, now=T0)
    memory.set_ephemeral("a", "e1", 2, now=T0)
    memory.set_durable("b", "d1", 3, now=T0)
    assert [e.key for e in memory.keys("a", now=T0)] == ["d1", "e1"]
    assert [e.key for e in memory.keys("a", "ephemeral", now=T0)] == ["e1"]
    # Setting a key durable again makes it durable: no expiry.
    memory.set_durable("a", "e1", 5, now=T0)
    assert memory.entry("a", "e1", now=T0 + 10**6).value == 5
    assert memory.forget("a", "d1") and not memory.forget("a", "d1")


def fill(runtime, agents: int, per_agent: int, expired_share: float, now: float) -> int:
    rows = []
    expired = 0
    for a in range(agents):
        for k in range(per_agent):
            gone = (k * 7919 + a) % 100 < expired_share * 100
            expired += gone
            rows.append(
                (
                    f"agent-{a:03d}",
                    f"key-{k:05d}",
                    "ephemeral" if gone else "durable",
                    "1",
                    now - 1 if gone else None,
                    now - 10,
                )
            )
    with runtime.ledger.write():
        runtime.ledger.executemany("INSERT INTO memory VALUES (?, ?, ?, ?, ?, ?)", rows)
    return expired


def test_compaction_of_all_agents_is_recorded_and_logged(runtime):
    expired = fill(runtime, 5, 200, 0.5, T0)
    runtime.memory().set_durable("agent-none", "k", 1)
    compactor = runtime.compactor()
    dry = compactor.run("manual", dry_run=True, now=T0)
    # Agents processed: every agent compacted, agent-none too (it had nothing expired).
    assert (dry.status, dry.keys_deleted, dry.agents, dry.dry_run) == ("ok", expired, 6, True)
    assert runtime.ledger.scalar("SELECT count(*) FROM memory") == 1001
    run = compactor.run("manual", now=T0)
    assert (run.status, run.keys_deleted, run.agents) == ("ok", expired, 6)
    assert run.trigger == "manual" and run.finished_at >= run.started_at
    assert runtime.ledger.scalar("SELECT count(*) FROM memory") == 1001 - expired
    one = compactor.run("manual", agent="agent-001", now=T0)
    assert (one.keys_deleted, one.agent_id, one.agents) == (0, "agent-001", 1)
    assert one.summary() == "deleted 0 expired keys (agent agent-001)"
    lines = (runtime.layout.logs / "orchestration.log").read_text().splitlines()
    logged = [json.loads(line) for line in lines]
    assert [entry["keys_deleted"] for entry in logged] == [expired, expired, 0]
    assert logged[1]["agents_processed"] == 6 and logged[0]["dry_run"] is True
    assert logged[2]["agents_processed"] == 1
    assert oct((runtime.layout.logs / "orchestration.log").stat().st_mode & 0o777) == "0o660"
    assert [r.id for r in compactor.recent()] == [one.id, run.id, dry.id]


def test_a_failed_run_is_recorded_as_failed_and_counted_per_day(runtime):
    with runtime.ledger.write():
        runtime.ledger.execute("ALTER TABLE memory RENAME TO memory_away")
    try:
        run = runtime.compactor().run("schedule")
    finally:
        with runtime.ledger.write():
            runtime.ledger.execute("ALTER TABLE memory_away RENAME TO memory")
    # SQLite's words, then PostgreSQL's.
    assert run.status == "failed" and (
        "no such table" in run.error or "does not exist" in run.error
    )
    assert compaction.failures_per_day(runtime.ledger) == 1
    assert compaction.failures_per_day(runtime.ledger, now=time.time() + 2 * 86400) == 0


def test_a_run_left_running_by_a_dead_worker_is_marked_failed(runtime):
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    me = current_owner()
    token = f"{me.host}/{child.stdout.strip()}/{me.started}/1"
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO compaction_runs (trigger, started_at, status, owner) "
            "VALUES ('schedule', 1, 'running', ?)",
            (token,),
        )
    assert Compactor(runtime.ledger).interrupted() == 1
    (run,) = Compactor(runtime.ledger).recent()
    assert run.status == "failed" and "interrupted" in run.error


def test_compaction_leaves_the_write_lock_to_others_between_short_transactions(runtime):
    fill(runtime, 4, 50_000, 0.5, T0)
    waits: list[float] = []
    during: list[float] = []  # when each of the other writer's commits ended
    done = threading.Event()

    def writer() -> None:
        # A writer as the Postmaster is one: the ledger's own write(), which polls for the
        # lock every 1-2 ms (SQLite's busy handler backs off to 100 ms and misses the gaps).
        other = other_ledger(runtime)
        while not done.is_set():
            started = time.monotonic()
            with other.write():
                other.execute("UPDATE counters SET value = value WHERE name = 'cas_bytes'")
            waits.append(time.monotonic() - started)
            during.append(time.monotonic())
        other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        began = time.monotonic()
        run = runtime.compactor().run("manual", now=T0)
        ended = time.monotonic()
    finally:
        done.set()
        thread.join()
    assert run.keys_deleted == 100_000
    # Counted from what happened, not from the clock: the other writer committed again and
    # again while compaction ran.
    took = ended - began
    inside = [t for t in during if began < t < ended]
    assert len(inside) > 10, f"the other writer got in {len(inside)} times in {took:.2f}s"
    typical = sorted(waits)[len(waits) * 9 // 10]
    # 0.5 s, not 0.05: on a loaded 2-core machine a 50 ms transaction may take several times it.
    assert typical < 0.5, f"9 in 10 writes took under {typical:.3f}s"


def test_cron_is_strict_and_next_run_is_in_local_time():
    assert Cron("0 */6 * * *").next_after(dt.datetime(2026, 11, 27, 6, 0, 30)) == dt.datetime(
        2026, 11, 27, 12, 0
    )
    assert Cron("0 2 * * *").next_after(dt.datetime(2026, 11, 27, 2, 0)) == dt.datetime(
        2026, 11, 28, 2, 0
    )
    for bad in ("5,abc * * * *", "* * *", "61 * * * *", "0 2 * * 8"):
        with pytest.raises(ValueError):
            Cron(bad)
    rule = Cron("* * * * *")
    minute = dt.datetime(2026, 11, 27, 6, 0, 1)
    assert [rule(minute + dt.timedelta(seconds=s)) for s in (0, 5, 30, 58, 60)] == [
        True,
        False,
        False,
        False,
        True,
    ]


def test_bad_crontab_stops_every_command_in_one_line(runtime, cli, monkeypatch):
    monkeypatch.setenv("ORCHESTRATION_COMPACTION_CRON", "5,abc * * * *")
    result = cli("schedule")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "ORCHESTRATION_COMPACTION_CRON" in result.err and "'5,abc'" in result.err


def test_memory_commands(runtime, cli):
    assert cli("memory", "set", "a", "k", '{"x": 1}').code == 0
    assert cli("memory", "set-ephemeral", "a", "t", "hello", "--string", "--ttl", "15m").code == 0
    assert cli("memory", "get", "a", "k").out.strip() == '{"x": 1}'
    assert cli("memory", "get", "a", "t", "--json").json()["partition"] == "ephemeral"
    keys = cli("memory", "keys", "a", "--json").json()
    assert [k["key"] for k in keys] == ["k", "t"]
    assert [
        k["key"] for k in cli("memory", "keys", "a", "--partition", "durable", "--json").json()
    ] == ["k"]
    bad = cli("memory", "set", "a", "k", "hello")
    assert bad.code == 2 and "--string" in bad.err
    assert cli("memory", "set-ephemeral", "a", "t", "1", "--ttl", "soon").code == 2
    assert cli("memory", "forget", "a", "k").code == 0
    assert cli("memory", "get", "a", "k").code == 1
    assert cli("memory", "forget", "a", "k").code == 1


def test_compact_memory_and_compactions_commands(runtime, cli):
    memory = runtime.memory()
    an_hour_ago = time.time() - 3600
    memory.set_ephemeral("a", "old", 1, ttl=1, now=an_hour_ago)
    memory.set_ephemeral("b", "old", 1, ttl=1, now=an_hour_ago)
    memory.set_durable("a", "keep", 1)
    dry = cli("compact-memory", "--dry-run")
    assert dry.code == 0 and "would delete 2" in dry.out
    assert runtime.ledger.scalar("SELECT count(*) FROM memory") == 3
    one = cli("compact-memory", "--agent", "a", "--json").json()
    assert (one["keys_deleted"], one["agents"], one["status"]) == (1, 1, "ok")
    assert "deleted 1" in cli("compact-memory").out
    runs = cli("compactions", "--json").json()
    assert [r["keys_deleted"] for r in runs] == [1, 1, 2]
    assert "manual (dry run)" in cli("compactions").out


def test_schedule_lists_every_periodic_job(runtime, cli):
    jobs = cli("schedule", "--json").json()
    assert {j["job"] for j in jobs} == {
        "sample",
        "reap",
        "compact_memory",
        "evaluate_rules",
        "deliver_alerts",
        "monitor_storage",
    }
    compact = next(j for j in jobs if j["job"] == "compact_memory")
    assert compact["schedule"] == "cron 0 */6 * * *"
    assert compact["next_run"].endswith(":00:00")
    assert "every 15s" in cli("schedule").out


@pytest.mark.queue_facing
def test_the_real_scheduler_consumer_runs_a_scheduled_compaction(
    runtime, consumers, monkeypatch, cli
):
    monkeypatch.setenv("ORCHESTRATION_COMPACTION_CRON", "* * * * *")
    runtime.memory().set_ephemeral("a", "old", 1, ttl=1, now=time.time() - 3600)
    assert cli("queue", "pause").code == 0  # a paused parcel queue does not stop it
    consumers("scheduler")
    wait_for(lambda: runtime.compactor().recent(), 30, "a scheduled compaction run")
    run = wait_for(
        lambda: next((r for r in runtime.compactor().recent() if r.status != "running"), None),
        30,
        "the run to finish",
    )
    assert (run.trigger, run.status, run.keys_deleted) == ("schedule", "ok", 1)
    log_path = runtime.layout.logs / "orchestration.log"

    def logged() -> list[dict]:
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        return [e for e in map(json.loads, lines) if e.get("event") == "memory.compaction"]

    # The first line is this run's (a minute later the schedule may run again).
    line = wait_for(logged, 30, "the run's line in orchestration.log")[0]
    assert (line["trigger"], line["status"], line["keys_deleted"]) == ("schedule", "ok", 1)


def test_a_reader_that_sees_the_finished_run_also_sees_its_log_line(runtime, monkeypatch):
    """The line goes to logs/orchestration.log before the run is recorded as finished: whoever
    reads the ledger and finds the run ok or failed finds its line too (a commit is the moment
    the run becomes visible, so the check runs after every commit of the compaction)."""
    runtime.memory().set_ephemeral("a", "old", 1, ttl=1, now=T0)
    log_path = runtime.layout.logs / "orchestration.log"
    ledger = runtime.ledger
    committed = ledger.write
    seen: list[tuple[int, str]] = []

    def finished_runs_and_their_lines() -> None:
        reader = other_ledger(runtime)
        try:
            finished = [
                (r["id"], r["status"])
                for r in reader.rows(
                    "SELECT id, status FROM compaction_runs WHERE status <> 'running'"
                )
            ]
        finally:
            reader.close()
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        logged = [json.loads(line)["status"] for line in lines]
        for run_id, status in finished:
            runs = sum(1 for _, s in finished if s == status)
            assert logged.count(status) >= runs, f"run {run_id} is {status}, its line is missing"
            seen.append((run_id, status))

    @contextlib.contextmanager
    def write_then_look():
        with committed() as inner:
            yield inner
        finished_runs_and_their_lines()

    monkeypatch.setattr(ledger, "write", write_then_look)
    run = Compactor(ledger, log_path).run("manual", now=T0 + 3600)
    assert (run.status, run.keys_deleted) == ("ok", 1)
    assert (run.id, "ok") in seen, "no commit made the finished run visible"


def test_a_log_that_cannot_be_written_still_leaves_the_run_recorded(runtime, tmp_path):
    unwritable = tmp_path / "a-directory"
    unwritable.mkdir()
    run = Compactor(runtime.ledger, unwritable).run("manual", now=T0)
    assert run.status == "ok"
    assert Compactor(runtime.ledger).get(run.id).status == "ok"
