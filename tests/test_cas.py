"""Tests for worker.cas.store, the file layer of the content-addressed store."""

from __future__ import annotations

import errno
import hashlib
import io
import multiprocessing
import os
import pickle
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from worker import files
from worker.cas import errors as cas_errors
from worker.cas import store as cas
from worker.cas.base import BlobStat, BlobStore
from worker.cas.store import (
    BlobNotFound,
    CasError,
    ContentStore,
    CorruptBlob,
    DiskFull,
    InvalidDigest,
    PutResult,
    validate_digest,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def temp_files(store: ContentStore) -> list[str]:
    if not store.tmp_dir.exists():
        return []
    return sorted(os.listdir(store.tmp_dir))


def blob_files(root: Path) -> list[Path]:
    return sorted(root.glob("??/*.blob"))


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "store")


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# -- basics -------------------------------------------------------------------------------------


def test_round_trip(store: ContentStore) -> None:
    data = b"hello, seer"
    result = store.put(data)
    assert result == PutResult(digest=sha(data), size=len(data), created=True)
    assert store.read(result.digest) == data
    assert store.exists(result.digest)
    assert store.size_of(result.digest) == len(data)


def test_empty_blob_round_trip(store: ContentStore) -> None:
    result = store.put(b"")
    assert result.created and result.size == 0
    assert store.read(result.digest) == b""


def test_constructor_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ContentStore(root)
    assert not root.exists()


def test_dedupe_returns_created_false_and_leaves_one_file(store: ContentStore) -> None:
    first = store.put(b"same bytes")
    second = store.put(b"same bytes")
    assert first.created is True
    assert second == PutResult(first.digest, first.size, created=False)
    assert blob_files(store.root) == [store.path_for(first.digest)]


def test_fanout_path_shape(store: ContentStore) -> None:
    digest = store.put(b"fan-out").digest
    path = store.path_for(digest)
    assert path == store.root / digest[:2] / f"{digest[2:]}.blob"
    assert len(path.name) == 62 + len(".blob")
    assert path.is_file()


def test_remove(store: ContentStore) -> None:
    digest = store.put(b"to be removed").digest
    assert store.remove(digest) is True
    assert not store.exists(digest)
    assert store.remove(digest) is False


# -- permissions --------------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
def test_modes_ignore_umask(store: ContentStore, tmp_path: Path) -> None:
    a = store.put(b"single put")
    many = store.put_many([b"batch one", b"batch two"])
    src = tmp_path / "src.bin"
    src.write_bytes(b"from a file")
    from_file = store.put_file(src)
    dest = tmp_path / "out.bin"
    store.copy_to(a.digest, dest)

    for digest in [a.digest, from_file.digest, *(r.digest for r in many)]:
        path = store.path_for(digest)
        assert mode_of(path) == 0o660, path
        assert mode_of(path.parent) == 0o770, path.parent
    assert mode_of(store.root) == 0o770
    assert mode_of(store.tmp_dir) == 0o770
    assert mode_of(dest) == 0o660


@pytest.mark.usefixtures("umask_022")
def test_custom_modes(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store", file_mode=0o640, dir_mode=0o750)
    path = store.path_for(store.put(b"custom").digest)
    assert mode_of(path) == 0o640
    assert mode_of(path.parent) == 0o750


# -- digest validation --------------------------------------------------------------------------

GOOD = "0" * 64
BAD_DIGESTS = [
    "A" * 64,  # uppercase
    sha(b"x").upper(),
    "a" * 63,
    "a" * 65,
    "../" + "a" * 61,
    "aa/../../" + "a" * 55,
    "a" * 64 + "\n",  # `$` would let this through
    "g" * 64,  # not hex
    " " + "a" * 63,
    "",
]


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_validate_digest_rejects(bad: str) -> None:
    with pytest.raises(InvalidDigest) as info:
        validate_digest(bad)
    message = str(info.value)
    assert "a digest is 64 lowercase hex characters" in message
    assert "\n" not in message


@pytest.mark.parametrize("bad", [None, b"a" * 64, 123])
def test_validate_digest_rejects_non_strings(bad: object) -> None:
    with pytest.raises(InvalidDigest):
        validate_digest(bad)  # type: ignore[arg-type]


def test_validate_digest_accepts_and_is_a_value_error() -> None:
    assert validate_digest(GOOD) == GOOD
    assert issubclass(InvalidDigest, ValueError)
    assert issubclass(InvalidDigest, CasError)


@pytest.mark.parametrize("bad", BAD_DIGESTS)
@pytest.mark.parametrize("operation", ["path_for", "read", "exists", "remove", "size_of"])
def test_operations_reject_invalid_digests(store: ContentStore, bad: str, operation: str) -> None:
    with pytest.raises(InvalidDigest):
        getattr(store, operation)(bad)
    assert not store.root.exists()


def test_copy_to_rejects_invalid_digest(store: ContentStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidDigest):
        store.copy_to("../" + "a" * 61, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- missing and corrupt blobs ------------------------------------------------------------------


def test_blob_not_found(store: ContentStore, tmp_path: Path) -> None:
    assert not store.exists(GOOD)
    with pytest.raises(BlobNotFound):
        store.read(GOOD)
    with pytest.raises(BlobNotFound):
        store.size_of(GOOD)
    with pytest.raises(BlobNotFound):
        store.copy_to(GOOD, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def flip_first_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_corrupt_blob_detected_by_read(store: ContentStore) -> None:
    secret = b"SECRET-CONTENT-" * 10
    digest = store.put(secret).digest
    flip_first_byte(store.path_for(digest))
    with pytest.raises(CorruptBlob) as info:
        store.read(digest)
    message = str(info.value)
    assert digest in message
    assert "SECRET" not in message


def test_corrupt_blob_detected_by_copy_to(store: ContentStore, tmp_path: Path) -> None:
    digest = store.put(b"payload " * 1000).digest
    flip_first_byte(store.path_for(digest))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CorruptBlob) as info:
        store.copy_to(digest, out_dir / "copy.bin")
    assert digest in str(info.value)
    assert os.listdir(out_dir) == []


def test_corrupt_copy_to_leaves_existing_dest_untouched(
    store: ContentStore, tmp_path: Path
) -> None:
    digest = store.put(b"payload").digest
    flip_first_byte(store.path_for(digest))
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"previous")
    with pytest.raises(CorruptBlob):
        store.copy_to(digest, dest)
    assert dest.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["dest.bin", "store"]


def test_copy_to_streams_multi_chunk_blob(store: ContentStore, tmp_path: Path) -> None:
    data = os.urandom(cas.CHUNK_SIZE * 2 + 123)
    digest = store.put(data).digest
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"old")
    store.copy_to(digest, dest)
    assert dest.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["dest.bin", "store"]


# -- put_many and put_file ----------------------------------------------------------------------


def test_put_many_dedupes_and_keeps_input_order(store: ContentStore) -> None:
    existing = store.put(b"already there")
    items = [b"one", b"already there", b"two", b"one", b"three", b"two"]
    results = store.put_many(items)
    assert [r.digest for r in results] == [sha(i) for i in items]
    assert [r.size for r in results] == [len(i) for i in items]
    assert [r.created for r in results] == [True, False, True, False, True, False]
    assert results[1].digest == existing.digest
    assert len(blob_files(store.root)) == 4
    for item in items:
        assert store.read(sha(item)) == item


def test_put_many_empty(store: ContentStore) -> None:
    assert store.put_many([]) == []


def test_no_temp_files_remain(store: ContentStore, tmp_path: Path) -> None:
    store.put(b"a")
    store.put(b"a")
    store.put_many([b"b", b"c", b"b", b"a"])
    src = tmp_path / "src.bin"
    src.write_bytes(b"d")
    store.put_file(src)
    store.put_file(src)
    assert temp_files(store) == []
    assert len(blob_files(store.root)) == 4


def test_put_many_uses_exactly_two_syncfs_calls(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fake_syncfs(fd: int) -> int:
        calls.append(fd)
        return 0

    monkeypatch.setattr(cas, "_libc_syncfs", lambda: fake_syncfs)
    store.put_many([b"x%d" % i for i in range(50)])
    assert len(calls) == 2


@pytest.mark.parametrize("syncfs", [None, lambda fd: -1], ids=["unavailable", "failing"])
def test_put_many_falls_back_to_fsync(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch, syncfs: object
) -> None:
    monkeypatch.setattr(cas, "_libc_syncfs", lambda: syncfs)
    real_fsync = os.fsync
    fsyncs: list[int] = []

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    items = [b"fallback %d" % i for i in range(10)]
    results = store.put_many(items)
    assert all(r.created for r in results)
    # One per file, then one per touched fan-out dir (and the root, for new fan-out dirs).
    assert len(fsyncs) >= len(items) + 1
    assert [store.read(r.digest) for r in results] == items
    assert temp_files(store) == []


def test_real_syncfs_is_found_on_linux() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("syncfs(2) is Linux-only")
    assert cas._libc_syncfs() is not None


def test_put_file_multi_chunk_and_dedupe(store: ContentStore, tmp_path: Path) -> None:
    data = os.urandom(cas.CHUNK_SIZE * 2 + 7)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    first = store.put_file(src)
    assert first == PutResult(sha(data), len(data), created=True)
    assert store.read(first.digest) == data
    assert store.put_file(src).created is False
    assert store.put(data).created is False
    assert temp_files(store) == []


def test_put_losing_a_race_reports_not_created(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = store.put(b"contested").digest
    # Blind the dedupe check so put writes a temp and finds the blob only when linking,
    # as it does when another process finishes first.
    monkeypatch.setattr(store, "_blob_state", lambda *args, **kwargs: None)
    assert store.put(b"contested").created is False
    assert store.put_many([b"contested"])[0].created is False
    assert store.read(digest) == b"contested"
    assert temp_files(store) == []
    assert len(blob_files(store.root)) == 1


def test_put_without_hard_links_falls_back_to_rename(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: object, dst: object, **dir_fds: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_link)
    single = store.put(b"no links here")
    many = store.put_many([b"nor here", b"no links here"])
    assert single.created is True
    assert [r.created for r in many] == [True, False]
    assert store.read(single.digest) == b"no links here"
    assert temp_files(store) == []


def _race_put(root: str, data: bytes, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    result = ContentStore(Path(root)).put(data)
    results.put(result.created)  # type: ignore[attr-defined]


def test_concurrent_identical_puts_all_succeed_one_creates(tmp_path: Path) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    root = tmp_path / "store"
    data = os.urandom(256 * 1024)
    procs = [
        ctx.Process(target=_race_put, args=(str(root), data, barrier, results)) for _ in range(n)
    ]
    for p in procs:
        p.start()
    created = [results.get(timeout=30) for _ in range(n)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert created.count(True) == 1
    store = ContentStore(root)
    assert store.read(sha(data)) == data
    assert temp_files(store) == []


# -- iter_blobs ---------------------------------------------------------------------------------


def test_iter_blobs_lists_exactly_the_blobs(store: ContentStore) -> None:
    assert list(store.iter_blobs()) == []
    items = [b"alpha", b"beta", b"gamma" * 100]
    for item in items:
        store.put(item)
    digest = sha(b"alpha")

    # Junk that must be ignored.
    root = store.root
    (root / "README").write_text("not a blob")
    (root / "zz").mkdir()
    (root / "zz" / ("a" * 62 + ".blob")).write_bytes(b"bad fan-out name")
    (root / "abc").mkdir()
    (root / "abc" / ("a" * 62 + ".blob")).write_bytes(b"fan-out too long")
    (root / "AB").mkdir()
    (root / "AB" / ("a" * 62 + ".blob")).write_bytes(b"uppercase fan-out")
    fan = store.path_for(digest).parent
    (fan / "short.blob").write_bytes(b"")
    (fan / ("a" * 62 + ".tmp")).write_bytes(b"")
    (fan / ("A" * 62 + ".blob")).write_bytes(b"")
    (fan / ("a" * 62 + ".blob.bak")).write_bytes(b"")
    (fan / ("b" * 62 + ".blob")).mkdir()  # a directory with a blob's name
    (root / "cd").write_text("a file named like a fan-out dir")
    store.tmp_dir.mkdir(exist_ok=True)
    (store.tmp_dir / "123-abc.tmp").write_bytes(b"temp")

    listed = list(store.iter_blobs())
    assert sorted(listed) == sorted((sha(i), len(i)) for i in items)
    assert listed == sorted(listed)


def test_iter_blobs_on_missing_root(tmp_path: Path) -> None:
    assert list(ContentStore(tmp_path / "nowhere").iter_blobs()) == []


# -- clean_temp ---------------------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_temp(store: ContentStore) -> None:
    store.put(b"make the tmp dir")
    tmp = store.tmp_dir
    now = time.time()
    mine = os.getpid()

    dead = tmp / f"{dead_pid()}-0123abcd.tmp"
    old = tmp / f"{mine}-4567ef01.tmp"
    fresh = tmp / f"{mine}-89abcdef.tmp"
    odd_fresh = tmp / "not-a-pid.tmp"
    for path in (dead, old, fresh, odd_fresh):
        path.write_bytes(b"partial")
    os.utime(old, (now - 7200, now - 7200))

    assert store.clean_temp(now=now) == 2
    assert sorted(os.listdir(tmp)) == sorted([fresh.name, odd_fresh.name])

    # Only age applies to a live pid and to names without one.
    assert store.clean_temp(now=now + 3599) == 0
    assert store.clean_temp(now=now + 3601) == 2
    assert os.listdir(tmp) == []


def test_clean_temp_without_tmp_dir(store: ContentStore) -> None:
    assert store.clean_temp() == 0


def test_clean_temp_default_now_keeps_fresh_own_temp(store: ContentStore) -> None:
    store.put(b"x")
    fresh = store.tmp_dir / f"{os.getpid()}-00ff.tmp"
    fresh.write_bytes(b"")
    assert store.clean_temp() == 0
    assert fresh.exists()


# -- disk full ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "full"),
    [(errno.ENOSPC, True), (errno.EDQUOT, True), (errno.EIO, False), (errno.EFBIG, False)],
)
def test_disk_full_classification(code: int, full: bool, tmp_path: Path) -> None:
    exc = OSError(code, os.strerror(code))
    assert files.is_disk_full(exc) is full
    expected = DiskFull if full else OSError
    with pytest.raises(expected) as info, cas_errors.disk_full_as_error(tmp_path):
        raise exc
    if full:
        assert info.value.__cause__ is exc
        assert str(tmp_path) in str(info.value)


def test_disk_full_classification_ignores_non_os_errors() -> None:
    assert files.is_disk_full(ValueError("nope")) is False


def _enospc_after(monkeypatch: pytest.MonkeyPatch, allowed_writes: int) -> None:
    real_write = os.write
    count = 0

    def failing_write(fd: int, data: object) -> int:
        nonlocal count
        count += 1
        if count > allowed_writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "write", failing_write)


def test_put_maps_enospc_and_leaves_nothing(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _enospc_after(monkeypatch, 0)
    with pytest.raises(DiskFull):
        store.put(b"doomed")
    assert temp_files(store) == []
    assert blob_files(store.root) == []


def test_put_many_maps_enospc_and_removes_its_temps(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _enospc_after(monkeypatch, 3)
    with pytest.raises(DiskFull):
        store.put_many([b"a", b"b", b"c", b"d", b"e"])
    assert temp_files(store) == []
    assert blob_files(store.root) == []


@pytest.fixture
def tiny_tmpfs(tmp_path: Path, tmpfs) -> Path:
    """A 64 KiB tmpfs (conftest's `tmpfs`), so writes really fail with ENOSPC."""
    return tmpfs(tmp_path / "tiny", "64k")


def test_real_disk_full_on_tmpfs(tiny_tmpfs: Path, tmp_path: Path) -> None:
    store = ContentStore(tiny_tmpfs / "store")
    kept = store.put(b"small blob fits")
    big = os.urandom(200 * 1024)

    with pytest.raises(DiskFull):
        store.put(big)
    assert temp_files(store) == []

    with pytest.raises(DiskFull):
        store.put_many([os.urandom(20 * 1024) for _ in range(5)])
    assert temp_files(store) == []

    src = tmp_path / "big.bin"
    src.write_bytes(big)
    with pytest.raises(DiskFull):
        store.put_file(src)
    assert temp_files(store) == []

    assert list(store.iter_blobs()) == [(kept.digest, kept.size)]
    # The failures freed everything they used: the store still takes a small write.
    assert store.put(b"still works after the failures").created is True


@pytest.mark.parametrize("how", ["put", "put_file", "put_many"])
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_put_heals_a_damaged_blob_instead_of_trusting_its_name(
    store: ContentStore, tmp_path: Path, how: str, damage: str
) -> None:
    data = b"the same attachment " * 500
    digest = store.put(data).digest
    path = store.path_for(digest)
    if damage == "flip":
        flip_first_byte(path)
    else:
        path.write_bytes(data[:100])
    with pytest.raises(CorruptBlob):
        store.read(digest)
    if how == "put":
        result = store.put(data)
    elif how == "put_file":
        src = tmp_path / "src.bin"
        src.write_bytes(data)
        result = store.put_file(src)
    else:
        (result, again) = store.put_many([data, data])
        assert not again.created
    # Healed in place: the bytes were counted when first stored, so nothing new to count.
    assert (result.digest, result.created) == (digest, False)
    assert store.read(digest) == data
    assert mode_of(path) == 0o660
    assert temp_files(store) == []


def test_an_intact_blob_is_not_rewritten_by_a_put(store: ContentStore) -> None:
    data = b"kept " * 100
    digest = store.put(data).digest
    inode = os.stat(store.path_for(digest)).st_ino
    assert not store.put(data).created and not store.put_many([data])[0].created
    assert os.stat(store.path_for(digest)).st_ino == inode


# -- the BlobStore interface, with a second backend ---------------------------------------------


class MemoryStore(BlobStore):
    """A backend with no paths at all, as an object store would be: only the abstract methods,
    so everything else runs on the interface's generic versions."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.blobs: dict[str, bytes] = {}
        self.modified: dict[str, float] = {}
        self.now = now

    def put_many(self, items: Sequence[bytes]) -> list[PutResult]:
        results = []
        for data in items:
            digest = sha(data)
            created = digest not in self.blobs
            self.blobs[digest] = bytes(data)
            self.modified[digest] = self.now
            results.append(PutResult(digest, len(data), created))
        return results

    def open(self, digest: str) -> io.BytesIO:
        try:
            return io.BytesIO(self.blobs[validate_digest(digest)])
        except KeyError:
            raise BlobNotFound(f"no blob {digest}") from None

    def exists(self, digest: str) -> bool:
        return validate_digest(digest) in self.blobs

    def stat(self, digest: str) -> BlobStat | None:
        data = self.blobs.get(validate_digest(digest))
        return None if data is None else BlobStat(len(data), self.modified[digest])

    def iter_blobs(self, prefix: str | None = None) -> Iterator[tuple[str, int]]:
        for digest in sorted(self.blobs):
            if prefix is None or digest.startswith(prefix):
                yield digest, len(self.blobs[digest])

    def remove(self, digest: str) -> bool:
        self.modified.pop(validate_digest(digest), None)
        return self.blobs.pop(digest, None) is not None


def test_generic_reads_verify_on_any_backend(tmp_path: Path) -> None:
    memory = MemoryStore()
    first, again = memory.put_many([b"one", b"one"])
    assert first.created and not again.created
    assert memory.read(first.digest) == b"one" and memory.size_of(first.digest) == 3
    assert memory.check(first.digest) is True and memory.check(GOOD) is None
    assert memory.sizes() == {first.digest: 3} == memory.sizes([first.digest[:2]])
    memory.copy_to(first.digest, tmp_path / "out.bin", mode=0o600)
    assert (tmp_path / "out.bin").read_bytes() == b"one"
    assert mode_of(tmp_path / "out.bin") == 0o600
    memory.blobs[first.digest] = b"two"
    assert memory.check(first.digest) is False
    with pytest.raises(CorruptBlob):
        memory.read(first.digest)
    with pytest.raises(CorruptBlob):
        memory.copy_to(first.digest, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()
    assert memory.move_out(first.digest, tmp_path / "quarantined.blob")
    assert (tmp_path / "quarantined.blob").read_bytes() == b"two"
    assert not memory.exists(first.digest) and not memory.move_out(first.digest, tmp_path / "x")
    with pytest.raises(BlobNotFound):
        memory.size_of(first.digest)


def test_replicate_between_backends(store: ContentStore, tmp_path: Path) -> None:
    memory = MemoryStore()
    local = store.put(b"from disk").digest
    remote = memory.put(b"from memory").digest
    assert store.replicate(local, memory) == "copied"
    assert memory.read(local) == b"from disk"
    assert memory.replicate(remote, store) == "copied"
    assert store.read(remote) == b"from memory"
    assert memory.replicate(remote, store) == "present"
    # Local to local: a reflink where the filesystem has them, else a copy; never a hard link.
    other = ContentStore(tmp_path / "other", file_mode=0o640)
    assert store.replicate(local, other) in ("cloned", "copied")
    other.sync()
    assert other.read(local) == b"from disk"
    assert os.stat(other.path_for(local)).st_nlink == 1
    assert mode_of(other.path_for(local)) == 0o640
    assert not list((tmp_path / "other").rglob("*.tmp"))
    flip_first_byte(store.path_for(remote))
    with pytest.raises(CorruptBlob):
        store.replicate(remote, other)
    with pytest.raises(BlobNotFound):
        store.replicate(GOOD, other)
    assert not list((tmp_path / "other").rglob("*.tmp"))


def test_content_store_travels_to_a_forked_walker_as_its_configuration(
    tmp_path: Path,
) -> None:
    store = ContentStore(tmp_path / "cas", file_mode=0o640, dir_mode=0o750, base=tmp_path)
    digest = store.put(b"pickled").digest
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.root, copy.file_mode, copy.dir_mode, copy.base) == (
        store.root,
        0o640,
        0o750,
        tmp_path,
    )
    assert copy.sizes() == store.sizes() == {digest: 7}
