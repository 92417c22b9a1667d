"""The CAS's kinds of blob in tests: where a blob is, and how a test damages or ages it
whichever kind holds it (rows of the ledger's `small_blobs`, files under orchestration/cas,
objects of an S3 bucket: the "objects" kind is files' place taken by an ObjectStore on the
tests' Ceph RGW)."""

from __future__ import annotations

import os
from pathlib import Path

from worker.cas.base import BlobStore
from worker.cas.objects import WRITTEN, ObjectStore
from worker.cas.tiered import TieredStore

# ORCHESTRATION_CAS_SMALL_BLOB_SIZE for each kind: the tests' blobs are far below 100K.
KINDS = {"ledger": "100K", "files": "0", "objects": "0"}


def tiered(store: BlobStore) -> TieredStore:
    assert isinstance(store, TieredStore), store
    return store


def kind_of(store: BlobStore, digest: str) -> str | None:
    """ "ledger", "file", "both" or None."""
    s = tiered(store)
    row, file = s.small.exists(digest), s.files.exists(digest)
    return {(True, False): "ledger", (False, True): "file", (True, True): "both"}.get((row, file))


def path_of(store: BlobStore, digest: str) -> Path:
    return tiered(store).files.path_for(digest)  # type: ignore[attr-defined]


def objects_of(store: BlobStore) -> ObjectStore | None:
    large = tiered(store).files
    return large if isinstance(large, ObjectStore) else None


def _rewrite_object(objects: ObjectStore, digest: str, data: bytes, written: float) -> None:
    """Replaces an object behind the store's back: no condition, no checksum of ours."""
    objects.client.put_object(
        Bucket=objects.url.bucket,
        Key=objects.url.key(digest),
        Body=data,
        Metadata={WRITTEN: repr(written)},
    )


def damage(store: BlobStore, digest: str, at: int = 0, data: bytes | None = None) -> None:
    """Flips one bit of the stored bytes (or stores `data` instead), where they are."""
    s = tiered(store)
    if s.small.exists(digest):
        stored = bytearray(s.small.data(digest) or b"")
        if data is None:
            stored[at] ^= 0x01
        with s.small.ledger.write():
            s.small.ledger.execute(
                "UPDATE small_blobs SET data = ? WHERE hash = ?",
                (bytes(stored) if data is None else data, digest),
            )
        return
    objects = objects_of(store)
    if objects is not None:
        found = objects.stat(digest)
        assert found is not None, digest
        stored = bytearray(objects.open(digest).read())
        if data is None:
            stored[at] ^= 0x01
        _rewrite_object(objects, digest, bytes(stored) if data is None else data, found.modified)
        return
    path = path_of(store, digest)
    stored = bytearray(path.read_bytes())
    if data is None:
        stored[at] ^= 0x01
    path.write_bytes(bytes(stored) if data is None else data)


def set_written(store: BlobStore, digest: str, when: float) -> None:
    """Moves the time the blob was last written (a row's written_at, a file's mtime)."""
    s = tiered(store)
    if s.small.exists(digest):
        with s.small.ledger.write():
            s.small.ledger.execute(
                "UPDATE small_blobs SET written_at = ? WHERE hash = ?", (when, digest)
            )
    if s.files.exists(digest):
        objects = objects_of(store)
        if objects is not None:
            _rewrite_object(objects, digest, objects.open(digest).read(), when)
        else:
            os.utime(path_of(store, digest), (when, when))


def drop(store: BlobStore, digest: str) -> None:
    """Removes the stored bytes behind the store's back (a lost file, a row deleted by hand)."""
    s = tiered(store)
    with s.small.ledger.write():
        s.small.ledger.execute("DELETE FROM small_blobs WHERE hash = ?", (digest,))
    objects = objects_of(store)
    if objects is not None:
        objects.client.delete_object(Bucket=objects.url.bucket, Key=objects.url.key(digest))
        return
    path = path_of(store, digest)
    if path.exists():
        path.unlink()


def stored(store: BlobStore) -> dict[str, int]:
    """digest -> size of everything stored, read around the store: the rows and the files."""
    s = tiered(store)
    objects = objects_of(store)
    if objects is not None:
        found = dict(objects.sizes())
    else:
        root = Path(s.files.root)  # type: ignore[attr-defined]
        found = {f.parent.name + f.name[:-5]: f.stat().st_size for f in root.glob("??/*.blob")}
    found.update(s.small.ledger.execute("SELECT hash, length(data) FROM small_blobs").fetchall())
    return found
