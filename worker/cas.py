"""File layer of the content-addressed store: blobs named by their SHA-256, written atomically.

Accounting (bytes, blob counts) lives in the caller's database; puts only report `created`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK_SIZE = 1024 * 1024

log = logging.getLogger("seer.cas")

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_FANOUT_RE = re.compile(r"[0-9a-f]{2}")
_BLOB_NAME_RE = re.compile(r"[0-9a-f]{62}\.blob")
_TEMP_NAME_RE = re.compile(r"(\d+)-[0-9a-f]+\.tmp")

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Filesystems without hard links (vfat, some FUSE mounts) answer link(2) with one of these.
_NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


class CasError(Exception):
    """Base class for content-store errors."""


class InvalidDigest(CasError, ValueError):
    """The string is not a lowercase hex SHA-256 digest."""


class BlobNotFound(CasError):
    """No blob is stored under this digest."""


class CorruptBlob(CasError):
    """The stored bytes no longer hash to their digest."""


class DiskFull(CasError):
    """A write failed with ENOSPC or EDQUOT; nothing partial was left behind."""


@dataclass(frozen=True)
class PutResult:
    digest: str
    size: int
    created: bool


def validate_digest(digest: str) -> str:
    """Return `digest` unchanged if it is 64 lowercase hex characters, else raise InvalidDigest."""
    # fullmatch, not match/`$`: `$` would accept a trailing newline.
    if not isinstance(digest, str) or _DIGEST_RE.fullmatch(digest) is None:
        shown = repr(digest)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise InvalidDigest(f"invalid digest {shown}: a digest is 64 lowercase hex characters")
    return digest


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


@contextlib.contextmanager
def _disk_full_as_error(root: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if _is_disk_full(exc):
            raise DiskFull(
                f"content store at {root} is out of space: {exc.strerror or exc}"
            ) from exc
        raise


@functools.cache
def _libc_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    # os.write may write less than asked (a nearly full disk does exactly that).
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _pid_is_dead(pid: int) -> bool:
    if pid <= 0:
        # os.kill(0, ...) would signal our own process group; such names are not ours.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, just owned by another user
    return False


class ContentStore:
    """Blobs at `<root>/<2 hex>/<62 hex>.blob`; temp files at `<root>/tmp/<pid>-<random>.tmp`."""

    def __init__(self, root: Path, *, file_mode: int = 0o660, dir_mode: int = 0o770) -> None:
        self.root = Path(root)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.tmp_dir = self.root / "tmp"

    # -- paths -----------------------------------------------------------------------------

    def path_for(self, digest: str) -> Path:
        digest = validate_digest(digest)
        return self.root / digest[:2] / f"{digest[2:]}.blob"

    # -- directories and temp files ------------------------------------------------------------

    def _mkdir(self, path: Path) -> bool:
        """Create `path` with dir_mode; True if this call created it."""
        try:
            os.mkdir(path, self.dir_mode)
        except FileExistsError:
            return False
        # mkdir's mode is filtered through the umask; chmod is not.
        os.chmod(path, self.dir_mode)
        return True

    def _ensure_tmp_dir(self) -> None:
        if not self.root.is_dir():
            # Parents above the root are the deployment's business: default modes.
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self._mkdir(self.root)
        self._mkdir(self.tmp_dir)

    def _open_temp(self) -> tuple[int, Path]:
        name = f"{os.getpid()}-{secrets.token_hex(8)}.tmp"
        path = self.tmp_dir / name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, self.file_mode)
        except FileNotFoundError:
            # Only the first put (or one after someone wiped tmp/) pays for the mkdirs.
            self._ensure_tmp_dir()
            fd = os.open(path, flags, self.file_mode)
        try:
            os.fchmod(fd, self.file_mode)
        except BaseException:
            os.close(fd)
            _unlink_quietly(path)
            raise
        return fd, path

    def _link(self, temp: Path, final: Path) -> bool:
        """Move a complete temp file to `final`; True if this call created the blob.

        link+unlink rather than rename: link never replaces an existing file, so when two
        processes race on the same bytes exactly one of them reports created=True.
        """
        try:
            os.link(temp, final)
        except FileExistsError:
            created = False
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            # No hard links on this filesystem: rename cannot tell a racing identical put
            # from ours, so both report created=True (harmless for the bytes, not for counts).
            os.replace(temp, final)
            return True
        else:
            created = True
        # Quietly: the blob is in place either way, even if a cleaner took the temp name.
        _unlink_quietly(temp)
        return created

    def _intact(self, final: Path, data: bytes | None = None, digest: str | None = None) -> bool:
        """Whether the blob at `final` exists and holds these bytes (or hashes to `digest`).

        Dedupe must not trust a name alone: a blob damaged on disk would be handed to every
        new parcel with the same content.
        """
        try:
            source = open(final, "rb", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            return False
        with source:
            if data is not None:
                return os.fstat(source.fileno()).st_size == len(data) and source.read() == data
            hasher = hashlib.sha256()
            while chunk := source.read(CHUNK_SIZE):
                hasher.update(chunk)
            return hasher.hexdigest() == digest

    def _heal(self, temp: Path, final: Path) -> None:
        """Replaces a damaged blob with good bytes, atomically: a reader sees one or the other."""
        os.replace(temp, final)
        _fsync_path(final.parent, directory=True)
        log.warning("CAS blob %s was damaged on disk: replaced with the good bytes", final.name)

    def _place(self, temp: Path, final: Path) -> tuple[bool, bool]:
        """_link, creating the fan-out dir if needed. Returns (created, made_fanout_dir)."""
        try:
            return self._link(temp, final), False
        except FileNotFoundError:
            # Only the first blob with this prefix pays for the mkdir.
            made_dir = self._mkdir(final.parent)
            return self._link(temp, final), made_dir

    # -- writing -----------------------------------------------------------------------------

    def put(self, data: bytes) -> PutResult:
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest)
        damaged = os.path.exists(final)
        if damaged and self._intact(final, data):
            return PutResult(digest, len(data), created=False)
        temp: Path | None = None
        with _disk_full_as_error(self.root):
            try:
                fd, temp = self._open_temp()
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if damaged:
                    self._heal(temp, final)
                    created = False
                else:
                    created = self._place_durably(temp, final)
                temp = None
            except BaseException:
                if temp is not None:
                    _unlink_quietly(temp)
                raise
        return PutResult(digest, len(data), created=created)

    def _place_durably(self, temp: Path, final: Path) -> bool:
        """Moves a synced temp file into place and syncs the directories that changed."""
        created, made_dir = self._place(temp, final)
        # Even when a racing put won, its directory entry may not be durable yet.
        _fsync_path(final.parent, directory=True)
        if made_dir:
            _fsync_path(self.root, directory=True)
        return created

    def put_file(self, src: Path) -> PutResult:
        """Store a file's contents, hashing while copying so the source is read once."""
        hasher = hashlib.sha256()
        size = 0
        temp: Path | None = None
        with _disk_full_as_error(self.root):
            try:
                with open(src, "rb", buffering=0) as source:
                    fd, temp = self._open_temp()
                    try:
                        while chunk := source.read(CHUNK_SIZE):
                            hasher.update(chunk)
                            _write_all(fd, chunk)
                            size += len(chunk)
                        digest = hasher.hexdigest()
                        final = self.path_for(digest)
                        damaged = os.path.exists(final)
                        intact = damaged and self._intact(final, digest=digest)
                        if not intact:
                            os.fsync(fd)
                    finally:
                        os.close(fd)
                if intact:
                    _unlink_quietly(temp)
                    return PutResult(digest, size, created=False)
                if damaged:
                    self._heal(temp, final)
                    created = False
                else:
                    created = self._place_durably(temp, final)
                temp = None
            except BaseException:
                if temp is not None:
                    _unlink_quietly(temp)
                raise
        return PutResult(digest, size, created=created)

    def _syncfs(self) -> bool:
        """One syncfs(2) on the store's filesystem; False if unavailable or it failed."""
        syncfs = _libc_syncfs()
        if syncfs is None:
            return False
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # A syncfs error may come from someone else's file on the same filesystem, so
            # the caller falls back to per-file fsync, which reports only our own errors.
            return syncfs(fd) == 0
        finally:
            os.close(fd)

    def put_many(self, items: Sequence[bytes]) -> list[PutResult]:
        """Store a batch with two filesystem syncs instead of one fsync pair per blob.

        Results are in input order; within the batch only the first copy of a given
        content can report created=True. On error the temp files of this call are
        removed; blobs already moved into place stay, since they are complete and valid.
        """
        digests = [hashlib.sha256(data).hexdigest() for data in items]
        created: dict[str, bool] = {}
        temps: dict[str, Path] = {}
        damaged: set[str] = set()
        with _disk_full_as_error(self.root):
            try:
                for data, digest in zip(items, digests, strict=True):
                    if digest in created:
                        continue
                    created[digest] = False
                    final = self.path_for(digest)
                    if os.path.exists(final):
                        if self._intact(final, data):
                            continue
                        damaged.add(digest)
                    fd, temp = self._open_temp()
                    temps[digest] = temp
                    try:
                        _write_all(fd, data)
                    finally:
                        os.close(fd)
                if temps:
                    if not self._syncfs():
                        for temp in temps.values():
                            _fsync_path(temp)
                    touched: set[Path] = set()
                    made_any_dir = False
                    for digest in list(temps):
                        final = self.path_for(digest)
                        if digest in damaged:
                            self._heal(temps.pop(digest), final)
                            continue
                        was_created, made_dir = self._place(temps[digest], final)
                        del temps[digest]
                        created[digest] = was_created
                        made_any_dir = made_any_dir or made_dir
                        touched.add(final.parent)
                    if touched and not self._syncfs():
                        for directory in sorted(touched):
                            _fsync_path(directory, directory=True)
                        if made_any_dir:
                            _fsync_path(self.root, directory=True)
            except BaseException:
                for temp in temps.values():
                    _unlink_quietly(temp)
                raise
        results = []
        reported: set[str] = set()
        for data, digest in zip(items, digests, strict=True):
            first = digest not in reported
            reported.add(digest)
            results.append(PutResult(digest, len(data), created=first and created[digest]))
        return results

    # -- reading -----------------------------------------------------------------------------

    def _corrupt(self, digest: str) -> CorruptBlob:
        return CorruptBlob(f"blob {digest} is corrupt: its bytes no longer match their SHA-256")

    def read(self, digest: str) -> bytes:
        path = self.path_for(digest)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {digest}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise self._corrupt(digest)
        return data

    def copy_to(self, digest: str, dest: Path) -> None:
        """Copy a blob to `dest` atomically, verifying its hash on the way."""
        path = self.path_for(digest)
        dest = Path(dest)
        # Opened before the `with` so a missing blob fails before any temp file exists.
        try:
            source = open(path, "rb", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {digest}") from None
        temp = dest.parent / f".{dest.name}.{os.getpid()}-{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        with source, _disk_full_as_error(dest.parent):
            fd = os.open(temp, flags, self.file_mode)
            try:
                try:
                    os.fchmod(fd, self.file_mode)
                    hasher = hashlib.sha256()
                    while chunk := source.read(CHUNK_SIZE):
                        hasher.update(chunk)
                        _write_all(fd, chunk)
                    if hasher.hexdigest() != digest:
                        raise self._corrupt(digest)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(temp, dest)
            except BaseException:
                _unlink_quietly(temp)
                raise
            _fsync_path(dest.parent, directory=True)

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.path_for(digest))

    def size_of(self, digest: str) -> int:
        try:
            return os.stat(self.path_for(digest)).st_size
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {digest}") from None

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """Yield (digest, size) for every blob, in digest order; anything else is skipped."""
        try:
            with os.scandir(self.root) as it:
                fanouts = sorted(
                    e.name
                    for e in it
                    if _FANOUT_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
                )
        except FileNotFoundError:
            return
        for prefix in fanouts:
            try:
                with os.scandir(self.root / prefix) as it:
                    entries = sorted(
                        (e for e in it if _BLOB_NAME_RE.fullmatch(e.name)),
                        key=lambda e: e.name,
                    )
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    size = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # removed while we walked
                yield prefix + entry.name[:-5], size

    # -- removal -------------------------------------------------------------------------------

    def remove(self, digest: str) -> bool:
        # No directory fsync: a blob that reappears after a crash is harmless, and the
        # next sweep finds it again.
        try:
            os.unlink(self.path_for(digest))
        except FileNotFoundError:
            return False
        return True

    def clean_temp(self, now: float | None = None, max_age: float = 3600) -> int:
        """Remove temp files of dead processes, or older than `max_age` seconds.

        Liveness is judged by pid in this pid namespace, so a store shared across
        containers must rely on `max_age` alone being safe for the others' writes.
        """
        if now is None:
            now = time.time()
        removed = 0
        try:
            with os.scandir(self.tmp_dir) as it:
                entries = list(it)
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            match = _TEMP_NAME_RE.fullmatch(entry.name)
            dead = match is not None and _pid_is_dead(int(match.group(1)))
            if dead or age > max_age:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed += 1
        return removed
