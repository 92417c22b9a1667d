"""What `huey_consumer` loads: `huey_consumer worker.queue.huey_app.postmaster` (or `.scheduler`).

Importing it checks the settings, the storage root and the schema, and exits with one line
if any is wrong, so a misconfigured consumer never starts.
"""

from __future__ import annotations

import logging
import sys

from worker.layout import NotInitialised, UnsafeEntry
from worker.ledger.migrations import SchemaMismatch
from worker.ops import jobs
from worker.queue.queues import quiet_huey_logging
from worker.runtime import Runtime
from worker.settings import SettingsError

try:
    runtime = Runtime.open()
    jobs.register(runtime)
except (SettingsError, NotInitialised, UnsafeEntry, SchemaMismatch, NotImplementedError) as exc:
    sys.exit(f"seer worker: {exc}")

postmaster = runtime.queues.postmaster
scheduler = runtime.queues.scheduler

# Huey's per-task and per-tick INFO lines are noise at thousands of parcels a second and a
# check every few seconds; its warnings and errors stay.
quiet_huey_logging()
_handler = logging.StreamHandler()
_handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s:%(name)s:%(message)s"))
_seer_log = logging.getLogger("seer")
_seer_log.addHandler(_handler)
_seer_log.setLevel(logging.INFO)
_seer_log.propagate = False
