"""Alerts to the log: one JSON line per notification in logs/alerts.log, always on."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from worker.alerts.channels.base import Notification, SendResult, one_line
from worker.files import UnsafeEntry, append_json_line

_LOG_LEVELS = {
    "critical": logging.ERROR,
    "warning": logging.WARNING,
    "resolved": logging.INFO,
    "test": logging.INFO,
}


class LogChannel:
    """One JSON line per notification in logs/alerts.log, and a record on `seer.alerts`."""

    name = "log"

    def __init__(self, path: Path, file_mode: int = 0o660, *, base: Path | None = None) -> None:
        self.path = Path(path)
        self.file_mode = file_mode
        # No link below `base` (the storage root) is followed on the way to the file.
        self.base = base
        self.log = logging.getLogger("seer.alerts")

    def describe(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"LogChannel({self.path})"

    def send(self, n: Notification) -> SendResult:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(n.at))}
        try:
            append_json_line(
                self.path,
                dict(sorted({**record, **asdict(n)}.items())),
                self.file_mode,
                base=self.base,
            )
        except UnsafeEntry as exc:
            return SendResult(False, error=one_line(f"log: {exc}"))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return SendResult(False, error=one_line(f"log: cannot write {self.path} ({reason})"))
        level = _LOG_LEVELS.get(n.level, logging.WARNING)
        self.log.log(level, "alert %s %s: %s", n.level, n.rule, n.title)
        return SendResult(True)
