"""CAS tools on real stores filled by the Postmaster: stats, verify, reconcile, gc, `seer cas`."""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from pathlib import Path

import pytest

from seer_console import cli as cli_module
from seer_console.cli.cas import register as add_cas_commands
from tests import blobs
from tests.helpers import parcel
from tests.test_cas import MemoryStore
from worker.cas import tools as cas_tools
from worker.cas.tools import BlobInfo, CasStats
from worker.parcels import intake as parcels

DAY = 86400.0

# Every tool, on blobs kept as rows of the ledger and on blobs kept as files.
pytestmark = pytest.mark.usefixtures("blob_kind")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def deliver(runtime, *items) -> list[str]:
    ids = parcels.queue_parcels(
        runtime.ledger, [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    )
    assert runtime.postmaster().deliver_waiting().delivered == len(ids)
    return ids


def filled(runtime, n: int = 3) -> list[str]:
    """n delivered parcels, each with its own attachment: 2n blobs, all referenced."""
    return deliver(runtime, *(parcel(f"agent-{i}", i, attachment=f"notes {i}") for i in range(n)))


def truth(runtime) -> CasStats:
    found = blobs.stored(runtime.store)
    return CasStats(sum(found.values()), len(found))


def table(runtime) -> dict[str, tuple[int, float]]:
    return {
        r["hash"]: (r["size"], r["created_at"])
        for r in runtime.ledger.rows("SELECT hash, size, created_at FROM blobs")
    }


def attachment_hash(n: int) -> str:
    return sha(f"notes {n}".encode())


def age(runtime, digest: str, when: float, *, row: bool = True, file: bool = True) -> None:
    """Moves a blob's row created_at and/or its file's mtime to `when`."""
    if row:
        with runtime.ledger.write():
            runtime.ledger.execute("UPDATE blobs SET created_at = ? WHERE hash = ?", (when, digest))
    if file:
        blobs.set_written(runtime.store, digest, when)


def age_all(runtime, when: float) -> None:
    for digest in table(runtime):
        age(runtime, digest, when)


def unreference(runtime, digest: str) -> None:
    with runtime.ledger.write():
        runtime.ledger.execute("DELETE FROM artifacts WHERE hash = ?", (digest,))


# -- stats --------------------------------------------------------------------------------------


def test_stats_equals_the_truth(runtime):
    assert cas_tools.stats(runtime.ledger) == CasStats(0, 0)
    filled(runtime, 4)
    # The same attachment twice is one blob, counted once.
    deliver(runtime, parcel("agent-x", 1, attachment="notes 1"))
    found = cas_tools.stats(runtime.ledger)
    assert found == truth(runtime)
    assert found.blobs == len(table(runtime))


# -- verify -------------------------------------------------------------------------------------


def test_verify_a_clean_store(runtime):
    filled(runtime)
    seen = []
    report = cas_tools.verify(runtime.ledger, runtime.store, progress=lambda *a: seen.append(a))
    assert report.clean
    assert (report.corrupt, report.missing, report.orphaned, report.resized) == ((), (), (), ())
    assert (report.bytes_checked, report.blobs_checked) == (truth(runtime).bytes, 6)
    assert report.rows == 6
    assert seen[-1] == (6, report.bytes_checked)


def test_verify_finds_corrupt_missing_and_orphaned(runtime):
    ids = filled(runtime)
    store = runtime.store
    blobs.damage(store, attachment_hash(0))
    blobs.drop(store, attachment_hash(1))
    extra = store.put(b"written, never recorded").digest
    # A blob bigger than one read chunk, damaged at its very end.
    big = bytes(range(256)) * (3 * 4096 + 7)
    big_digest = store.put(big).digest
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, 0)", (big_digest, len(big))
        )
    blobs.damage(store, big_digest, at=len(big) - 1)

    report = cas_tools.verify(runtime.ledger, store)
    assert not report.clean
    assert {b.hash for b in report.corrupt} == {attachment_hash(0), big_digest}
    (missing,) = report.missing
    assert missing.hash == attachment_hash(1)
    (ref,) = missing.artifacts
    assert (ref.parcel_id, ref.kind, ref.name) == (ids[1], "attachment", "notes.txt")
    assert report.orphaned == (BlobInfo(extra, len(b"written, never recorded")),)
    # 6 delivered - 1 deleted + the extra + the big one.
    assert report.blobs_checked == 7
    assert report.rows == 7


def test_verify_reports_a_wrong_recorded_size(runtime):
    filled(runtime, 1)
    digest = attachment_hash(0)
    with runtime.ledger.write():
        runtime.ledger.execute("UPDATE blobs SET size = 1 WHERE hash = ?", (digest,))
    report = cas_tools.verify(runtime.ledger, runtime.store)
    assert report.clean  # accounting, not damage
    (resized,) = report.resized
    assert (resized.hash, resized.recorded, resized.actual) == (digest, 1, len(b"notes 0"))


# -- reconcile ----------------------------------------------------------------------------------


def test_reconcile_repairs_tampered_counters(runtime):
    filled(runtime)
    real = truth(runtime)
    rows = table(runtime)
    with runtime.ledger.write():
        # Through the ledger: PostgreSQL keeps a counter as a row and deltas.
        runtime.ledger.set_counter("cas_bytes", 12345)
        runtime.ledger.set_counter("cas_blobs", 2)
    report = cas_tools.reconcile(runtime.ledger, runtime.store)
    assert report.repaired and not report.in_step
    assert report.before == CasStats(12345, 2)
    assert report.after == report.table == report.disk == real
    assert cas_tools.stats(runtime.ledger) == real
    assert table(runtime) == rows
    assert cas_tools.reconcile(runtime.ledger, runtime.store).in_step


def damage(runtime) -> tuple[str, str, str, float]:
    """An orphaned file (old mtime), a missing file and a wrong size; returns their digests."""
    ids = filled(runtime)
    store = runtime.store
    orphan = store.put(b"an orphan").digest
    mtime = 1_700_000_000.0
    blobs.set_written(store, orphan, mtime)
    missing = attachment_hash(1)
    blobs.drop(store, missing)
    resized = attachment_hash(2)
    with runtime.ledger.write():
        runtime.ledger.execute("UPDATE blobs SET size = size + 5 WHERE hash = ?", (resized,))
    assert ids
    return orphan, missing, resized, mtime


def test_reconcile_records_orphans_drops_missing_rows_and_fixes_sizes(runtime):
    orphan, missing, resized, mtime = damage(runtime)
    report = cas_tools.reconcile(runtime.ledger, runtime.store, now=2_000_000_000.0)
    assert report.repaired
    assert report.orphaned == (BlobInfo(orphan, len(b"an orphan")),)
    (gone,) = report.missing
    assert gone.hash == missing
    assert [(a.kind, a.name) for a in gone.artifacts] == [("attachment", "notes.txt")]
    (fixed,) = report.resized
    assert (fixed.hash, fixed.recorded, fixed.actual) == (resized, 12, 7)

    rows = table(runtime)
    assert rows[orphan] == (len(b"an orphan"), mtime)
    assert missing not in rows
    assert rows[resized][0] == 7
    assert report.after == report.disk == truth(runtime) == cas_tools.stats(runtime.ledger)
    assert cas_tools.verify(runtime.ledger, runtime.store).clean
    again = cas_tools.reconcile(runtime.ledger, runtime.store)
    assert again.in_step and again.before == again.after


def test_reconcile_dry_run_changes_nothing(runtime):
    orphan, missing, resized, _ = damage(runtime)
    rows = table(runtime)
    counters = cas_tools.stats(runtime.ledger)
    report = cas_tools.reconcile(runtime.ledger, runtime.store, repair=False)
    assert not report.repaired and not report.in_step
    assert [b.hash for b in report.orphaned] == [orphan]
    assert [m.hash for m in report.missing] == [missing]
    assert [r.hash for r in report.resized] == [resized]
    assert report.before == counters
    assert report.after == report.disk == truth(runtime)
    assert table(runtime) == rows
    assert cas_tools.stats(runtime.ledger) == counters


def test_reconcile_walking_in_two_processes_finds_the_same(runtime):
    damage(runtime)
    one = cas_tools.reconcile(runtime.ledger, runtime.store, repair=False)
    two = cas_tools.reconcile(runtime.ledger, runtime.store, repair=False, processes=2)
    assert (two.orphaned, two.missing, two.resized) == (one.orphaned, one.missing, one.resized)
    assert two.disk == one.disk == truth(runtime)


def test_reconcile_an_empty_store(runtime):
    report = cas_tools.reconcile(runtime.ledger, runtime.store)
    assert report.in_step
    assert report.before == report.after == report.disk == CasStats(0, 0)


# -- gc -----------------------------------------------------------------------------------------

NOW = 1_800_000_000.0
OLD = NOW - 2 * DAY


def test_gc_removes_old_unreferenced_blobs_and_keeps_referenced_ones(runtime):
    filled(runtime)
    age_all(runtime, OLD)
    dropped = attachment_hash(0)
    unreference(runtime, dropped)
    before = cas_tools.stats(runtime.ledger)

    report = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, now=NOW)
    assert report.removed == (BlobInfo(dropped, len(b"notes 0")),)
    assert report.orphans_removed == () and report.skipped == 0
    assert not runtime.store.exists(dropped)
    assert dropped not in table(runtime)
    # Every referenced blob is still there, however old.
    for digest in table(runtime):
        assert runtime.store.exists(digest)
    assert cas_tools.stats(runtime.ledger) == CasStats(before.bytes - 7, before.blobs - 1)
    assert cas_tools.stats(runtime.ledger) == truth(runtime)


@pytest.mark.parametrize(
    "young", ["row and file", "row only", "file only"], ids=["both", "row", "mtime"]
)
def test_gc_keeps_a_blob_younger_than_the_grace(runtime, young):
    filled(runtime, 1)
    digest = attachment_hash(0)
    unreference(runtime, digest)
    age_all(runtime, OLD)
    recent = NOW - 60
    age(runtime, digest, recent, row="row" in young, file="file" in young)

    report = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, now=NOW)
    assert report.removed == ()
    assert runtime.store.exists(digest) and digest in table(runtime)


def test_gc_dry_run_removes_nothing(runtime):
    filled(runtime)
    age_all(runtime, OLD)
    unreference(runtime, attachment_hash(0))
    orphan = runtime.store.put(b"orphan").digest
    blobs.set_written(runtime.store, orphan, OLD)
    rows, counters = table(runtime), cas_tools.stats(runtime.ledger)

    plan = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, dry_run=True, now=NOW)
    assert plan.dry_run
    assert [b.hash for b in plan.removed] == [attachment_hash(0)]
    assert plan.orphans_removed == (BlobInfo(orphan, 6),)
    assert table(runtime) == rows and cas_tools.stats(runtime.ledger) == counters
    assert runtime.store.exists(attachment_hash(0)) and runtime.store.exists(orphan)

    done = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, now=NOW)
    assert (done.removed, done.orphans_removed) == (plan.removed, plan.orphans_removed)


def test_gc_removes_old_orphans_and_keeps_young_ones(runtime):
    old = runtime.store.put(b"left by a write that never committed").digest
    blobs.set_written(runtime.store, old, OLD)
    # A write in flight: the file is stored, its row not committed yet.
    young = runtime.store.put(b"in flight").digest
    blobs.set_written(runtime.store, young, NOW - 5)

    report = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, now=NOW)
    assert [b.hash for b in report.orphans_removed] == [old]
    assert not runtime.store.exists(old)
    assert runtime.store.exists(young)
    assert cas_tools.stats(runtime.ledger) == CasStats(0, 0)


def test_gc_drops_the_row_of_an_unreferenced_blob_whose_file_is_gone(runtime):
    filled(runtime, 1)
    age_all(runtime, OLD)
    digest = attachment_hash(0)
    unreference(runtime, digest)
    blobs.drop(runtime.store, digest)
    report = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, now=NOW)
    assert [b.hash for b in report.removed] == [digest]
    assert cas_tools.stats(runtime.ledger) == truth(runtime)


def test_gc_rechecks_each_candidate_inside_its_transaction(runtime, monkeypatch):
    """gc's half of the race with a writer storing the same bytes: a blob that gets an artifact
    (or a fresh file) between the candidate query and the delete is kept."""
    filled(runtime, 3)
    age_all(runtime, OLD)
    for n in range(3):
        unreference(runtime, attachment_hash(n))
    referenced, touched, dropped = (attachment_hash(n) for n in range(3))
    listed = []
    original = cas_tools._unreferenced

    def racing(ledger, cutoff):
        for batch in original(ledger, cutoff):
            listed.extend(h for h, _ in batch)
            # What a Postmaster commit does for a parcel with the same attachment, after
            # gc chose its candidates and before gc takes the write lock.
            with ledger.write():
                ledger.execute(
                    "INSERT INTO artifacts (parcel_id, task_id, kind, name, hash, filename, "
                    "mime_type, size, uri, created_at) VALUES ('p-late', 't', 'attachment', "
                    "'notes.txt', ?, 'notes.txt', 'text/plain', 7, 'uri', ?)",
                    (referenced, NOW),
                )
            blobs.set_written(runtime.store, touched, NOW)
            yield batch

    monkeypatch.setattr(cas_tools, "_unreferenced", racing)
    report = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, now=NOW)
    assert {referenced, touched, dropped} <= set(listed)
    assert [b.hash for b in report.removed] == [dropped]
    assert report.skipped == 2
    for digest in (referenced, touched):
        assert runtime.store.exists(digest) and digest in table(runtime)
    assert cas_tools.stats(runtime.ledger) == truth(runtime)


def test_gc_keeps_an_orphan_that_gets_its_row_meanwhile(runtime, monkeypatch):
    orphan = runtime.store.put(b"late commit").digest
    blobs.set_written(runtime.store, orphan, OLD)
    original = cas_tools._scan

    def racing(store):
        found = original(store)
        with runtime.ledger.write():
            runtime.ledger.execute(
                "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?)", (orphan, 11, NOW)
            )
        return found

    monkeypatch.setattr(cas_tools, "_scan", racing)
    report = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, now=NOW)
    assert report.orphans_removed == () and report.skipped == 1
    assert runtime.store.exists(orphan)


def test_gc_works_in_batches(runtime, monkeypatch):
    monkeypatch.setattr(cas_tools, "BATCH_SIZE", 2)
    filled(runtime, 5)
    age_all(runtime, OLD)
    with runtime.ledger.write():
        runtime.ledger.execute("DELETE FROM artifacts")
    report = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY, now=NOW)
    assert len(report.removed) == 10
    assert cas_tools.stats(runtime.ledger) == truth(runtime) == CasStats(0, 0)


# -- `seer cas` ---------------------------------------------------------------------------------


@pytest.fixture
def seer(cli, monkeypatch):
    """The `cli` fixture with `seer cas` registered, whether or not cli.py wires it yet."""
    original = cli_module.build_parser

    def build() -> argparse.ArgumentParser:
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "cas" not in sub.choices:

            def add(name, func, help, **kw):
                p = sub.add_parser(name, help=help, description=help, **kw)
                p.set_defaults(func=func)
                return p

            add_cas_commands(sub, add)
        return parser

    monkeypatch.setattr(cli_module, "build_parser", build)
    return cli


def one_line(result, code: int) -> str:
    assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err + result.out
    return lines[0]


def test_cli_stats(runtime, seer, blob_kind):
    filled(runtime)
    result = seer("cas", "stats", "--json")
    assert result.code == 0, result
    real = truth(runtime)
    rows = real if blob_kind == "ledger" else CasStats(0, 0)
    assert result.json() == {
        "bytes": real.bytes,
        "blobs": real.blobs,
        "max_bytes": runtime.settings.cas_max_size,
        "in_ledger_bytes": rows.bytes,
        "in_ledger_blobs": rows.blobs,
        "small_blob_size": runtime.settings.cas_small_blob_size,
    }
    result = seer("cas", "stats")
    assert result.code == 0 and "6 blobs" in result.out and "quota" in result.out
    if blob_kind == "ledger":
        assert "in the ledger: 1.1 KiB in 6 blobs (those up to 100.0 KiB" in result.out
    else:
        place = "objects of s3://" if blob_kind == "objects" else "files under orchestration/cas"
        assert f"every blob in {place}" in result.out


def test_cli_verify_exit_codes_and_json(runtime, seer):
    filled(runtime)
    result = seer("cas", "verify")
    assert result.code == 0, result
    assert result.out.startswith("verify clean: 6 blobs")

    orphan = runtime.store.put(b"orphan").digest
    result = seer("cas", "verify")
    assert result.code == 0, result  # an orphan is a warning, not damage
    assert orphan in result.out and "seer: warning:" in result.err

    blobs.damage(runtime.store, attachment_hash(0))
    blobs.drop(runtime.store, attachment_hash(1))
    result = seer("cas", "verify", "--json")
    assert result.code == 1, result
    report = result.json()
    assert report["clean"] is False
    assert [c["hash"] for c in report["corrupt"]] == [attachment_hash(0)]
    (missing,) = report["missing"]
    assert missing["hash"] == attachment_hash(1)
    assert missing["artifacts"][0]["kind"] == "attachment"
    assert [o["hash"] for o in report["orphaned"]] == [orphan]
    assert {"blobs_checked", "bytes_checked", "rows", "resized", "duration"} <= set(report)

    result = seer("cas", "verify")
    assert (
        result.code == 1 and "verify DAMAGED" in result.out and "used by attachment" in result.out
    )


def test_cli_lists_are_capped(runtime, seer):
    for n in range(25):
        runtime.store.put(f"orphan {n}".encode())
    result = seer("cas", "verify")
    assert result.code == 0, result
    listed = result.out.splitlines()
    assert listed[1] == "orphaned (file, not recorded):"
    assert len(listed) == 2 + 20 + 1 and listed[-1] == "  … and 5 more"


def test_cli_reconcile(runtime, seer):
    orphan, missing, _, _ = damage(runtime)
    rows = table(runtime)
    result = seer("cas", "reconcile", "--dry-run", "--json")
    assert result.code == 0, result
    report = result.json()
    assert report["repaired"] is False and report["in_step"] is False
    assert set(report["before"]) == {"bytes", "blobs"}
    assert [o["hash"] for o in report["orphaned"]] == [orphan]
    assert [m["hash"] for m in report["missing"]] == [missing]
    assert table(runtime) == rows
    assert "artifact" in result.err  # the dangling artifact is said loudly

    result = seer("cas", "reconcile")
    assert result.code == 0, result
    assert result.out.startswith("reconcile: repaired")
    assert cas_tools.stats(runtime.ledger) == truth(runtime)
    result = seer("cas", "reconcile")
    assert result.out.startswith("reconcile: accounting matches the disk"), result


def test_cli_gc_asks_first_and_refuses_without_a_terminal(runtime, seer):
    filled(runtime)
    old = time.time() - 2 * DAY
    age_all(runtime, old)
    unreference(runtime, attachment_hash(0))
    rows = table(runtime)

    line = one_line(seer("cas", "gc", stdin=""), 2)
    assert "--yes" in line
    assert table(runtime) == rows

    line = one_line(seer("cas", "gc", "--grace", "soon", "--yes"), 2)
    assert "--grace" in line
    # Under the floor: a delivery in progress trusts the blobs it wrote that recently.
    line = one_line(seer("cas", "gc", "--grace", "5m", "--yes"), 2)
    assert "--grace '5m' is not allowed: expected at least 10m" in line
    assert table(runtime) == rows

    result = seer("cas", "gc", "--dry-run", "--json")
    assert result.code == 0, result
    plan = result.json()
    assert plan["dry_run"] is True and plan["removed_count"] == 1
    assert plan["removed_bytes"] == 7
    assert table(runtime) == rows

    # Nothing that old: nothing to ask about.
    result = seer("cas", "gc", "--grace", "3d", stdin="")
    assert result.code == 0, result
    assert "would remove 0 unreferenced blobs" in result.out

    result = seer("cas", "gc", "--yes", "--json")
    assert result.code == 0, result
    done = result.json()
    assert done["dry_run"] is False and [b["hash"] for b in done["removed"]] == [attachment_hash(0)]
    assert not runtime.store.exists(attachment_hash(0))

    result = seer("cas", "gc", "--yes", "--grace", "1h")
    assert result.code == 0, result
    assert result.out.startswith("gc: removed 0 unreferenced blobs")


def test_cli_gc_confirmation_at_a_terminal(runtime, seer, monkeypatch):
    filled(runtime, 1)
    age_all(runtime, time.time() - 2 * DAY)
    unreference(runtime, attachment_hash(0))
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    result = seer("cas", "gc")
    assert result.code == 1 and "nothing removed" in result.out
    assert runtime.store.exists(attachment_hash(0))
    result = seer("cas", "gc")
    assert result.code == 0 and "removed 1 unreferenced blob " in result.out
    assert not runtime.store.exists(attachment_hash(0))


def test_cli_cas_needs_an_action(runtime, seer):
    one_line(seer("cas"), 2)
    one_line(seer("cas", "bogus"), 2)


def test_verify_repair_quarantines_and_restores_from_a_parcel_still_holding_the_bytes(runtime, cli):
    filled(runtime)
    store = runtime.store
    healable, lost, gone = attachment_hash(0), attachment_hash(1), attachment_hash(2)
    blobs.damage(store, healable)
    blobs.damage(store, lost)
    blobs.drop(store, gone)
    # A parcel not delivered yet still holds the content of two of them.
    parcels.queue_parcels(
        runtime.ledger,
        [
            parcels.validate(parcel("agent-9", 9, attachment="notes 0"), 10**6),
            parcels.validate(parcel("agent-9", 10, attachment="notes 2"), 10**6),
        ],
    )
    result = cli("cas", "verify", "--repair")
    assert result.code == 1, result
    assert f"restored    {healable}" in result.out and f"restored    {gone}" in result.out
    assert f"LOST        {lost}" in result.out
    quarantine = runtime.layout.orchestration / "quarantine"
    kept = sorted(p.name.split("-")[0] for p in quarantine.iterdir())
    assert kept == sorted([healable, lost])
    assert store.read(healable) == b"notes 0" and store.read(gone) == b"notes 2"
    after = cas_tools.verify(runtime.ledger, store)
    assert [m.hash for m in after.missing] == [lost] and after.corrupt == ()
    # Run again: nothing more to quarantine, the lost one is still said to be lost.
    again = cli("cas", "verify", "--repair", "--json")
    assert again.code == 1 and again.json()["repair"]["unrecoverable"] == [lost]


# -- through the interface only -----------------------------------------------------------------


def test_the_tools_need_nothing_but_the_blob_store_interface(runtime, tmp_path):
    """verify, repair, reconcile and gc on a backend without paths (as an object store)."""
    filled(runtime)
    memory = MemoryStore(now=OLD)
    for digest, _ in runtime.store.iter_blobs():
        assert runtime.store.replicate(digest, memory) == "copied"
    assert cas_tools.verify(runtime.ledger, memory).clean
    assert cas_tools.reconcile(runtime.ledger, memory, repair=False).in_step

    damaged = attachment_hash(0)
    memory.blobs[damaged] = b"notes X"
    # A parcel still queued holds the same bytes: repair takes them from it.
    parcels.queue_parcels(
        runtime.ledger,
        [parcels.validate(parcel("agent-9", 9, attachment="notes 0"), 1 << 20)],
    )
    report = cas_tools.verify(runtime.ledger, memory)
    assert [b.hash for b in report.corrupt] == [damaged]
    fixed = cas_tools.repair(
        runtime.ledger, memory, report, tmp_path / "quarantine", redact=True, now=NOW
    )
    assert fixed.restored == (damaged,) and fixed.complete
    assert Path(fixed.quarantined[0]).read_bytes() == b"notes X"
    assert memory.read(damaged) == b"notes 0"

    age_all(runtime, OLD)
    dropped = attachment_hash(1)
    unreference(runtime, dropped)
    done = cas_tools.gc(runtime.ledger, memory, grace=DAY, now=NOW)
    assert done.removed == (BlobInfo(dropped, len(b"notes 1")),)
    assert not memory.exists(dropped)
    assert cas_tools.reconcile(runtime.ledger, memory).in_step
