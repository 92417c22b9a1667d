"""Huey's consumer run in this process, with each queue's options: what `huey_consumer` does
once it has loaded the Huey (huey/bin/huey_consumer.py, consumer_main), without a second
interpreter. `seer worker QUEUE` runs it (worker.ops.consumer).

`huey_consumer worker.queue.huey_app.QUEUE` with the flags of `flags(QUEUE)` starts the same
consumer through Huey's own script.
"""

from __future__ import annotations

import logging
from typing import Any

from worker.lean_imports import hidden

with hidden("redis", "psycopg"):  # importing huey.consumer_options imports huey first
    from huey import Huey
    from huey.consumer_options import ConsumerConfig

# huey.consumer_options.ConsumerConfig's keys, as huey_consumer's flags set them.
COMMON: dict[str, Any] = {
    "worker_type": "thread",
    # Poll an idle queue at least every second: Huey's default waits up to 10 s for new work.
    "initial_delay": 0.1,
    "max_delay": 1.0,
}
OPTIONS: dict[str, dict[str, Any]] = {
    # Only the scheduler consumer enqueues periodic jobs (else they would run twice).
    "postmaster": {**COMMON, "workers": 1, "periodic": False},
    # Two threads: a slow alert channel never holds up the samples and the reaper.
    "scheduler": {**COMMON, "workers": 2, "periodic": True},
}


def flags(queue: str) -> list[str]:
    """huey_consumer's flags for OPTIONS[queue]: `huey_consumer worker.queue.huey_app.QUEUE
    FLAGS` runs the consumer `seer worker QUEUE` runs."""
    options = OPTIONS[queue]
    found = ["--workers", str(options["workers"]), "--worker-type", options["worker_type"]]
    found += ["--delay", str(options["initial_delay"])]
    found += ["--max-delay", str(options["max_delay"])]
    return found + ([] if options["periodic"] else ["--no-periodic"])


def run(huey: Huey, queue: str) -> None:
    """Runs `huey`'s consumer with OPTIONS[queue] until it is stopped: SIGINT stops it
    gracefully (the running task finishes), SIGTERM at once (the process must then end), SIGHUP
    restarts it (Huey execs the same command line). The "huey" logger is set up as
    huey_consumer sets it (its format, INFO, to stderr)."""
    config = ConsumerConfig(**OPTIONS[queue])
    config.validate()
    config.setup_logger(logging.getLogger("huey"))
    huey.create_consumer(**config.values).run()
