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


@pytest.mark.queue_facing
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


def test_status_warns_when_hosts_store_blobs_in_different_directories(runtime, cli):
    from worker.fleet import consumers as registry

    here = runtime.store.location()
    registry.register(runtime.ledger, "postmaster", host_id="host-a", cas_root=here)
    registry.register(runtime.ledger, "postmaster", host_id="host-b", cas_root="/mnt/other-cas")
    problems = cli("status", "--json").json()["problems"]
    (shown,) = [p for p in problems if "different CAS directories" in p]
    assert f"host-a {here}" in shown and "host-b /mnt/other-cas" in shown


@pytest.mark.queue_facing
@pytest.mark.slow
def test_a_host_that_cannot_find_a_recorded_blob_is_said_by_status(runtime, cli, tmp_path):
    # A real consumer checks the newest recorded blob with its heartbeat (every 6 beats: one
    # a second with a 6 s timeout); a CAS directory that lost it is what a host without the
    # shared mount sees.
    from worker.cas.tools import newest_blob_missing

    env = dict(os.environ, SEER_HEARTBEAT_TIMEOUT="6s", SEER_HOST_ID="host-c")
    consumer = Consumer(env, tmp_path).start()
    try:
        operations.send_parcels(
            runtime,
            [parcels.validate(parcel("agent", 1, attachment="x" * 100), 1 << 20)],
        )
        wait_for(lambda: runtime.ledger.counter("parcels_delivered") == 1, 30, "the delivery")
        assert newest_blob_missing(runtime.ledger, runtime.store) is None
        for digest in runtime.store.sizes():
            runtime.store.remove(digest)
        missing = newest_blob_missing(runtime.ledger, runtime.store)
        assert missing is not None

        def said() -> list[str]:
            problems = cli("status", "--json").json()["problems"]
            return [p for p in problems if "cannot find blob" in p]

        (shown,) = wait_for(said, 30, "status to say the blob is missing on host-c")
        assert shown.startswith("host-c ") and missing[:12] in shown
        assert runtime.store.location() in shown
    finally:
        consumer.kill()
