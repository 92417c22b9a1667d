"""Backups of a storage root while the worker runs, and restoring one into an empty root.

A backup is a directory: the ledger's database (and, on SQLite, the queue's) in one consistent
snapshot taken while the consumers keep writing, the CAS blobs the copied ledger records
(reflinks where the filesystem has them, else copies; every blob hash-checked, never a hard
link: a byte flipped in the live store must not flip in its backup), and `manifest.json`,
written last: a directory without it is not a backup. The manifest says which engine the
ledger was on; a backup restores only into a deployment on that engine (moving a ledger from
SQLite to PostgreSQL is `seer migrate-backend`).

What each engine's backup gives (worker/ops/backup/strategy.py is the interface, one module
an engine):
- SQLite (`sqlite`): `ledger.db` and `queue.db`, each with SQLite's online backup in one step:
  one read transaction each, so each file is one consistent snapshot; the two are not one
  point in time, which costs nothing (the queue holds only doorbells: a doorbell for a parcel
  the ledger copy lacks finds nothing, a parcel without one is rung for at the consumer's start).
- PostgreSQL (`postgresql`): `ledger.pgdump`, `pg_dump --format=custom` of the ledger's schema
  (the URL's search_path, else public) run in one REPEATABLE READ transaction on a snapshot this
  process exported, in which it also read the recorded blobs and the manifest's counts: the
  dump and the blob list are exactly one point in time. Huey's queue tables are left out (only
  doorbells; see the module). Restore is pg_restore, in one transaction, into an empty schema
  (of an empty database, or beside others: the dump's own schema name must be free there).

Order makes it consistent. The ledger is copied first; the postmaster stores a blob before it
commits the rows that use it, so every blob the snapshot records was on disk when it was taken.
Only blobs recorded in the snapshot are copied (files stored after it belong to deliveries the
snapshot does not have). Afterwards, `seer cas gc` may remove a blob the snapshot records, but
only one that no artifact references (artifacts are never deleted, and gc checks for them under
its lock): such a row is left out, as gc would have (dropped from a SQLite copy; listed in the
manifest as `left_out` for restore to delete from a dump, which is not edited). A referenced
blob that is gone is damage, and the backup fails.

The backup does not contain the `.seer-root` marker, so no `seer` command can be pointed at it
and write to it by mistake; restore writes the marker last, once everything is in place, and
undoes what it wrote (files, and the tables pg_restore made) when a step fails.

What the manifest proves: that nothing changed by accident. It holds each database's SHA-256,
and blobs are named by theirs. Against someone who can write the backup it proves nothing: they
can change a database and write its new SHA-256. With SEER_BACKUP_KEY set, the manifest carries
an HMAC-SHA256 of its contents under that key, and restore and verify refuse a backup that is
unsigned or whose signature does not match: only a holder of the key could have written it.

The parts: `take` (backup), `restoring` (restore), `check` (verify), `manifest`, `registry` (the
note of backups taken), `blobs` (placement, through the blob-store interface), `strategy` (what
an engine does), `sqlite` (the online copy), `postgresql` (pg_dump and pg_restore), `dirs`,
`errors`. The public API is re-exported here.
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
