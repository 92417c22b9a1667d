"""Durable file helpers: whole writes, atomic replacement, fsync of a directory, and JSON-line
appends inside the storage root that follow no link someone planted there.

Every module that writes a file Seer must find again after a crash (the CAS, backup, the log
channel, the monitor and compaction's log lines) writes it through these.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

CHUNK_SIZE = 1024 * 1024

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a log belongs fails the open (ENXIO) instead of hanging it.
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class UnsafeEntry(OSError):
    """An entry inside the storage root that Seer will not write through: a symbolic link, or
    something else than a regular file where a log file belongs.

    Anyone in the operators' group can write inside the root; a link followed there would let
    them make the worker's user write anywhere it can. str() is one line naming the entry.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC and EDQUOT: the errors that mean "free some space", not "a bug"."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def link_refused(path: Path | str, cls: type[UnsafeEntry] = UnsafeEntry) -> UnsafeEntry:
    """The error for a symbolic link found at `path`, one line naming it."""
    return cls(
        errno.ELOOP,
        f"{path} is a symbolic link: refused, Seer follows no link inside its storage root "
        "(remove it, and find out who made it)",
        str(path),
    )


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_child_dir(
    parent_fd: int, name: str, shown: Path | str, cls: type[UnsafeEntry] = UnsafeEntry
) -> int:
    """An fd of the directory `name` in `parent_fd`, never through a link (`cls` names it)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        # Linux answers O_DIRECTORY|O_NOFOLLOW on a link with ENOTDIR, others with ELOOP.
        if exc.errno in (errno.ENOTDIR, errno.ELOOP) and _is_link(name, parent_fd):
            raise link_refused(shown, cls) from None
        raise


def open_dir_below(base: Path, relative: Path | str = "") -> int:
    """An fd of `base/relative`, walked from `base` one directory at a time without following
    a link. `base` itself is the deployment's to choose, so it may be reached through one."""
    parts = Path(relative).parts
    if any(part in ("..", "/") for part in parts):
        raise ValueError(f"{relative} is not a path below {base}")
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for depth, part in enumerate(parts, 1):
            child = open_child_dir(fd, part, base.joinpath(*parts[:depth]))
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- whole writes and syncs ---------------------------------------------------------------------


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Writes all of `data`: os.write may write less than asked (a nearly full disk does)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path | str) -> None:
    """Makes the entries of a directory (files created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path, mode: int) -> None:
    """Creates `path` (fine if it exists) and gives it exactly `mode`."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    # mkdir's mode goes through the umask; chmod does not.
    os.chmod(path, mode)


def sha256_file(path: Path | str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
    return hasher.hexdigest()


@contextlib.contextmanager
def atomic_file(dest: Path, mode: int) -> Iterator[int]:
    """An fd to write `dest` through: a new temp file beside it with exactly `mode`, synced,
    then renamed over `dest`. Nothing partial is ever visible under `dest`, a link or FIFO
    there is replaced rather than written through, and the temp goes away on any error.

    The directory is not synced: callers that write many files sync it once (fsync_dir).
    """
    dest = Path(dest)
    temp = dest.parent / f".{dest.name}.{os.getpid()}-{secrets.token_hex(8)}.tmp"
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


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replaces `path` with `data`, durably: atomic_file, then fsync of its directory."""
    with atomic_file(path, mode) as fd:
        write_all(fd, data)
    fsync_dir(Path(path).parent)


def copy_file(src: Path, dest: Path, mode: int) -> str:
    """Copies `src` over `dest` as atomic_file does; returns the SHA-256 of what it wrote."""
    hasher = hashlib.sha256()
    with atomic_file(dest, mode) as fd, open(src, "rb", buffering=0) as source:
        while chunk := source.read(CHUNK_SIZE):
            hasher.update(chunk)
            write_all(fd, chunk)
    return hasher.hexdigest()


# -- JSON lines ---------------------------------------------------------------------------------


def _open_for_append(dir_fd: int, name: str, path: Path, file_mode: int) -> int:
    for _ in range(3):  # the file may be removed between the two opens (a log rotation)
        try:
            fd = os.open(name, _APPEND_FLAGS | os.O_CREAT | os.O_EXCL, file_mode, dir_fd=dir_fd)
        except FileExistsError:
            pass
        else:
            # Only the creator sets the mode: another operator's file cannot be chmod-ed.
            try:
                os.fchmod(fd, file_mode)
            except BaseException:
                os.close(fd)
                raise
            return fd
        try:
            fd = os.open(name, _APPEND_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP or _is_link(name, dir_fd):
                raise link_refused(path) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeEntry(
                errno.EINVAL, f"{path} is not a regular file: refused, nothing written", str(path)
            )
        return fd
    raise FileNotFoundError(errno.ENOENT, f"{path} keeps vanishing", str(path))


def append_json_line(
    path: Path, record: Mapping[str, Any], file_mode: int, *, base: Path | None = None
) -> None:
    """Appends `record` as one JSON line to `path`, created with `file_mode` if it is new.

    No link below `base` (the storage root; by default the file's own directory) is followed:
    a link there raises UnsafeEntry naming it and writes nothing. The line is one write with
    O_APPEND, so lines of two processes never interleave.
    """
    path = Path(path)
    base = path.parent if base is None else Path(base)
    data = (json.dumps(record) + "\n").encode("utf-8")
    dir_fd = open_dir_below(base, path.parent.relative_to(base))
    try:
        fd = _open_for_append(dir_fd, path.name, path, file_mode)
    finally:
        os.close(dir_fd)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
