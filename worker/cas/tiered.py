"""The CAS as one store of two kinds: blobs up to a size in the ledger (`LedgerBlobStore`),
larger ones in the file store. Callers see one BlobStore; only this module routes.

Dedupe holds across the kinds whatever the threshold was when a blob was stored: a put finds
the bytes where they are (a file of a small size, stored before the threshold was raised; a
row of a large size, stored before it was lowered) and stores nothing new.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from worker.cas.base import (
    PREFIXES,
    BlobReader,
    BlobStat,
    BlobStore,
    ListedBlob,
    Placement,
    PutResult,
)
from worker.cas.errors import BlobNotFound, validate_digest
from worker.cas.ledger_blobs import LedgerBlobStore


class TieredStore(BlobStore):
    """`small` holds blobs of at most `small_max` bytes, `files` the others (0: all files)."""

    def __init__(self, small: LedgerBlobStore, files: BlobStore, small_max: int) -> None:
        self.small = small
        self.files = files
        self.small_max = small_max
        self.file_mode = files.file_mode
        self.dir_mode = files.dir_mode

    def tiers(self) -> tuple[BlobStore, ...]:
        return (self.small, self.files)

    def receiver_for(self, size: int) -> BlobStore:
        return self.small if size <= self.small_max else self.files

    def location(self) -> str:
        return self.files.location()

    def prepare(self) -> str | None:
        return self.files.prepare()

    # -- writing -----------------------------------------------------------------------------

    def put_many(self, items: Sequence[bytes]) -> list[PutResult]:
        digests = [hashlib.sha256(data).hexdigest() for data in items]
        small = [i for i, data in enumerate(items) if len(data) <= self.small_max]
        large = [i for i, data in enumerate(items) if len(data) > self.small_max]
        # Bytes already stored as the other kind stay there (their put heals them if damaged).
        if large:
            as_rows = self.small.present(digests[i] for i in large)
            small += [i for i in large if digests[i] in as_rows]
            large = [i for i in large if digests[i] not in as_rows]
        as_files = [i for i in small if self.files.exists(digests[i])]
        if as_files:
            moved = set(as_files)
            small = [i for i in small if i not in moved]
            large += as_files
        results: dict[int, PutResult] = {}
        # Files first: a disk that is full fails the batch before the ledger is written.
        for indexes, store in ((sorted(large), self.files), (sorted(small), self.small)):
            if indexes:
                stored = store.put_many([items[i] for i in indexes])
                results.update(zip(indexes, stored, strict=True))
        return [results[i] for i in range(len(items))]

    def put_deferred(self, data: bytes) -> PutResult:
        return self.receiver_for(len(data)).put_deferred(data)

    def put_file(self, src: Path) -> PutResult:
        if Path(src).stat().st_size > self.small_max:
            return self.files.put_file(src)
        return super().put_file(src)

    # -- reading -----------------------------------------------------------------------------

    def open(self, digest: str) -> BlobReader:
        try:
            return self.small.open(digest)
        except BlobNotFound:
            return self.files.open(digest)

    def exists(self, digest: str) -> bool:
        return self.small.exists(digest) or self.files.exists(digest)

    def present(self, digests: Iterable[str]) -> set[str]:
        digests = set(digests)
        as_rows = self.small.present(digests)
        return as_rows | self.files.present(digests - as_rows)

    def stat(self, digest: str) -> BlobStat | None:
        return self.small.stat(digest) or self.files.stat(digest)

    def stats(self, digests: Iterable[str]) -> dict[str, BlobStat]:
        digests = set(digests)
        found = self.small.stats(digests)
        found.update(self.files.stats(digests - found.keys()))
        return found

    # -- listing -----------------------------------------------------------------------------

    def iter_blobs(self, prefix: str | None = None) -> Iterator[ListedBlob]:
        last = None
        merged = heapq.merge(self.small.iter_blobs(prefix), self.files.iter_blobs(prefix))
        for blob in merged:
            if blob.digest != last:  # in both kinds (a crash between a move's two steps)
                yield blob
            last = blob.digest

    def sizes(self, prefixes: Iterable[str] = PREFIXES) -> dict[str, int]:
        prefixes = tuple(prefixes)
        found = self.files.sizes(prefixes)
        found.update(self.small.sizes(prefixes))
        return found

    # -- removal -----------------------------------------------------------------------------

    def remove(self, digest: str) -> bool:
        digest = validate_digest(digest)
        as_row = self.small.remove(digest)
        as_file = self.files.remove(digest)
        return as_row or as_file

    def remove_many(self, digests: Iterable[str]) -> int:
        digests = list(digests)
        as_rows = self.small.present(digests)
        removed = self.small.remove_many(as_rows)
        return removed + sum(self.files.remove(d) for d in digests if d not in as_rows)

    def move_out(self, digest: str, dest: Path) -> bool:
        if self.small.exists(digest):
            moved = self.small.move_out(digest, dest)
            self.files.remove(digest)
            return moved
        return self.files.move_out(digest, dest)

    def clean_temp(self, now: float | None = None, max_age: float = 3600) -> int:
        return self.files.clean_temp(now, max_age)

    # -- between stores ----------------------------------------------------------------------

    def replicate(self, digest: str, target: BlobStore) -> Placement:
        if self.small.exists(digest):
            return self.small.replicate(digest, target)
        return self.files.replicate(digest, target)

    def sync(self) -> None:
        self.files.sync()

    def close(self) -> None:
        self.files.close()
