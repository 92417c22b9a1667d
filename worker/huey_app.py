"""What `huey_consumer` loads: `huey_consumer worker.huey_app.postmaster` (or `.scheduler`).

Importing it checks the settings, the storage root and the schema, and exits with one line
if any is wrong, so a misconfigured consumer never starts.
"""

from __future__ import annotations

import logging
import sys

from worker.layout import NotInitialised
from worker.migrations import SchemaMismatch
from worker.runtime import Runtime
from worker.settings import SettingsError

try:
    runtime = Runtime.open()
    tasks = runtime.tasks
except (SettingsError, NotInitialised, SchemaMismatch, NotImplementedError) as exc:
    sys.exit(f"seer worker: {exc}")

postmaster = runtime.queues.postmaster
scheduler = runtime.queues.scheduler


class _QuietTaskLines(logging.Filter):
    """Drops Huey's two INFO lines per task: at thousands of parcels a second they are noise
    and cost. Its warnings and errors, and the consumer's start and stop lines, stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name != "huey"


# huey_consumer sets up the "huey" logger after importing this module; a filter survives that.
logging.getLogger("huey").addFilter(_QuietTaskLines())
_handler = logging.StreamHandler()
_handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s:%(name)s:%(message)s"))
_seer_log = logging.getLogger("seer")
_seer_log.addHandler(_handler)
_seer_log.setLevel(logging.INFO)
_seer_log.propagate = False
