"""The local-disk blob store: blobs named by their SHA-256 in fan-out directories, written
atomically, through directory fds that follow no link.

Accounting (bytes, blob counts) lives in the caller's database; puts only report `created`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import logging
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from worker.cas.base import (
    PREFIXES,
    BlobReader,
    BlobStat,
    BlobStore,
    ListedBlob,
    Placement,
    PutResult,
)
from worker.cas.errors import (  # noqa: F401 - the errors are imported from here too
    BlobNotFound,
    CasError,
    CorruptBlob,
    DiskFull,
    InvalidDigest,
    UnsafeStoreEntry,
    corrupt,
    disk_full_as_error,
    validate_digest,
)
from worker.files import CHUNK_SIZE, open_child_dir, write_all

log = logging.getLogger("seer.cas")

_FANOUT_RE = re.compile(r"[0-9a-f]{2}")
_BLOB_NAME_RE = re.compile(r"[0-9a-f]{62}\.blob")
_TEMP_NAME_RE = re.compile(r"(\d+)-[0-9a-f]+\.tmp")

# O_NONBLOCK: a FIFO where a blob belongs is found not to be a file instead of hanging a put.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

# Filesystems without hard links (vfat, some FUSE mounts) answer link(2) with one of these.
_NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})

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


class _Temp(NamedTuple):
    """A temp file: its name in the fd of tmp/ it was made in."""

    dir_fd: int
    name: str


def _unlink_temp(temp: _Temp) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp.name, dir_fd=temp.dir_fd)


def _fsync_temp(temp: _Temp) -> None:
    fd = os.open(temp.name, _READ_FLAGS, dir_fd=temp.dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


class ContentStore(BlobStore):
    """Blobs at `<root>/<2 hex>/<62 hex>.blob`; temp files at `<root>/tmp/<pid>-<random>.tmp`.

    Writes go through directory fds (the root, tmp/, each fan-out dir) opened without
    following a link and kept for the store's life: a link planted at a fan-out dir or at
    tmp/ is refused (UnsafeStoreEntry), never written through. `base`, when given, is the
    storage root the store lies in: the walk from it to `root` follows no link either.
    """

    forkable = True

    def __init__(
        self,
        root: Path,
        *,
        file_mode: int = 0o660,
        dir_mode: int = 0o770,
        base: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.tmp_dir = self.root / "tmp"
        self.base = None if base is None else Path(base)
        self._fds: dict[str, int] = {}  # "" is the root; "tmp" and the prefixes are in it
        # Fds of directories found removed: never closed while the store lives, since
        # another thread may still be using one, and a reused number would point elsewhere.
        self._removed_fds: list[int] = []
        self._lock = threading.Lock()
        # Fan-out dirs `replicate` put files in, fsynced by `sync`.
        self._unsynced: set[str] = set()
        # Cleared at the first FICLONE into this store refused by its filesystem: the next
        # blobs are copied without asking again.
        self._clones = True

    def __reduce__(self) -> tuple[Any, ...]:
        # A store travels to a forked walker as its configuration; the child opens its own fds.
        rebuild = functools.partial(
            ContentStore, file_mode=self.file_mode, dir_mode=self.dir_mode, base=self.base
        )
        return (rebuild, (self.root,))

    def close(self) -> None:
        """Closes the directory fds; a later write opens them again."""
        with self._lock:
            fds = [*self._fds.values(), *self._removed_fds]
            self._fds.clear()
            self._removed_fds.clear()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- paths -----------------------------------------------------------------------------

    def path_for(self, digest: str) -> Path:
        digest = validate_digest(digest)
        return self.root / digest[:2] / f"{digest[2:]}.blob"

    def location(self) -> str:
        # Resolved: two hosts mounting one share at one path agree, a symlinked root too.
        return os.path.realpath(self.root)

    # -- directories and temp files ------------------------------------------------------------

    def _mkdir_at(self, parent_fd: int, name: str) -> bool:
        """Create `name` in `parent_fd` with dir_mode; True if this call created it."""
        try:
            os.mkdir(name, self.dir_mode, dir_fd=parent_fd)
        except FileExistsError:
            return False
        return True

    def _open_dir(
        self, parent_fd: int, name: str, shown: Path, create: bool
    ) -> tuple[int | None, bool]:
        """(fd of `name` in `parent_fd`, never through a link; whether this call made it).
        (None, False) if it is missing and not `create`."""
        try:
            return open_child_dir(parent_fd, name, shown, UnsafeStoreEntry), False
        except FileNotFoundError:
            if not create:
                return None, False
        made = self._mkdir_at(parent_fd, name)
        fd = open_child_dir(parent_fd, name, shown, UnsafeStoreEntry)
        if made:
            # mkdir's mode is filtered through the umask; fchmod is not.
            os.fchmod(fd, self.dir_mode)
        return fd, made

    def _open_root(self) -> int:
        start = self.root.parent if self.base is None else self.base
        parts = self.root.relative_to(start).parts
        if not start.is_dir():
            # Directories above the store are the deployment's business: default modes.
            start.mkdir(parents=True, exist_ok=True)
        fd = os.open(start, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for depth, part in enumerate(parts, 1):
                child, _ = self._open_dir(fd, part, start.joinpath(*parts[:depth]), True)
                os.close(fd)
                assert child is not None
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _root_fd(self) -> int:
        fd = self._fds.get("")
        if fd is None:
            with self._lock:
                fd = self._root_fd_locked()
        return fd

    def _root_fd_locked(self) -> int:
        fd = self._fds.get("")
        if fd is None:
            fd = self._fds[""] = self._open_root()
        return fd

    def _subdir(self, name: str, *, create: bool) -> tuple[int | None, bool]:
        """(fd of tmp/ or a fan-out dir, whether this call made it); (None, False) if it is
        missing and not to be made."""
        fd = self._fds.get(name)
        if fd is not None:
            return fd, False
        with self._lock:
            fd = self._fds.get(name)
            if fd is not None:
                return fd, False
            root_fd = self._root_fd_locked()
            shown = self.root / name
            try:
                fd, made = self._open_dir(root_fd, name, shown, create)
            except FileNotFoundError:
                # The root itself was removed (mkdir in it fails): opened afresh, once.
                if not self._forget_locked_if_removed("", root_fd):
                    raise
                fd, made = self._open_dir(self._root_fd_locked(), name, shown, create)
            if fd is not None:
                self._fds[name] = fd
            return fd, made

    def _forget_locked_if_removed(self, name: str, fd: int) -> bool:
        # A removed directory has no link count left; one merely renamed still works.
        if self._fds.get(name) != fd or os.fstat(fd).st_nlink != 0:
            return False
        self._removed_fds.append(self._fds.pop(name))
        return True

    def _forget_if_removed(self, name: str, fd: int) -> bool:
        """Drops the cached fd of `name` if its directory was removed; True if it was."""
        with self._lock:
            return self._forget_locked_if_removed(name, fd)

    def _open_temp(self) -> tuple[int, _Temp]:
        name = f"{os.getpid()}-{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        while True:
            # Only the first put (or one after someone wiped tmp/) pays for the mkdirs.
            tmp_fd, _ = self._subdir("tmp", create=True)
            assert tmp_fd is not None
            try:
                fd = os.open(name, flags, self.file_mode, dir_fd=tmp_fd)
                break
            except FileNotFoundError:
                # Someone wiped tmp/: its fd is dropped and the directory made again.
                if not self._forget_if_removed("tmp", tmp_fd):
                    raise
        temp = _Temp(tmp_fd, name)
        try:
            os.fchmod(fd, self.file_mode)
        except BaseException:
            os.close(fd)
            _unlink_temp(temp)
            raise
        return fd, temp

    def _link(self, temp: _Temp, prefix_fd: int, name: str) -> bool:
        """Move a complete temp file to `name` in `prefix_fd`; True if this call created it.

        link+unlink rather than rename: link never replaces an existing file, so when two
        processes race on the same bytes exactly one of them reports created=True.
        """
        try:
            os.link(
                temp.name,
                name,
                src_dir_fd=temp.dir_fd,
                dst_dir_fd=prefix_fd,
                follow_symlinks=False,
            )
        except FileExistsError:
            created = False
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            # No hard links on this filesystem: rename cannot tell a racing identical put
            # from ours, so both report created=True (harmless for the bytes, not for counts).
            os.replace(temp.name, name, src_dir_fd=temp.dir_fd, dst_dir_fd=prefix_fd)
            return True
        else:
            created = True
        # Quietly: the blob is in place either way, even if a cleaner took the temp name.
        _unlink_temp(temp)
        return created

    def _blob_state(
        self, digest: str, data: bytes | None = None, *, hashed: bool = False
    ) -> bool | None:
        """None if no blob is stored under `digest`; True if it holds `data` (or, `hashed`,
        hashes to `digest`); False if it is damaged: other bytes, or a link or anything
        else than a regular file where the blob belongs (never followed, replaced).

        Dedupe must not trust a name alone: a blob damaged on disk would be handed to every
        new parcel with the same content.
        """
        prefix_fd, _ = self._subdir(digest[:2], create=False)
        if prefix_fd is None:
            return None
        try:
            fd = os.open(f"{digest[2:]}.blob", _READ_FLAGS, dir_fd=prefix_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return False
            raise
        with open(fd, "rb", buffering=0) as source:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return False
            if not hashed:
                return info.st_size == len(data or b"") and source.read() == (data or b"")
            hasher = hashlib.sha256()
            while chunk := source.read(CHUNK_SIZE):
                hasher.update(chunk)
            return hasher.hexdigest() == digest

    def _settle(self, temp: _Temp, digest: str, state: bool | None) -> bool:
        """The bytes just written, in `temp`, take their place: over a damaged blob
        (`state` False: healed, not created), or as a new one. Returns whether one was created."""
        if state is False:
            self._heal(temp, digest)
            return False
        return self._place_durably(temp, digest)

    def _heal(self, temp: _Temp, digest: str) -> None:
        """Replaces a damaged blob with good bytes, atomically: a reader sees one or the other.
        A link in its place is replaced itself, its target left alone."""
        prefix_fd, _ = self._subdir(digest[:2], create=True)
        assert prefix_fd is not None
        os.replace(temp.name, f"{digest[2:]}.blob", src_dir_fd=temp.dir_fd, dst_dir_fd=prefix_fd)
        os.fsync(prefix_fd)
        log.warning("CAS blob %s was damaged on disk: replaced with the good bytes", digest)

    def _place(self, temp: _Temp, digest: str) -> tuple[bool, bool, int]:
        """_link into the fan-out dir, made if needed: (created, made_fanout_dir, its fd)."""
        prefix, name = digest[:2], f"{digest[2:]}.blob"
        while True:
            # Only the first blob with this prefix pays for the mkdir.
            prefix_fd, made_dir = self._subdir(prefix, create=True)
            assert prefix_fd is not None
            try:
                return self._link(temp, prefix_fd, name), made_dir, prefix_fd
            except FileNotFoundError:
                if not self._forget_if_removed(prefix, prefix_fd):
                    raise

    # -- writing -----------------------------------------------------------------------------

    def put(self, data: bytes) -> PutResult:
        digest = hashlib.sha256(data).hexdigest()
        state = self._blob_state(digest, data)
        if state:
            return PutResult(digest, len(data), created=False)
        temp: _Temp | None = None
        with disk_full_as_error(self.root):
            try:
                fd, temp = self._open_temp()
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                created = self._settle(temp, digest, state)
                temp = None
            except BaseException:
                if temp is not None:
                    _unlink_temp(temp)
                raise
        return PutResult(digest, len(data), created=created)

    def _place_durably(self, temp: _Temp, digest: str) -> bool:
        """Moves a synced temp file into place and syncs the directories that changed."""
        created, made_dir, prefix_fd = self._place(temp, digest)
        # Even when a racing put won, its directory entry may not be durable yet.
        os.fsync(prefix_fd)
        if made_dir:
            os.fsync(self._root_fd())
        return created

    def put_file(self, src: Path) -> PutResult:
        """Store a file's contents, hashing while copying so the source is read once."""
        hasher = hashlib.sha256()
        size = 0
        temp: _Temp | None = None
        with disk_full_as_error(self.root):
            try:
                with open(src, "rb", buffering=0) as source:
                    fd, temp = self._open_temp()
                    try:
                        while chunk := source.read(CHUNK_SIZE):
                            hasher.update(chunk)
                            write_all(fd, chunk)
                            size += len(chunk)
                        digest = hasher.hexdigest()
                        state = self._blob_state(digest, hashed=True)
                        if not state:
                            os.fsync(fd)
                    finally:
                        os.close(fd)
                if state:
                    _unlink_temp(temp)
                    return PutResult(digest, size, created=False)
                created = self._settle(temp, digest, state)
                temp = None
            except BaseException:
                if temp is not None:
                    _unlink_temp(temp)
                raise
        return PutResult(digest, size, created=created)

    def _syncfs(self) -> bool:
        """One syncfs(2) on the store's filesystem; False if unavailable or it failed."""
        syncfs = _libc_syncfs()
        if syncfs is None:
            return False
        # A syncfs error may come from someone else's file on the same filesystem, so
        # the caller falls back to per-file fsync, which reports only our own errors.
        return syncfs(self._root_fd()) == 0

    def put_many(self, items: Sequence[bytes]) -> list[PutResult]:
        """Store a batch with two filesystem syncs instead of one fsync pair per blob.

        Results are in input order; within the batch only the first copy of a given
        content can report created=True. On error the temp files of this call are
        removed; blobs already moved into place stay, since they are complete and valid.
        """
        digests = [hashlib.sha256(data).hexdigest() for data in items]
        created: dict[str, bool] = {}
        temps: dict[str, _Temp] = {}
        damaged: set[str] = set()
        with disk_full_as_error(self.root):
            try:
                for data, digest in zip(items, digests, strict=True):
                    if digest in created:
                        continue
                    created[digest] = False
                    state = self._blob_state(digest, data)
                    if state:
                        continue
                    if state is False:
                        damaged.add(digest)
                    fd, temp = self._open_temp()
                    temps[digest] = temp
                    try:
                        write_all(fd, data)
                    finally:
                        os.close(fd)
                if temps:
                    if not self._syncfs():
                        for temp in temps.values():
                            _fsync_temp(temp)
                    touched: dict[str, int] = {}
                    made_any_dir = False
                    for digest in list(temps):
                        if digest in damaged:
                            self._heal(temps.pop(digest), digest)
                            continue
                        was_created, made_dir, prefix_fd = self._place(temps[digest], digest)
                        del temps[digest]
                        created[digest] = was_created
                        made_any_dir = made_any_dir or made_dir
                        touched[digest[:2]] = prefix_fd
                    if touched and not self._syncfs():
                        for prefix_fd in touched.values():
                            os.fsync(prefix_fd)
                        if made_any_dir:
                            os.fsync(self._root_fd())
            except BaseException:
                for temp in temps.values():
                    _unlink_temp(temp)
                raise
        results = []
        reported: set[str] = set()
        for data, digest in zip(items, digests, strict=True):
            first = digest not in reported
            reported.add(digest)
            results.append(PutResult(digest, len(data), created=first and created[digest]))
        return results

    # -- reading -----------------------------------------------------------------------------

    def open(self, digest: str) -> BlobReader:
        try:
            return open(self.path_for(digest), "rb", buffering=0)
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {digest}") from None

    def exists(self, digest: str) -> bool:
        # Through the fan-out dir's fd (a path walk costs more than the stat, and the dedupe
        # of every small blob asks), never following a link: one is no blob.
        digest = validate_digest(digest)
        prefix, name = digest[:2], f"{digest[2:]}.blob"
        prefix_fd = self._fds.get(prefix)
        if prefix_fd is None:
            # No fd yet (a fan-out dir no put of this process has made, or none at all:
            # every small blob asks while the files hold few): one stat from the root says
            # "none"; only a hit pays for opening the dir without following a link.
            root_fd = self._fds.get("")
            try:
                if root_fd is None:  # a store no write opened: asking creates nothing
                    os.lstat(self.root / prefix / name)
                else:
                    os.stat(f"{prefix}/{name}", dir_fd=root_fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return False
            prefix_fd, _ = self._subdir(prefix, create=False)
            if prefix_fd is None:
                return False
        try:
            st = os.stat(name, dir_fd=prefix_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode)

    def stat(self, digest: str) -> BlobStat | None:
        """A regular file's size and mtime; None if absent or anything else (a link, a FIFO)."""
        try:
            st = os.lstat(self.path_for(digest))
        except FileNotFoundError:
            return None
        return BlobStat(st.st_size, st.st_mtime) if stat.S_ISREG(st.st_mode) else None

    # -- listing -----------------------------------------------------------------------------

    def iter_blobs(self, prefix: str | None = None) -> Iterator[ListedBlob]:
        """Yield the digest and size of every blob, in digest order; anything else is skipped."""
        if prefix is not None:
            fanouts = [prefix] if _FANOUT_RE.fullmatch(prefix) else []
        else:
            try:
                with os.scandir(self.root) as it:
                    fanouts = sorted(
                        e.name
                        for e in it
                        if _FANOUT_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
                    )
            except FileNotFoundError:
                return
        for fanout in fanouts:
            try:
                with os.scandir(self.root / fanout) as it:
                    entries = sorted(
                        (e for e in it if _BLOB_NAME_RE.fullmatch(e.name)),
                        key=lambda e: e.name,
                    )
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    size = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # removed while we walked
                yield ListedBlob(fanout + entry.name[:-5], size)

    def sizes(self, prefixes: Iterable[str] = PREFIXES) -> dict[str, int]:
        """digest -> size of the regular files named like blobs in these fan-out directories.

        The walk `seer cas reconcile` is timed against du: names are checked by length and
        suffix only, and scandir runs over each directory's fd, so is_file comes from the
        listing and each stat is one fstatat relative to that fd. Every prefix is tried rather
        than listing the root: a missing fan-out directory costs one failed open.
        """
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        found: dict[str, int] = {}
        try:
            for prefix in prefixes:
                try:
                    fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root_fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                try:
                    with os.scandir(fd) as entries:
                        for entry in entries:
                            name = entry.name
                            if len(name) != 67 or not name.endswith(".blob"):
                                continue
                            try:
                                if entry.is_file(follow_symlinks=False):
                                    size = entry.stat(follow_symlinks=False).st_size
                                    found[prefix + name[:62]] = size
                            except FileNotFoundError:
                                continue  # removed while we walked
                finally:
                    os.close(fd)
        finally:
            os.close(root_fd)
        return found

    # -- between stores ----------------------------------------------------------------------

    def replicate(self, digest: str, target: BlobStore) -> Placement:
        """Into another local store: a reflink where the filesystem has them, else a copy;
        hash-checked either way, never a hard link. Other targets get the generic put."""
        if target.exists(digest):
            return "present"
        try:
            src = os.open(self.path_for(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {digest}") from None
        try:
            receiver = target.receiver_for(os.fstat(src).st_size)
            if not isinstance(receiver, ContentStore):
                receiver.put_deferred(self.read(digest))
                return "copied"
            with disk_full_as_error(receiver.root):
                return receiver._receive(src, digest)
        finally:
            os.close(src)

    def put_deferred(self, data: bytes) -> PutResult:
        """Writes the blob to a temp name in its fan-out dir, synced, renamed into place; the
        directory is synced by `sync`. A blob already stored is left as it is."""
        digest = hashlib.sha256(data).hexdigest()
        if self._blob_state(digest, data):
            return PutResult(digest, len(data), created=False)
        with disk_full_as_error(self.root):
            self._write_beside(digest, lambda fd: write_all(fd, data))
        return PutResult(digest, len(data), created=True)

    def _receive(self, src: int, digest: str) -> Placement:
        """Writes the blob open at `src` into this store (a reflink, else a copy), hashed."""
        placement: Placement = "cloned" if self._clones else "copied"

        def write(fd: int) -> None:
            nonlocal placement
            hasher = hashlib.sha256()
            if placement == "cloned":
                # Hashed through the fd it is cloned from: blobs are never rewritten in
                # place (a heal replaces the file), so the clone holds the bytes hashed.
                while chunk := os.read(src, CHUNK_SIZE):
                    hasher.update(chunk)
                if hasher.hexdigest() != digest:
                    raise corrupt(digest)
                try:
                    fcntl.ioctl(fd, _FICLONE, src)
                    return
                except OSError as exc:
                    if exc.errno not in _NO_CLONE_ERRNOS:
                        raise
                    self._clones = False
                    placement = "copied"
                    hasher = hashlib.sha256()
                    os.lseek(src, 0, os.SEEK_SET)
            while chunk := os.read(src, CHUNK_SIZE):
                hasher.update(chunk)
                write_all(fd, chunk)
            if hasher.hexdigest() != digest:
                raise corrupt(digest)

        self._write_beside(digest, write)
        return placement

    def _write_beside(self, digest: str, write: Callable[[int], None]) -> None:
        """`write(fd)` into a temp name in the blob's fan-out dir, synced, renamed into place;
        the directory is synced by `sync`."""
        prefix_fd, _ = self._subdir(digest[:2], create=True)
        assert prefix_fd is not None
        name = f"{digest[2:]}.blob"
        temp = f".{name}.{os.getpid()}-{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(temp, flags, self.file_mode, dir_fd=prefix_fd)
        try:
            try:
                os.fchmod(fd, self.file_mode)
                write(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, name, src_dir_fd=prefix_fd, dst_dir_fd=prefix_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=prefix_fd)
            raise
        with self._lock:
            self._unsynced.add(digest[:2])

    def sync(self) -> None:
        with self._lock:
            prefixes = sorted(self._unsynced)
            self._unsynced.clear()
            fds = [self._fds[p] for p in prefixes if p in self._fds]
            root_fd = self._fds.get("")
        for fd in fds:
            os.fsync(fd)
        if root_fd is not None:
            os.fsync(root_fd)

    # -- removal -------------------------------------------------------------------------------

    def remove(self, digest: str) -> bool:
        # No directory fsync: a blob that reappears after a crash is harmless, and the
        # next sweep finds it again.
        digest = validate_digest(digest)
        prefix_fd, _ = self._subdir(digest[:2], create=False)
        if prefix_fd is None:
            return False
        try:
            os.unlink(f"{digest[2:]}.blob", dir_fd=prefix_fd)
        except FileNotFoundError:
            return False
        return True

    def move_out(self, digest: str, dest: Path) -> bool:
        """A rename: the quarantine is under the same storage root, so on the same disk."""
        try:
            os.rename(self.path_for(digest), dest)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return super().move_out(digest, dest)
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
            tmp_fd, _ = self._subdir("tmp", create=False)
        except UnsafeStoreEntry as exc:
            # Housekeeping: said, and the reaper goes on; a put there is refused the same way.
            log.error("CAS temp files not cleaned: %s", exc)
            return 0
        except FileNotFoundError:
            return 0
        if tmp_fd is None:
            return 0
        # Listed and removed through the directory's fd: a link planted at tmp/ after it was
        # opened cannot turn this into removing files elsewhere.
        with os.scandir(tmp_fd) as it:
            entries = list(it)
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
                    os.unlink(entry.name, dir_fd=tmp_fd)
                except FileNotFoundError:
                    continue
                removed += 1
        return removed
