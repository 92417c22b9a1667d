"""The ledger interface's promises (worker/ledger/base.py), on every backend the fixtures run."""

from __future__ import annotations

import sqlite3

import pytest

from tests.helpers import other_ledger
from worker.ledger import LedgerBusy, LedgerCorrupt, LedgerError
from worker.ledger.base import ParcelHead, batch_of


def counter(ledger, name: str = "cas_bytes") -> int:
    return ledger.counter(name)


def test_a_read_sees_one_snapshot_whatever_commits_meanwhile(runtime):
    ledger = runtime.ledger
    writer = other_ledger(runtime)
    try:
        with ledger.read():
            before = counter(ledger)
            with writer.write():
                writer.execute("UPDATE counters SET value = value + 5 WHERE name = 'cas_bytes'")
            assert counter(ledger) == before
            with ledger.read():  # reentrant: the same snapshot
                assert counter(ledger) == before
        assert counter(ledger) == before + 5
    finally:
        writer.close()


def test_nothing_is_written_inside_a_read(runtime):
    ledger = runtime.ledger
    with ledger.read():
        with pytest.raises(LedgerError, match="read"), ledger.write():
            pass
        with pytest.raises(LedgerError):
            ledger.execute("UPDATE counters SET value = 1 WHERE name = 'cas_bytes'")
    assert counter(ledger) == 0
    # Afterwards the connection writes again, and a read inside a write is that write.
    with ledger.write():
        ledger.execute("UPDATE counters SET value = 2 WHERE name = 'cas_bytes'")
        with ledger.read():
            assert counter(ledger) == 2


def test_insert_returning_commits_inside_a_write(runtime):
    ledger = runtime.ledger
    with ledger.write():
        first = ledger.scalar(
            "INSERT INTO compaction_runs (trigger, started_at, status) "
            "VALUES ('manual', 1, 'ok') RETURNING id"
        )
        second = ledger.scalar(
            "INSERT INTO compaction_runs (trigger, started_at, status) "
            "VALUES ('manual', 2, 'ok') RETURNING id"
        )
    assert second == first + 1
    assert ledger.scalar("SELECT count(*) FROM compaction_runs") == 2


def test_driver_errors_come_out_as_ledger_errors(runtime):
    ledger = runtime.ledger
    with pytest.raises(LedgerError, match="nowhere") as raised:
        ledger.rows("SELECT * FROM nowhere")
    assert not isinstance(raised.value, sqlite3.Error)
    assert "\n" not in str(raised.value)  # one line, as every error shown to an operator
    with pytest.raises(LedgerError, match=r"(?i)unique"), ledger.write():
        ledger.execute("INSERT INTO counters (name, value) VALUES ('cas_bytes', 1)")
    assert ledger.has_table("parcels") and not ledger.has_table("nowhere")


def test_a_lock_held_too_long_is_ledger_busy(runtime):
    # On SQLite a write transaction itself is the lock; on PostgreSQL writers exclude each
    # other only by the named locks they take.
    impatient = other_ledger(runtime, lock_timeout=0.05)
    try:
        with runtime.ledger.write():
            runtime.ledger.lock("seer.test")
            with pytest.raises(LedgerBusy), impatient.write():
                impatient.lock("seer.test")
        with impatient.write():  # free again
            impatient.lock("seer.test")
    finally:
        impatient.close()


@pytest.mark.backends("sqlite")
def test_a_damaged_ledger_is_ledger_corrupt(runtime):
    runtime.close()
    runtime.layout.ledger_db.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        runtime.layout.ledger_db.with_name("ledger.db" + suffix).unlink(missing_ok=True)
    with pytest.raises(LedgerCorrupt):
        runtime.ledger.scalar("SELECT 1 FROM counters")


def test_a_claim_takes_an_isolated_parcel_alone_and_stops_at_the_byte_bound():
    heads = [ParcelHead(1, 10, 0), ParcelHead(2, 10, 0), ParcelHead(3, 10, 1)]
    assert [h.seq for h in batch_of(heads, 100)] == [1, 2]
    assert [h.seq for h in batch_of(heads, 15)] == [1]
    assert [h.seq for h in batch_of(heads[2:], 100)] == [3]
    assert [h.seq for h in batch_of([ParcelHead(4, 500, 0)], 100)] == [4]
    assert batch_of([], 100) == []


def _queue_plain(ledger, n: int, now: float = 1.0) -> None:
    with ledger.write():
        ledger.executemany(
            "INSERT INTO parcels (id, to_agent_id, task_id, type, stream, state, payload, size, "
            "created_at) VALUES (?, 'a', 't', 'x', 's', 'queued', '{}', 2, ?)",
            [(f"p-{i}", now) for i in range(n)],
        )


@pytest.mark.backends("postgresql")
def test_two_writers_changing_counted_rows_never_wait_for_each_other(runtime):
    # No hot row: with one counter row per state, the second claim would wait for the first
    # transaction to end (and fail here, its lock timeout being 0.2 s). Deltas never collide.
    _queue_plain(runtime.ledger, 4)
    first, second = other_ledger(runtime), other_ledger(runtime, lock_timeout=0.2)
    try:
        with first.write():
            mine = first.claim_parcels("host-a/1/1/1", 2.0, 2, 1 << 20, 60.0)
            theirs = second.claim_parcels("host-b/2/2/2", 2.0, 2, 1 << 20, 60.0)
        assert len(mine) == len(theirs) == 2
        assert not {p.id for p in mine} & {p.id for p in theirs}
    finally:
        first.close()
        second.close()
    counts = runtime.ledger.counters()
    assert (counts["parcels_in_flight"], counts["parcels_queued"]) == (4, 0)


def test_concurrent_claims_take_disjoint_batches_and_every_parcel_once(runtime):
    import threading

    _queue_plain(runtime.ledger, 300)
    taken: dict[str, list[str]] = {}

    def claim(owner: str) -> None:
        ledger = other_ledger(runtime)
        got = taken.setdefault(owner, [])
        try:
            while batch := ledger.claim_parcels(owner, 2.0, 7, 1 << 20, 60.0):
                got += [p.id for p in batch]
        finally:
            ledger.close()

    threads = [threading.Thread(target=claim, args=(f"host-{n}/{n}/1/1",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [pid for ids in taken.values() for pid in ids]
    assert sorted(every) == sorted(f"p-{i}" for i in range(300))  # each exactly once
    assert runtime.ledger.counters()["parcels_in_flight"] == 300


def test_counters_stay_exact_through_folding(runtime):
    ledger = runtime.ledger
    _queue_plain(ledger, 5)
    with ledger.write():
        ledger.add_to_counter("cas_bytes", 7)
    before = ledger.counters()
    ledger.fold_counters()
    assert ledger.counters() == before
    with ledger.write():
        ledger.set_counter("cas_bytes", 3)
    assert ledger.counter("cas_bytes") == 3 and ledger.counter("parcels_queued") == 5


def test_a_close_in_one_thread_never_fails_another_threads_statement(runtime):
    # close() releases what the calling thread holds; on PostgreSQL that is the process's
    # pool, and a thread borrowing from it meanwhile gets a connection of the next one.
    import threading

    from tests.helpers import wait_for

    ledger = runtime.ledger
    errors: list[BaseException] = []
    ran = [0]

    def statements() -> None:
        try:
            for _ in range(200):
                assert ledger.scalar("SELECT 1") == 1
                ran[0] += 1
        except BaseException as exc:  # reported below, whatever it is
            errors.append(exc)

    worker = threading.Thread(target=statements)
    worker.start()
    while worker.is_alive() and not errors:
        seen = ran[0]
        ledger.close()
        wait_for(lambda s=seen: ran[0] > s or not worker.is_alive(), 30, "the next statement")
    worker.join(30)
    assert errors == [] and ran[0] == 200
