"""What holds for the whole cluster, whichever host a consumer runs on: the pause."""

from __future__ import annotations

import os
import threading

import pytest

from tests.conftest import Consumer
from tests.helpers import parcel, wait_for
from worker.fleet import consumers as registry
from worker.fleet import control
from worker.ops import operations
from worker.parcels import intake as parcels


@pytest.mark.slow
def test_a_pause_takes_effect_on_every_host_within_a_second(runtime, tmp_path):
    hosts = [
        Consumer(dict(os.environ, SEER_HOST_ID=f"host-{name}"), tmp_path).start()
        for name in ("a", "b")
    ]
    stop = threading.Event()

    def stream() -> None:
        # A parcel every few milliseconds, as a busy Seer sends them, before and after the pause.
        n = 0
        while not stop.is_set():
            batch = [parcels.validate(parcel("agent", n), runtime.settings.max_parcel_size)]
            operations.send_parcels(runtime, batch)
            n += 1
            stop.wait(0.01)

    sender = threading.Thread(target=stream)
    try:
        wait_for(
            lambda: (
                {c.host for c in registry.consumers(runtime.ledger) if c.queue == "postmaster"}
                >= {"host-a", "host-b"}
            ),
            30,
            "both hosts' consumers to register",
        )
        sender.start()
        wait_for(lambda: runtime.ledger.counter("parcels_delivered") >= 30, 30, "deliveries")
        assert control.pause(runtime.ledger, by="test")
        paused_at = runtime.ledger.now()
        # Parcels keep arriving while paused: they must wait, on both hosts.
        wait_for(lambda: runtime.ledger.counter("parcels_queued") >= 40, 30, "parcels to wait")
        # Still nothing claimed after the second the pause may take (and some more to see it).
        wait_for(lambda: runtime.ledger.now() > paused_at + 2.5, 10, "2.5 s of pause")
        late = runtime.ledger.scalar(
            "SELECT count(*) FROM parcels WHERE claimed_at > ?", (paused_at + 1.0,)
        )
        assert late == 0
        hosts_used = {
            r["owner"].split("/")[0]
            for r in runtime.ledger.rows(
                "SELECT DISTINCT owner FROM parcels WHERE owner IS NOT NULL"
            )
        }
        assert not hosts_used  # nothing in flight either
        stop.set()
        sender.join(10)
        assert control.resume(runtime.ledger)
        wait_for(
            lambda: (
                runtime.ledger.counter("parcels_queued") == 0
                and runtime.ledger.counter("parcels_in_flight") == 0
            ),
            60,
            "the queue to drain after resume",
        )
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(10)
        for consumer in hosts:
            consumer.kill()
