"""What `huey_consumer` loads: `huey_consumer worker.queue.huey_app.postmaster` (or `.scheduler`),
with the flags of worker.queue.consumer.flags(QUEUE). `seer worker QUEUE` runs the same
consumer in its own process without this module (worker.ops.consumer).

Importing it checks the settings, the storage root and the schema, and exits with one line
if any is wrong, so a misconfigured consumer never starts.
"""

from __future__ import annotations

import sys

from worker.layout import NotInitialised, UnsafeEntry
from worker.ledger.migrations import SchemaMismatch
from worker.ops import consumer
from worker.runtime import Runtime
from worker.settings import SettingsError

try:
    runtime = Runtime.open()
    consumer.prepare(runtime)
except (SettingsError, NotInitialised, UnsafeEntry, SchemaMismatch, NotImplementedError) as exc:
    sys.exit(f"seer worker: {exc}")

postmaster = runtime.queues.postmaster
scheduler = runtime.queues.scheduler
