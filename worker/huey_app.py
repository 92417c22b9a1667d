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

# Huey logs two lines per task at INFO; at thousands of parcels a second that is noise and
# cost. Its consumer's start and stop messages (huey.consumer) stay.
logging.getLogger("huey").setLevel(logging.WARNING)
logging.getLogger("huey.consumer").setLevel(logging.INFO)
