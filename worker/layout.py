"""Where everything lives under the storage root, creating it with shared-group permissions,
and writing inside it without following a link someone planted there."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# UnsafeEntry lives with the file helpers; it is imported from here too.
from worker.files import UnsafeEntry, append_json_line, link_refused, open_child_dir
from worker.settings import Settings

MARKER = ".seer-root"

# The directories whose entries the start-up check looks at, by parent (relative to the root).
_WALKED = {"": {"orchestration", "logs", "run"}, "orchestration": {"cas", "memory"}}


class NotInitialised(RuntimeError):
    """The storage root has not been created by `seer init`."""


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
