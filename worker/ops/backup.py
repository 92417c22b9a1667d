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
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from worker import jsondata
from worker.cas.store import CHUNK_SIZE, BlobNotFound, ContentStore, CorruptBlob
from worker.layout import Layout, apply_umask

MANIFEST = "manifest.json"
RECORD = "backups.json"
FORMAT = 1
DATABASES = ("ledger.db", "queue.db")
# The note of backups taken keeps the newest ones only.
RECORD_LIMIT = 100

# ioctl(FICLONE): a copy-on-write clone (btrfs, xfs with reflink, bcachefs). Filesystems
# without it answer with one of these; EXDEV: another filesystem.
_FICLONE = 0x40049409
_NO_CLONE_ERRNOS = frozenset(
    {
        errno.EXDEV,
        errno.EPERM,
        errno.ENOTSUP,
        errno.EOPNOTSUPP,
        errno.ENOSYS,
        errno.EINVAL,
        errno.ENOTTY,
        errno.EBADF,
    }
)


class BackupError(Exception):
    """A backup or restore could not be done: one line, says what is wrong."""


class BackupRefused(BackupError):
    """The caller asked for something unsafe (a non-empty destination or target): nothing done."""


class DamagedBackup(BackupError):
    """The backup does not match its manifest, or a blob in it does not match its hash."""


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
            format=int(data.get("format", FORMAT)),
            signed="signature" in data,
        )


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    created_at: float
    schema_version: int
    host: str = ""


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

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["source"] = str(self.source)
        found["root"] = str(self.root)
        found["databases"] = [asdict(d) for d in self.databases]
        return found


# -- small file helpers -------------------------------------------------------------------------


def seer_ops_version() -> str:
    try:
        return metadata.version("seer-ops")
    except metadata.PackageNotFoundError:
        return "unknown"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdir(path: Path, mode: int) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    # mkdir's mode goes through the umask; chmod does not.
    os.chmod(path, mode)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
    return hasher.hexdigest()


@contextlib.contextmanager
def _atomic_file(dest: Path, mode: int) -> Iterator[int]:
    """An fd to write `dest` through: a temp name, synced, then renamed into place; nothing
    partial is ever visible under `dest`, and the temp goes away on any error."""
    temp = dest.parent / f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            yield fd
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    with _atomic_file(path, mode) as fd:
        _write_all(fd, data)
    _fsync_dir(path.parent)


def _copy_file(src: Path, dest: Path, mode: int) -> str:
    """Copies to a temp name, fsyncs, renames into place; returns the sha256 of what it wrote."""
    hasher = hashlib.sha256()
    with _atomic_file(dest, mode) as fd, open(src, "rb", buffering=0) as source:
        while chunk := source.read(CHUNK_SIZE):
            hasher.update(chunk)
            _write_all(fd, chunk)
    return hasher.hexdigest()


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _is_empty_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


# -- SQLite -------------------------------------------------------------------------------------


def _copy_database(src: Path, dest: Path, mode: int) -> None:
    """SQLite's online backup in one step: one read transaction, so one consistent snapshot.

    In WAL mode the reader blocks no writer. (A stepped backup restarts whenever another
    connection writes, so under steady load it might never finish.)
    """
    if not src.is_file():
        raise BackupError(f"{src} does not exist: is the storage root initialised?")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.close(fd)
    source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dest, timeout=30)
        try:
            source.backup(target)
            # A cheap structural check of the copy, before anyone relies on it.
            problem = target.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise BackupError(f"the copy of {src.name} fails SQLite's check: {problem}")
        finally:
            # Closing the last connection checkpoints the copy's WAL into the file.
            target.close()
    finally:
        source.close()
    _settle(dest)
    os.chmod(dest, mode)
    _fsync_file(dest)


def _settle(path: Path) -> None:
    """The copy is one file: its last connection checkpointed the WAL into it and removed it."""
    for suffix in ("-wal", "-journal"):
        side = Path(f"{path}{suffix}")
        if side.exists() and side.stat().st_size:
            raise BackupError(f"the copy {path} was left with a non-empty {side.name}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(side)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{path}-shm")


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A quiescent copy, read without locks and without creating -wal or -shm files."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()[0]
    )


def _schema_version(conn: sqlite3.Connection) -> int:
    if not _has_table(conn, "schema_migrations"):
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def _count(conn: sqlite3.Connection, table: str) -> int:
    if not _has_table(conn, table):
        return 0
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _recorded_blobs(conn: sqlite3.Connection) -> dict[str, int]:
    if not _has_table(conn, "blobs"):
        return {}
    return dict(conn.execute("SELECT hash, size FROM blobs"))


def _referenced(conn: sqlite3.Connection, digest: str) -> bool:
    if not _has_table(conn, "artifacts"):
        return False
    found = conn.execute("SELECT 1 FROM artifacts WHERE hash = ? LIMIT 1", (digest,))
    return found.fetchone() is not None


def _drop_collected(ledger_copy: Path, digests: list[str]) -> None:
    """Removes rows of blobs gc took after the snapshot; the triggers keep the counters right."""
    conn = sqlite3.connect(ledger_copy)
    try:
        with conn:
            conn.executemany("DELETE FROM blobs WHERE hash = ?", [(d,) for d in digests])
    finally:
        conn.close()
    _settle(ledger_copy)
    _fsync_file(ledger_copy)


# -- blobs --------------------------------------------------------------------------------------


class _NoClone(Exception):
    """This filesystem has no reflinks: copy instead."""


class _Placer:
    """Puts blobs into a CAS directory tree: reflinks where possible, else copies; each blob's
    hash is checked on the way, and no file shares an inode with its source."""

    def __init__(self, dest_cas: Path, dir_mode: int, file_mode: int) -> None:
        self.root = dest_cas
        self.dir_mode = dir_mode
        self.file_mode = file_mode
        self.fanouts: set[str] = set()
        self.can_clone = True
        self.cloned = 0
        self.copied = 0

    def _target(self, digest: str) -> Path:
        prefix = digest[:2]
        if prefix not in self.fanouts:
            _mkdir(self.root / prefix, self.dir_mode)
            self.fanouts.add(prefix)
        return self.root / prefix / f"{digest[2:]}.blob"

    def place(self, source: ContentStore, digest: str) -> None:
        """Raises FileNotFoundError if the source blob is gone, CorruptBlob if it is damaged."""
        target = self._target(digest)
        if target.exists():
            return
        path = source.path_for(digest)
        if self.can_clone and self._clone(path, target, digest):
            self.cloned += 1
            return
        try:
            # Hashes while it copies: a corrupt source raises CorruptBlob.
            source.copy_to(digest, target)
        except BlobNotFound as exc:
            raise FileNotFoundError(errno.ENOENT, str(exc), str(path)) from None
        self.copied += 1

    def _clone(self, path: Path, target: Path, digest: str) -> bool:
        """A reflink of `path` at `target`, hash-checked; False where the filesystem has none."""
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # Hashed through the fd it is cloned from: blobs are never rewritten in place (a
            # heal replaces the file), so the clone holds exactly the bytes hashed.
            hasher = hashlib.sha256()
            while chunk := os.read(src, CHUNK_SIZE):
                hasher.update(chunk)
            if hasher.hexdigest() != digest:
                raise CorruptBlob(
                    f"blob {digest} is corrupt: its bytes no longer match their SHA-256"
                )
            with _atomic_file(target, self.file_mode) as fd:
                try:
                    fcntl.ioctl(fd, _FICLONE, src)
                except OSError as exc:
                    if exc.errno not in _NO_CLONE_ERRNOS:
                        raise
                    self.can_clone = False
                    raise _NoClone from None
        except _NoClone:
            return False
        finally:
            os.close(src)
        return True

    def sync(self) -> None:
        for prefix in sorted(self.fanouts):
            _fsync_dir(self.root / prefix)
        _fsync_dir(self.root)


def _copy_cas(
    layout: Layout, dest: Path, ledger_copy: Path
) -> tuple[dict[str, int], _Placer, int, int]:
    """Clones (or copies) every blob the copied ledger records; returns what it did.

    Returns (recorded blobs after dropping collected ones, placer, collected, skipped).
    """
    store = ContentStore(layout.cas, file_mode=layout.file_mode, dir_mode=layout.dir_mode)
    with _read_only(ledger_copy) as conn:
        recorded = _recorded_blobs(conn)
    dest_cas = dest / "orchestration" / "cas"
    placer = _Placer(dest_cas, layout.dir_mode, layout.file_mode)
    pending = set(recorded)
    skipped = 0
    for digest, _size in store.iter_blobs():
        if digest not in pending:
            skipped += 1  # stored after the snapshot, or an orphan: not part of this backup
            continue
        try:
            placer.place(store, digest)
        except FileNotFoundError:
            continue  # removed while we walked: judged below
        except CorruptBlob as exc:
            raise BackupError(f"{exc} in the live store: run `seer cas verify`") from None
        pending.discard(digest)
    # Recorded in the snapshot, not found in the walk: look once more, then decide.
    collected: list[str] = []
    lost: list[str] = []
    if pending:
        with _read_only(ledger_copy) as conn:
            for digest in sorted(pending):
                try:
                    placer.place(store, digest)
                    continue
                except FileNotFoundError:
                    pass
                except CorruptBlob as exc:
                    raise BackupError(f"{exc} in the live store: run `seer cas verify`") from None
                (lost if _referenced(conn, digest) else collected).append(digest)
    if lost:
        more = f" and {len(lost) - 1} more" if len(lost) > 1 else ""
        raise BackupError(
            f"blob {lost[0]}{more} is used by artifacts in the ledger but its file is missing "
            "from the live store: `seer cas verify` lists the damage; no backup was written"
        )
    if collected:
        _drop_collected(ledger_copy, collected)
        for digest in collected:
            del recorded[digest]
    placer.sync()
    return recorded, placer, len(collected), skipped


# -- backup -------------------------------------------------------------------------------------


def _check_dest(layout: Layout, dest: Path) -> bool:
    """Refuses an unusable DEST; True if it already existed (empty)."""
    if _is_within(dest, layout.root) or _is_within(layout.root, dest):
        raise BackupRefused(
            f"{dest} is inside the storage root {layout.root} (or contains it): put backups "
            "beside it, e.g. on another disk"
        )
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise BackupRefused(f"{dest} exists and is not a directory: choose a new directory")
    if dest.is_dir():
        if not _is_empty_dir(dest):
            raise BackupRefused(f"{dest} is not empty: a backup goes into a new or empty directory")
        return True
    if not dest.parent.is_dir():
        raise BackupRefused(f"{dest.parent} does not exist: create it first")
    return False


def _clear(path: Path, existed: bool) -> None:
    """Removes what a failed backup or restore wrote (the directory was new or empty)."""
    if not path.exists():
        return
    if not existed:
        shutil.rmtree(path, ignore_errors=True)
        return
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(
        {k: v for k, v in data.items() if k != "signature"}, sort_keys=True, separators=(",", ":")
    ).encode()


def sign(data: dict[str, Any], key: str) -> str:
    return hmac.new(key.encode(), _canonical(data), hashlib.sha256).hexdigest()


def backup(layout: Layout, dest: Path, now: float | None = None, key: str = "") -> BackupManifest:
    """Copies the databases (online, consistent) and the CAS into DEST; writes its manifest,
    signed with `key` (SEER_BACKUP_KEY) when there is one."""
    layout.require_initialised()
    dest = Path(dest).absolute()
    existed = _check_dest(layout, dest)
    apply_umask(layout)
    started = time.time() if now is None else now
    clock = time.monotonic()
    try:
        _mkdir(dest, layout.dir_mode)
        # The ledger first: every blob it records was stored before its rows committed.
        _copy_database(layout.ledger_db, dest / "ledger.db", layout.file_mode)
        _copy_database(layout.queue_db, dest / "queue.db", layout.file_mode)
        _mkdir(dest / "orchestration", layout.dir_mode)
        _mkdir(dest / "orchestration" / "cas", layout.dir_mode)
        recorded, placer, collected, skipped = _copy_cas(layout, dest, dest / "ledger.db")
        _fsync_dir(dest / "orchestration")
        databases = tuple(
            DatabaseCopy(name, (dest / name).stat().st_size, _sha256(dest / name))
            for name in DATABASES
        )
        with _read_only(dest / "ledger.db") as conn:
            schema = _schema_version(conn)
            messages = _count(conn, "messages")
            parcel_count = _count(conn, "parcels")
        manifest = BackupManifest(
            path=dest,
            created_at=started,
            finished_at=started + (time.monotonic() - clock),
            source_root=str(layout.root.absolute()),
            host=socket.gethostname(),
            schema_version=schema,
            seer_ops_version=seer_ops_version(),
            databases=databases,
            blobs=len(recorded),
            blob_bytes=sum(recorded.values()),
            cloned=placer.cloned,
            copied=placer.copied,
            collected_meanwhile=collected,
            skipped=skipped,
            messages=messages,
            parcels=parcel_count,
            signed=bool(key),
        )
        data = manifest.as_dict()
        for name in ("path", "duration", "manifest", "signed"):
            data.pop(name)
        if key:
            data["signature"] = sign(data, key)
        _write_atomically(
            dest / MANIFEST,
            (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(),
            layout.file_mode,
        )
        _fsync_dir(dest)
        if not existed:
            _fsync_dir(dest.parent)
    except BaseException:
        _clear(dest, existed)
        raise
    try:
        record_backup(layout, manifest)
    except OSError as exc:
        raise BackupError(
            f"the backup in {dest} is complete, but it could not be noted in "
            f"{record_path(layout)}: {exc}"
        ) from None
    return manifest


# -- reading a backup ---------------------------------------------------------------------------


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
    if {d.name for d in manifest.databases} != set(DATABASES):
        raise DamagedBackup(f"{path} does not list {' and '.join(DATABASES)}")
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
        if _sha256(path) != db.sha256:
            raise DamagedBackup(
                f"damaged backup: {db.name} does not match the SHA-256 in the manifest"
            )


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    databases: int
    blobs: int
    blob_bytes: int


def verify(src: Path, key: str = "") -> VerifyReport:
    """Reads back a whole backup: the signature (with `key`), the databases against the
    manifest, then every blob its ledger records against its SHA-256. Raises DamagedBackup
    naming the first damage."""
    manifest = read_manifest(src, key)
    check_databases(manifest)
    with _read_only(manifest.path / "ledger.db") as conn:
        recorded = _recorded_blobs(conn)
    if len(recorded) != manifest.blobs or sum(recorded.values()) != manifest.blob_bytes:
        raise DamagedBackup(
            f"damaged backup: its ledger records {len(recorded)} blobs, the manifest "
            f"{manifest.blobs}"
        )
    store = ContentStore(manifest.path / "orchestration" / "cas")
    missing: list[str] = []
    damaged: list[str] = []
    for digest in sorted(recorded):
        path = store.path_for(digest)
        if not path.is_file():
            missing.append(digest)
        elif _sha256(path) != digest:
            damaged.append(digest)
    for found, what in ((damaged, "does not match its SHA-256"), (missing, "is missing")):
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise DamagedBackup(f"damaged backup: blob {found[0]}{more} {what}")
    return VerifyReport(manifest.path, len(manifest.databases), len(recorded), manifest.blob_bytes)


# -- restore ------------------------------------------------------------------------------------


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
        if not _is_empty_dir(root):
            raise BackupRefused(
                f"storage root {root} is not empty: restore only into an empty or new directory"
            )
        return True
    return False


def restore(src: Path, layout: Layout, key: str = "") -> RestoreReport:
    """Puts a backup into an empty (or new) storage root; every blob's hash is checked.

    The schema version is not checked here: the caller says what it is, and Runtime.open
    refuses a mismatch as it does for any root.
    """
    clock = time.monotonic()
    manifest = read_manifest(src, key)
    src = manifest.path
    if _is_within(src, layout.root) or _is_within(layout.root, src):
        raise BackupRefused(f"the backup {src} and the storage root {layout.root} overlap")
    existed = _check_target(layout)
    check_databases(manifest)
    apply_umask(layout)
    source_store = ContentStore(
        src / "orchestration" / "cas", file_mode=layout.file_mode, dir_mode=layout.dir_mode
    )
    try:
        layout.create()
        for db in manifest.databases:
            written = _copy_file(src / db.name, layout.root / db.name, layout.file_mode)
            if written != db.sha256:
                raise DamagedBackup(
                    f"damaged backup: {db.name} changed while it was restored (SHA-256 differs)"
                )
        with _read_only(layout.ledger_db) as conn:
            recorded = _recorded_blobs(conn)
            messages = _count(conn, "messages")
            schema = _schema_version(conn)
        if len(recorded) != manifest.blobs or sum(recorded.values()) != manifest.blob_bytes:
            raise DamagedBackup(
                f"damaged backup: its ledger records {len(recorded)} blobs, the manifest "
                f"{manifest.blobs}"
            )
        placer = _Placer(layout.cas, layout.dir_mode, layout.file_mode)
        pending = set(recorded)
        ignored = 0
        for digest, _size in source_store.iter_blobs():
            if digest not in pending:
                ignored += 1
                continue
            try:
                placer.place(source_store, digest)
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
        placer.sync()
        _fix_modes(layout, recorded)
        _fsync_dir(layout.orchestration)
        _fsync_dir(layout.root)
        # Last: a root with the marker is a complete one.
        layout.write_marker()
        _fsync_dir(layout.root)
    except BaseException:
        _clear(layout.root, existed)
        raise
    # This root's state is exactly that backup: it counts as one taken of it.
    record_backup(layout, manifest)
    return RestoreReport(
        source=src,
        root=layout.root,
        created_at=manifest.created_at,
        schema_version=schema,
        databases=manifest.databases,
        blobs=len(recorded),
        blob_bytes=sum(recorded.values()),
        cloned=placer.cloned,
        copied=placer.copied,
        messages=messages,
        duration=time.monotonic() - clock,
        ignored=ignored,
    )


def _fix_modes(layout: Layout, recorded: dict[str, int]) -> None:
    """Linked blobs keep the backup's inode mode: give them this root's file mode."""
    store = ContentStore(layout.cas)
    for digest in recorded:
        path = store.path_for(digest)
        if os.stat(path).st_mode & 0o7777 != layout.file_mode:
            os.chmod(path, layout.file_mode)


# -- the note of backups taken ------------------------------------------------------------------


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
        _write_atomically(record_path(layout), text.encode(), layout.file_mode)


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
