"""Writers that race, for real: two threads, each on its own ledger connection (two processes,
as far as the database can tell), on every backend.

On SQLite a write transaction excludes every other writer from its BEGIN; on PostgreSQL they
run side by side under READ COMMITTED, so each check-then-write here must hold by the
condition in its statement or by a `Ledger.lock`. Threads meet at barriers; waits poll with
deadlines.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import blobs
from tests.helpers import lock_waiters, other_ledger, parcel, wait_for
from worker.alerts import alerting, outbox
from worker.alerts.channels import Notification, SendResult
from worker.cas import open_store
from worker.cas import tools as cas_tools
from worker.cas.base import BlobStore
from worker.fleet import control
from worker.ledger import Ledger
from worker.memory import compaction
from worker.memory.compaction import Compactor
from worker.parcels import failures, inbox
from worker.parcels import intake as parcels
from worker.parcels.postmaster import Postmaster

T0 = 1_800_000_000.0
DAY = 86400.0
TIMEOUT = 20.0


@pytest.fixture
def ledgers(runtime) -> Iterator[list[Ledger]]:
    """Two independent ledgers on the runtime's database: one a thread."""
    second = other_ledger(runtime)
    yield [runtime.ledger, second]
    second.close()


@pytest.fixture
def observer(runtime) -> Iterator[Ledger]:
    """A ledger that only watches (never inside a transaction: PostgreSQL shows a transaction
    the server's sessions as they were at its first look)."""
    watching = other_ledger(runtime)
    yield watching
    watching.close()


def in_step(rounds: int, *work: Callable[[int], Any]) -> list[list[Any]]:
    """Runs each `work(round)` in its own thread, all of them starting each round together;
    returns each thread's results by round. The first error of any thread is raised."""
    barrier = threading.Barrier(len(work), timeout=TIMEOUT)
    results: list[list[Any]] = [[] for _ in work]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            for number in range(rounds):
                barrier.wait()
                results[index].append(work[index](number))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 3)
    assert not any(t.is_alive() for t in threads), "a racing thread did not finish"
    if errors:
        raise next(
            (e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0]
        )
    return results


def started(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set whenever `ledger` begins a write (before it waits for anything)."""
    event = threading.Event()
    original = ledger.write

    @contextlib.contextmanager
    def write() -> Iterator[Ledger]:
        event.set()
        with original() as inner:
            yield inner

    monkeypatch.setattr(ledger, "write", write)
    return event


def waiting(observer: Ledger, began: threading.Event) -> bool:
    """Whether the writer that set `began` now waits for a lock another transaction holds:
    on PostgreSQL seen in the server's sessions; on SQLite certain once it began a write,
    since the other one holds the only write lock."""
    waiters = lock_waiters(observer)
    return began.is_set() if waiters is None else waiters > 0


# -- periodic slots ---------------------------------------------------------------------------


def test_each_slot_has_exactly_one_winner(ledgers):
    rounds = 150
    won = in_step(
        rounds,
        *(
            lambda slot, ledger=ledger: control.claim_slot(ledger, "sample", slot)
            for ledger in ledgers
        ),
    )
    assert [a + b for a, b in zip(*won, strict=True)] == [1] * rounds
    assert control.claim_slot(ledgers[0], "sample", rounds) and not control.claim_slot(
        ledgers[1], "sample", rounds - 1
    )


def test_a_later_slot_is_never_lost_to_an_earlier_one_claimed_at_the_same_moment(ledgers):
    """Two schedulers whose clocks straddle a slot's start, on a job never claimed before:
    the one asking for the later slot gets it, whichever commits first."""
    rounds = 100
    later, earlier = in_step(
        rounds,
        lambda n: control.claim_slot(ledgers[0], f"job-{n}", 8),
        lambda n: control.claim_slot(ledgers[1], f"job-{n}", 7),
    )
    assert later == [True] * rounds
    values = ledgers[0].rows("SELECT value FROM control WHERE key LIKE 'slot:job-%'")
    assert [r["value"] for r in values] == ["8"] * rounds
    assert len(earlier) == rounds  # won or lost, as the order fell: never an error


# -- the outbox -------------------------------------------------------------------------------


class Counting:
    """A channel that records every send (both threads share it)."""

    name = "counting"

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def send(self, n: Notification) -> SendResult:
        with self._lock:
            self.sent.append(n.title)
        return SendResult(True)

    def describe(self) -> str:
        return "counting"


def queue_alerts(ledger: Ledger, count: int) -> list[str]:
    titles = [f"alert {n}" for n in range(count)]
    with ledger.write():
        for title in titles:
            outbox.enqueue(
                ledger, Notification("queue_depth", "critical", title, "", at=T0), ["counting"]
            )
    return titles


def test_two_senders_send_each_notification_once(ledgers):
    titles = queue_alerts(ledgers[0], 40)
    channel = Counting()

    def drain(ledger: Ledger) -> Callable[[int], int]:
        def go(_: int) -> int:
            sent = 0
            deadline = time.monotonic() + TIMEOUT
            # One send a call, so that the two take turns at every row.
            while outbox.pending_count(ledger):
                assert time.monotonic() < deadline, "the outbox did not drain"
                sent += outbox.deliver_due(ledger, channels, limit=1).sent
            return sent

        return go

    channels: dict[str, Any] = {"counting": channel}
    sent = in_step(1, *(drain(ledger) for ledger in ledgers))
    assert sorted(channel.sent) == sorted(titles)  # each once: none twice, none lost
    assert sent[0][0] + sent[1][0] == len(titles)
    assert outbox.pending_count(ledgers[0]) == 0


@pytest.mark.backends("postgresql")
def test_two_senders_that_both_saw_the_head_due_send_it_once(ledgers, monkeypatch):
    """Both claimers inside their write transactions, both having read the head as due, then
    both claim it. (On SQLite the second cannot be inside at the same time: that is its write
    lock.)"""
    (title,) = queue_alerts(ledgers[0], 1)
    channel = Counting()
    inside = threading.Barrier(2, timeout=TIMEOUT)
    calls = threading.local()
    original = outbox._head

    def head(ledger: Ledger, name: str) -> dict | None:
        found = original(ledger, name)
        calls.n = getattr(calls, "n", 0) + 1
        if calls.n == 2:  # the look inside `_claim`'s transaction
            inside.wait()
        return found

    monkeypatch.setattr(outbox, "_head", head)
    reports = in_step(
        1,
        *(
            lambda _, ledger=ledger: outbox.deliver_due(ledger, {"counting": channel})
            for ledger in ledgers
        ),
    )
    assert channel.sent == [title]
    assert sorted(r[0].sent for r in reports) == [0, 1]


def test_a_test_alert_sent_by_two_at_once_goes_once(ledgers):
    channel = Counting()
    rounds = 30
    ids = []
    for n in range(rounds):
        (row_id,) = outbox.enqueue(
            ledgers[0], Notification("test", "warning", f"test {n}", "", at=T0), ["counting"]
        )
        ids.append(row_id)
    in_step(
        rounds,
        *(
            lambda n, ledger=ledger: outbox.deliver_rows(ledger, {"counting": channel}, [ids[n]])
            for ledger in ledgers
        ),
    )
    assert sorted(channel.sent) == sorted(f"test {n}" for n in range(rounds))


def test_a_rule_crossing_seen_by_two_evaluations_at_once_notifies_once(ledgers):
    rounds = 20

    def evaluate(ledger: Ledger) -> Callable[[int], int]:
        def apply(n: int) -> int:
            level = "critical" if n % 2 == 0 else "ok"
            reading = alerting.Reading("queue_depth", level, 600.0 if n % 2 == 0 else 0.0, "")
            return len(
                alerting.apply(
                    ledger, [reading], ["counting"], repeat_every=3600, storage_root="/", now=T0 + n
                )
            )

        return apply

    queued = in_step(rounds, *(evaluate(ledger) for ledger in ledgers))
    # Every round crosses a level (critical, then resolved, ...): one notification each.
    assert [a + b for a, b in zip(*queued, strict=True)] == [1] * rounds
    assert outbox.pending_count(ledgers[0]) == rounds


# -- flags, failures, inboxes ------------------------------------------------------------------


def test_pausing_twice_at_once_pauses_once(ledgers):
    rounds = 30

    both_tried = threading.Barrier(2, timeout=TIMEOUT)

    def pause(ledger: Ledger) -> Callable[[int], bool]:
        def once(n: int) -> bool:
            paused = control.pause(ledger, by=f"round {n}")
            both_tried.wait()
            if paused:  # each round starts unpaused
                assert control.resume(ledger)
            return paused

        return once

    won = in_step(rounds, *(pause(ledger) for ledger in ledgers))
    assert [a + b for a, b in zip(*won, strict=True)] == [1] * rounds


def test_retry_all_and_ack_at_once_report_each_change_once(runtime, ledgers):
    rounds = 20
    ids = parcels.queue_parcels(
        runtime.ledger, [parcels.validate(parcel("a", n), 10**6) for n in range(rounds)]
    )
    assert runtime.postmaster().deliver_waiting(limit=rounds).delivered == rounds
    messages = sorted(m.id for m in inbox.messages(runtime.ledger, "a", limit=rounds))
    acked = in_step(
        rounds, *(lambda n, ledger=ledger: inbox.ack(ledger, messages[n]) for ledger in ledgers)
    )
    assert [sorted((a, b)) for a, b in zip(*acked, strict=True)] == [[False, True]] * rounds

    def fail_all(n: int) -> None:
        with runtime.ledger.write():
            runtime.ledger.execute(
                "UPDATE parcels SET state = 'failed', finished_at = ? WHERE id IN "
                f"({', '.join('?' * len(ids))})",
                (T0 + n, *ids),
            )

    retried = []
    for n in range(5):
        fail_all(n)
        (first,), (second,) = in_step(
            1, *(lambda _, ledger=ledger: failures.retry_all(ledger) for ledger in ledgers)
        )
        retried.append(sorted(first + second))
    assert retried == [sorted(ids)] * 5  # each put back by one of them, and said once


# -- compaction -------------------------------------------------------------------------------


@pytest.fixture
def held(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """(inside, release): the first compaction run to start work waits, once inside, until
    release is set; later runs go straight on."""
    inside, release = threading.Event(), threading.Event()
    original = compaction._agents
    first = threading.Lock()

    def agents(ledger: Ledger, after: str | None = None) -> Iterator[str]:
        if first.acquire(blocking=False):
            inside.set()
            assert release.wait(TIMEOUT)
        yield from original(ledger, after)

    monkeypatch.setattr(compaction, "_agents", agents)
    return inside, release


def test_two_compactions_started_at_once_one_runs(runtime, ledgers, held):
    inside, release = held
    runtime.memory().set_ephemeral("a", "old", 1, ttl=1, now=T0)
    runs: list[compaction.Run] = []

    def run(ledger: Ledger) -> Callable[[int], None]:
        def go(_: int) -> None:
            done = Compactor(ledger).run("schedule", now=T0 + 10)
            runs.append(done)
            if done.status == "skipped":
                release.set()  # the other one may finish now

        return go

    in_step(1, *(run(ledger) for ledger in ledgers))
    assert inside.is_set()
    skipped, ran = sorted(runs, key=lambda r: r.status != "skipped")
    assert (skipped.status, ran.status, ran.keys_deleted) == ("skipped", "ok", 1)
    assert skipped.id == ran.id and "another compaction is running" in (skipped.error or "")
    recorded = Compactor(runtime.ledger).recent()
    assert [(r.id, r.status) for r in recorded] == [(ran.id, "ok")]
    # The claim went with the run: the next one starts.
    assert Compactor(ledgers[1]).run("manual", now=T0 + 10).status == "ok"


def test_a_claim_left_unrenewed_is_taken_over_and_its_run_stops(
    runtime, ledgers, held, monkeypatch
):
    inside, release = held
    monkeypatch.setattr(compaction, "RENEW_EVERY", 0.0)
    runtime.memory().set_ephemeral("a", "old", 1, ttl=1, now=T0)
    runtime.memory().set_durable("b", "kept", 1, now=T0)  # work left for the first run
    first: list[compaction.Run] = []
    thread = threading.Thread(
        target=lambda: first.append(Compactor(ledgers[0]).run("schedule", now=T0 + 10))
    )
    thread.start()
    try:
        assert inside.wait(TIMEOUT)
        # Stopped (SIGSTOP, a partition) for longer than the lease.
        with ledgers[1].write():
            ledgers[1].execute(
                "UPDATE control SET updated_at = updated_at - ? WHERE key = ?",
                (2 * compaction.LEASE, compaction.LEASE_KEY),
            )
        second = Compactor(ledgers[1]).run("manual", now=T0 + 10)
        assert (second.status, second.keys_deleted, second.agents) == ("ok", 1, 2)
    finally:
        release.set()
        thread.join(TIMEOUT)
    (stopped,) = first
    assert stopped.status == "failed" and "took over" in (stopped.error or "")
    statuses = {r.id: r.status for r in Compactor(runtime.ledger).recent()}
    assert statuses == {stopped.id: "failed", second.id: "ok"}


# -- CAS gc and the writers that record blobs ---------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unreferenced_old_blob(runtime, data: bytes) -> str:
    """A blob stored and recorded long ago that no artifact references: gc's candidate."""
    digest = runtime.store.put(data).digest
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?)",
            (digest, len(data), T0 - 2 * DAY),
        )
    blobs.set_written(runtime.store, digest, T0 - 2 * DAY)
    return digest


def store_on(runtime, ledger: Ledger) -> BlobStore:
    """The runtime's blob store as a process on `ledger` sees it: its small blobs are rows
    written in that ledger's transactions, as gc's and a commit's are."""
    return open_store(runtime.layout, ledger, runtime.settings)


def missing_files(runtime) -> list[str]:
    """Digests that an artifact points at, recorded in `blobs`, but not in the store."""
    referenced = runtime.ledger.rows(
        "SELECT DISTINCT a.hash FROM artifacts a JOIN blobs b ON b.hash = a.hash"
    )
    return [r["hash"] for r in referenced if runtime.store.stat(r["hash"]) is None]


def record_blob(ledger: Ledger, store, data: bytes, parcel_id: str, checked=None) -> None:
    """What a Postmaster commit does for one attachment: the file is stored first, then, in
    the transaction holding the CAS lock shared, looked at again (written again if gc took it)
    and recorded with its artifact. `checked(digest)` runs after that look."""
    digest = store.put(data).digest
    with ledger.write():
        ledger.lock(cas_tools.LOCK, shared=True)
        if not store.exists(digest):
            store.put(data)
        if checked is not None:
            checked(digest)
        ledger.execute(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (hash) DO NOTHING",
            (digest, len(data), T0),
        )
        ledger.execute(
            "INSERT INTO artifacts (parcel_id, task_id, kind, name, hash, filename, mime_type, "
            "size, uri, created_at) VALUES (?, 't', 'attachment', 'a', ?, 'a', 'text/plain', ?, "
            "'uri', ?)",
            (parcel_id, digest, len(data), T0),
        )


@pytest.mark.usefixtures("blob_kind")
def test_gc_waits_for_a_commit_that_found_the_blob_stored(runtime, ledgers, monkeypatch, observer):
    """The commit has looked (the file is there) and not yet recorded the artifact; gc, which
    chose the blob as unreferenced, must wait for it rather than delete the file under it."""
    digest = unreferenced_old_blob(runtime, b"shared bytes")
    gc_ledger = other_ledger(runtime)
    gc_began = started(gc_ledger, monkeypatch)
    looked = threading.Event()
    reports: list[cas_tools.GcReport] = []

    def hold_until_gc_waits(_: str) -> None:
        looked.set()
        wait_for(lambda: reports or waiting(observer, gc_began), TIMEOUT, "gc to wait")

    def collect() -> None:
        assert looked.wait(TIMEOUT)
        reports.append(cas_tools.gc(gc_ledger, store_on(runtime, gc_ledger), grace=DAY, now=T0))

    gc_thread = threading.Thread(target=collect)
    gc_thread.start()
    try:
        writer = store_on(runtime, ledgers[1])
        record_blob(ledgers[1], writer, b"shared bytes", "p-1", hold_until_gc_waits)
    finally:
        looked.set()
        gc_thread.join(TIMEOUT)
        gc_ledger.close()
    (report,) = reports
    assert report.removed == () and report.skipped == 1
    assert runtime.store.exists(digest) and missing_files(runtime) == []


@pytest.mark.usefixtures("blob_kind")
def test_a_postmaster_commit_racing_gc_never_records_a_blob_it_lost(
    runtime, ledgers, monkeypatch, observer
):
    """The same race with the real Postmaster: it delivers a parcel whose attachment gc is
    collecting. Whichever gets the CAS first, the delivered artifact has its bytes."""
    data = b"the same attachment"
    digest = unreferenced_old_blob(runtime, data)
    parcels.queue_parcels(
        runtime.ledger,
        [
            parcels.validate(
                parcel("a", 1, attachment=data.decode()), runtime.settings.max_parcel_size
            )
        ],
    )
    gc_ledger = other_ledger(runtime)
    gc_began = started(gc_ledger, monkeypatch)
    looked = threading.Event()
    reports: list[cas_tools.GcReport] = []
    writer = store_on(runtime, ledgers[1])
    original_present = writer.present

    def present(digests) -> set[str]:
        digests = set(digests)
        there = original_present(digests)
        if digest in digests and threading.current_thread() is threading.main_thread():
            looked.set()
            wait_for(lambda: reports or waiting(observer, gc_began), TIMEOUT, "gc to wait")
        return there

    monkeypatch.setattr(writer, "present", present)

    def collect() -> None:
        assert looked.wait(TIMEOUT)
        reports.append(cas_tools.gc(gc_ledger, store_on(runtime, gc_ledger), grace=DAY, now=T0))

    gc_thread = threading.Thread(target=collect)
    gc_thread.start()
    try:
        result = Postmaster(ledgers[1], writer, runtime.settings).deliver_waiting()
    finally:
        looked.set()
        gc_thread.join(TIMEOUT)
        gc_ledger.close()
    assert result.delivered == 1 and reports
    assert missing_files(runtime) == [] and writer.exists(digest)


@pytest.mark.usefixtures("blob_kind")
def test_a_commit_after_gc_removed_the_file_stores_it_again(
    runtime, ledgers, monkeypatch, observer
):
    """The other order: gc has deleted the row and the file, and not committed; the commit
    waits for it, then finds the file gone and writes it again."""
    data = b"collected meanwhile"
    digest = unreferenced_old_blob(runtime, data)
    writer_began = started(ledgers[1], monkeypatch)
    collected = threading.Event()
    original = cas_tools._collect_blobs
    writer: list[BaseException | None] = []

    def collect_then_wait(ledger, store, batch, cutoff):
        found = original(ledger, store, batch, cutoff)
        if digest in batch:
            collected.set()
            wait_for(lambda: writer or waiting(observer, writer_began), TIMEOUT, "the commit")
        return found

    monkeypatch.setattr(cas_tools, "_collect_blobs", collect_then_wait)

    def write() -> None:
        try:
            assert collected.wait(TIMEOUT)
            record_blob(ledgers[1], store_on(runtime, ledgers[1]), data, "p-2")
            writer.append(None)
        except BaseException as exc:
            writer.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        report = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, now=T0)
    finally:
        collected.set()
        thread.join(TIMEOUT)
    assert writer == [None]
    assert [b.hash for b in report.removed] == [digest]
    assert runtime.store.exists(digest) and missing_files(runtime) == []


@pytest.mark.usefixtures("blob_kind")
def test_reconcile_never_drops_the_row_of_a_blob_a_commit_just_recorded(
    runtime, ledgers, monkeypatch, observer
):
    """reconcile found a row without its file and drops it; between its look and its delete a
    commit stores the file again and records it (the row being there, its insert does
    nothing). Excluding the commit, reconcile drops the row first and the commit writes it
    anew; otherwise the blob would stay on disk and referenced, but unrecorded."""
    data = b"missing, then stored again"
    digest = unreferenced_old_blob(runtime, data)
    blobs.drop(runtime.store, digest)
    writer_began = started(ledgers[1], monkeypatch)
    original = cas_tools._stat
    writer: list[BaseException | None] = []

    def write() -> None:
        try:
            record_blob(ledgers[1], store_on(runtime, ledgers[1]), data, "p-3")
            writer.append(None)
        except BaseException as exc:
            writer.append(exc)

    thread = threading.Thread(target=write)

    def look_then_let_the_commit_in(store, found):
        st = original(store, found)
        if found == digest and not thread.is_alive() and not writer:
            thread.start()
            wait_for(lambda: writer or waiting(observer, writer_began), TIMEOUT, "the commit")
        return st

    monkeypatch.setattr(cas_tools, "_stat", look_then_let_the_commit_in)
    try:
        report = cas_tools.reconcile(runtime.ledger, runtime.store)
    finally:
        if thread.is_alive() or writer:
            thread.join(TIMEOUT)
    assert writer == [None] and [m.hash for m in report.missing] == [digest]
    size = runtime.ledger.scalar("SELECT size FROM blobs WHERE hash = ?", (digest,))
    assert size == len(data) and runtime.store.exists(digest) and missing_files(runtime) == []
    assert cas_tools.stats(runtime.ledger) == cas_tools.CasStats(
        runtime.ledger.scalar("SELECT sum(size) FROM blobs"),
        runtime.ledger.scalar("SELECT count(*) FROM blobs"),
    )
