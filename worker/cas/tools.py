"""Operator tools for the CAS: usage from the counters, verify, reconcile the accounting, and gc.

The ledger's `blobs` table (and the counters its triggers keep) is the accounting; the files are
the truth these tools compare it with.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from stat import S_ISREG
from typing import Any

from worker.cas.store import CHUNK_SIZE, ContentStore
from worker.ledger.sqlite import Ledger

# Small write transactions: the Postmaster commits between them instead of waiting on us.
BATCH_SIZE = 500
_FANOUTS = tuple(f"{i:02x}" for i in range(256))
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


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


# -- stats --------------------------------------------------------------------------------------


def stats(ledger: Ledger) -> CasStats:
    """Bytes and blobs as the triggers count them: two rows read, whatever the store's size."""
    values = dict(
        ledger.execute(
            "SELECT name, value FROM counters WHERE name IN ('cas_bytes', 'cas_blobs')"
        ).fetchall()
    )
    return CasStats(values.get("cas_bytes", 0), values.get("cas_blobs", 0))


# -- shared helpers -----------------------------------------------------------------------------


def _chunks(items: list[Any], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _scan_fanout(root_fd: int, prefix: str) -> dict[str, int]:
    """digest -> size of the regular files named like blobs in one fan-out directory.

    Names are checked by length and suffix only, which keeps a stray file from posing as a
    blob; whether the rest is hex is left to _valid, for the few names not in the ledger.
    scandir over the directory's fd: is_file comes from the listing, and each stat is one
    fstatat relative to that fd rather than a walk down the whole path again.
    """
    try:
        fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root_fd)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found: dict[str, int] = {}
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                name = entry.name
                if len(name) != 67 or not name.endswith(".blob"):
                    continue
                try:
                    if entry.is_file(follow_symlinks=False):
                        found[prefix + name[:62]] = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # removed while we walked
    finally:
        os.close(fd)
    return found


def _open_root(store: ContentStore) -> int | None:
    try:
        return os.open(store.root, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None


def _scan_part(root: str, prefixes: tuple[str, ...]) -> dict[str, int]:
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found: dict[str, int] = {}
        for prefix in prefixes:
            found.update(_scan_fanout(root_fd, prefix))
        return found
    finally:
        os.close(root_fd)


def _start_scan(store: ContentStore, processes: int) -> Callable[[], dict[str, int]]:
    """Starts the walk; the returned function waits for it and gives its result."""
    if processes <= 1 or not store.root.is_dir():
        return lambda: _scan(store)
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(processes, mp_context=context)
    parts = [_FANOUTS[i::processes] for i in range(processes)]
    futures = [pool.submit(_scan_part, str(store.root), part) for part in parts]

    def collect() -> dict[str, int]:
        try:
            found: dict[str, int] = {}
            for future in futures:
                found.update(future.result())
            return found
        finally:
            pool.shutdown()

    return collect


def _scan(store: ContentStore, processes: int = 1) -> dict[str, int]:
    """digest -> size of every blob file; this walk is what reconcile is timed against du.

    With processes > 1 the fan-out directories are split between forked children: the walk
    is Python work per file (the system calls are the same as du's), so a second core halves
    it. Only for a single-threaded caller such as the CLI: forking a threaded process is not
    safe.
    """
    if processes > 1 and store.root.is_dir():
        context = multiprocessing.get_context("fork")
        parts = [_FANOUTS[i::processes] for i in range(processes)]
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            found: dict[str, int] = {}
            for part in pool.map(_scan_part, [str(store.root)] * processes, parts):
                found.update(part)
            return found
    root_fd = _open_root(store)
    if root_fd is None:
        return {}
    found: dict[str, int] = {}
    try:
        # Every one of the 256 names is tried rather than listing the root: a missing
        # fan-out directory costs one failed open, and nothing else there needs filtering.
        for prefix in _FANOUTS:
            found.update(_scan_fanout(root_fd, prefix))
    finally:
        os.close(root_fd)
    return found


def _valid(digest: str) -> bool:
    return _DIGEST_RE.fullmatch(digest) is not None


def _stat(store: ContentStore, digest: str) -> os.stat_result | None:
    """lstat of a blob's file if it is a regular file; None if absent (or not a blob name)."""
    if not _valid(digest):
        return None
    try:
        st = os.lstat(store.path_for(digest))
    except FileNotFoundError:
        return None
    return st if S_ISREG(st.st_mode) else None


def _existing_rows(ledger: Ledger, digests: Iterable[str]) -> dict[str, int]:
    """hash -> size of those digests that have a `blobs` row now."""
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(digests)):
        marks = ",".join("?" * len(chunk))
        found.update(ledger.execute(f"SELECT hash, size FROM blobs WHERE hash IN ({marks})", chunk))
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


def _hash_file(path: str, buffer: bytearray) -> str | None:
    """SHA-256 of a file read through `buffer`; None if it vanished.

    One buffer for the whole run: memory stays at one chunk however big the blob, and a
    store of small blobs does not pay for a fresh buffer per file (hashlib.file_digest
    allocates 256 KiB on every call).
    """
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    hasher = hashlib.sha256()
    view = memoryview(buffer)
    with f:
        while n := f.readinto(buffer):
            hasher.update(view[:n])
    return hasher.hexdigest()


# -- verify -------------------------------------------------------------------------------------


def verify(
    ledger: Ledger, store: ContentStore, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Rehash every blob file and compare the files with the `blobs` table.

    Each file is read once, in chunks through one reused buffer. The table is read one
    fan-out range at a time rather than through one cursor: hashing a large store takes
    minutes, and a read transaction held that long would stop the WAL from being
    checkpointed. `progress(blobs, bytes)` is called after each file.
    """
    started = time.monotonic()
    root = str(store.root)
    checked = checked_bytes = rows = 0
    corrupt: list[BlobInfo] = []
    orphaned: dict[str, int] = {}
    missing: dict[str, int] = {}
    resized: list[Resized] = []
    buffer = bytearray(CHUNK_SIZE)
    root_fd = _open_root(store)
    try:
        for index, prefix in enumerate(_FANOUTS):
            # The range [prefix, next prefix) holds exactly the digests of this directory.
            high = _FANOUTS[index + 1] if index + 1 < len(_FANOUTS) else "g"
            recorded = dict(
                ledger.execute(
                    "SELECT hash, size FROM blobs WHERE hash >= ? AND hash < ?", (prefix, high)
                )
            )
            rows += len(recorded)
            found = _scan_fanout(root_fd, prefix) if root_fd is not None else {}
            for digest, size_on_disk in sorted(found.items()):
                if not _valid(digest):
                    continue  # not a name the store gives: not a blob
                actual = _hash_file(os.path.join(root, prefix, digest[2:] + ".blob"), buffer)
                if actual is None:
                    continue  # removed while we walked: judged against the table below
                checked += 1
                checked_bytes += size_on_disk
                if actual != digest:
                    corrupt.append(BlobInfo(digest, size_on_disk))
                size = recorded.pop(digest, None)
                if size is None:
                    orphaned[digest] = size_on_disk
                elif size != size_on_disk and actual == digest:
                    resized.append(Resized(digest, size, size_on_disk))
                if progress is not None:
                    progress(checked, checked_bytes)
            missing.update(recorded)
    finally:
        if root_fd is not None:
            os.close(root_fd)
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
    store: ContentStore,
    report: VerifyReport,
    quarantine: os.PathLike[str] | str,
    redact: bool,
    now: float | None = None,
) -> RepairReport:
    """Moves the corrupt files `report` found into `quarantine` (kept, for a post-mortem), then
    re-creates them, and the missing ones, from any parcel still holding their content."""
    from pathlib import Path

    now = time.time() if now is None else now
    quarantine = Path(quarantine)
    moved: list[str] = []
    for blob in report.corrupt:
        if not moved and not quarantine.is_dir():
            quarantine.mkdir(mode=store.dir_mode, exist_ok=True)
            os.chmod(quarantine, store.dir_mode)
        dest = quarantine / f"{blob.hash}-{int(now)}.blob"
        try:
            os.rename(store.path_for(blob.hash), dest)
        except FileNotFoundError:
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
    ledger.execute(
        "UPDATE counters SET value = (SELECT coalesce(sum(size), 0) FROM blobs) "
        "WHERE name = 'cas_bytes'"
    )
    ledger.execute(
        "UPDATE counters SET value = (SELECT count(*) FROM blobs) WHERE name = 'cas_blobs'"
    )


def _repair_batch(
    ledger: Ledger,
    store: ContentStore,
    batch: list[tuple[str, str]],
    done: dict[str, list],
    now: float,
) -> None:
    """Applies one batch of ("orphan" | "missing" | "resized", digest); caller holds the lock.

    Each file is looked at again under the write lock: gc deletes under that same lock, so
    what is seen here is what gets committed.
    """
    conn = ledger.db.connection()
    for kind, digest in batch:
        st = _stat(store, digest)
        if kind == "orphan":
            if st is None:
                continue  # gc took it meanwhile
            created = min(st.st_mtime, now)
            if conn.execute(
                "INSERT OR IGNORE INTO blobs (hash, size, created_at) VALUES (?, ?, ?)",
                (digest, st.st_size, created),
            ).rowcount:
                done["orphan"].append(BlobInfo(digest, st.st_size))
        elif kind == "missing":
            if st is not None:
                continue  # a writer stored it again meanwhile
            row = conn.execute("DELETE FROM blobs WHERE hash = ? RETURNING size", (digest,))
            found = row.fetchone()
            if found is not None:
                done["missing"].append((digest, found[0]))
        else:
            if st is None:
                continue
            row = conn.execute("SELECT size FROM blobs WHERE hash = ?", (digest,)).fetchone()
            if row is None or row[0] == st.st_size:
                continue
            # No trigger watches UPDATE of size: move the counter with it, so the ledger is
            # consistent after every batch and not only after the final recount.
            conn.execute("UPDATE blobs SET size = ? WHERE hash = ?", (st.st_size, digest))
            conn.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'cas_bytes'",
                (st.st_size - row[0],),
            )
            done["resized"].append(Resized(digest, row[0], st.st_size))


def reconcile(
    ledger: Ledger,
    store: ContentStore,
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
    now = time.time() if now is None else now
    before = stats(ledger)
    # The disk walk starts first (in children, with processes > 1) so that reading the table
    # overlaps it.
    walk = _start_scan(store, processes)
    # One ordered pass over a WITHOUT ROWID table, straight into a dict: no per-blob queries.
    recorded: dict[str, int] = dict(ledger.execute("SELECT hash, size FROM blobs"))
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


def _collect_blob(ledger: Ledger, store: ContentStore, digest: str, cutoff: float) -> int | None:
    """Deletes one blob (row and file) if it is still collectable; its size, or None if kept.

    Called under the write lock, so a writer's commit cannot slip in between the check and
    the delete; the file goes before the commit, so a writer that commits after us sees it
    gone and stores it again.
    """
    st = _stat(store, digest)
    if st is not None and st.st_mtime >= cutoff:
        return None
    found = ledger.execute(
        "DELETE FROM blobs WHERE hash = ? AND created_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM artifacts WHERE hash = ?) RETURNING size",
        (digest, cutoff, digest),
    ).fetchone()
    if found is None:
        return None
    if st is not None:
        store.remove(digest)
    return found[0]


def _collect_orphan(ledger: Ledger, store: ContentStore, digest: str, cutoff: float) -> int | None:
    st = _stat(store, digest)
    if st is None or st.st_mtime >= cutoff:
        return None
    # A row means a writer committed it meanwhile: it is a blob now, not an orphan.
    if ledger.scalar("SELECT 1 FROM blobs WHERE hash = ?", (digest,)):
        return None
    if ledger.scalar("SELECT 1 FROM artifacts WHERE hash = ? LIMIT 1", (digest,)):
        return None
    store.remove(digest)
    return st.st_size


def gc(
    ledger: Ledger,
    store: ContentStore,
    grace: float,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """Removes blobs no artifact references, and orphaned files, older than `grace` seconds.

    A blob is old when both its row's created_at and its file's mtime are before now - grace;
    every candidate is checked again, and deleted, inside a short write transaction.
    """
    now = time.time() if now is None else now
    cutoff = now - grace
    removed: list[BlobInfo] = []
    orphans: list[BlobInfo] = []
    skipped = 0

    for batch in _unreferenced(ledger, cutoff):
        if dry_run:
            for digest, size in batch:
                st = _stat(store, digest)
                if st is not None and st.st_mtime >= cutoff:
                    skipped += 1
                else:
                    removed.append(BlobInfo(digest, size))
            continue
        with ledger.write():
            for digest, _ in batch:
                size = _collect_blob(ledger, store, digest, cutoff)
                if size is None:
                    skipped += 1
                else:
                    removed.append(BlobInfo(digest, size))

    # Orphaned files: on disk without a row. Old ones are leftovers of writes that never
    # committed; young ones may be a write in flight and are left alone.
    recorded = {h for (h,) in ledger.execute("SELECT hash FROM blobs")}
    disk = _scan(store)
    old_orphans = []
    for digest in sorted(disk.keys() - recorded):
        st = _stat(store, digest) if _valid(digest) else None
        if st is not None and st.st_mtime < cutoff:
            old_orphans.append(digest)
    for batch in _chunks(old_orphans):
        if dry_run:
            orphans += [BlobInfo(h, disk[h]) for h in batch]
            continue
        with ledger.write():
            for digest in batch:
                size = _collect_orphan(ledger, store, digest, cutoff)
                if size is None:
                    skipped += 1
                else:
                    orphans.append(BlobInfo(digest, size))

    return GcReport(
        dry_run=dry_run,
        grace=grace,
        cutoff=cutoff,
        removed=tuple(removed),
        orphans_removed=tuple(orphans),
        skipped=skipped,
    )
