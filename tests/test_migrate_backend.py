"""`seer migrate-backend --to postgresql://…`: a SQLite root's ledger copied to PostgreSQL, every
table checked, the queued parcels delivered there by a real consumer; safe to rerun after a kill,
refused while a consumer runs, and never showing the URL's password."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import backend_environment, ledger_tables, parcel, wait_for
from worker.fleet import consumers as fleet
from worker.identity import host_name
from worker.ledger import migrations
from worker.ledger.postgresql import PostgresLedger
from worker.monitoring import metrics, monitor
from worker.ops import migrate_backend as moving
from worker.ops import operations
from worker.parcels import intake as parcels
from worker.runtime import Runtime
from worker.settings import load_settings

# Every test here copies a SQLite root: the source is SQLite whatever the backend under test.
pytestmark = pytest.mark.backends("sqlite")

NOW = 1_790_000_000.0


@pytest.fixture
def target(tmp_path) -> str:
    """The URL of a new, empty PostgreSQL schema to copy into."""
    return backend_environment("postgresql", tmp_path)["SEER_DATABASE_URL"]


def dead_owner() -> str:
    """An owner token of this host whose process has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{host_name()}/{child.pid}/1/1"


def queue(runtime: Runtime, items: list[dict]) -> list[str]:
    batch = [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    return parcels.queue_parcels(runtime.ledger, batch)


def populate(runtime: Runtime) -> dict[str, list[str]]:
    """A root with something in every table: parcels delivered, failed, queued and in flight
    with a dead consumer; messages, artifacts and blobs; memory; a compaction run; alert
    states and the outbox; metric samples; control flags, a dead consumer's registration."""
    ledger = runtime.ledger
    delivered = queue(
        runtime, [parcel(f"agent-{i % 2}", i, attachment=f"notes {i}") for i in range(4)]
    )
    assert runtime.postmaster().deliver_waiting().delivered == 4
    failed = queue(runtime, [parcel("agent-9", 90)])
    with ledger.write():
        ledger.execute(
            "UPDATE parcels SET state = 'failed', finished_at = ?, error = 'boom' WHERE id = ?",
            (NOW, failed[0]),
        )
    in_flight = queue(runtime, [parcel("agent-3", 30, attachment="held by the dead")])
    claimed = ledger.claim_parcels(dead_owner(), ledger.now(), 1, 10**9, 3600.0)
    assert [c.id for c in claimed] == in_flight
    waiting = queue(runtime, [parcel("agent-4", 40 + i, attachment=f"w{i}") for i in range(3)])
    memory = runtime.memory()
    memory.set_durable("planner", "goal", {"ship": "v2"})
    memory.set_ephemeral("planner", "scratch", [1, 2, 3], ttl=3600)
    runtime.compactor().run("manual")
    operations.send_test_alert(runtime, "log")
    monitor.evaluate(runtime)
    metrics.record(ledger, metrics.measure(ledger, "postmaster", "scheduler"))
    with ledger.write():
        token = dead_owner()
        pid = token.split("/")[1]
        ledger.execute(
            "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?), (?, '3', ?)",
            (
                f"consumer:postmaster:{host_name()}:{pid}",
                json.dumps({"queue": "postmaster", "token": token, "started": NOW}),
                NOW,
                "starts:postmaster",
                NOW,
            ),
        )
    return {"delivered": delivered, "failed": failed, "in_flight": in_flight, "queued": waiting}


def table_rows(ledger, table: moving.Table) -> list[dict]:
    """The table's rows, the control flags of consumers and of the copy left out, in key
    order as Python sorts it (the two databases' collations may differ)."""
    found = ledger.rows(f"SELECT * FROM {table.name}")
    if table.name == "control":
        found = [
            r for r in found if not r["key"].startswith("consumer:") and r["key"] != moving.MARKER
        ]
    return sorted(found, key=lambda r: tuple(r[k] for k in table.key))


def same_ledgers(source, copy) -> None:
    for table in moving.TABLES:
        assert table_rows(copy, table) == table_rows(source, table), table.name
    assert copy.counters() == source.counters()


def open_target(url: str) -> PostgresLedger:
    return PostgresLedger(url)


# On Redis's queue too: the ledger moves, the queue stays where it is; real consumers.
@pytest.mark.backends("sqlite", "redis")
def test_every_table_and_counter_is_copied_and_the_queued_parcels_are_delivered_there(
    runtime, cli, target, consumers, monkeypatch
):
    made = populate(runtime)
    before_status = cli("status", "--json").json()
    before_cas = cli("cas", "stats", "--json").json()

    result = cli("migrate-backend", "--to", target)
    assert result.code == 0, result.err
    assert "copied to PostgreSQL at 127.0.0.1:5432" in result.out
    assert "verified: every table's rows and every counter match the source" in result.out
    assert "set SEER_DATABASE_URL" in result.out and "`seer up`" in result.out
    assert "the CAS directory stays where it is" in result.out
    for t in moving.TABLES:
        assert any(line.split()[:1] == [t.name] for line in result.out.splitlines()), t.name

    copy = open_target(target)
    same_ledgers(runtime.ledger, copy)
    # A dead consumer's registration stays behind; the restarts it counted come along.
    assert not copy.rows("SELECT key FROM control WHERE key LIKE 'consumer:%'")
    assert fleet.starts(copy) == {"postmaster": 3}
    # New rows get new ids, past the source's.
    source_max = runtime.ledger.scalar("SELECT max(seq) FROM parcels")
    with copy.write():
        copy.execute(
            "INSERT INTO parcels (id, to_agent_id, task_id, type, stream, state, size, "
            "created_at) VALUES ('new', 'a', 't', 'x', 's', 'delivered', 0, 0)"
        )
        assert copy.scalar("SELECT seq FROM parcels WHERE id = 'new'") > source_max
        copy.execute("DELETE FROM parcels WHERE id = 'new'")
    copy.close()

    # The same figures from the target's settings: the counters came along.
    monkeypatch.setenv("SEER_DATABASE_URL", target)
    after_status = cli("status", "--json").json()
    for key in ("parcels", "failed_last_hour", "cas_bytes", "cas_blobs"):
        assert after_status[key] == before_status[key], key
    # The dead consumer is down on the source; its registration stays behind, so on the
    # target nothing is registered to be down. Every other rule says the same on both.
    before_rules, after_rules = dict(before_status["rules"]), dict(after_status["rules"])
    assert (before_rules.pop("consumer_down"), after_rules.pop("consumer_down")) == (
        "critical",
        "ok",
    )
    assert after_rules == before_rules
    for key in ("depth", "in_flight", "paused"):
        assert after_status["queue"][key] == before_status["queue"][key], key
    assert cli("cas", "stats", "--json").json() == before_cas

    # A real consumer on the target delivers what was waiting, the dead one's parcel too.
    consumers("postmaster")
    rt = Runtime.open()
    expected = len(made["delivered"]) + len(made["queued"]) + len(made["in_flight"])
    wait_for(lambda: rt.ledger.counter("parcels_delivered") == expected, 60, "delivery")
    delivered = {r["parcel_id"] for r in rt.ledger.rows("SELECT parcel_id FROM messages")}
    assert set(made["queued"]) | set(made["in_flight"]) <= delivered
    assert rt.ledger.counter("parcels_failed") == 1
    rt.close()


def test_a_second_run_copies_nothing_and_verifies_again(runtime, cli, target):
    populate(runtime)
    assert cli("migrate-backend", "--to", target).code == 0
    again = cli("migrate-backend", "--to", target, "--json")
    assert again.code == 0, again.err
    report = again.json()
    assert report["already_done"] and report["verified"] and not report["mismatches"]
    assert all(t["source"] > 0 for t in report["tables"])  # something in every table
    assert all(t["copied"] == 0 and t["source"] == t["target"] for t in report["tables"])
    assert report["rung"] == 0
    assert "SEER_DATABASE_URL" in report["next"]
    copy = open_target(target)
    same_ledgers(runtime.ledger, copy)
    copy.close()


class Stop(Exception):
    pass


def test_an_interrupted_copy_completes_on_the_next_run_without_duplicates(runtime, target):
    populate(runtime)
    settings = load_settings()
    batches = []

    def stop_after_three(table: str, rows: int) -> None:
        batches.append((table, rows))
        if len(batches) == 3:
            raise Stop

    with pytest.raises(Stop):
        moving.migrate_backend(settings, target, batch=2, progress=stop_after_three)
    # Stopped inside the parcels' table, three batches in: part of it is there.
    copy = open_target(target)
    assert (
        0
        < copy.scalar("SELECT count(*) FROM parcels")
        < runtime.ledger.scalar("SELECT count(*) FROM parcels")
    )
    report = moving.migrate_backend(settings, target, batch=2)
    assert report.resumed and report.verified and not report.already_done
    assert sum(t.copied for t in report.tables) > 0
    same_ledgers(runtime.ledger, copy)
    # No id twice: every key is unique in the copy (the counts above equal the source's).
    assert copy.scalar("SELECT count(DISTINCT id) FROM parcels") == copy.scalar(
        "SELECT count(*) FROM parcels"
    )
    copy.close()


KILLER = """
import os, signal, sys
from worker.ops import migrate_backend
from worker.settings import load_settings

seen = []
def die(table, rows):
    seen.append(table)
    if len(seen) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
migrate_backend.migrate_backend(load_settings(), sys.argv[1], batch=1, progress=die)
"""


def test_a_copy_killed_with_sigkill_completes_on_the_next_run(runtime, cli, target, env):
    populate(runtime)
    # Killed in the middle of the messages (parcels done, messages begun): no cleanup ran.
    parcels_count = runtime.ledger.scalar("SELECT count(*) FROM parcels")
    done = subprocess.run(
        [sys.executable, "-c", KILLER, target, str(parcels_count + 2)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    copy = open_target(target)
    assert copy.scalar("SELECT count(*) FROM parcels") == parcels_count
    assert copy.scalar("SELECT count(*) FROM messages") == 2
    result = cli("migrate-backend", "--to", target)
    assert result.code == 0, result.err
    assert "an interrupted copy, completed" in result.out
    same_ledgers(runtime.ledger, copy)
    copy.close()


# On Redis's queue too: the ledger moves, the queue stays where it is; real consumers.
@pytest.mark.backends("sqlite", "redis")
def test_refused_while_a_consumer_runs(runtime, cli, target, consumers, monkeypatch):
    on_source = consumers("postmaster")
    wait_for(
        lambda: any(fleet.is_up(c) for c in fleet.consumers(runtime.ledger)),
        60,
        "the consumer to register",
    )
    result = cli("migrate-backend", "--to", target)
    assert result.code == 1
    assert "refusing to copy the ledger while seer-postmaster runs" in result.err
    assert "`seer down`" in result.err
    copy = open_target(target)
    assert not copy.has_table("parcels")  # nothing was made there
    on_source.stop()
    # Copied, then a consumer started on the target: a second copy would write under it.
    assert cli("migrate-backend", "--to", target).code == 0
    monkeypatch.setenv("SEER_DATABASE_URL", target)
    consumers("postmaster")
    wait_for(
        lambda: any(fleet.is_up(c) for c in fleet.consumers(copy)), 60, "the target's consumer"
    )
    monkeypatch.delenv("SEER_DATABASE_URL")
    result = cli("migrate-backend", "--to", target)
    assert result.code == 1 and "while seer-postmaster on" in result.err
    assert "runs on it" in result.err
    copy.close()


def test_refused_into_a_ledger_that_is_not_a_copy_of_this_one(runtime, cli, target, tmp_path):
    populate(runtime)
    copy = open_target(target)
    # Another deployment's ledger, in use: it has parcels of its own.
    migrations.migrate(copy)
    with copy.write():
        copy.execute(
            "INSERT INTO parcels (id, to_agent_id, task_id, type, stream, state, size, "
            "created_at) VALUES ('theirs', 'a', 't', 'x', 's', 'queued', 0, 0)"
        )
    result = cli("migrate-backend", "--to", target)
    assert result.code == 1 and "is not a copy of this one" in result.err
    # A copy of another root.
    other = backend_environment("postgresql", tmp_path)["SEER_DATABASE_URL"]
    assert cli("migrate-backend", "--to", other).code == 0
    theirs = open_target(other)
    with theirs.write():
        theirs.execute(
            "UPDATE control SET value = ? WHERE key = ?",
            (json.dumps({"source": {"host": "h", "root": "/elsewhere"}}), moving.MARKER),
        )
    result = cli("migrate-backend", "--to", other)
    assert result.code == 1 and "holds a copy of another ledger" in result.err
    assert "/elsewhere" in result.err
    # A ledger at another schema version.
    third = backend_environment("postgresql", tmp_path)["SEER_DATABASE_URL"]
    behind = open_target(third)
    migrations.migrate(behind)
    migrations.rollback(behind, 1)
    result = cli("migrate-backend", "--to", third)
    assert result.code == 1 and f"schema version {migrations.LATEST - 1}" in result.err
    for ledger in (copy, theirs, behind):
        ledger.close()


def test_refused_from_a_postgresql_ledger_or_to_a_url_that_is_not_one(
    runtime, cli, target, monkeypatch
):
    result = cli("migrate-backend", "--to", "mysql://root:hunter2@db/seer")
    assert result.code == 2 and "expected a postgresql:// URL" in result.err
    assert "hunter2" not in result.err
    monkeypatch.setenv("SEER_DATABASE_URL", target)
    result = cli("migrate-backend", "--to", target)
    assert result.code == 1 and "already on PostgreSQL" in result.err


def test_the_password_of_the_url_is_never_shown(runtime, cli, target):
    populate(runtime)
    # Trust authentication: the server ignores the password, so it can be any word.
    with_password = target.replace("postgres@", "postgres:hunter2@")
    said = [
        cli("migrate-backend", "--to", with_password),
        cli("migrate-backend", "--to", with_password, "--json"),
        # Nobody listens there: the error names host:port only.
        cli("migrate-backend", "--to", "postgresql://postgres:hunter2@127.0.0.1:1/seer"),
    ]
    assert [r.code for r in said] == [0, 0, 1], said
    assert "127.0.0.1:1" in said[2].err
    for result in said:
        assert "hunter2" not in result.out + result.err


def test_the_copied_tables_are_every_table_of_the_schema(runtime, target):
    copied = {t.name for t in moving.TABLES}
    assert set(ledger_tables(runtime.ledger)) - copied <= set(moving.NOT_ROWS)
    copy = open_target(target)
    migrations.migrate(copy)
    assert set(ledger_tables(copy)) - copied <= set(moving.NOT_ROWS)
    assert copied <= set(ledger_tables(copy))
    copy.close()


def test_the_source_is_held_still_while_it_is_copied(runtime, target):
    """A write to the source during the copy waits for it (and then fails as busy): the copy
    is one state of the source, and nothing lands in the SQLite ledger behind its back."""
    populate(runtime)
    settings = load_settings()
    tried: list[BaseException | None] = []

    def write_meanwhile(table: str, rows: int) -> None:
        if tried:
            return
        from tests.helpers import other_ledger
        from worker.ledger import LedgerBusy

        writer = other_ledger(runtime, lock_timeout=0.2)
        try:
            with writer.write():
                writer.execute("DELETE FROM memory")
            tried.append(None)
        except LedgerBusy as exc:
            tried.append(exc)
        finally:
            writer.close()

    report = moving.migrate_backend(settings, target, progress=write_meanwhile)
    assert report.verified
    assert tried and tried[0] is not None
    assert runtime.ledger.scalar("SELECT count(*) FROM memory") == 2


def test_json_output_names_the_target_by_host_and_port(runtime, cli, target):
    populate(runtime)
    out = cli("migrate-backend", "--to", target, "--json").json()
    assert out["target"] == "127.0.0.1:5432" and out["verified"] is True
    assert out["initialised"] is True and out["rung"] == 1
    assert out["counters"]["parcels_queued"] == 3
    assert {t["name"] for t in out["tables"]} == {t.name for t in moving.TABLES}
    assert os.environ.get("SEER_DATABASE_URL") is None


def test_batches_of_large_rows_are_bounded_by_bytes(runtime, target, monkeypatch):
    made = populate(runtime)
    monkeypatch.setattr(moving, "BATCH_BYTES", 1)
    seen: list[tuple[str, int]] = []
    report = moving.migrate_backend(
        load_settings(), target, progress=lambda table, rows: seen.append((table, rows))
    )
    assert report.verified
    # Parcels still holding a payload (failed, in flight, queued) go one a batch; the delivered
    # ones (payload let go) fit together with the next.
    steps = [rows for table, rows in seen if table == "parcels"]
    holding = len(made["failed"]) + len(made["in_flight"]) + len(made["queued"])
    assert len(steps) >= holding and steps[-1] == runtime.ledger.scalar(
        "SELECT count(*) FROM parcels"
    )
