"""The Postmaster's four steps, retries, the failed store and recovery, run in-process."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time

import pytest

from tests import blobs
from tests.helpers import parcel
from worker.cas.errors import CorruptBlob
from worker.identity import Owner, current_owner
from worker.parcels import failures, inbox, postmaster
from worker.parcels import intake as parcels
from worker.parcels.postmaster import Postmaster

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def queue(runtime, *items):
    return parcels.queue_parcels(
        runtime.ledger, [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    )


def test_delivers_message_artifacts_and_manifest(runtime):
    (pid,) = queue(runtime, parcel("agent-7", 1, attachment="hello"))
    result = runtime.postmaster().deliver_waiting(now=1000.0)
    assert (result.claimed, result.delivered) == (1, 1)

    (msg,) = inbox.messages(runtime.ledger, "agent-7")
    assert msg.type == "postmaster.delivery" and msg.parcel_id == pid
    digest = hashlib.sha256(b"hello").hexdigest()
    entry = msg.envelope["attachments"]["notes.txt"]
    assert entry == {
        "uri": f"fe://artifacts/by-task/task-1/{digest}/notes.txt",
        "hash": digest,
        "size": 5,
        "filename": "notes.txt",
        "mime_type": "text/plain",
    }
    assert "content" not in json.dumps(msg.envelope["attachments"])
    headers = msg.headers
    assert headers["original_type"] == "pm.task.created" and headers["artifact_count"] == 1
    manifest_hash = headers["manifest_uri"].split("/")[-2]
    manifest = json.loads(runtime.store.read(manifest_hash))
    assert manifest["artifacts"][0]["hash"] == digest and manifest["parcel_id"] == pid
    assert runtime.store.read(digest) == b"hello"
    kinds = sorted(a["kind"] for a in runtime.ledger.rows("SELECT kind FROM artifacts"))
    assert kinds == ["attachment", "manifest"]
    # Delivered: the raw parcel is not kept.
    assert failures.parcel(runtime.ledger, pid).payload is None
    counters = runtime.ledger.counters()
    assert counters["cas_blobs"] == 2
    assert counters["cas_bytes"] == 5 + len(runtime.store.read(manifest_hash))
    assert counters["parcels_delivered"] == 1 and counters["parcels_queued"] == 0


def test_secrets_are_redacted_in_envelope_headers_and_text_attachments(runtime):
    item = parcel("a", 1, attachment=f"key {AWS_KEY} here")
    item["envelope"]["body"] = f"token {GITHUB}"
    item["headers"] = {"authorization": "Bearer abcdefghijklmnop"}
    item["attachments"]["bin"] = {
        "content": base64.b64encode(b"\x00\x01" + AWS_KEY.encode()).decode(),
        "encoding": "base64",
    }
    queue(runtime, item)
    runtime.postmaster().deliver_waiting()
    (msg,) = inbox.messages(runtime.ledger, "a")
    stored = json.dumps(msg.as_dict())
    assert GITHUB not in stored and "abcdefghijklmnop" not in stored
    text = runtime.store.read(msg.envelope["attachments"]["notes.txt"]["hash"])
    assert AWS_KEY.encode() not in text and text.startswith(b"key ")
    # Binary attachments are stored as given: redaction is for text.
    binary = runtime.store.read(msg.envelope["attachments"]["bin"]["hash"])
    assert binary == b"\x00\x01" + AWS_KEY.encode()


def test_redaction_can_be_turned_off(runtime, monkeypatch):
    monkeypatch.setenv("ORCHESTRATION_REDACT_SECRETS", "false")
    from worker.runtime import Runtime

    plain = Runtime.open()
    queue(plain, parcel("a", 1, attachment=AWS_KEY))
    plain.postmaster().deliver_waiting()
    (msg,) = inbox.messages(plain.ledger, "a")
    assert plain.store.read(msg.envelope["attachments"]["notes.txt"]["hash"]) == AWS_KEY.encode()


def test_batches_are_delivered_in_order_and_once(runtime):
    ids = queue(runtime, *(parcel("a", n, attachment=f"n{n}") for n in range(25)))
    pm = runtime.postmaster()
    first = pm.deliver_waiting(limit=10)
    assert first.delivered == 10
    delivered = [
        r["id"] for r in runtime.ledger.rows("SELECT id FROM parcels WHERE state='delivered'")
    ]
    assert delivered == ids[:10]
    assert pm.deliver_waiting().delivered == 15
    assert pm.deliver_waiting().claimed == 0
    assert runtime.ledger.scalar("SELECT count(*) FROM messages") == 25


def test_identical_attachments_are_stored_once(runtime):
    queue(runtime, parcel("a", 1, attachment="same"), parcel("b", 2, attachment="same"))
    runtime.postmaster().deliver_waiting()
    digest = hashlib.sha256(b"same").hexdigest()
    assert runtime.ledger.scalar("SELECT count(*) FROM blobs WHERE hash = ?", (digest,)) == 1
    assert runtime.ledger.scalar("SELECT count(*) FROM artifacts WHERE hash = ?", (digest,)) == 2


def test_failing_parcel_is_retried_then_lands_in_failed_store(runtime):
    (pid,) = queue(runtime, parcel("a", 1))
    # Corrupt the stored payload's attachment so that preparing it raises each time.
    runtime.ledger.execute(
        "UPDATE parcels SET payload = ? WHERE id = ?",
        (json.dumps({"to_agent_id": "a", "attachments": {"x": {"content": 5}}}), pid),
    )
    pm = runtime.postmaster()
    result = pm.deliver_waiting(now=100.0)
    # A parcel that no longer validates cannot get better: it fails at once.
    assert result.failed == 1
    row = failures.parcel(runtime.ledger, pid)
    assert row.state == "failed" and "not valid any more" in row.error


def test_transient_errors_use_tries_with_backoff(runtime, monkeypatch):
    (pid,) = queue(runtime, parcel("a", 1, attachment="x"))
    pm = runtime.postmaster()
    calls = []

    def broken(items):
        calls.append(len(items))
        raise OSError(5, f"storage hiccup {GITHUB}")

    monkeypatch.setattr(pm.store, "put_many", broken)
    first = pm.deliver_waiting(now=1000.0)
    assert first.retried == 1 and first.retry_at == 1000.0 + 0.2
    # Not due yet: nothing is claimed before the backoff has passed.
    assert pm.deliver_waiting(now=1000.1).claimed == 0
    second = pm.deliver_waiting(now=1000.3)
    assert second.retried == 1 and second.retry_at == 1000.3 + 0.4
    third = pm.deliver_waiting(now=1001.0)
    assert third.failed == 1
    row = failures.parcel(runtime.ledger, pid)
    assert row.state == "failed" and row.attempts == 3
    assert "storage hiccup" in row.error and GITHUB not in row.error
    assert "Traceback" in row.traceback and GITHUB not in row.traceback
    assert row.payload["attachments"]["notes.txt"]["content"] == "x"

    # Retried with its original contents, it is delivered once the store works again.
    monkeypatch.undo()
    assert failures.retry(runtime.ledger, pid)
    assert runtime.postmaster().deliver_waiting().delivered == 1
    (msg,) = inbox.messages(runtime.ledger, "a")
    assert runtime.store.read(msg.envelope["attachments"]["notes.txt"]["hash"]) == b"x"


def test_quota_fails_the_parcel_without_writing_a_blob(runtime, monkeypatch):
    monkeypatch.setenv("ORCHESTRATION_CAS_MAX_SIZE", "600")
    from worker.runtime import Runtime

    small = Runtime.open()
    _, too_big = queue(small, parcel("a", 1, attachment="x" * 100), parcel("a", 2, "y" * 500))
    result = small.postmaster().deliver_waiting()
    assert (result.delivered, result.failed) == (1, 1)
    row = failures.parcel(small.ledger, too_big)
    assert row.state == "failed" and "CAS quota exceeded" in row.error
    assert "ORCHESTRATION_CAS_MAX_SIZE" in row.error
    on_disk = {d for d, _ in small.store.iter_blobs()}
    assert hashlib.sha256(b"y" * 500).hexdigest() not in on_disk
    assert len(on_disk) == small.ledger.scalar("SELECT count(*) FROM blobs") == 2


def test_two_consumers_committing_at_once_never_both_pass_the_quota(runtime, monkeypatch):
    # Each parcel fits alone, the two do not. Both consumers pass the check before the put
    # (neither has committed yet), then commit at the same moment: the quota holds.
    import threading

    from worker.runtime import Runtime

    monkeypatch.setenv("ORCHESTRATION_CAS_MAX_SIZE", "2000")
    queue(runtime, parcel("a", 1, attachment="x" * 1000), parcel("a", 2, attachment="y" * 1000))
    both_checked = threading.Barrier(2, timeout=30)
    results = []

    def consumer(n: int) -> None:
        rt = Runtime.open()
        pm = Postmaster(rt.ledger, rt.store, rt.settings, Owner("host-" + str(n), n, n, n))
        commit = pm._commit

        def together(*args):
            both_checked.wait()
            return commit(*args)

        pm._commit = together
        try:
            results.append(pm.deliver_waiting(limit=1))
        finally:
            rt.close()

    threads = [threading.Thread(target=consumer, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted((r.delivered, r.failed) for r in results) == [(0, 1), (1, 0)]
    (failed,) = failures.list_failed(runtime.ledger)
    assert "CAS quota exceeded" in failed.error
    recorded = {r["hash"]: r["size"] for r in runtime.ledger.rows("SELECT hash, size FROM blobs")}
    assert runtime.ledger.counter("cas_bytes") == sum(recorded.values()) <= 2000
    on_disk = runtime.store.sizes()
    assert all(on_disk.get(h) == size for h, size in recorded.items())
    # The refused parcel's blobs were stored before its commit found the quota spent: files
    # no row records, which `seer cas gc` removes (deleting them here could take a blob a
    # concurrent delivery of the same content has just counted on).


def test_disk_full_backs_off_without_using_a_try(runtime, monkeypatch):
    from worker.cas.store import DiskFull
    from worker.fleet import control

    (pid,) = queue(runtime, parcel("a", 1, attachment="x"))
    pm = runtime.postmaster()

    def full(items):
        raise DiskFull("No space left on device")

    monkeypatch.setattr(pm.store, "put_many", full)
    result = pm.deliver_waiting(now=50.0)
    assert result.backing_off and result.retry_at >= 55.0
    row = failures.parcel(runtime.ledger, pid)
    assert row.state == "queued" and row.attempts == 0
    assert "disk full" in control.backoff_state(runtime.ledger).reason
    monkeypatch.undo()
    assert runtime.postmaster().deliver_waiting().delivered == 1
    assert control.backoff_state(runtime.ledger) is None


def dead_owner() -> Owner:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    me = current_owner()
    return Owner(me.host, int(child.stdout), me.started, 1)


def test_recover_takes_back_parcels_of_a_dead_worker_and_isolates_them(runtime):
    ids = queue(runtime, *(parcel("a", n) for n in range(3)))
    dead = Postmaster(runtime.ledger, runtime.store, runtime.settings, owner=dead_owner())
    assert len(dead._claim(now=1.0, limit=10)) == 3
    # A live worker's parcels are left alone.
    assert postmaster.recover(runtime.ledger, runtime.settings).requeued == 3
    rows = runtime.ledger.rows("SELECT state, isolate, crashes FROM parcels ORDER BY seq")
    # Three in flight together: the death is blamed on none of them, but each goes alone next.
    assert rows == [{"state": "queued", "isolate": 1, "crashes": 0}] * 3
    pm = runtime.postmaster()
    assert [len(pm._claim(now=2.0, limit=10)) for _ in range(3)] == [1, 1, 1]
    assert runtime.ledger.scalar("SELECT count(*) FROM parcels WHERE state='in_flight'") == 3
    assert ids


def test_parcel_that_kills_its_worker_repeatedly_goes_to_failed(runtime):
    (pid,) = queue(runtime, parcel("a", 1))
    for attempt in range(1, 4):
        dead = Postmaster(runtime.ledger, runtime.store, runtime.settings, owner=dead_owner())
        assert len(dead._claim(now=float(attempt), limit=10)) == 1
        postmaster.recover(runtime.ledger, runtime.settings)
    row = failures.parcel(runtime.ledger, pid)
    assert row.state == "failed" and row.crashes == 3
    assert "died 3 times" in row.error


def test_live_workers_parcels_are_not_taken(runtime):
    queue(runtime, parcel("a", 1))
    assert len(runtime.postmaster()._claim(now=1.0, limit=10)) == 1
    assert postmaster.recover(runtime.ledger, runtime.settings).requeued == 0


def test_delivery_by_a_worker_taken_for_dead_is_discarded(runtime):
    (pid,) = queue(runtime, parcel("a", 1, attachment="z"))
    slow = runtime.postmaster()
    rows = slow._claim(now=1.0, limit=10)
    # Meanwhile someone decided the slow worker was dead and another worker delivered it.
    runtime.ledger.execute("UPDATE parcels SET state='queued', owner=NULL WHERE id = ?", (pid,))
    other = Postmaster(runtime.ledger, runtime.store, runtime.settings, owner=dead_owner())
    assert other.deliver_waiting().delivered == 1
    late = slow._deliver(rows, now=2.0)
    assert late.delivered == 0
    assert runtime.ledger.scalar("SELECT count(*) FROM messages WHERE parcel_id = ?", (pid,)) == 1


@pytest.mark.usefixtures("file_blobs")
def test_real_full_disk_backs_off_then_delivers_when_space_returns(runtime, tmpfs):
    import subprocess

    from worker.fleet import control

    cas = tmpfs(runtime.layout.cas, "64k")
    (pid,) = queue(runtime, parcel("a", 1, attachment="z" * 100_000))
    result = runtime.postmaster().deliver_waiting(now=10.0)
    assert result.backing_off and result.retry_at == 15.0
    row = failures.parcel(runtime.ledger, pid)
    assert (row.state, row.attempts) == ("queued", 0)
    assert "disk full" in control.backoff_state(runtime.ledger).reason
    assert list((cas / "tmp").iterdir()) == []
    # The operator frees space (here: grows the filesystem); the next ring delivers.
    subprocess.run(["mount", "-o", "remount,size=1m", str(cas)], check=True)
    assert runtime.postmaster().deliver_waiting(now=16.0).delivered == 1
    assert control.backoff_state(runtime.ledger) is None
    # The store's directory fds would keep the mount busy when the fixture unmounts it.
    runtime.store.close()


@pytest.mark.usefixtures("blob_kind")
@pytest.mark.parametrize("before", ["unreferenced row", "orphan"])
def test_a_blob_removed_by_gc_before_the_commit_is_written_again(runtime, before):
    from worker.cas import tools as cas_tools

    # Bytes already stored that no artifact references: a blob whose artifacts are gone (its
    # row old), or an orphan a killed delivery left (no row). The put deduplicates against
    # them; then gc takes them, row and bytes, before the commit.
    digest = hashlib.sha256(b"shared").hexdigest()
    runtime.store.put(b"shared")
    if before == "unreferenced row":
        with runtime.ledger.write():
            runtime.ledger.execute(
                "INSERT INTO blobs (hash, size, created_at) VALUES (?, 6, 0)", (digest,)
            )
    queue(runtime, parcel("b", 2, attachment="shared"))
    pm = runtime.postmaster()
    rows = pm._claim(now=1.0, limit=10)
    original_put_many = pm.store.put_many
    collected = []

    def put_then_gc(items):
        results = original_put_many(items)
        report = cas_tools.gc(runtime.ledger, runtime.store, grace=0, now=time.time() + 3600)
        collected.extend(b.hash for b in report.removed + report.orphans_removed)
        pm.store.put_many = original_put_many  # once: the commit's own put is a put_many too
        return results

    pm.store.put_many = put_then_gc
    assert pm._deliver(rows, now=2.0).delivered == 1
    assert digest in collected
    assert runtime.store.read(digest) == b"shared"
    assert runtime.ledger.scalar("SELECT count(*) FROM blobs WHERE hash = ?", (digest,)) == 1


def test_a_parcel_with_the_content_of_a_damaged_blob_heals_it(blob_kind, runtime):
    queue(runtime, parcel("a", 1, attachment="same bytes " * 50))
    runtime.postmaster().deliver_waiting()
    (msg,) = inbox.messages(runtime.ledger, "a")
    digest = msg.envelope["attachments"]["notes.txt"]["hash"]
    blobs.damage(runtime.store, digest)
    with pytest.raises(CorruptBlob):
        runtime.store.read(digest)
    queue(runtime, parcel("b", 2, attachment="same bytes " * 50))
    assert runtime.postmaster().deliver_waiting().delivered == 1
    if blob_kind == "objects":
        # A create-only PUT trusts the object the server verified when it was stored (a 412
        # costs no read): damage at rest is what verify finds and repair mends.
        from worker.cas import tools as cas_tools

        with pytest.raises(CorruptBlob):
            runtime.store.read(digest)
        found = cas_tools.verify(runtime.ledger, runtime.store)
        assert [b.hash for b in found.corrupt] == [digest]
        return  # repair from a parcel's bytes: tests/test_cas_tools.py, on objects too
    # The new delivery points at good bytes, and so does the first one now.
    assert runtime.store.read(digest) == ("same bytes " * 50).encode()
    assert runtime.ledger.scalar("SELECT count(*) FROM blobs WHERE hash = ?", (digest,)) == 1


def test_a_batch_stops_at_postmaster_batch_bytes(runtime, monkeypatch):
    from worker.runtime import Runtime

    monkeypatch.setenv("POSTMASTER_BATCH_BYTES", "10K")
    small = Runtime.open()
    ids = queue(small, *(parcel("a", n, attachment="x" * 3000) for n in range(7)))
    pm = small.postmaster()
    claimed = pm._claim(time.time(), limit=100)
    # About 3.2 KB each: three fit in 10 KiB, the fourth would not.
    assert [r.id for r in claimed] == ids[:3]
    assert all(r.payload for r in claimed)
    pm._release_own()
    # A parcel bigger than the bound still goes, alone.
    monkeypatch.setenv("POSTMASTER_BATCH_BYTES", "1K")
    tiny = Runtime.open()
    assert len(tiny.postmaster()._claim(time.time(), limit=100)) == 1
    result = small.postmaster().deliver_waiting()
    assert result.delivered == 7
    small.close()
    tiny.close()
