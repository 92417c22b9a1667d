"""Real consumers with the CAS on a real Ceph RGW: SIGKILLed while they write (exactly once,
no artifact without its object), radosgw and the OSD killed during a drain (nothing lost, the
consumers carry on by themselves), and three hosts on PostgreSQL + RGW sharing no disk: a
parcel sent on one, delivered by a consumer of another, its artifact pulled on a third."""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests import blobs
from tests.conftest import BIN, Consumer
from tests.helpers import kill_while_holding_batches, parcel, wait_for
from tests.rgw_server import PrivateRgw
from worker.fleet import control
from worker.ops import operations
from worker.parcels import intake as parcels
from worker.runtime import Runtime
from worker.settings import load_settings


def send(runtime: Runtime, items: list[dict]) -> list[str]:
    batch = [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    return list(operations.send_parcels(runtime, batch).ids)


def delivered(runtime: Runtime) -> int:
    return runtime.ledger.counter("parcels_delivered")


def use_objects(server: PrivateRgw, bucket: str, env: dict[str, str], monkeypatch) -> None:
    """The test's root with its large blobs on `bucket` (small ones, up to 1K, stay rows)."""
    settings = {
        **server.env(),
        "ORCHESTRATION_CAS_URL": f"s3://{bucket}/cas",
        "ORCHESTRATION_CAS_SMALL_BLOB_SIZE": "1K",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    env.update(settings)


@pytest.fixture
def on_rgw(env, rgw, rgw_bucket, monkeypatch) -> str:
    """Before `runtime`: the root's CAS on the session's RGW."""
    use_objects(rgw, rgw_bucket, env, monkeypatch)
    return rgw_bucket


def assert_exactly_once_and_whole(runtime: Runtime, ids: list[str]) -> None:
    ledger = runtime.ledger
    total = len(ids)
    assert ledger.scalar("SELECT count(*) FROM parcels WHERE state <> 'delivered'") == 0
    assert ledger.scalar("SELECT count(*) FROM messages") == total
    assert {r["parcel_id"] for r in ledger.rows("SELECT parcel_id FROM messages")} == set(ids)
    assert ledger.scalar("SELECT count(DISTINCT parcel_id) FROM artifacts") == total
    # No dangling artifact: every referenced blob is stored, and hashes to its name.
    referenced = {r["hash"] for r in ledger.rows("SELECT DISTINCT hash FROM artifacts")}
    stored = runtime.store.sizes()
    assert referenced <= stored.keys()
    recorded = {r["hash"]: r["size"] for r in ledger.rows("SELECT hash, size FROM blobs")}
    assert stored == recorded
    counters = ledger.counters()
    assert counters["cas_blobs"] == len(recorded)
    assert counters["cas_bytes"] == sum(recorded.values())
    for digest in referenced:
        runtime.store.read(digest)  # verifies the hash


# PostgreSQL: the deployment that has no shared disk (the ledger's part of exactly once is the
# SQLite SIGKILL test's, tests/test_consumer.py).
@pytest.mark.backends("postgresql")
def test_sigkill_while_writing_to_rgw_loses_nothing_and_delivers_once(
    on_rgw, runtime, consumers, monkeypatch
):
    """200 parcels, their attachments objects (2.4 KB) and rows (300 B), the consumer
    SIGKILLed 4 times while it holds a batch, restarted each time."""
    monkeypatch.setenv("POSTMASTER_BATCH_SIZE", "20")
    rng = random.Random(20261203)
    total = 200
    ids = send(
        runtime,
        [
            parcel(f"agent-{n % 5}", n, attachment=f"object {n} " * (30 if n % 2 else 250))
            for n in range(total)
        ],
    )
    thresholds = sorted(rng.sample(range(0, total - 60), 4))
    kill_while_holding_batches(runtime, lambda: consumers("postmaster"), thresholds, 90)
    wait_for(lambda: delivered(runtime) == total, 120, "every parcel delivered")
    caught = runtime.ledger.scalar("SELECT count(*) FROM parcels WHERE isolate = 1")
    assert caught > 0, "no kill landed while parcels were in flight"
    assert_exactly_once_and_whole(runtime, ids)
    kinds = Counter(blobs.kind_of(runtime.store, d) for d in runtime.store.sizes())
    assert kinds["file"] == total // 2  # the large attachments: objects of the bucket
    assert blobs.objects_of(runtime.store) is not None


# PostgreSQL and the object store: the deployment that has no shared disk.
@pytest.mark.backends("postgresql")
@pytest.mark.slow
def test_radosgw_and_the_osd_killed_during_a_drain_lose_nothing(
    env, tmp_path, monkeypatch, cli, consumers
):
    """Two consumers drain parcels; radosgw is SIGKILLed and restarted, then the OSD: the
    consumers back off while the store is away (no try used up, `seer status` says why) and
    deliver everything once it is back, with no one restarting them. Each outage starts with
    parcels still waiting or in flight, however fast the drain: the first once some are
    delivered and more wait, the second with parcels sent and claimed while the OSD is gone."""
    with PrivateRgw(tmp_path) as server:
        bucket = server.make_bucket()
        use_objects(server, bucket, env, monkeypatch)
        assert cli("init").code == 0
        runtime = Runtime.open(load_settings())
        try:
            first = 300
            ids = send(
                runtime,
                [parcel(f"agent-{n % 4}", n, attachment=f"drain {n} " * 300) for n in range(first)],
            )
            consumers("postmaster")
            consumers("postmaster")
            wait_for(lambda: delivered(runtime) >= 40, 90, "40 deliveries")
            server.kill_radosgw()
            said = wait_for(
                lambda: (b := control.backoff_state(runtime.ledger)) and b.reason,
                90,
                "the consumers to back off",
            )
            assert said.startswith("CAS store unavailable: object store s3://")
            status = cli("status", "--json")
            assert "CAS store unavailable" in status.out
            # Batches of 100 and the first seen through: at least one waits for the store.
            assert delivered(runtime) < first
            server.start_radosgw()
            wait_for(lambda: delivered(runtime) == first, 180, "the first parcels delivered")
            assert control.backoff_state(runtime.ledger) is None, "the backoff outlived it"
            # Requests wait in radosgw while the OSD is gone, then complete or time out.
            server.kill_osd()
            second = 100
            ids += send(
                runtime,
                [
                    parcel(f"agent-{n % 4}", n, attachment=f"after {n} " * 300)
                    for n in range(first, first + second)
                ],
            )
            wait_for(
                lambda: runtime.ledger.scalar(
                    "SELECT count(*) FROM parcels WHERE state = 'in_flight'"
                ),
                60,
                "parcels claimed while the OSD is gone",
                0.01,
            )
            server.start_osd()
            total = first + second
            wait_for(lambda: delivered(runtime) == total, 180, "every parcel delivered")
            # A delivery counts as a parcel's try: each took exactly one, none was used up
            # by the store being away.
            attempts = runtime.ledger.scalar("SELECT max(attempts) FROM parcels")
            assert attempts == 1, "a store out of reach used up a parcel's try"
            assert_exactly_once_and_whole(runtime, ids)
        finally:
            runtime.close()


@pytest.mark.backends("postgresql")
def test_three_hosts_share_the_ledger_and_the_bucket_and_no_disk(
    env, rgw, rgw_bucket, tmp_path, monkeypatch, cli
):
    """Host A sends, host B's consumer delivers, host C pulls the artifact: each has a
    storage root of its own (no CAS directory in common), the ledger on PostgreSQL and the
    large blobs in one bucket."""
    use_objects(rgw, rgw_bucket, env, monkeypatch)
    roots = {}
    for name in ("a", "b", "c"):
        root = tmp_path / f"host-{name}"
        roots[name] = dict(os.environ, SEER_STORAGE_PATH=str(root), SEER_HOST_ID=f"host-{name}")
        done = subprocess.run(
            [str(BIN / "seer"), "init"], env=roots[name], cwd=tmp_path, capture_output=True
        )
        assert done.returncode == 0, done.stderr
    body = "a report written on host a\n" * 200  # 5.4 KB: an object, not a row
    sent = subprocess.run(
        [str(BIN / "seer"), "parcel", "send", "-"],
        env=roots["a"],
        cwd=tmp_path,
        input=json.dumps(parcel("agent-7", 1, attachment=body)).encode(),
        capture_output=True,
    )
    assert sent.returncode == 0, sent.stderr
    consumer = Consumer(roots["b"], tmp_path).start()
    try:

        def inbox() -> list:
            shown = subprocess.run(
                [str(BIN / "seer"), "inbox", "agent-7", "--json"],
                env=roots["c"],
                cwd=tmp_path,
                capture_output=True,
            )
            return json.loads(shown.stdout or b"[]")

        (message,) = wait_for(inbox, 60, "host b to deliver")
    finally:
        consumer.stop()
    entry = next(iter(message["envelope"]["attachments"].values()))
    pulled = subprocess.run(
        [str(BIN / "seer"), "artifacts", "pull", entry["uri"]],
        env=roots["c"],
        cwd=tmp_path,
        capture_output=True,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.decode() == body
    # Nothing of it on any host's disk: the object is in the bucket.
    for name in "abc":
        cas = Path(roots[name]["SEER_STORAGE_PATH"]) / "orchestration" / "cas"
        assert not [p for p in cas.glob("??/*.blob")], name
    assert entry["hash"] in rgw_objects(rgw, rgw_bucket)


def rgw_objects(server: PrivateRgw, bucket: str) -> set[str]:
    listed = server.client().list_objects_v2(Bucket=bucket).get("Contents", ())
    return {o["Key"].rsplit("/", 1)[-1] for o in listed}
