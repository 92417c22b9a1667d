"""Restoring a backup into an empty (or new) storage root and an empty ledger database: the
databases checked against the manifest and put back by their engine's strategy, every recorded
blob hash-checked into place, the root's marker written last."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from worker.cas.base import BlobStore
from worker.cas.store import ContentStore
from worker.files import fsync_dir
from worker.layout import Layout, apply_umask
from worker.ops.backup import blobs
from worker.ops.backup.dirs import clear, is_empty_dir, is_within
from worker.ops.backup.errors import BackupRefused, DamagedBackup
from worker.ops.backup.manifest import (
    BackupManifest,
    DatabaseCopy,
    check_databases,
    read_manifest,
)
from worker.ops.backup.registry import record_backup
from worker.ops.backup.strategy import Strategy, strategy_for
from worker.settings import Settings, load_settings

ENGINE_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


@dataclass(frozen=True)
class RestoreReport:
    source: Path
    root: Path
    created_at: float
    schema_version: int
    databases: tuple[DatabaseCopy, ...]
    blobs: int
    blob_bytes: int
    cloned: int
    copied: int
    messages: int
    duration: float
    # Valid blob files in the backup that its ledger does not record: not restored.
    ignored: int = 0
    engine: str = "sqlite"

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["source"] = str(self.source)
        found["root"] = str(self.root)
        found["databases"] = [asdict(d) for d in self.databases]
        return found


def _check_target(layout: Layout) -> bool:
    """Refuses a target root that has anything in it; True if the directory exists (empty)."""
    root = layout.root
    if layout.is_initialised():
        raise BackupRefused(
            f"storage root {root} is initialised: restore only into an empty or new directory "
            "(point SEER_STORAGE_PATH at one)"
        )
    if root.is_symlink() and not root.exists():
        raise BackupRefused(f"storage root {root} is a dangling symlink")
    if root.exists() and not root.is_dir():
        raise BackupRefused(f"storage root {root} exists and is not a directory")
    if root.is_dir():
        if not is_empty_dir(root):
            raise BackupRefused(
                f"storage root {root} is not empty: restore only into an empty or new directory"
            )
        return True
    return False


def _check_engine(manifest: BackupManifest, strategy: Strategy) -> None:
    """A backup restores into a deployment on its own engine only: moving a ledger between
    engines is `seer migrate-backend`'s work, with its own checks."""
    if manifest.engine == strategy.engine:
        return
    theirs = ENGINE_NAMES.get(manifest.engine, manifest.engine)
    ours = ENGINE_NAMES.get(strategy.engine, strategy.engine)
    if strategy.engine == "postgresql":
        how = (
            "restore it with SEER_DATABASE_URL unset, then move that root's ledger with "
            "`seer migrate-backend --to postgresql://…`"
        )
    else:
        how = (
            "restore it with SEER_DATABASE_URL set to an empty PostgreSQL database "
            "(`seer migrate-backend` moves a SQLite ledger to PostgreSQL, not back)"
        )
    raise BackupRefused(
        f"{manifest.path} is a backup of a {theirs} ledger and this deployment's ledger is "
        f"{ours}: {how}"
    )


def restore(
    src: Path,
    layout: Layout,
    key: str = "",
    *,
    store: BlobStore | None = None,
    settings: Settings | None = None,
) -> RestoreReport:
    """Puts a backup into an empty (or new) storage root, and its ledger into the empty
    database the settings name (SQLite: the root's own file); every blob's hash is checked.
    `store`: the blob store the root will use, by default its own; `settings`: by default
    the environment's.

    The schema version is not checked here: the caller says what it is, and Runtime.open
    refuses a mismatch as it does for any root.
    """
    clock = time.monotonic()
    manifest = read_manifest(src, key)
    src = manifest.path
    if is_within(src, layout.root) or is_within(layout.root, src):
        raise BackupRefused(f"the backup {src} and the storage root {layout.root} overlap")
    settings = load_settings() if settings is None else settings
    strategy = strategy_for(layout, settings)
    try:
        _check_engine(manifest, strategy)
        existed = _check_target(layout)
        check_databases(manifest)
        strategy.check_target(manifest)
        return _restore(manifest, layout, settings, strategy, existed, store, clock)
    finally:
        strategy.close()


def _restore(
    manifest: BackupManifest,
    layout: Layout,
    settings: Settings,
    strategy: Strategy,
    existed: bool,
    store: BlobStore | None,
    clock: float,
) -> RestoreReport:
    src = manifest.path
    apply_umask(layout)
    source = ContentStore(
        src / "orchestration" / "cas", file_mode=layout.file_mode, dir_mode=layout.dir_mode
    )
    try:
        layout.create()
        strategy.put_back(manifest, layout)
        recorded, facts = strategy.recorded_after(layout)
        if len(recorded) != manifest.blobs or sum(recorded.values()) != manifest.blob_bytes:
            raise DamagedBackup(
                f"damaged backup: its ledger records {len(recorded)} blobs, the manifest "
                f"{manifest.blobs}"
            )
        with blobs.live_store(layout, settings, store) as target:
            # An object store's bucket made if missing. What a failed restore put there stays:
            # valid blobs, orphans to the ledger, which `seer cas gc` takes after its grace.
            target.prepare()
            placed = blobs.restore_recorded(source, target, recorded)
        fsync_dir(layout.orchestration)
        fsync_dir(layout.root)
        # Last: a root with the marker is a complete one.
        layout.write_marker()
        fsync_dir(layout.root)
    except BaseException:
        clear(layout.root, existed)
        strategy.undo()
        raise
    # This root's state is exactly that backup: it counts as one taken of it.
    record_backup(layout, manifest)
    return RestoreReport(
        source=src,
        root=layout.root,
        created_at=manifest.created_at,
        schema_version=facts.schema_version,
        databases=manifest.databases,
        blobs=len(recorded),
        blob_bytes=sum(recorded.values()),
        cloned=placed.cloned,
        copied=placed.copied,
        messages=facts.messages,
        duration=time.monotonic() - clock,
        ignored=placed.skipped,
        engine=manifest.engine,
    )
