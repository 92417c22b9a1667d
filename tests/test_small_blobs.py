"""Small blobs kept in the ledger (ORCHESTRATION_CAS_SMALL_BLOB_SIZE): which blobs go where,
dedupe across the two kinds, damage found and healed, the counters of where the bytes are,
`seer cas unpack`, the rollback that would drop them, and the setting's bad values.

The CAS tools, backup and restore, gc races and the consumer's SIGKILL test run on both kinds
in their own files (tests/test_cas_tools.py, test_backup.py, test_concurrency.py,
test_consumer.py)."""

from __future__ import annotations

import hashlib
import logging
import os

import pytest

from tests import blobs
from tests.helpers import parcel
from worker.cas import open_store
from worker.cas import tools as cas_tools
from worker.cas.errors import CorruptBlob
from worker.cas.tiered import TieredStore
from worker.ledger import migrations
from worker.parcels import intake as parcels
from worker.runtime import Runtime
from worker.settings import SettingsError, load_settings

SMALL = b"s" * 2000
LARGE = b"L" * 5000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def threshold(env, monkeypatch):
    """Blobs of up to 4 KiB are rows: SMALL is one, LARGE a file."""
    monkeypatch.setenv("ORCHESTRATION_CAS_SMALL_BLOB_SIZE", "4K")


def store_with(runtime: Runtime, small_max: str) -> TieredStore:
    """The runtime's store as a host whose threshold is `small_max` sees it."""
    settings = load_settings({**os.environ, "ORCHESTRATION_CAS_SMALL_BLOB_SIZE": small_max})
    store = open_store(runtime.layout, runtime.ledger, settings)
    assert isinstance(store, TieredStore)
    return store


@pytest.mark.usefixtures("threshold")
def test_blobs_up_to_the_threshold_are_rows_and_larger_ones_files(runtime):
    results = runtime.store.put_many([SMALL, LARGE, SMALL])
    assert [r.created for r in results] == [True, True, False]
    assert blobs.kind_of(runtime.store, sha(SMALL)) == "ledger"
    assert blobs.kind_of(runtime.store, sha(LARGE)) == "file"
    assert runtime.store.read(sha(SMALL)) == SMALL and runtime.store.read(sha(LARGE)) == LARGE
    assert dict(runtime.store.iter_blobs()) == {sha(SMALL): 2000, sha(LARGE): 5000}
    assert runtime.store.sizes() == blobs.stored(runtime.store)
    assert runtime.store.stat(sha(SMALL)).size == 2000
    assert cas_tools.in_ledger(runtime.ledger) == cas_tools.CasStats(2000, 1)
    # Nothing of the row is a file.
    assert not blobs.path_of(runtime.store, sha(SMALL)).exists()


@pytest.mark.usefixtures("threshold")
def test_a_put_finds_the_bytes_as_the_other_kind_and_stores_nothing_new(runtime):
    # Stored when every blob was a file; the threshold was raised since.
    as_file = store_with(runtime, "0").put(SMALL)
    assert as_file.created and blobs.kind_of(runtime.store, sha(SMALL)) == "file"
    # Stored as a row when the threshold was higher; it was lowered since.
    as_row = store_with(runtime, "1M").put(LARGE)
    assert as_row.created and blobs.kind_of(runtime.store, sha(LARGE)) == "ledger"
    again = runtime.store.put_many([SMALL, LARGE])
    assert [r.created for r in again] == [False, False]
    assert blobs.kind_of(runtime.store, sha(SMALL)) == "file"
    assert blobs.kind_of(runtime.store, sha(LARGE)) == "ledger"


@pytest.mark.usefixtures("threshold")
def test_a_damaged_row_is_found_on_read_and_by_verify_and_healed_by_a_put(runtime, caplog):
    digest = runtime.store.put(SMALL).digest
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, 0)", (digest, len(SMALL))
        )
    blobs.damage(runtime.store, digest, at=1999)
    with pytest.raises(CorruptBlob):
        runtime.store.read(digest)
    assert runtime.store.check(digest) is False
    report = cas_tools.verify(runtime.ledger, runtime.store)
    assert [b.hash for b in report.corrupt] == [digest]
    caplog.set_level(logging.WARNING, "seer.cas")
    assert runtime.store.put(SMALL).created is False
    assert "damaged in the ledger" in caplog.text
    assert runtime.store.read(digest) == SMALL
    assert cas_tools.verify(runtime.ledger, runtime.store).clean


@pytest.mark.usefixtures("threshold")
def test_deliveries_store_their_small_blobs_as_rows_and_the_counters_say_where(runtime, cli):
    items = [parcel("a", 1, attachment="x" * 3000), parcel("b", 2, attachment="y" * 6000)]
    parcels.queue_parcels(
        runtime.ledger, [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    )
    assert runtime.postmaster().deliver_waiting().delivered == 2
    rows = runtime.ledger.rows("SELECT hash, length(data) AS n FROM small_blobs")
    # Two manifests and the 3,000-byte attachment; the 6,000-byte one is a file.
    assert len(rows) == 3 and sha(b"x" * 3000) in {r["hash"] for r in rows}
    assert blobs.kind_of(runtime.store, sha(b"y" * 6000)) == "file"
    where = cas_tools.in_ledger(runtime.ledger)
    assert where == cas_tools.CasStats(sum(r["n"] for r in rows), 3)
    total = cas_tools.stats(runtime.ledger)
    assert total.blobs == 4 and total.bytes == where.bytes + 6000
    out = cli("cas", "stats", "--json").json()
    assert (out["in_ledger_bytes"], out["in_ledger_blobs"]) == (where.bytes, 3)
    assert out["small_blob_size"] == 4096
    assert "in the ledger: " in cli("cas", "stats").out
    report = cli("monitor-storage", "--json").json()["report"]
    assert (report["ledger_bytes"], report["ledger_blobs"]) == (where.bytes, 3)
    assert (report["cas_bytes"], report["cas_blobs"]) == (total.bytes, 4)
    # The counters follow a heal (an UPDATE) and a removal.
    blobs.damage(runtime.store, sha(b"x" * 3000), data=b"short")
    assert cas_tools.in_ledger(runtime.ledger).bytes == where.bytes - 2995
    runtime.store.remove(sha(b"x" * 3000))
    assert cas_tools.in_ledger(runtime.ledger) == cas_tools.CasStats(where.bytes - 3000, 2)


@pytest.mark.usefixtures("threshold")
def test_unpack_moves_every_row_into_files_and_then_the_rollback_may_run(runtime, cli):
    digests = [r.digest for r in runtime.store.put_many([SMALL, b"another small one", LARGE])]
    before = {d: runtime.store.read(d) for d in digests}
    refused = cli("migrate", "--rollback", "1", "--yes", "--force")
    assert refused.code == 1 and refused.err.count("\n") == 1
    assert "keeps 2 blobs of the CAS" in refused.err and "seer cas unpack" in refused.err
    assert migrations.current_version(runtime.ledger) == migrations.LATEST
    moved = cli("cas", "unpack", "--json").json()
    assert moved == {"bytes": 2000 + len(b"another small one"), "blobs": 2}
    assert runtime.ledger.scalar("SELECT count(*) FROM small_blobs") == 0
    assert {d: blobs.kind_of(runtime.store, d) for d in digests} == dict.fromkeys(digests, "file")
    assert {d: runtime.store.read(d) for d in digests} == before
    assert cli("cas", "unpack", "--json").json() == {"bytes": 0, "blobs": 0}
    done = cli("migrate", "--rollback", "1", "--yes", "--force")
    assert done.code == 0, done.err
    assert "table small_blobs (0 rows)" in done.out


@pytest.mark.usefixtures("threshold")
def test_unpack_stops_at_a_damaged_row_and_loses_nothing(runtime, cli):
    good = runtime.store.put(b"good small bytes").digest
    bad = runtime.store.put(SMALL).digest
    blobs.damage(runtime.store, bad)
    result = cli("cas", "unpack")
    assert result.code == 1 and result.err.count("\n") == 1
    assert f"blob {bad} is corrupt" in result.err and "verify --repair" in result.err
    assert runtime.store.read(good) == b"good small bytes"
    assert blobs.kind_of(runtime.store, bad) == "ledger"


@pytest.mark.parametrize(
    "raw, why",
    [
        ("-1", "a size in bytes"),
        ("2M", "from 0 (every blob a file) to 1M"),
        ("1.5G", "from 0 (every blob a file) to 1M"),
        ("lots", "a size in bytes"),
        ("", "a size in bytes"),
    ],
)
def test_bad_values_of_the_threshold_are_refused_in_one_line(runtime, cli, monkeypatch, raw, why):
    with pytest.raises(SettingsError) as refused:
        load_settings({"ORCHESTRATION_CAS_SMALL_BLOB_SIZE": raw})
    assert "ORCHESTRATION_CAS_SMALL_BLOB_SIZE" in str(refused.value) and why in str(refused.value)
    monkeypatch.setenv("ORCHESTRATION_CAS_SMALL_BLOB_SIZE", raw)
    for command in (("cas", "stats"), ("worker",), ("cas", "verify")):
        result = cli(*command)
        assert result.code == 2 and result.err.count("\n") == 1, command
        assert "ORCHESTRATION_CAS_SMALL_BLOB_SIZE" in result.err and why in result.err


@pytest.mark.parametrize("raw, expected", [("0", 0), ("64K", 65536), ("1M", 1048576), ("100", 100)])
def test_good_values_of_the_threshold(raw, expected):
    assert load_settings({"ORCHESTRATION_CAS_SMALL_BLOB_SIZE": raw}).cas_small_blob_size == expected
