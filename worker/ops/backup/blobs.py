"""Blob placement for backup and restore: the blobs a ledger snapshot records, from one blob
store into another, through the store interface only (reflinks where the local store has them).
The same for every engine: what the snapshot records comes from the engine's strategy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from worker.cas import open_store
from worker.cas.base import BlobStore
from worker.cas.errors import BlobNotFound, CorruptBlob
from worker.cas.ledger_blobs import LedgerBlobStore
from worker.layout import Layout
from worker.ledger import open_ledger
from worker.ops.backup.errors import BackupError, DamagedBackup
from worker.settings import Settings


@dataclass(frozen=True)
class Placed:
    """What a copy of the CAS did. `recorded`: hash -> size of the blobs it holds."""

    recorded: dict[str, int]
    # Blobs reflinked (copy-on-write clones: no shared inode) and copied byte by byte.
    cloned: int
    copied: int
    # Blobs removed by `seer cas gc` between the snapshot and the CAS copy: their rows are
    # left out of the backup.
    collected: tuple[str, ...] = ()
    # Blobs in the source the ledger does not record (stored after the snapshot, orphans).
    skipped: int = 0


class _Counter:
    def __init__(self, source: BlobStore, target: BlobStore) -> None:
        self.source = source
        self.target = target
        self.cloned = 0
        self.copied = 0

    def place(self, digest: str) -> None:
        """Raises BlobNotFound if the source blob is gone, CorruptBlob if it is damaged."""
        placement = self.source.replicate(digest, self.target)
        if placement == "cloned":
            self.cloned += 1
        elif placement == "copied":
            self.copied += 1


@contextlib.contextmanager
def live_store(layout: Layout, settings: Settings, store: BlobStore | None) -> Iterator[BlobStore]:
    """`store`, or the root's own with a ledger opened for it (closed after)."""
    if store is not None:
        yield store
        return
    ledger = open_ledger(layout, settings)
    try:
        own = open_store(layout, ledger, settings)
        try:
            yield own
        finally:
            own.close()
    finally:
        ledger.close()


def copy_recorded(
    source: BlobStore,
    target: BlobStore,
    recorded: dict[str, int],
    referenced: Callable[[list[str]], set[str]],
) -> Placed:
    """Puts every blob the snapshot records (`recorded`: hash -> size) from the live store
    into the backup's.

    A recorded blob gone from the live store was taken by gc after the snapshot if no
    artifact references it (`referenced` says which of some digests are): `collected` lists
    it, for the caller to leave its row out, as gc would have. A referenced one gone is
    damage, and the backup fails.
    """
    recorded = dict(recorded)
    counter = _Counter(source, target)
    pending = set(recorded)
    skipped = 0
    for digest, _size in source.iter_blobs():
        if digest not in pending:
            skipped += 1  # stored after the snapshot, or an orphan: not part of this backup
            continue
        try:
            counter.place(digest)
        except BlobNotFound:
            continue  # removed while we walked: judged below
        except CorruptBlob as exc:
            raise BackupError(f"{exc} in the live store: run `seer cas verify`") from None
        pending.discard(digest)
    # Recorded in the snapshot, not found in the walk: look once more, then decide.
    gone: list[str] = []
    for digest in sorted(pending):
        try:
            counter.place(digest)
        except BlobNotFound:
            gone.append(digest)
        except CorruptBlob as exc:
            raise BackupError(f"{exc} in the live store: run `seer cas verify`") from None
    used = referenced(gone) if gone else set()
    lost = [d for d in gone if d in used]
    collected = [d for d in gone if d not in used]
    if lost:
        more = f" and {len(lost) - 1} more" if len(lost) > 1 else ""
        raise BackupError(
            f"blob {lost[0]}{more} is used by artifacts in the ledger but its file is missing "
            "from the live store: `seer cas verify` lists the damage; no backup was written"
        )
    for digest in collected:
        del recorded[digest]
    target.sync()
    return Placed(recorded, counter.cloned, counter.copied, tuple(collected), skipped)


def restore_recorded(source: BlobStore, target: BlobStore, recorded: dict[str, int]) -> Placed:
    """Puts the recorded blobs from a backup's store into the new root's; every one must be
    there and intact (DamagedBackup otherwise). `skipped`: valid blobs nothing records."""
    # The rows the copied ledger brought (its small blobs, orphans of puts in flight at the
    # snapshot among them) are dropped, so that every blob is placed from the backup's files,
    # hash-checked, and no orphan stays. Only those: a store of files or objects is left as
    # it is, whatever else it holds.
    for tier in target.tiers():
        if isinstance(tier, LedgerBlobStore):
            tier.remove_many([digest for digest, _ in tier.iter_blobs()])
    counter = _Counter(source, target)
    pending = set(recorded)
    ignored = 0
    for digest, _size in source.iter_blobs():
        if digest not in pending:
            ignored += 1
            continue
        try:
            counter.place(digest)
        except CorruptBlob:
            raise DamagedBackup(
                f"damaged backup: blob {digest} does not match its SHA-256"
            ) from None
        pending.discard(digest)
    if pending:
        more = f" and {len(pending) - 1} more" if len(pending) > 1 else ""
        raise DamagedBackup(
            f"damaged backup: blob {min(pending)}{more} recorded in its ledger is missing "
            "from its CAS"
        )
    target.sync()
    return Placed(recorded, counter.cloned, counter.copied, skipped=ignored)
