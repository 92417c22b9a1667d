"""The operator's actions, once each: the `seer` CLI and the console both call these."""

from __future__ import annotations

import time
from dataclasses import dataclass

from worker import control, failures, parcels
from worker.runtime import Runtime


@dataclass(frozen=True)
class Rung:
    """What an action queued, and whether the worker was told (if not, the reaper tells it)."""

    ids: tuple[str, ...]
    notified: bool
    warning: str | None = None


def _ring(runtime: Runtime, ids: list[str]) -> Rung:
    try:
        runtime.ring(ids)
    except Exception as exc:
        # Queued in the ledger all the same: the consumer's start-up and the reaper ring later.
        return Rung(
            tuple(ids),
            False,
            f"queued, but the worker was not notified ({exc}); the reaper picks them up "
            "within a minute",
        )
    return Rung(tuple(ids), True)


def send_parcels(runtime: Runtime, batch: list[dict]) -> Rung:
    """Queues validated parcels (all or none) and rings the postmaster queue."""
    return _ring(runtime, parcels.queue_parcels(runtime.ledger, batch))


def send_test_parcel(runtime: Runtime, now: float | None = None) -> Rung:
    parcel = parcels.validate(
        parcels.test_parcel(runtime.settings.test_agent, now), runtime.settings.max_parcel_size
    )
    return send_parcels(runtime, [parcel])


def pause(runtime: Runtime, by: str, now: float | None = None) -> bool:
    return control.pause(runtime.ledger, by=by, now=now)


def resume(runtime: Runtime) -> bool:
    return control.resume(runtime.ledger)


def retry_failed(runtime: Runtime, parcel_id: str) -> Rung | None:
    """None if there is no such failed parcel."""
    if not failures.retry(runtime.ledger, parcel_id):
        return None
    return _ring(runtime, [parcel_id])


def retry_all_failed(runtime: Runtime) -> Rung:
    ids = failures.retry_all(runtime.ledger)
    return _ring(runtime, ids) if ids else Rung((), True)


def purge_failed(
    runtime: Runtime, older_than: float | None = None, now: float | None = None
) -> int:
    return failures.purge(runtime.ledger, older_than, time.time() if now is None else now)


def compact_memory(runtime: Runtime, trigger: str, agent: str | None = None) -> str:
    """Runs a compaction now and says, in one line, how it went."""
    run = runtime.compactor().run(trigger, agent=agent)
    if run.status != "ok":
        raise RuntimeError(f"compaction failed: {run.error}")
    return f"compaction: {run.keys_deleted} expired keys deleted across {run.agents} agents"


def send_test_alert(runtime: Runtime, channel: str | None = None) -> str:
    """Queues and sends a test alert; says in one line how each channel took it."""
    from worker import monitor, outbox

    names = monitor.send_test_alert(runtime, channel)
    monitor.deliver(runtime)
    latest = {d.channel: d for d in reversed(outbox.recent(runtime.ledger, 50)) if d.rule == "test"}
    return "test alert: " + ", ".join(
        f"{n} {latest[n].status}" if n in latest else f"{n} queued" for n in names
    )
