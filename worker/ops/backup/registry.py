"""The note of backups taken of a storage root (`<root>/backups.json`), newest kept, which the
migration rollback reads to insist on a backup newer than the schema it drops."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.files import write_atomically
from worker.layout import Layout
from worker.ops.backup.manifest import MANIFEST, BackupManifest

RECORD = "backups.json"
# The note of backups taken keeps the newest ones only.
RECORD_LIMIT = 100


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    created_at: float
    schema_version: int
    host: str = ""


def record_path(layout: Layout) -> Path:
    return layout.root / RECORD


@contextlib.contextmanager
def _locked_root(layout: Layout) -> Iterator[None]:
    # flock on the root directory itself: two backups finishing at once do not lose a line.
    fd = os.open(layout.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_records(layout: Layout) -> list[dict[str, Any]]:
    try:
        data = json.loads(record_path(layout).read_text())
    except (FileNotFoundError, ValueError):
        return []
    found = data.get("backups") if isinstance(data, dict) else None
    return [r for r in found or [] if isinstance(r, dict)]


def record_backup(layout: Layout, manifest: BackupManifest) -> None:
    """Adds the backup to `<root>/backups.json` (written atomically, with the file mode)."""
    entry = {
        "path": str(manifest.path),
        "created_at": manifest.created_at,
        "finished_at": manifest.finished_at,
        "schema_version": manifest.schema_version,
        "host": manifest.host,
        "seer_ops_version": manifest.seer_ops_version,
        "blobs": manifest.blobs,
        "blob_bytes": manifest.blob_bytes,
    }
    with _locked_root(layout):
        records = [r for r in _read_records(layout) if r.get("path") != entry["path"]]
        records.append(entry)
        records.sort(key=lambda r: float(r.get("created_at") or 0))
        records = records[-RECORD_LIMIT:]
        text = json.dumps({"backups": records}, indent=2) + "\n"
        write_atomically(record_path(layout), text.encode(), layout.file_mode)


def backups(layout: Layout, present_only: bool = True) -> list[BackupInfo]:
    """Backups taken of this root, oldest first; by default only those whose manifest exists."""
    found = []
    for r in _read_records(layout):
        try:
            info = BackupInfo(
                Path(r["path"]),
                float(r["created_at"]),
                int(r["schema_version"]),
                str(r.get("host", "")),
            )
        except (KeyError, TypeError, ValueError):
            continue
        if present_only and not (info.path / MANIFEST).is_file():
            continue
        found.append(info)
    found.sort(key=lambda b: b.created_at)
    return found


def latest_backup(layout: Layout, present_only: bool = True) -> BackupInfo | None:
    """The newest backup recorded for this root (whose manifest is still there), or None."""
    found = backups(layout, present_only)
    return found[-1] if found else None
