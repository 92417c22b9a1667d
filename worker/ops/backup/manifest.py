"""A backup's manifest: what it holds (each database's SHA-256, the blobs' count and bytes),
written last, so a directory without one is not a backup; signed with SEER_BACKUP_KEY when set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from worker import jsondata
from worker.files import sha256_file, write_atomically
from worker.ops.backup.errors import BackupRefused, DamagedBackup

MANIFEST = "manifest.json"
# The newest format this code reads. 2: a PostgreSQL ledger's dump (`engine`, `schema`,
# `left_out`). A SQLite backup is still written as format 1, which older releases restore.
FORMAT = 2
# Each engine's files in a backup, by the manifest's `engine` (absent: sqlite, format 1).
DATABASES: dict[str, tuple[str, ...]] = {
    "sqlite": ("ledger.db", "queue.db"),
    "postgresql": ("ledger.pgdump",),
}


def format_for(engine: str) -> int:
    return 1 if engine == "sqlite" else FORMAT


def seer_ops_version() -> str:
    try:
        return metadata.version("seer-ops")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class DatabaseCopy:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class BackupManifest:
    path: Path
    created_at: float
    finished_at: float
    source_root: str
    host: str
    schema_version: int
    seer_ops_version: str
    databases: tuple[DatabaseCopy, ...]
    blobs: int
    blob_bytes: int
    # Blobs reflinked (copy-on-write clones: no shared inode) and copied byte by byte.
    cloned: int
    copied: int
    # Rows of blobs removed by `seer cas gc` between the snapshot and the CAS copy.
    collected_meanwhile: int = 0
    # Files in the live CAS the snapshot does not record (stored after it, or orphans).
    skipped: int = 0
    messages: int = 0
    parcels: int = 0
    format: int = FORMAT
    # Which engine's ledger this is a backup of: only a deployment on that engine restores it.
    engine: str = "sqlite"
    # PostgreSQL: the schema the dump holds, and the blobs gc removed between the snapshot
    # and the CAS copy, whose rows the dump (which cannot be changed) still has: restore
    # deletes them. SQLite drops such rows from its copy instead.
    schema: str = ""
    left_out: tuple[str, ...] = ()
    # Whether the manifest carries an HMAC under SEER_BACKUP_KEY (checked when it was read).
    signed: bool = False

    @property
    def duration(self) -> float:
        return self.finished_at - self.created_at

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["path"] = str(self.path)
        found["databases"] = [asdict(d) for d in self.databases]
        found["left_out"] = list(self.left_out)
        found["duration"] = self.duration
        found["manifest"] = str(self.manifest_path)
        return found

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> BackupManifest:
        return cls(
            path=Path(path),
            created_at=float(data["created_at"]),
            finished_at=float(data["finished_at"]),
            source_root=str(data["source_root"]),
            host=str(data["host"]),
            schema_version=int(data["schema_version"]),
            seer_ops_version=str(data["seer_ops_version"]),
            databases=tuple(
                DatabaseCopy(str(d["name"]), int(d["size"]), str(d["sha256"]))
                for d in data["databases"]
            ),
            blobs=int(data["blobs"]),
            blob_bytes=int(data["blob_bytes"]),
            # "linked": hard links, in backups written before blobs were cloned or copied.
            cloned=int(data.get("cloned", data.get("linked", 0))),
            copied=int(data["copied"]),
            collected_meanwhile=int(data.get("collected_meanwhile", 0)),
            skipped=int(data.get("skipped", 0)),
            messages=int(data.get("messages", 0)),
            parcels=int(data.get("parcels", 0)),
            format=int(data.get("format", 1)),
            signed="signature" in data,
            engine=str(data.get("engine", "sqlite")),
            schema=str(data.get("schema", "")),
            left_out=tuple(str(d) for d in data.get("left_out", ())),
        )


def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(
        {k: v for k, v in data.items() if k != "signature"}, sort_keys=True, separators=(",", ":")
    ).encode()


def sign(data: dict[str, Any], key: str) -> str:
    return hmac.new(key.encode(), _canonical(data), hashlib.sha256).hexdigest()


def write_manifest(manifest: BackupManifest, key: str, mode: int) -> None:
    """Writes `manifest.json` into the backup, atomically, signed with `key` if there is one."""
    data = manifest.as_dict()
    for name in ("path", "duration", "manifest", "signed"):
        data.pop(name)
    if key:
        data["signature"] = sign(data, key)
    write_atomically(
        manifest.manifest_path,
        (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(),
        mode,
    )


def read_manifest(src: Path, key: str = "") -> BackupManifest:
    """The backup's manifest; with `key`, refused unless it is signed with it."""
    src = Path(src).absolute()
    if not src.is_dir():
        raise BackupRefused(f"{src} is not a directory: give the directory `seer backup` wrote")
    path = src / MANIFEST
    if not path.is_file():
        raise BackupRefused(f"{src} has no {MANIFEST}: not a backup, or one that did not finish")
    try:
        # Bounded like any JSON from outside: no inf, no 5,000-digit integer, no deep nesting.
        data = jsondata.loads(path.read_text())
        manifest = BackupManifest.from_dict(data, src)
    except (OSError, ValueError, KeyError, TypeError, OverflowError, AttributeError) as exc:
        raise DamagedBackup(f"{path} cannot be read: {exc}") from None
    if key:
        signature = data.get("signature")
        if not isinstance(signature, str):
            raise BackupRefused(
                f"{src} is not signed, and SEER_BACKUP_KEY is set: only a signed backup is "
                "trusted (take one with the key set)"
            )
        if not hmac.compare_digest(signature, sign(data, key)):
            raise DamagedBackup(
                f"{src}: the manifest's signature does not match: the backup was changed after "
                "it was written, or signed with another key"
            )
    if manifest.format > FORMAT:
        raise BackupRefused(
            f"{src} is a backup in format {manifest.format}, newer than this code's {FORMAT}: "
            "restore it with the release that wrote it"
        )
    expected = DATABASES.get(manifest.engine)
    if expected is None:
        raise DamagedBackup(f"{path} names an engine this code does not know: {manifest.engine!r}")
    if {d.name for d in manifest.databases} != set(expected):
        raise DamagedBackup(f"{path} does not list {' and '.join(expected)}")
    return manifest


def check_databases(manifest: BackupManifest) -> None:
    """Refuses a backup whose database files do not match the manifest."""
    for db in manifest.databases:
        path = manifest.path / db.name
        if not path.is_file():
            raise DamagedBackup(f"damaged backup: {db.name} is missing from {manifest.path}")
        size = path.stat().st_size
        if size != db.size:
            raise DamagedBackup(
                f"damaged backup: {db.name} is {size} bytes, the manifest says {db.size}"
            )
        if sha256_file(path) != db.sha256:
            raise DamagedBackup(
                f"damaged backup: {db.name} does not match the SHA-256 in the manifest"
            )
