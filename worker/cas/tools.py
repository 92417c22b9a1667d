"""Operator tools for the CAS: usage from the counters, verify, reconcile the accounting, and gc.

The ledger's `blobs` table (and the counters its triggers keep) is the accounting; the blob store
(through its interface only, whatever the backend) is the truth these tools compare it with.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from worker.cas.base import PREFIXES, BlobStat, BlobStore
from worker.cas.errors import is_valid_digest
from worker.cas.tiered import TieredStore
from worker.files import CHUNK_SIZE, make_dir
from worker.ledger import Ledger

# Small write transactions: the Postmaster commits between them instead of waiting on us.
BATCH_SIZE = 500
# The ledger lock that keeps gc and reconcile's repairs (exclusive) apart from a Postmaster
# commit (shared), which checks that its blobs are stored and then records them: on SQLite
# the write lock does that already; on PostgreSQL writers run side by side.
LOCK = "cas"
# The least grace `seer cas gc` takes: a delivery trusts that the blobs its own put created
# are still there when it commits, if that is sooner than this after the put (gc removes only
# blobs written longer ago than its grace), and asks the store only about the others.
MIN_GRACE = 600.0

_Part = TypeVar("_Part")


@dataclass(frozen=True)
class CasStats:
    bytes: int
    blobs: int


@dataclass(frozen=True)
class BlobInfo:
    hash: str
    size: int


@dataclass(frozen=True)
class ArtifactRef:
    id: int
    parcel_id: str
    task_id: str
    kind: str
    name: str
    uri: str


@dataclass(frozen=True)
class MissingBlob:
    """A `blobs` row without its file, and the artifacts that point at it."""

    hash: str
    size: int
    artifacts: tuple[ArtifactRef, ...]


@dataclass(frozen=True)
class Resized:
    hash: str
    recorded: int
    actual: int


@dataclass(frozen=True)
class VerifyReport:
    blobs_checked: int
    bytes_checked: int
    rows: int
    corrupt: tuple[BlobInfo, ...]
    missing: tuple[MissingBlob, ...]
    orphaned: tuple[BlobInfo, ...]
    resized: tuple[Resized, ...]
    duration: float

    @property
    def clean(self) -> bool:
        """No data lost or damaged; orphans and wrong sizes are only accounting."""
        return not self.corrupt and not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


@dataclass(frozen=True)
class ReconcileReport:
    repaired: bool
    before: CasStats
    after: CasStats
    table: CasStats
    disk: CasStats
    orphaned: tuple[BlobInfo, ...]
    missing: tuple[MissingBlob, ...]
    resized: tuple[Resized, ...]
    duration: float

    @property
    def in_step(self) -> bool:
        """The accounting matched the disk before this run."""
        return (
            not self.orphaned
            and not self.missing
            and not self.resized
            and self.before == self.table
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_step": self.in_step}


@dataclass(frozen=True)
class GcReport:
    dry_run: bool
    grace: float
    cutoff: float
    removed: tuple[BlobInfo, ...]
    orphans_removed: tuple[BlobInfo, ...]
    # Candidates of the first query kept on a second look: referenced meanwhile, or a file
    # newer than the grace (a writer stored the same bytes again).
    skipped: int

    @property
    def removed_bytes(self) -> int:
        return sum(b.size for b in self.removed)

    @property
    def orphan_bytes(self) -> int:
        return sum(b.size for b in self.orphans_removed)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "removed_count": len(self.removed),
            "removed_bytes": self.removed_bytes,
            "orphans_removed_count": len(self.orphans_removed),
            "orphan_bytes": self.orphan_bytes,
        }


# -- sharing ------------------------------------------------------------------------------------


def newest_blob_missing(ledger: Ledger, store: BlobStore) -> str | None:
    """The newest artifact's blob, if this host's store does not have it: on many hosts, a
    sign that this one does not see the shared CAS directory (one indexed row, one stat)."""
    digest = ledger.scalar("SELECT hash FROM artifacts ORDER BY id DESC LIMIT 1")
    if digest is None or store.exists(digest):
        return None
    # Looked up again: gc may have taken it, or a reconcile dropped its row, meanwhile.
    still = ledger.scalar("SELECT 1 FROM blobs WHERE hash = ?", (digest,))
    return digest if still and not store.exists(digest) else None


# -- stats --------------------------------------------------------------------------------------


def stats(ledger: Ledger) -> CasStats:
    """Bytes and blobs as the triggers count them: two rows read, whatever the store's size."""
    with ledger.read():
        return CasStats(ledger.counter("cas_bytes"), ledger.counter("cas_blobs"))


def in_ledger(ledger: Ledger) -> CasStats:
    """Bytes and blobs the CAS keeps as rows of the ledger (the small ones), counted by
    triggers as `stats` is; the rest of the CAS is files. Rows of puts not yet committed
    count here and not yet in `stats`."""
    with ledger.read():
        return CasStats(ledger.counter("cas_small_bytes"), ledger.counter("cas_small_blobs"))


# -- unpack -------------------------------------------------------------------------------------


def unpack(store: BlobStore, progress: Callable[[int, int], None] | None = None) -> CasStats:
    """Moves every blob the store keeps in the ledger into files; returns what it moved.

    Each page of rows is written as files and synced before the rows go, so a blob is in one
    place or both at every instant, never in none: a kill anywhere loses nothing, and the
    next run goes on. What a running consumer stores meanwhile may be a row again, unless
    ORCHESTRATION_CAS_SMALL_BLOB_SIZE is 0. A damaged row stops it (CorruptBlob): `seer cas
    verify --repair` first.
    """
    if not isinstance(store, TieredStore):
        return CasStats(0, 0)
    moved = moved_bytes = 0
    while page := list(itertools.islice(store.small.iter_blobs(), BATCH_SIZE)):
        for digest, _ in page:
            data = store.small.read(digest)
            store.files.put_deferred(data)
            moved_bytes += len(data)
        store.files.sync()
        moved += store.small.remove_many(digest for digest, _ in page)
        if progress is not None:
            progress(moved, moved_bytes)
    return CasStats(moved_bytes, moved)


# -- shared helpers -----------------------------------------------------------------------------


def _chunks(items: list[Any], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _in_children(
    work: Callable[[_Part], dict[str, int]], parts: Sequence[_Part]
) -> Callable[[], dict[str, int]]:
    """Starts `work(part)` for each part in a forked child; the returned function waits for
    them and merges what they found.

    The walk is Python work per file (the system calls are the same as du's), so a second core
    halves it. Only for a single-threaded caller such as the CLI: forking a threaded process is
    not safe.
    """
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(len(parts), mp_context=context)
    try:
        futures = [pool.submit(work, part) for part in parts]
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise

    def collect() -> dict[str, int]:
        try:
            found: dict[str, int] = {}
            for future in futures:
                found.update(future.result())
            return found
        finally:
            pool.shutdown()

    return collect


def _start_scan(store: BlobStore, processes: int) -> Callable[[], dict[str, int]]:
    """Starts the walk of every blob (digest -> size); the returned function waits for it and
    gives its result. With processes > 1 the prefixes of a forkable kind (files) are split
    between forked children, and the other kinds (the ledger's rows) are read meanwhile."""
    if processes <= 1:
        return store.sizes
    walks = [
        _in_children(tier.sizes, [PREFIXES[i::processes] for i in range(processes)])
        for tier in store.tiers()
        if tier.forkable
    ]
    here = [tier.sizes() for tier in store.tiers() if not tier.forkable]

    def collect() -> dict[str, int]:
        found: dict[str, int] = {}
        for walk in walks:
            found.update(walk())
        for part in here:
            found.update(part)
        return found

    return collect


def _scan(store: BlobStore, processes: int = 1) -> dict[str, int]:
    """digest -> size of every blob; this walk is what reconcile is timed against du."""
    return _start_scan(store, processes)()


_valid = is_valid_digest


def _stat(store: BlobStore, digest: str) -> BlobStat | None:
    """The blob's size and mtime if it is stored; None if absent (or not a blob name)."""
    return store.stat(digest) if _valid(digest) else None


def _existing_rows(ledger: Ledger, digests: Iterable[str]) -> dict[str, int]:
    """hash -> size of those digests that have a `blobs` row now."""
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(digests)):
        marks = ",".join("?" * len(chunk))
        found.update(
            ledger.execute(
                f"SELECT hash, size FROM blobs WHERE hash IN ({marks})", chunk
            ).fetchall()
        )
    return found


def _referencing(ledger: Ledger, digests: Iterable[str]) -> dict[str, tuple[ArtifactRef, ...]]:
    refs: dict[str, list[ArtifactRef]] = {}
    for chunk in _chunks(sorted(digests)):
        marks = ",".join("?" * len(chunk))
        for row in ledger.rows(
            "SELECT id, parcel_id, task_id, kind, name, uri, hash FROM artifacts "
            f"WHERE hash IN ({marks}) ORDER BY id",
            chunk,
        ):
            digest = row.pop("hash")
            refs.setdefault(digest, []).append(ArtifactRef(**row))
    return {digest: tuple(found) for digest, found in refs.items()}


def _missing(ledger: Ledger, rows: dict[str, int]) -> tuple[MissingBlob, ...]:
    refs = _referencing(ledger, rows)
    return tuple(MissingBlob(h, rows[h], refs.get(h, ())) for h in sorted(rows))


# -- verify -------------------------------------------------------------------------------------


def verify(
    ledger: Ledger, store: BlobStore, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Rehash every blob and compare the store with the `blobs` table.

    Each blob is read once, in chunks through one reused buffer. The table is read one
    fan-out range at a time rather than through one cursor: hashing a large store takes
    minutes, and a read transaction held that long would stop the WAL from being
    checkpointed. `progress(blobs, bytes)` is called after each blob.
    """
    started = time.monotonic()
    checked = checked_bytes = rows = 0
    corrupt: list[BlobInfo] = []
    orphaned: dict[str, int] = {}
    missing: dict[str, int] = {}
    resized: list[Resized] = []
    buffer = bytearray(CHUNK_SIZE)
    for index, prefix in enumerate(PREFIXES):
        # The range [prefix, next prefix) holds exactly the digests of this prefix.
        high = PREFIXES[index + 1] if index + 1 < len(PREFIXES) else "g"
        recorded = dict(
            ledger.execute(
                "SELECT hash, size FROM blobs WHERE hash >= ? AND hash < ?", (prefix, high)
            ).fetchall()
        )
        rows += len(recorded)
        found = store.sizes((prefix,))
        for digest, size_on_disk in sorted(found.items()):
            if not _valid(digest):
                continue  # not a name the store gives: not a blob
            intact = store.check(digest, buffer)
            if intact is None:
                continue  # removed while we walked: judged against the table below
            checked += 1
            checked_bytes += size_on_disk
            if not intact:
                corrupt.append(BlobInfo(digest, size_on_disk))
            size = recorded.pop(digest, None)
            if size is None:
                orphaned[digest] = size_on_disk
            elif size != size_on_disk and intact:
                resized.append(Resized(digest, size, size_on_disk))
            if progress is not None:
                progress(checked, checked_bytes)
        missing.update(recorded)
    # A writer stores the file before it commits the row, and gc deletes both in one
    # transaction: look again, so that a write in flight is not reported as damage.
    if orphaned:
        adopted = _existing_rows(ledger, orphaned)
        orphaned = {h: s for h, s in orphaned.items() if h not in adopted}
    if missing:
        still = _existing_rows(ledger, missing)
        missing = {h: s for h, s in still.items() if _stat(store, h) is None}
    return VerifyReport(
        blobs_checked=checked,
        bytes_checked=checked_bytes,
        rows=rows,
        corrupt=tuple(corrupt),
        missing=_missing(ledger, missing),
        orphaned=tuple(BlobInfo(h, s) for h, s in sorted(orphaned.items())),
        resized=tuple(resized),
        duration=time.monotonic() - started,
    )


# -- repair -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepairReport:
    quarantined: tuple[str, ...]  # where each damaged file was moved (under the storage root)
    restored: tuple[str, ...]  # digests whose bytes came back from a parcel still holding them
    unrecoverable: tuple[str, ...]  # no parcel holds them any more: their artifacts are lost

    @property
    def complete(self) -> bool:
        return not self.unrecoverable

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "complete": self.complete}


def _candidates(ledger: Ledger, wanted: set[str], redact: bool) -> Iterator[tuple[str, bytes]]:
    """(digest, bytes) of every attachment of a parcel still kept whose bytes are wanted."""
    import json

    from worker.parcels.intake import attachments_of, stored_bytes

    for row in ledger.rows("SELECT payload FROM parcels WHERE payload IS NOT NULL"):
        try:
            attachments = attachments_of(json.loads(row["payload"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        for attachment in attachments:
            data = stored_bytes(attachment, redact)
            digest = hashlib.sha256(data).hexdigest()
            if digest in wanted:
                yield digest, data


def repair(
    ledger: Ledger,
    store: BlobStore,
    report: VerifyReport,
    quarantine: os.PathLike[str] | str,
    redact: bool,
    now: float | None = None,
) -> RepairReport:
    """Moves the corrupt files `report` found into `quarantine` (kept, for a post-mortem), then
    re-creates them, and the missing ones, from any parcel still holding their content."""
    now = ledger.now() if now is None else now
    quarantine = Path(quarantine)
    moved: list[str] = []
    for blob in report.corrupt:
        if not moved and not quarantine.is_dir():
            make_dir(quarantine, store.dir_mode)
        dest = quarantine / f"{blob.hash}-{int(now)}.blob"
        if not store.move_out(blob.hash, dest):
            continue  # healed or removed since the verify: judged below like a missing one
        moved.append(str(dest))
    wanted = {b.hash for b in report.corrupt} | {m.hash for m in report.missing}
    restored: set[str] = set()
    for digest, data in _candidates(ledger, wanted - restored, redact):
        if digest not in restored:
            store.put(data)
            restored.add(digest)
    return RepairReport(
        quarantined=tuple(moved),
        restored=tuple(sorted(restored)),
        unrecoverable=tuple(sorted(wanted - restored)),
    )


# -- reconcile ----------------------------------------------------------------------------------


def _recompute_counters(ledger: Ledger) -> None:
    ledger.set_counter("cas_bytes", ledger.scalar("SELECT coalesce(sum(size), 0) FROM blobs"))
    ledger.set_counter("cas_blobs", ledger.scalar("SELECT count(*) FROM blobs"))


def _repair_batch(
    ledger: Ledger,
    store: BlobStore,
    batch: list[tuple[str, str]],
    done: dict[str, list],
    now: float,
) -> None:
    """Applies one batch of ("orphan" | "missing" | "resized", digest); the caller holds
    `LOCK` exclusively.

    Each file is looked at again under the lock: gc deletes, and a Postmaster commit records,
    only while holding it, so what is seen here is what gets committed.
    """
    orphans: list[tuple[str, int, float]] = []
    for kind, digest in batch:
        st = _stat(store, digest)
        if kind == "orphan":
            if st is not None:  # else gc took it meanwhile
                orphans.append((digest, st.size, min(st.modified, now)))
        elif kind == "missing":
            if st is not None:
                continue  # a writer stored it again meanwhile
            found = ledger.execute(
                "DELETE FROM blobs WHERE hash = ? RETURNING size", (digest,)
            ).fetchone()
            if found is not None:
                done["missing"].append((digest, found[0]))
        else:
            if st is None:
                continue
            recorded = ledger.scalar("SELECT size FROM blobs WHERE hash = ?", (digest,))
            if recorded is None or recorded == st.size:
                continue
            # No trigger watches UPDATE of size: move the counter with it, so the ledger is
            # consistent after every batch and not only after the final recount.
            ledger.execute("UPDATE blobs SET size = ? WHERE hash = ?", (st.size, digest))
            ledger.add_to_counter("cas_bytes", st.size - recorded)
            done["resized"].append(Resized(digest, recorded, st.size))
    if orphans:
        # Rows a writer committed meanwhile are its own, not adopted orphans. Under the lock
        # none can appear between this look and the insert; the ON CONFLICT is for a writer
        # that records blobs without it.
        known = _existing_rows(ledger, (digest for digest, _, _ in orphans))
        adopted = [orphan for orphan in orphans if orphan[0] not in known]
        ledger.executemany(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (hash) DO NOTHING",
            adopted,
        )
        done["orphan"].extend(BlobInfo(digest, size) for digest, size, _ in adopted)


def reconcile(
    ledger: Ledger,
    store: BlobStore,
    repair: bool = True,
    now: float | None = None,
    processes: int = 1,
) -> ReconcileReport:
    """Make the accounting match the disk: sizes from stat, no rehashing.

    Files without a row get one (their bytes are on the disk the quota is about); rows without
    a file are removed (the report names the artifacts that now point at nothing); wrong sizes
    are corrected; then the counters are recomputed from the table in the last transaction.
    With repair=False nothing is written and `after` is what a repair would leave.
    """
    started = time.monotonic()
    now = ledger.now() if now is None else now
    before = stats(ledger)
    # The disk walk starts first (in children, with processes > 1) so that reading the table
    # overlaps it.
    walk = _start_scan(store, processes)
    # One ordered pass over a WITHOUT ROWID table, straight into a dict: no per-blob queries.
    recorded: dict[str, int] = dict(ledger.execute("SELECT hash, size FROM blobs").fetchall())
    table = CasStats(sum(recorded.values()), len(recorded))
    disk = walk()
    orphan_candidates: list[str] = []
    missing_candidates: list[str] = []
    resized_candidates: list[str] = []
    # Dict equality runs in C: the common case, nothing to repair, costs no Python loop.
    if disk != recorded:
        for digest in disk.keys() - recorded.keys():
            if _valid(digest):
                orphan_candidates.append(digest)
            else:
                del disk[digest]  # a stray file that only looks like a blob
        orphan_candidates.sort()
        missing_candidates = sorted(recorded.keys() - disk.keys())
        resized_candidates = sorted(
            h for h in disk.keys() & recorded.keys() if disk[h] != recorded[h]
        )
    del recorded
    disk_stats = CasStats(sum(disk.values()), len(disk))

    if not repair:
        # Look again so that a write in flight (file stored, row not yet committed) or a gc
        # in flight is not reported; nothing is locked, so this is a best effort.
        adopted = _existing_rows(ledger, orphan_candidates)
        orphaned = tuple(BlobInfo(h, disk[h]) for h in orphan_candidates if h not in adopted)
        still = _existing_rows(ledger, missing_candidates)
        missing = {h: s for h, s in still.items() if _stat(store, h) is None}
        now_recorded = _existing_rows(ledger, resized_candidates)
        resized = tuple(
            Resized(h, now_recorded[h], disk[h])
            for h in resized_candidates
            if now_recorded.get(h, disk[h]) != disk[h]
        )
        return ReconcileReport(
            repaired=False,
            before=before,
            after=disk_stats,
            table=table,
            disk=disk_stats,
            orphaned=orphaned,
            missing=_missing(ledger, missing),
            resized=resized,
            duration=time.monotonic() - started,
        )

    work = (
        [("orphan", h) for h in orphan_candidates]
        + [("missing", h) for h in missing_candidates]
        + [("resized", h) for h in resized_candidates]
    )
    done: dict[str, list] = {"orphan": [], "missing": [], "resized": []}
    batches = list(_chunks(work)) or [[]]
    for number, batch in enumerate(batches, start=1):
        with ledger.write():
            # Exclusive: a recount beside a commit could lose the commit's bytes (its deltas
            # deleted, its rows not yet summed), and a file looked at could go meanwhile.
            ledger.lock(LOCK)
            _repair_batch(ledger, store, batch, done, now)
            if number == len(batches):
                _recompute_counters(ledger)
    return ReconcileReport(
        repaired=True,
        before=before,
        after=stats(ledger),
        table=table,
        disk=disk_stats,
        orphaned=tuple(done["orphan"]),
        missing=_missing(ledger, dict(done["missing"])),
        resized=tuple(done["resized"]),
        duration=time.monotonic() - started,
    )


# -- gc -----------------------------------------------------------------------------------------


def _unreferenced(ledger: Ledger, cutoff: float) -> Iterator[list[tuple[str, int]]]:
    """Batches of (hash, size) of old rows no artifact references, in hash order.

    Paged by hash so no read transaction stays open while the batch before is deleted.
    """
    after = ""
    while True:
        batch = ledger.execute(
            "SELECT b.hash, b.size FROM blobs b WHERE b.hash > ? AND b.created_at < ? "
            "AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.hash = b.hash) "
            "ORDER BY b.hash LIMIT ?",
            (after, cutoff, BATCH_SIZE),
        ).fetchall()
        if not batch:
            return
        yield [(h, s) for h, s in batch]
        after = batch[-1][0]


def _collect_blobs(
    ledger: Ledger, store: BlobStore, batch: list[str], cutoff: float
) -> tuple[list[BlobInfo], int]:
    """Deletes those of `batch` (rows and stored bytes) still collectable; what it removed,
    and how many it kept.

    Called holding `LOCK` exclusively, so a writer's commit cannot slip in between the check
    and the delete; the bytes go before the commit, so a writer that commits after us sees
    them gone and stores them again. The store is asked for the batch at once (an object store
    answers it with concurrent requests, not one round trip a blob while the lock is held).
    """
    found = store.stats(d for d in batch if _valid(d))
    old = [d for d in batch if d not in found or found[d].modified < cutoff]
    removed: list[BlobInfo] = []
    for chunk in _chunks(old):
        marks = ",".join("?" * len(chunk))
        removed += [
            BlobInfo(h, size)
            for h, size in ledger.execute(
                f"DELETE FROM blobs WHERE hash IN ({marks}) AND created_at < ? "
                "AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.hash = blobs.hash) "
                "RETURNING hash, size",
                [*chunk, cutoff],
            ).fetchall()
        ]
    removed.sort(key=lambda b: b.hash)
    store.remove_many([b.hash for b in removed if b.hash in found])
    return removed, len(batch) - len(removed)


def _collect_orphans(
    ledger: Ledger, store: BlobStore, batch: list[str], cutoff: float
) -> tuple[list[BlobInfo], int]:
    found = store.stats(batch)
    old = {d: st for d, st in found.items() if st.modified < cutoff}
    # A row means a writer committed it meanwhile: it is a blob now, not an orphan.
    kept = _existing_rows(ledger, old).keys() | _referencing(ledger, old).keys()
    gone = sorted(d for d in old if d not in kept)
    store.remove_many(gone)
    return [BlobInfo(d, old[d].size) for d in gone], len(batch) - len(gone)


def gc(
    ledger: Ledger,
    store: BlobStore,
    grace: float,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """Removes blobs no artifact references, and orphaned files, older than `grace` seconds.

    A blob is old when both its row's created_at and its file's mtime are before now - grace;
    every candidate is checked again, and deleted, inside a short write transaction.
    """
    now = ledger.now() if now is None else now
    cutoff = now - grace
    removed: list[BlobInfo] = []
    orphans: list[BlobInfo] = []
    skipped = 0

    for batch in _unreferenced(ledger, cutoff):
        if dry_run:
            found = store.stats(d for d, _ in batch if _valid(d))
            for digest, size in batch:
                if digest in found and found[digest].modified >= cutoff:
                    skipped += 1
                else:
                    removed.append(BlobInfo(digest, size))
            continue
        with ledger.write():
            # On PostgreSQL without it, a commit that found the file before we removed it
            # would record the blob after our delete: an artifact with no bytes.
            ledger.lock(LOCK)
            taken, kept = _collect_blobs(ledger, store, [d for d, _ in batch], cutoff)
            removed += taken
            skipped += kept

    # Orphaned files: on disk without a row. Old ones are leftovers of writes that never
    # committed; young ones may be a write in flight and are left alone.
    recorded = {h for (h,) in ledger.execute("SELECT hash FROM blobs").fetchall()}
    disk = _scan(store)
    unrecorded = sorted(d for d in disk.keys() - recorded if _valid(d))
    written = store.stats(unrecorded)
    old_orphans = [d for d in unrecorded if d in written and written[d].modified < cutoff]
    for orphan_batch in _chunks(old_orphans):
        if dry_run:
            orphans += [BlobInfo(h, disk[h]) for h in orphan_batch]
            continue
        with ledger.write():
            ledger.lock(LOCK)  # as for the blobs: a commit may be adopting this file now
            taken, kept = _collect_orphans(ledger, store, orphan_batch, cutoff)
            orphans += taken
            skipped += kept

    return GcReport(
        dry_run=dry_run,
        grace=grace,
        cutoff=cutoff,
        removed=tuple(removed),
        orphans_removed=tuple(orphans),
        skipped=skipped,
    )
