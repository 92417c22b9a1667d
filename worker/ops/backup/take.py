"""Taking a backup of a storage root while the worker runs: the databases (the ledger first, by
its engine's strategy), the blobs the copied ledger records, then the manifest."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from worker.cas.base import BlobStore
from worker.cas.store import ContentStore
from worker.files import fsync_dir, make_dir, sha256_file
from worker.layout import Layout, apply_umask
from worker.ops.backup import blobs
from worker.ops.backup.dirs import clear, is_empty_dir, is_within
from worker.ops.backup.errors import BackupError, BackupRefused
from worker.ops.backup.manifest import (
    BackupManifest,
    DatabaseCopy,
    format_for,
    seer_ops_version,
    write_manifest,
)
from worker.ops.backup.registry import record_backup, record_path
from worker.ops.backup.strategy import strategy_for
from worker.settings import Settings, load_settings


def _check_dest(layout: Layout, dest: Path) -> bool:
    """Refuses an unusable DEST; True if it already existed (empty)."""
    if is_within(dest, layout.root) or is_within(layout.root, dest):
        raise BackupRefused(
            f"{dest} is inside the storage root {layout.root} (or contains it): put backups "
            "beside it, e.g. on another disk"
        )
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise BackupRefused(f"{dest} exists and is not a directory: choose a new directory")
    if dest.is_dir():
        if not is_empty_dir(dest):
            raise BackupRefused(f"{dest} is not empty: a backup goes into a new or empty directory")
        return True
    if not dest.parent.is_dir():
        raise BackupRefused(f"{dest.parent} does not exist: create it first")
    return False


def backup(
    layout: Layout,
    dest: Path,
    now: float | None = None,
    key: str = "",
    *,
    store: BlobStore | None = None,
    settings: Settings | None = None,
) -> BackupManifest:
    """Copies the databases (online, consistent) and the CAS into DEST; writes its manifest,
    signed with `key` (SEER_BACKUP_KEY) when there is one. `store`: the live blob store, by
    default the root's own; `settings`: which ledger (SEER_DATABASE_URL), by default the
    environment's."""
    layout.require_initialised()
    dest = Path(dest).absolute()
    existed = _check_dest(layout, dest)
    apply_umask(layout)
    settings = load_settings() if settings is None else settings
    strategy = strategy_for(layout, settings)
    started = time.time() if now is None else now
    clock = time.monotonic()
    try:
        make_dir(dest, layout.dir_mode)
        # The ledger first: every blob it records was stored before its rows committed.
        snapshot = strategy.take(dest, layout.file_mode)
        make_dir(dest / "orchestration", layout.dir_mode)
        make_dir(dest / "orchestration" / "cas", layout.dir_mode)
        # A backup is a directory whatever the live store is: its blobs are files on local
        # disk, those the live store keeps in the ledger too, so that it is verified and
        # restored from its files alone.
        copy = ContentStore(
            dest / "orchestration" / "cas", file_mode=layout.file_mode, dir_mode=layout.dir_mode
        )
        try:
            with blobs.live_store(layout, settings, store) as live:
                placed = blobs.copy_recorded(
                    live,
                    copy,
                    snapshot.recorded,
                    lambda digests: strategy.referenced(dest, digests),
                )
        finally:
            copy.close()
        left_out = strategy.leave_out(dest, list(placed.collected)) if placed.collected else ()
        fsync_dir(dest / "orchestration")
        databases = tuple(
            DatabaseCopy(name, (dest / name).stat().st_size, sha256_file(dest / name))
            for name in strategy.databases
        )
        facts = snapshot.facts
        manifest = BackupManifest(
            path=dest,
            created_at=started,
            finished_at=started + (time.monotonic() - clock),
            source_root=str(layout.root.absolute()),
            host=socket.gethostname(),
            schema_version=facts.schema_version,
            seer_ops_version=seer_ops_version(),
            databases=databases,
            blobs=len(placed.recorded),
            blob_bytes=sum(placed.recorded.values()),
            cloned=placed.cloned,
            copied=placed.copied,
            collected_meanwhile=len(placed.collected),
            skipped=placed.skipped,
            messages=facts.messages,
            parcels=facts.parcels,
            signed=bool(key),
            format=format_for(strategy.engine),
            engine=strategy.engine,
            schema=snapshot.schema,
            left_out=left_out,
        )
        write_manifest(manifest, key, layout.file_mode)
        fsync_dir(dest)
        if not existed:
            fsync_dir(dest.parent)
    except BaseException:
        clear(dest, existed)
        raise
    finally:
        strategy.close()
    try:
        record_backup(layout, manifest)
    except OSError as exc:
        raise BackupError(
            f"the backup in {dest} is complete, but it could not be noted in "
            f"{record_path(layout)}: {exc}"
        ) from None
    return manifest
