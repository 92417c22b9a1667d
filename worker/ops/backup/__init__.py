"""Backups of a storage root while the worker runs, and restoring one into an empty root.

A backup is a directory: `ledger.db` and `queue.db` copied with SQLite's online backup (one
consistent snapshot each, taken while the consumers keep writing), the CAS blobs the copied
ledger records (reflinks where the filesystem has them, else copies; every blob hash-checked,
never a hard link: a byte flipped in the live store must not flip in its backup), and
`manifest.json`, written last: a directory without it is not a backup.

Order makes it consistent. The ledger is copied first; the postmaster stores a blob before it
commits the rows that use it, so every blob the snapshot records was on disk when it was taken.
Only blobs recorded in the snapshot are copied (files stored after it belong to deliveries the
snapshot does not have). Afterwards, `seer cas gc` may remove a blob the snapshot records, but
only one that no artifact references (artifacts are never deleted, and gc checks for them under
the write lock): such a row is dropped from the copy, as gc would have. A referenced blob that is
gone is damage, and the backup fails.

The backup does not contain the `.seer-root` marker, so no `seer` command can be pointed at it
and write to it by mistake; restore writes the marker last, once everything is in place.

What the manifest proves: that nothing changed by accident. It holds each database's SHA-256,
and blobs are named by theirs. Against someone who can write the backup it proves nothing: they
can change a database and write its new SHA-256. With SEER_BACKUP_KEY set, the manifest carries
an HMAC-SHA256 of its contents under that key, and restore and verify refuse a backup that is
unsigned or whose signature does not match: only a holder of the key could have written it.

The parts: `take` (backup), `restoring` (restore), `check` (verify), `manifest`, `registry` (the
note of backups taken), `blobs` (placement, through the blob-store interface), `sqlite` (the
SQLite strategy: the online copy), `dirs`, `errors`. The public API is re-exported here.
"""

from __future__ import annotations

from worker.ops.backup.check import VerifyReport, verify
from worker.ops.backup.errors import BackupError, BackupRefused, DamagedBackup
from worker.ops.backup.manifest import (
    DATABASES,
    FORMAT,
    MANIFEST,
    BackupManifest,
    DatabaseCopy,
    check_databases,
    read_manifest,
    seer_ops_version,
    sign,
)
from worker.ops.backup.registry import (
    RECORD,
    RECORD_LIMIT,
    BackupInfo,
    backups,
    latest_backup,
    record_backup,
    record_path,
)
from worker.ops.backup.restoring import RestoreReport, restore
from worker.ops.backup.take import backup

__all__ = [
    "DATABASES",
    "FORMAT",
    "MANIFEST",
    "RECORD",
    "RECORD_LIMIT",
    "BackupError",
    "BackupInfo",
    "BackupManifest",
    "BackupRefused",
    "DamagedBackup",
    "DatabaseCopy",
    "RestoreReport",
    "VerifyReport",
    "backup",
    "backups",
    "check_databases",
    "latest_backup",
    "read_manifest",
    "record_backup",
    "record_path",
    "restore",
    "seer_ops_version",
    "sign",
    "verify",
]
