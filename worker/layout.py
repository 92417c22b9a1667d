"""Where everything lives under the storage root, and creating it with shared-group permissions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from worker.settings import Settings

MARKER = ".seer-root"


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
            if not directory.is_dir():
                directory.mkdir(parents=True, exist_ok=True)
                created.append(directory)
            os.chmod(directory, self.dir_mode)
        return created

    def create_file(self, path: Path) -> None:
        """Creates an empty file with the file mode, so SQLite's -wal and -shm inherit it."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, self.file_mode)
        try:
            os.fchmod(fd, self.file_mode)
        finally:
            os.close(fd)

    def write_marker(self) -> None:
        if not self.marker.exists():
            fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
            with os.fdopen(fd, "w") as handle:
                handle.write("Seer Ops storage root. Created by `seer init`.\n")
        os.chmod(self.marker, self.file_mode)


def apply_umask(layout: Layout) -> None:
    """Every file the process creates (SQLite's -wal and -shm too) gets the shared-group mode."""
    os.umask(layout.umask)
