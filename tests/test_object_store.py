"""The CAS on an S3-compatible object store (worker/cas/objects.py), against a real Ceph RGW
(tests/rgw_server.py): keys, create-only puts, the server refusing a corrupted upload,
concurrent writers, listings, the store down, ORCHESTRATION_CAS_URL, `seer init` and
`seer migrate-cas`.

The CAS tools, backup and restore run on objects too, in their own files (the "objects" kind
of tests/blobs.py); the consumers against RGW (SIGKILL, radosgw and the OSD killed during a
drain, three hosts) are in tests/test_object_consumers.py.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import threading
import time

import pytest

from tests import blobs
from tests.helpers import parcel, wait_for
from worker.cas import objects
from worker.cas.errors import BlobNotFound, InvalidDigest, StoreUnavailable
from worker.cas.objects import CorruptUpload, ObjectStore, make_client
from worker.object_urls import ObjectUrl
from worker.ops import operations
from worker.parcels import intake as parcels
from worker.settings import SettingsError, load_settings

# What a test does with the objects is the same whichever ledger records them: the delivery
# runs on both, the commands about the store on SQLite.
SQLITE_ONLY = pytest.mark.backends("sqlite")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(rgw, rgw_bucket, monkeypatch) -> ObjectStore:
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    made = ObjectStore(f"s3://{rgw_bucket}/cas/test", concurrency=8)
    yield made
    made.close()


def send(runtime, item: dict) -> list[str]:
    batch = [parcels.validate(item, runtime.settings.max_parcel_size)]
    return list(operations.send_parcels(runtime, batch).ids)


def keys(store: ObjectStore) -> list[str]:
    found = store.client.list_objects_v2(Bucket=store.url.bucket)
    return sorted(o["Key"] for o in found.get("Contents", ()))


# -- the address -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, bucket, prefix",
    [
        ("s3://seer-cas", "seer-cas", ""),
        ("s3://seer-cas/", "seer-cas", ""),
        ("s3://seer.cas/prod/eu-1/", "seer.cas", "prod/eu-1"),
        (" s3://abc/a_b.c-d ", "abc", "a_b.c-d"),
    ],
)
def test_an_object_url_names_a_bucket_and_a_prefix(raw, bucket, prefix):
    url = ObjectUrl.parse(raw)
    assert (url.bucket, url.prefix) == (bucket, prefix)
    digest = "ab" + "0" * 62
    assert url.key(digest) == (f"{prefix}/" if prefix else "") + f"ab/{digest}"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "seer-cas",
        "http://seer-cas/x",
        "s3://",
        "s3://ab",
        "s3://Upper",
        "s3://-bad",
        "s3://a..b",
        "s3://bucket/../etc",
        "s3://bucket/a//b",
        "s3://bucket/sp ace",
        "s3://bucket/ctl\x07",
        "s3://bucket/" + "p" * 600,
    ],
)
def test_a_bad_object_url_is_refused_by_the_setting_in_one_line(raw):
    if raw:
        with pytest.raises(ValueError):
            ObjectUrl.parse(raw)
    environ = {"ORCHESTRATION_CAS_URL": raw} if raw else {"ORCHESTRATION_CAS_URL": "seer-cas"}
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("ORCHESTRATION_CAS_URL=") and "s3://" in message


# -- puts and reads --------------------------------------------------------------------------


def test_blobs_are_objects_under_the_prefix_named_by_their_digest(store):
    data = [b"one", b"two" * 1000, b"one"]
    results = store.put_many(data)
    assert [r.created for r in results] == [True, True, False]
    assert [r.digest for r in results] == [sha(d) for d in data]
    assert keys(store) == sorted(f"cas/test/{sha(d)[:2]}/{sha(d)}" for d in data[:2])
    assert store.read(sha(b"one")) == b"one"
    assert store.exists(sha(b"two" * 1000)) and not store.exists(sha(b"three"))
    assert store.present([sha(b"one"), sha(b"three")]) == {sha(b"one")}
    assert store.stat(sha(b"two" * 1000)).size == 3000
    assert store.stat(sha(b"three")) is None
    with pytest.raises(BlobNotFound):
        store.read(sha(b"three"))
    with pytest.raises(InvalidDigest):
        store.exists("../../etc/passwd")


def test_a_second_put_is_refused_by_the_server_and_reports_nothing_created(store):
    first = store.put(b"same bytes")
    written = store.stat(first.digest).modified
    second = store.put(b"same bytes")
    assert first.created and not second.created
    # Create-only: the object is the first writer's, its written time unchanged.
    assert store.stat(first.digest).modified == written


def test_eight_writers_of_one_blob_create_it_once(rgw, store):
    data = b"raced" * 4000
    stores = [ObjectStore(store.url, client=rgw.client()) for _ in range(8)]
    barrier = threading.Barrier(8)

    def put(s: ObjectStore) -> bool:
        barrier.wait()
        return s.put(data).created

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        created = list(pool.map(put, stores))
    assert created.count(True) == 1
    assert store.read(sha(data)) == data


def test_a_corrupted_upload_is_refused_and_nothing_is_stored(store, caplog):
    data = b"the bytes that were meant"
    wrong = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
    with pytest.raises(CorruptUpload) as caught:
        store._put_object(sha(data), data, wrong)
    assert "nothing was stored" in str(caught.value)
    assert not store.exists(sha(data)) and keys(store) == []


def test_bytes_that_do_not_match_their_address_are_refused(store):
    # The signed x-amz-content-sha256 is the blob's address (the digest its key ends with):
    # bytes that hash otherwise, sent under it with a matching MD5, are refused as well.
    data = b"payload"
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    with pytest.raises(CorruptUpload, match="XAmzContentSHA256Mismatch"):
        store._put_object(sha(b"something else"), data, md5)
    assert keys(store) == []


def test_a_damaged_object_is_found_by_read_and_check(store):
    from worker.cas.errors import CorruptBlob

    digest = store.put(b"x" * 5000).digest
    body = bytearray(store.open(digest).read())
    body[10] ^= 1
    store.client.put_object(Bucket=store.url.bucket, Key=store.url.key(digest), Body=bytes(body))
    with pytest.raises(CorruptBlob):
        store.read(digest)
    assert store.check(digest) is False
    assert store.check(sha(b"absent")) is None


def test_listings_are_in_digest_order_and_skip_what_is_not_a_blob(store):
    data = [f"blob {i}".encode() for i in range(40)]
    store.put_many(data)
    for stray in ("cas/test/ab/not-a-digest", "cas/test/zz/" + "0" * 64, "cas/test/readme"):
        store.client.put_object(Bucket=store.url.bucket, Key=stray, Body=b"stray")
    # Under another prefix of the same bucket: another CAS's objects.
    store.client.put_object(
        Bucket=store.url.bucket, Key=f"cas/other/{sha(b'x')[:2]}/{sha(b'x')}", Body=b"x"
    )
    listed = list(store.iter_blobs())
    assert [b.digest for b in listed] == sorted(sha(d) for d in data)
    assert store.sizes() == {sha(d): len(d) for d in data}
    fanout = sha(data[0])[:2]
    assert [b.digest for b in store.iter_blobs(fanout)] == sorted(
        sha(d) for d in data if sha(d).startswith(fanout)
    )


def test_removal_says_whether_there_was_an_object(store):
    a, b = store.put(b"a").digest, store.put(b"b").digest
    assert store.remove(a) is True and store.remove(a) is False
    assert store.remove_many([a, b, sha(b"c")]) == 1
    assert keys(store) == []


def test_a_batch_is_put_concurrently(store):
    # 64 blobs over 8 connections: the batch takes well under 64 round trips in turn.
    data = [f"parallel {i}".encode() * 10 for i in range(64)]
    one = time.monotonic()
    store.put(b"warm the connection")
    single = time.monotonic() - one
    started = time.monotonic()
    results = store.put_many(data)
    took = time.monotonic() - started
    assert all(r.created for r in results)
    assert store.sizes().keys() == {sha(d) for d in data} | {sha(b"warm the connection")}
    seen = {t.name for t in threading.enumerate() if t.name.startswith("seer-cas-s3")}
    assert len(seen) >= 2, seen
    assert took < max(1.0, 64 * single), (took, single)


# -- the store down --------------------------------------------------------------------------


def test_a_store_that_cannot_be_reached_is_unavailable_in_one_line(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-shown-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = make_client(attempts=1, connect_timeout=1)
    store = ObjectStore("s3://down-bucket/cas", client=client)
    for call in (lambda: store.put(b"x"), lambda: store.exists(sha(b"x")), store.sizes):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        message = str(caught.value)
        assert "s3://down-bucket/cas" in message and "\n" not in message
        assert "never-shown-secret" not in message


def test_refused_credentials_and_a_missing_bucket_are_unavailable(rgw, rgw_bucket, monkeypatch):
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    missing = ObjectStore("s3://no-such-bucket-here/cas")
    with pytest.raises(StoreUnavailable, match=r"does not exist \(seer init creates it\)"):
        missing.put(b"x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-wrong-secret-value")
    wrong = ObjectStore(f"s3://{rgw_bucket}/cas", client=make_client(attempts=1))
    with pytest.raises(StoreUnavailable) as caught:
        wrong.put(b"x")
    assert "AWS_SECRET_ACCESS_KEY" in str(caught.value)
    assert "a-wrong-secret-value" not in str(caught.value)


# -- the runtime on objects --------------------------------------------------------------------


@pytest.fixture
def on_objects(rgw, env, monkeypatch):
    """The test's storage root with its CAS on a new bucket `seer init` has not made yet."""
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
        env[name] = value
    bucket = f"seer-{time.time_ns():x}"
    monkeypatch.setenv("ORCHESTRATION_CAS_URL", f"s3://{bucket}/cas")
    monkeypatch.setenv("ORCHESTRATION_CAS_SMALL_BLOB_SIZE", "0")
    env.update(ORCHESTRATION_CAS_URL=f"s3://{bucket}/cas", ORCHESTRATION_CAS_SMALL_BLOB_SIZE="0")
    return bucket


@SQLITE_ONLY
def test_seer_init_creates_the_bucket_and_a_second_init_finds_it(on_objects, rgw, cli):
    first = cli("init")
    assert first.code == 0, first.err
    assert f"object store: s3://{on_objects}/cas at {rgw.endpoint} (bucket created)" in first.out
    again = cli("init")
    assert again.code == 0 and "(bucket found)" in again.out
    assert on_objects in [b["Name"] for b in rgw.client().list_buckets()["Buckets"]]


def test_a_parcel_is_delivered_with_its_attachment_an_object(on_objects, cli, rgw):
    assert cli("init").code == 0
    from worker.runtime import Runtime

    runtime = Runtime.open(load_settings())
    try:
        send(runtime, parcel(attachment="hello object store"))
        assert runtime.postmaster().deliver_waiting().delivered == 1
        hashes = [r["hash"] for r in runtime.ledger.rows("SELECT hash FROM artifacts")]
        assert len(hashes) == 2  # the attachment and the manifest
        for digest in hashes:
            assert blobs.kind_of(runtime.store, digest) == "file"  # the large tier: objects
            assert blobs.objects_of(runtime.store).exists(digest)
    finally:
        runtime.close()
    pulled = cli("cas", "stats", "--json")
    assert pulled.code == 0 and json.loads(pulled.out)["blobs"] == 2
    # The storage monitor's figures are the ledger's accounting of what the bucket holds.
    report = json.loads(cli("monitor-storage", "--json").out)["report"]
    assert report["cas_blobs"] == 2 and report["cas_bytes"] > 0
    shown = cli("monitor-storage")
    assert f"storage    s3://{on_objects}/cas at {rgw.endpoint}" in shown.out
    assert f"the rest in objects of s3://{on_objects}/cas" in shown.out


@SQLITE_ONLY
def test_the_worker_backs_off_while_the_store_is_down_and_no_try_is_used(
    on_objects, cli, monkeypatch
):
    assert cli("init").code == 0
    import socket

    from worker.fleet import control
    from worker.runtime import Runtime

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(objects, "make_client", lambda **kw: make_client(**{**kw, "attempts": 1}))
    runtime = Runtime.open(load_settings())
    try:
        (pid,) = send(runtime, parcel(attachment="waits for the store"))
        result = runtime.postmaster().deliver_waiting()
        assert result.backing_off and result.delivered == 0 and result.failed == 0
        state, attempts = runtime.ledger.execute(
            "SELECT state, attempts FROM parcels WHERE id = ?", (pid,)
        ).fetchone()
        assert (state, attempts) == ("queued", 0)
        backoff = control.backoff_state(runtime.ledger)
        assert backoff and backoff.reason.startswith("CAS store unavailable: object store s3://")
    finally:
        runtime.close()
    status = cli("status", "--json")
    assert "CAS store unavailable" in status.out


# -- migrate-cas -----------------------------------------------------------------------------


@SQLITE_ONLY
def test_migrate_cas_copies_the_files_verifies_and_a_rerun_sends_nothing(
    runtime, cli, rgw, monkeypatch
):
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    data = [f"file blob {i}".encode() * 50 for i in range(30)]
    files = blobs.tiered(runtime.store).files
    files.put_many(data)
    bucket = f"seer-{time.time_ns():x}"
    first = cli("migrate-cas", "--to", f"s3://{bucket}/cas", "--json")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert report["bucket_created"] and report["verified"]
    assert (report["copied"], report["already_there"]) == (30, 0)
    target = ObjectStore(f"s3://{bucket}/cas", client=rgw.client())
    assert target.sizes() == {sha(d): len(d) for d in data}
    # Interrupted after some blobs: a rerun sends only the rest.
    target.remove_many([sha(d) for d in data[:7]])
    again = json.loads(cli("migrate-cas", "--to", f"s3://{bucket}/cas", "--json").out)
    assert (again["copied"], again["already_there"], again["verified"]) == (7, 23, True)
    text = cli("migrate-cas", "--to", f"s3://{bucket}/cas")
    assert text.code == 0
    assert "copied 0 blobs" in text.out and "verified: all 30 blob files" in text.out
    assert f"ORCHESTRATION_CAS_URL=s3://{bucket}/cas" in text.out


@SQLITE_ONLY
def test_migrate_cas_refuses_a_bad_target_and_a_damaged_file_in_one_line(
    runtime, cli, rgw, monkeypatch
):
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    bad = cli("migrate-cas", "--to", "s3://Bad_Bucket/x")
    assert bad.code == 2 and "\n" not in bad.err.strip()
    assert "--to 's3://Bad_Bucket/x' is not allowed" in bad.err
    files = blobs.tiered(runtime.store).files
    digest = files.put(b"to be damaged" * 10).digest
    blobs.path_of(runtime.store, digest).write_bytes(b"damaged")
    bucket = f"seer-{time.time_ns():x}"
    damaged = cli("migrate-cas", "--to", f"s3://{bucket}/cas")
    assert damaged.code == 1 and digest in damaged.err and "run it again" in damaged.err
    assert ObjectStore(f"s3://{bucket}/cas", client=rgw.client()).sizes() == {}


@SQLITE_ONLY
def test_migrate_cas_refuses_while_a_consumer_runs(runtime, cli, rgw, consumers, monkeypatch):
    for name, value in rgw.env().items():
        monkeypatch.setenv(name, value)
    consumer = consumers()
    wait_for(
        lambda: operations.running_consumers(runtime.ledger, runtime.layout),
        timeout=60,
        what="the consumer registers",
    )
    refused = cli("migrate-cas", "--to", f"s3://seer-{time.time_ns():x}/cas")
    assert refused.code == 1 and "refusing to copy the CAS while" in refused.err
    consumer.stop()


@SQLITE_ONLY
def test_migrate_cas_refuses_a_root_already_on_an_object_store(on_objects, cli):
    assert cli("init").code == 0
    refused = cli("migrate-cas", "--to", "s3://elsewhere/cas")
    assert refused.code == 1 and "already on an object store" in refused.err


@SQLITE_ONLY
def test_the_object_store_settings_may_be_in_the_settings_file(
    rgw, env, cli, monkeypatch, tmp_path
):
    # The endpoint and the keys only in the .env file, as every other setting may be.
    bucket = f"seer-{time.time_ns():x}"
    lines = [f"{name}={value}" for name, value in rgw.env().items()]
    lines += [f"ORCHESTRATION_CAS_URL=s3://{bucket}/cas", "ORCHESTRATION_CAS_SMALL_BLOB_SIZE=0"]
    settings_file = tmp_path / "seer.env"
    settings_file.write_text("\n".join(lines) + "\n")
    for name in rgw.env():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SEER_ENV_FILE", str(settings_file))
    made = cli("init")
    assert made.code == 0, made.err
    assert "(bucket created)" in made.out
    shown = cli("config", "show")
    assert rgw.secret_key not in shown.out + shown.err
    assert bucket in [b["Name"] for b in rgw.client().list_buckets()["Buckets"]]


@pytest.mark.parametrize(
    "code, status, kind",
    [
        ("QuotaExceeded", 403, "DiskFull"),
        ("InsufficientCapacity", 507, "DiskFull"),
        ("", 507, "DiskFull"),
        ("NoSuchBucket", 404, "StoreUnavailable"),
        ("AccessDenied", 403, "StoreUnavailable"),
        ("SignatureDoesNotMatch", 403, "StoreUnavailable"),
        ("RequestTimeTooSkewed", 403, "StoreUnavailable"),
        ("SlowDown", 503, "StoreUnavailable"),
        ("InternalError", 500, "StoreUnavailable"),
        ("InvalidArgument", 400, "CasError"),
    ],
)
def test_what_the_server_answers_is_the_error_the_worker_acts_on(code, status, kind):
    # A full quota backs the worker off as a full disk does; a store that refuses everything
    # backs it off too; anything else fails the batch's parcels (a try each).
    from botocore.exceptions import ClientError

    from worker.cas.errors import CasError, DiskFull

    store = ObjectStore("s3://seer-cas/prod", client=object())  # type: ignore[arg-type]
    answer = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    found = store._failed(ClientError(answer, "PutObject"), "storing blob x")
    assert type(found).__name__ == kind
    assert isinstance(found, CasError) and not isinstance(found, CorruptUpload)
    if kind == "DiskFull":
        assert isinstance(found, DiskFull) and "out of space" in str(found)
    assert "s3://seer-cas/prod" in str(found) and "\n" not in str(found)
