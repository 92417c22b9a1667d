"""Small blobs as rows of the ledger's `small_blobs` table: a batch of deliveries stores them
in one transaction instead of creating two files a parcel (sqlite.org measured SQLite reading
and writing blobs under ~100 KB faster than the filesystem; git packs and Haystack volumes
exist for the same reason: per-file metadata costs more than the bytes).

The table is in the ledger's own database, so it is SQLite's file on one host and PostgreSQL's
table when the ledger is there: every host sees the same small blobs. `TieredStore`
(worker/cas/tiered.py) decides which blobs come here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Iterable, Iterator, Sequence

from worker.cas.base import PREFIXES, BlobReader, BlobStat, BlobStore, ListedBlob, PutResult
from worker.cas.errors import BlobNotFound, DiskFull, validate_digest
from worker.ledger import Ledger, LedgerDiskFull

log = logging.getLogger("seer.cas")

# Rows a statement: 3 parameters each stays far below SQLite's 32,766, and a chunk's bytes
# (at most _CHUNK_BYTES) below what one statement should carry.
_CHUNK_ROWS = 500
_CHUNK_BYTES = 8 * 1024 * 1024
# Rows a page of a listing: no read transaction is held across the walk.
_PAGE = 5000


def _prefix_range(prefix: str) -> tuple[str, str]:
    """[low, high) holding exactly the digests that start with `prefix` (two hex digits)."""
    index = PREFIXES.index(prefix)
    return prefix, PREFIXES[index + 1] if index + 1 < len(PREFIXES) else "g"


@contextlib.contextmanager
def _disk_full_as_cas_error() -> Iterator[None]:
    try:
        yield
    except LedgerDiskFull as exc:
        raise DiskFull(f"content store in the ledger is out of space: {exc}") from exc


def _chunks(items: Sequence[tuple[str, bytes]]) -> Iterator[Sequence[tuple[str, bytes]]]:
    start = 0
    while start < len(items):
        end, size = start, 0
        while end < len(items) and end - start < _CHUNK_ROWS and size < _CHUNK_BYTES:
            size += len(items[end][1])
            end += 1
        yield items[start:end]
        start = end


class LedgerBlobStore(BlobStore):
    """Blobs in `small_blobs (hash, data, written_at)` of `ledger`.

    Every write is a `ledger.write()`: inside a caller's transaction it is a savepoint of it
    (gc removes the row and its accounting together; a commit that re-puts a collected blob
    does so inside its own transaction). `written_at` is the ledger's clock, what gc's grace
    compares with.
    """

    def __init__(self, ledger: Ledger, *, file_mode: int = 0o660, dir_mode: int = 0o770) -> None:
        self.ledger = ledger
        self.file_mode = file_mode
        self.dir_mode = dir_mode

    # -- writing -----------------------------------------------------------------------------

    def put_many(self, items: Sequence[bytes]) -> list[PutResult]:
        digests = [hashlib.sha256(data).hexdigest() for data in items]
        first: dict[str, bytes] = {}
        for digest, data in zip(digests, items, strict=True):
            first.setdefault(digest, data)
        created: set[str] = set()
        if first:
            with _disk_full_as_cas_error(), self.ledger.write():
                stored = self._stored(list(first))
                now = self.ledger.now()
                for digest, data in first.items():
                    if digest in stored and stored[digest] != data:
                        # Dedupe must not trust a row: damaged bytes would be handed to every
                        # new parcel with the same content.
                        self.ledger.execute(
                            "UPDATE small_blobs SET data = ?, written_at = ? WHERE hash = ?",
                            (data, now, digest),
                        )
                        log.warning(
                            "CAS blob %s was damaged in the ledger: replaced with the good bytes",
                            digest,
                        )
                new = [(d, b) for d, b in first.items() if d not in stored]
                for chunk in _chunks(new):
                    marks = ",".join("(?, ?, ?)" for _ in chunk)
                    params = [v for digest, data in chunk for v in (digest, data, now)]
                    created.update(
                        r[0]
                        for r in self.ledger.execute(
                            f"INSERT INTO small_blobs (hash, data, written_at) VALUES {marks} "
                            "ON CONFLICT (hash) DO NOTHING RETURNING hash",
                            params,
                        ).fetchall()
                    )
        results = []
        for digest, data in zip(digests, items, strict=True):
            results.append(PutResult(digest, len(data), created=digest in created))
            created.discard(digest)  # only the first copy in the batch reports created
        return results

    def _stored(self, digests: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(digests), _CHUNK_ROWS):
            chunk = digests[start : start + _CHUNK_ROWS]
            marks = ",".join("?" * len(chunk))
            found.update(
                (h, bytes(d))
                for h, d in self.ledger.execute(
                    f"SELECT hash, data FROM small_blobs WHERE hash IN ({marks})", chunk
                ).fetchall()
            )
        return found

    def present(self, digests: Iterable[str]) -> set[str]:
        """Those of `digests` stored here (their bytes are not checked)."""
        ordered = sorted(set(digests))
        found: set[str] = set()
        for start in range(0, len(ordered), _CHUNK_ROWS):
            chunk = ordered[start : start + _CHUNK_ROWS]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self.ledger.execute(
                    f"SELECT hash FROM small_blobs WHERE hash IN ({marks})", chunk
                ).fetchall()
            )
        return found

    def location(self) -> str:
        return "the ledger"

    # -- reading -----------------------------------------------------------------------------

    def data(self, digest: str) -> bytes | None:
        """The stored bytes, unverified, or None."""
        digest = validate_digest(digest)
        found = self.ledger.scalar("SELECT data FROM small_blobs WHERE hash = ?", (digest,))
        return None if found is None else bytes(found)

    def open(self, digest: str) -> BlobReader:
        data = self.data(digest)
        if data is None:
            raise BlobNotFound(f"no blob {digest}")
        return io.BytesIO(data)

    def exists(self, digest: str) -> bool:
        digest = validate_digest(digest)
        return bool(self.ledger.scalar("SELECT 1 FROM small_blobs WHERE hash = ?", (digest,)))

    def stat(self, digest: str) -> BlobStat | None:
        digest = validate_digest(digest)
        found = self.ledger.execute(
            "SELECT length(data), written_at FROM small_blobs WHERE hash = ?", (digest,)
        ).fetchone()
        return None if found is None else BlobStat(found[0], found[1])

    # -- listing -----------------------------------------------------------------------------

    def _pages(self, low: str, high: str) -> Iterator[ListedBlob]:
        after = low
        first = True
        while True:
            rows = self.ledger.execute(
                "SELECT hash, length(data) FROM small_blobs "
                f"WHERE hash {'>=' if first else '>'} ? AND hash < ? ORDER BY hash LIMIT ?",
                (after, high, _PAGE),
            ).fetchall()
            for digest, size in rows:
                yield ListedBlob(digest, size)
            if len(rows) < _PAGE:
                return
            after, first = rows[-1][0], False

    def iter_blobs(self, prefix: str | None = None) -> Iterator[ListedBlob]:
        if prefix is None:
            yield from self._pages("", "g")
        elif prefix in PREFIXES:
            yield from self._pages(*_prefix_range(prefix))

    def sizes(self, prefixes: Iterable[str] = PREFIXES) -> dict[str, int]:
        wanted = set(prefixes)
        if wanted >= set(PREFIXES):
            every = self.ledger.execute("SELECT hash, length(data) FROM small_blobs")
            return dict(every.fetchall())
        found: dict[str, int] = {}
        for prefix in sorted(wanted & set(PREFIXES)):
            found.update(
                self.ledger.execute(
                    "SELECT hash, length(data) FROM small_blobs WHERE hash >= ? AND hash < ?",
                    _prefix_range(prefix),
                ).fetchall()
            )
        return found

    # -- removal -----------------------------------------------------------------------------

    def remove_many(self, digests: Iterable[str]) -> int:
        ordered = sorted({validate_digest(d) for d in digests})
        removed = 0
        with self.ledger.write():
            for start in range(0, len(ordered), _CHUNK_ROWS):
                chunk = ordered[start : start + _CHUNK_ROWS]
                marks = ",".join("?" * len(chunk))
                removed += self.ledger.execute(
                    f"DELETE FROM small_blobs WHERE hash IN ({marks})", chunk
                ).rowcount
        return removed

    def remove(self, digest: str) -> bool:
        digest = validate_digest(digest)
        with self.ledger.write():
            return bool(
                self.ledger.execute("DELETE FROM small_blobs WHERE hash = ?", (digest,)).rowcount
            )
