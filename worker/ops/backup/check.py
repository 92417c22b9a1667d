"""Reading back a whole backup: its signature, its databases, and every blob its ledger records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from worker.cas.store import ContentStore
from worker.files import CHUNK_SIZE
from worker.ops.backup.errors import DamagedBackup
from worker.ops.backup.manifest import BackupManifest, check_databases, read_manifest


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    databases: int
    blobs: int
    blob_bytes: int


def recorded_in(manifest: BackupManifest) -> dict[str, int]:
    """hash -> size of the blobs a backup's ledger records, read from its files alone (no
    database is opened: a backup is checked on its own); those gc took are left out."""
    if manifest.engine == "postgresql":
        from worker.ops.backup import postgresql

        return postgresql.recorded_in_dump(manifest)
    from worker.ops.backup import sqlite

    return sqlite.recorded_blobs(manifest.path / "ledger.db")


def verify(src: Path, key: str = "") -> VerifyReport:
    """Reads back a whole backup: the signature (with `key`), the databases against the
    manifest, then every blob its ledger records against its SHA-256. Raises DamagedBackup
    naming the first damage."""
    manifest = read_manifest(src, key)
    check_databases(manifest)
    recorded = recorded_in(manifest)
    if len(recorded) != manifest.blobs or sum(recorded.values()) != manifest.blob_bytes:
        raise DamagedBackup(
            f"damaged backup: its ledger records {len(recorded)} blobs, the manifest "
            f"{manifest.blobs}"
        )
    store = ContentStore(manifest.path / "orchestration" / "cas")
    missing: list[str] = []
    damaged: list[str] = []
    buffer = bytearray(CHUNK_SIZE)
    for digest in sorted(recorded):
        intact = store.check(digest, buffer)
        if intact is None:
            missing.append(digest)
        elif not intact:
            damaged.append(digest)
    for found, what in ((damaged, "does not match its SHA-256"), (missing, "is missing")):
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise DamagedBackup(f"damaged backup: blob {found[0]}{more} {what}")
    return VerifyReport(manifest.path, len(manifest.databases), len(recorded), manifest.blob_bytes)
