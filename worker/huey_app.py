"""The module path `huey_consumer` loaded before the queue got its own package.

A supervisor file installed by an earlier release names `worker.huey_app.postmaster`; it keeps
working for one release. `seer supervisor render` writes `worker.queue.huey_app` now.
"""

from worker.queue.huey_app import postmaster, scheduler

__all__ = ["postmaster", "scheduler"]
