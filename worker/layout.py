"""Where everything lives under the storage root, creating it with shared-group permissions,
and writing inside it without following a link someone planted there."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.settings import Settings

MARKER = ".seer-root"

# The directories whose entries the start-up check looks at, by parent (relative to the root).
_WALKED = {"": {"orchestration", "logs", "run"}, "orchestration": {"cas", "memory"}}

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a log belongs fails the open (ENXIO) instead of hanging it.
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class NotInitialised(RuntimeError):
    """The storage root has not been created by `seer init`."""


class UnsafeEntry(OSError):
    """An entry inside the storage root that Seer will not write through: a symbolic link, or
    something else than a regular file where a log file belongs.

    Anyone in the operators' group can write inside the root; a link followed there would let
    them make the worker's user write anywhere it can. str() is one line naming the entry.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


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
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Layout:
    root: Path
    dir_mode: int = 0o770
    file_mode: int = 0o660

    @classmethod
    def from_settings(cls, settings: Settings) -> Layout:
        return cls(settings.storage_root, settings.dir_mode, settings.file_mode)

    @property
    def orchestration(self) -> Path:
        return self.root / "orchestration"

    @property
    def cas(self) -> Path:
        return self.orchestration / "cas"

    @property
    def memory(self) -> Path:
        return self.orchestration / "memory"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def ledger_db(self) -> Path:
        return self.root / "ledger.db"

    @property
    def queue_db(self) -> Path:
        return self.root / "queue.db"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def umask(self) -> int:
        # Files are created 0666 & ~umask and directories 0777 & ~umask: one umask serves both
        # modes when they differ only by the execute bits, which is the shared-group case.
        return 0o777 & ~(self.dir_mode | self.file_mode)

    def append_log(self, name: str, record: Mapping[str, Any]) -> None:
        """One JSON line in logs/`name`, following no link inside the root."""
        append_json_line(self.logs / name, record, self.file_mode, base=self.root)

    def find_link(self) -> Path | None:
        """The first symbolic link among the entries of the root's directories, or None.

        The directories only (the root, orchestration/, cas/ and so its fan-out dirs and tmp/,
        memory/, logs/, run/), not the blobs inside the fan-out dirs: one scandir each, and the
        kind of an entry comes with it, so even 256 fan-out dirs cost no stat call.
        """
        queue: list[tuple[str, int]] = [
            ("", os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        ]
        try:
            while queue:
                relative, fd = queue.pop()
                descend = _WALKED.get(relative, ())
                try:
                    with os.scandir(fd) as entries:
                        for entry in entries:
                            if entry.is_symlink():
                                return self.root / relative / entry.name
                            if entry.name in descend and entry.is_dir():
                                shown = self.root / relative / entry.name
                                try:
                                    child = open_child_dir(fd, entry.name, shown)
                                except FileNotFoundError:
                                    continue
                                except UnsafeEntry:  # made a link since it was listed
                                    return shown
                                queue.append((f"{relative}/{entry.name}".lstrip("/"), child))
                finally:
                    os.close(fd)
        finally:
            for _, fd in queue:
                os.close(fd)
        return None

    def check_no_links(self) -> None:
        """Refuses (UnsafeEntry, one line naming it) a root whose directories hold a link."""
        found = self.find_link()
        if found is not None:
            raise link_refused(found)

    def is_initialised(self) -> bool:
        return self.marker.is_file()

    def require_initialised(self) -> None:
        if not self.is_initialised():
            raise NotInitialised(
                f"storage root {self.root} is not initialised: run `seer init` there first, "
                "or point SEER_STORAGE_PATH at the right one"
            )

    def create(self) -> list[Path]:
        """Creates the directories (idempotent); returns those it created."""
        created = []
        for directory in (
            self.root,
            self.orchestration,
            self.cas,
            self.memory,
            self.logs,
            self.run,
        ):
            # chmod follows links: a planted one would hand its target the shared mode.
            if directory != self.root and directory.is_symlink():
                raise link_refused(directory)
            if not directory.is_dir():
                directory.mkdir(parents=True, exist_ok=True)
                created.append(directory)
            os.chmod(directory, self.dir_mode)
        return created

    def create_file(self, path: Path) -> None:
        """Creates an empty file with the file mode, so SQLite's -wal and -shm inherit it."""
        try:
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, self.file_mode
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise link_refused(path) from None
            raise
        try:
            os.fchmod(fd, self.file_mode)
        finally:
            os.close(fd)

    def write_marker(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.marker, flags | os.O_EXCL, self.file_mode)
        except FileExistsError:
            try:
                fd = os.open(self.marker, flags, self.file_mode)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise link_refused(self.marker) from None
                raise
        else:
            os.write(fd, b"Seer Ops storage root. Created by `seer init`.\n")
        try:
            os.fchmod(fd, self.file_mode)
        finally:
            os.close(fd)


def apply_umask(layout: Layout) -> None:
    """Every file the process creates (SQLite's -wal and -shm too) gets the shared-group mode."""
    os.umask(layout.umask)
