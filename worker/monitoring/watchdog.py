"""The dead man's switch: alerting that every consumer process does itself, without the queue.

The scheduler's evaluate_rules and deliver_alerts reach its workers through the scheduler's
queue. When that queue's storage (Redis) is down, or the scheduler is dead or wedged, they do
not run, and the outage they should report would go unsaid. So a Watchdog thread in every
consumer process looks every few seconds, asking nothing of the queue but one probe:

- it keeps the ledger's outage record true: recorded, or confirmed, while its probe finds no
  answer; cleared once it answers and nobody has confirmed the record since this consumer did,
  or for UNCONFIRMED_AFTER (the consumers that recorded it may have died; a host cut off alone
  keeps confirming it, and its outage stands);
- it evaluates the queue_unreachable rule whenever the rule's recorded level disagrees with
  that record: the alert goes out at the look that confirms the outage SEER_QUEUE_OUTAGE_ALERT
  after it began, the resolved notice within a look of the record's clearing, whatever the
  scheduler is doing; and consumer_down likewise, from the fleet's heartbeats (the scheduler
  is a consumer that may be the one down, and its rules run a minute apart);
- while the queue does not answer, or the scheduler's evaluate_rules has not run for
  SCHEDULER_SILENT, it evaluates every rule once a minute and delivers the outbox at every look,
  as the scheduler's jobs would.

Many consumers on many hosts send one alert, not one each: `alerting.apply` decides under the
ledger's "alerts" lock from the states it reads there, the full evaluation claims its minute's
slot in the ledger, and the outbox gives each row to one sender.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import humanize

from worker.alerts import alerting
from worker.alerts.channels import Notification
from worker.doorbells import QueueProbe, backend_of
from worker.fleet import control
from worker.monitoring import monitor, rules
from worker.monitoring.wiring import WiredWithQueue
from worker.said_once import SaidOnce

log = logging.getLogger("seer.watchdog")

# The scheduler's evaluate_rules runs every 60 s: silent this long, it is dead or wedged.
SCHEDULER_SILENT = 150.0
# How often the rules are evaluated, cluster-wide, while the watchdogs stand in for it.
EVALUATE_EVERY = 60
# A recorded outage that no consumer has confirmed for this long is stale: every consumer that
# cannot reach the queue confirms it at each look (5 s apart at most, plus a probe's 3 s).
UNCONFIRMED_AFTER = 20.0
RULE = "queue_unreachable"
CONSUMERS_RULE = "consumer_down"
# The job whose runs tell whether the scheduler's periodic jobs go through (worker.ops.jobs
# records each of them).
SCHEDULER_JOB = "evaluate_rules"


@dataclass(frozen=True)
class Look:
    """What one look found and did."""

    reachable: bool
    standing_in: str | None  # why this consumer evaluates and delivers itself, if it does
    sent: tuple[Notification, ...] = ()  # notifications this look's evaluations queued
    evaluated: bool = False  # every rule evaluated (its minute's slot was this look's)


class Watchdog:
    """One consumer process's watchdog: `look()` once, or `start()` its daemon thread, which
    looks every `interval` seconds on a ledger connection of its own."""

    def __init__(
        self,
        runtime: WiredWithQueue,
        host: str,
        interval: float,
        *,
        probe: Callable[[], QueueProbe] | None = None,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.interval = interval
        # Only a queue on a server of its own (Redis) is probed: one in the ledger's database,
        # or in queue.db beside ledger.db, answers when the ledger does (and an extra
        # connection a consumer to the database would buy nothing).
        self.probe = probe or (self._probe if backend_of(runtime.settings) == "redis" else None)
        self.started_at: float | None = None
        self.confirmed_at: float | None = None  # when this watchdog last confirmed an outage
        self._slot_tried: int | None = None  # the last minute it tried to evaluate for
        self.standing_in: str | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def _probe(self) -> QueueProbe:
        # Imported here: status brings supervisord's client, which a consumer that fails its
        # start-up checks should not wait for (supervisord counts a start after 1 s).
        from worker.monitoring.status import queue_probe

        # Bounded by the storage's connect and read timeouts (3 s on Redis): a look may be
        # late, never stuck, and it holds up nothing else (the heartbeat has its own thread).
        return queue_probe(self.runtime, depths=False)

    def look(self, now: float | None = None) -> Look:
        ledger = self.runtime.ledger
        probe = self.probe() if self.probe else None
        now = ledger.now() if now is None else now
        if self.started_at is None:
            self.started_at = now
        if probe is None:
            pass
        elif probe.reachable:
            # A record nobody confirmed after this consumer did is its own to clear (another
            # consumer's late sighting too, made just as the queue came back); one that others
            # still confirm is left to them, unless they have all been silent for long.
            stale = now - UNCONFIRMED_AFTER
            if self.confirmed_at is not None:
                stale = max(stale, self.confirmed_at + 0.001)
            control.clear_queue_outage(ledger, unconfirmed_since=stale)
            self.confirmed_at = None
        else:
            reason = probe.error or "no answer"
            control.record_queue_outage(ledger, probe.address, reason, self.host, now)
            self.confirmed_at = now
        sent = self._follow_the_outage(now)
        standing_in = self._stand_in_reason(probe, now)
        self._said(standing_in)
        evaluated = False
        slot = int(now // EVALUATE_EVERY)
        if standing_in is not None and slot != self._slot_tried:
            # Tried once a minute by each watchdog (a claim is a write), won by one of them.
            if control.claim_slot(ledger, "watchdog." + SCHEDULER_JOB, slot, now):
                sent += monitor.evaluate(self.runtime, now=now)[1]
                evaluated = True
            self._slot_tried = slot
        if standing_in is not None or sent:
            monitor.deliver(self.runtime, now=now)
        return Look(probe is None or probe.reachable, standing_in, tuple(sent), evaluated)

    def _follow_the_outage(self, now: float) -> list[Notification]:
        """Evaluates queue_unreachable and consumer_down when their recorded levels are not
        what the outage record and the fleet's heartbeats call for: three reads at a look, a
        write only at a change."""
        ledger = self.runtime.ledger
        settings = self.runtime.settings
        fleet = rules.read_fleet(ledger, settings, now)
        wanted = {
            RULE: rules.queue_outage_level(settings, control.queue_outage(ledger)),
            CONSUMERS_RULE: rules.consumer_down_level(settings, fleet, now),
        }
        states = alerting.states(ledger)
        changed = tuple(
            rule
            for rule, level in wanted.items()
            if level != (states[rule].level if rule in states else "ok")
        )
        if not changed:
            return []
        return monitor.evaluate(self.runtime, now=now, only=changed)[1]

    def _stand_in_reason(self, probe: QueueProbe | None, now: float) -> str | None:
        if probe is not None and not probe.reachable:
            return f"the queue at {probe.address} does not answer"
        last = control.last_run(self.runtime.ledger, SCHEDULER_JOB)
        since = max(last or 0.0, self.started_at or now)
        if now - since > SCHEDULER_SILENT:
            return (
                f"the scheduler's {SCHEDULER_JOB} has not run for "
                f"{humanize.naturaldelta(now - since)}"
            )
        return None

    def _said(self, standing_in: str | None) -> None:
        # One line when this consumer begins to stand in for the scheduler's alerting and one
        # when it stops, not one a look.
        if standing_in is not None and self.standing_in is None:
            log.warning(
                "alerting from this consumer: %s; it evaluates the rules and sends the alerts "
                "until the scheduler's jobs run again",
                standing_in,
            )
        elif standing_in is None and self.standing_in is not None:
            log.warning("alerting left to the scheduler's jobs again")
        self.standing_in = standing_in

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        said = SaidOnce(log, "watchdog: cannot look, retrying", "watchdog: looking again")
        try:
            while not self._stopped.is_set():
                began = time.monotonic()
                try:
                    self.look()
                except Exception as exc:  # the ledger out of reach: said once, then retried
                    said.failed(exc)
                else:
                    said.worked()
                self._stopped.wait(max(0.0, self.interval - (time.monotonic() - began)))
        finally:
            self.runtime.ledger.close()
