"""Redis down (issue 13, item 3): the dead man's switch of docs/SCALING.md.

The scheduler's alert jobs reach its workers through the scheduler's queue, in the Redis that
is down; every consumer's watchdog (worker/monitoring/watchdog.py) alerts without it. Real
consumers (a scheduler and a postmaster) on a private redis-server the test stops and starts,
a local HTTP server standing in for Slack; nothing stands in for the behaviour under test.
The watchdog's bookkeeping is also looked at one look at a time, on the ledger's clock.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Consumer
from tests.helpers import parcel, wait_for
from tests.peers import SlackPeer
from tests.redis_server import PrivateRedis
from worker.alerts import alerting, outbox
from worker.doorbells import QueueProbe
from worker.fleet import consumers as fleet
from worker.fleet import control
from worker.monitoring import rules, watchdog
from worker.runtime import Runtime
from worker.settings import load_settings

pytestmark = pytest.mark.backends("redis", "postgresql+redis")

# What issue 13 asks: an alert reaches a person within 2 minutes of Redis going down.
WITHIN = 120.0
# Generous deadlines for what is not being measured (starting consumers, a delivery).
SETUP = 60.0
# The alert's threshold in the end-to-end test (the default is 30 s; the test that measures
# the default path keeps it).
QUICK = "3s"


@pytest.fixture
def slack() -> Iterator[SlackPeer]:
    with SlackPeer() as peer:
        yield peer


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with PrivateRedis(tmp_path) as server:
        yield server


@pytest.fixture
def on_redis(env, cli, monkeypatch, private_redis, slack) -> Callable[..., Runtime]:
    """open(**settings): the storage root, its ledger on the backend's, its queue on the
    private Redis, Slack pointed at the stand-in; initialised and opened. Consumers started
    afterwards get the same environment."""
    opened: list[Runtime] = []

    def open_root(**settings: str) -> Runtime:
        monkeypatch.setenv("QUEUE_CONNECTION", "redis")
        monkeypatch.setenv("REDIS_URL", private_redis.url())
        monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", slack.webhook())
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        assert cli("init").code == 0
        opened.append(Runtime.open())
        return opened[-1]

    yield open_root
    for runtime in opened:
        runtime.close()


def up(runtime: Runtime, consumer: Consumer) -> bool:
    assert consumer.proc is not None
    if consumer.proc.poll() is not None:
        raise AssertionError(f"the {consumer.queue} consumer exited:\n{consumer.output()}")
    return any(c.pid == consumer.proc.pid for c in fleet.consumers(runtime.ledger))


def start_consumers(runtime: Runtime, consumers: Callable[..., Consumer]) -> list[Consumer]:
    started = [consumers("scheduler"), consumers("postmaster")]
    for consumer in started:
        wait_for(lambda c=consumer: up(runtime, c), SETUP, f"the {consumer.queue} consumer up")
    # The scheduler's jobs go through its queue: its first reap and evaluation have run.
    wait_for(lambda: control.last_run(runtime.ledger, "evaluate_rules"), SETUP, "evaluate_rules")
    return started


def posts(slack: SlackPeer, title: str) -> list[str]:
    return [p.body["text"] for p in slack.delivered() if title in p.body["text"]]


def delivered_once(runtime: Runtime, ids: list[str]) -> bool:
    ledger = runtime.ledger
    states = {
        r["state"]: r["n"]
        for r in ledger.rows("SELECT state, count(*) AS n FROM parcels GROUP BY state")
    }
    if states != {"delivered": len(ids)}:
        return False
    per_parcel = ledger.rows("SELECT parcel_id, count(*) AS n FROM messages GROUP BY parcel_id")
    assert {r["parcel_id"]: r["n"] for r in per_parcel} == dict.fromkeys(ids, 1)
    return True


def lines(consumer: Consumer, text: str) -> list[str]:
    return [line for line in consumer.output().splitlines() if text in line]


# -- the scenario, end to end ---------------------------------------------------------


def test_redis_down_alerts_a_person_parcels_wait_and_all_mends_when_it_returns(
    on_redis, private_redis, slack, consumers, cli
):
    runtime = on_redis(SEER_QUEUE_OUTAGE_ALERT=QUICK)
    started = start_consumers(runtime, consumers)
    before = cli("send-test-parcel").out.strip()
    wait_for(lambda: delivered_once(runtime, [before]), SETUP, "a parcel before the outage")
    address = f"redis://127.0.0.1:{private_redis.port}"

    private_redis.stop()
    down = time.monotonic()
    # Parcels sent meanwhile are accepted into the ledger: the missing doorbell is a warning.
    sent = cli("parcel", "send", "-", stdin=json.dumps(parcel("agent-1", 1)))
    assert sent.code == 0, sent.err
    assert "queue" in sent.err.lower()
    test_parcel = cli("send-test-parcel")
    assert test_parcel.code == 0, test_parcel.err
    meanwhile = [sent.out.strip(), test_parcel.out.strip()]

    # The alert reaches the Slack stand-in, from a watchdog: the scheduler's queue is down.
    wait_for(lambda: posts(slack, "Queue storage critical"), WITHIN, "the alert on Slack")
    took = time.monotonic() - down
    assert took < WITHIN
    (alert,) = posts(slack, "Queue storage critical")
    assert address in alert and "has not answered" in alert
    assert took < float(QUICK.rstrip("s")) + 15, f"the alert came {took:.1f}s after the stop"

    status = cli("status")
    assert status.code == 2, status.out + status.err
    assert re.search(rf"queue unreachable: {re.escape(address)} since ", status.out), status.out
    # Said once: the queue_unreachable rule's summary would repeat the queue's own line.
    said = [
        line for line in status.out.splitlines() if line.startswith("problem") and address in line
    ]
    assert len(said) == 1, status.out
    listed = cli("alerts", "list", "--json").json()
    assert [a["rule"] for a in listed["active"]] == ["queue_unreachable"]
    assert cli("status", "--json").json()["rules"]["queue_unreachable"] == "critical"
    # One line per process for the outage, not one a poll (the consumers polled for seconds).
    for consumer in started:
        assert len(lines(consumer, "queue unreachable: ")) == 1, consumer.output()
    # Nothing was delivered meanwhile: the parcels wait in the ledger.
    assert not delivered_once(runtime, [before, *meanwhile])

    private_redis.start()
    wait_for(
        lambda: delivered_once(runtime, [before, *meanwhile]), SETUP, "the parcels sent meanwhile"
    )
    wait_for(lambda: posts(slack, "Queue storage back to normal"), SETUP, "the resolved notice")
    assert control.queue_outage(runtime.ledger) is None
    after = cli("status", "--json").json()
    assert "queue unreachable" not in " ".join(after["problems"])
    assert after["rules"]["queue_unreachable"] == "ok"
    assert after["queue_backend"]["reachable"] is True
    # Still one alert and one resolved notice: the watchdogs of two processes sent one each.
    assert len(posts(slack, "Queue storage critical")) == 1
    assert len(posts(slack, "Queue storage back to normal")) == 1
    for consumer in started:
        assert len(lines(consumer, "queue unreachable: ")) == 1, consumer.output()
        assert len(lines(consumer, "queue reachable again: ")) == 1, consumer.output()
        assert consumer.proc is not None and consumer.proc.poll() is None


@pytest.mark.slow
@pytest.mark.backends("postgresql+redis")
def test_at_the_default_threshold_the_alert_comes_well_within_two_minutes(
    on_redis, private_redis, slack, consumers
):
    # SEER_QUEUE_OUTAGE_ALERT at its default (30 s): docs/SCALING.md says how long after.
    runtime = on_redis()
    assert runtime.settings.queue_outage_alert == 30
    start_consumers(runtime, consumers)
    private_redis.stop()
    down = time.monotonic()
    wait_for(lambda: posts(slack, "Queue storage critical"), WITHIN, "the alert on Slack")
    took = time.monotonic() - down
    # The threshold, a look of the watchdog (5 s apart) and the send; not before the threshold.
    assert 30 <= took <= 30 + 5 + 10, f"the alert came {took:.1f}s after the stop"


# -- the watchdog, one look at a time ---------------------------------------------------------


class Seen:
    """What a host's probe finds: a stand-in for one host's view of the queue (a partition
    cuts off one host, which no single machine can show for real)."""

    def __init__(self, address: str, reachable: bool = True) -> None:
        self.address = address
        self.reachable = reachable

    def __call__(self) -> QueueProbe:
        error = None if self.reachable else f"cannot reach the queue at {self.address}: refused"
        return QueueProbe("redis", self.address, self.reachable, error=error)


def test_a_watchdog_records_confirms_and_clears_the_outage_on_a_real_redis(on_redis, private_redis):
    runtime = on_redis(SEER_QUEUE_OUTAGE_ALERT="10s")
    dog = watchdog.Watchdog(runtime, "host-a", 5.0)
    t = runtime.ledger.now()
    assert dog.look(t).reachable and control.queue_outage(runtime.ledger) is None

    private_redis.stop()
    first = dog.look(t + 5)
    assert not first.reachable and first.standing_in is not None
    outage = control.queue_outage(runtime.ledger)
    assert outage is not None and (outage.since, outage.seen, outage.host) == (
        t + 5,
        t + 5,
        "host-a",
    )
    assert outage.address == f"redis://127.0.0.1:{private_redis.port}"
    assert "refused" in outage.reason.lower()
    assert dog.look(t + 10).sent == ()  # 5 s of outage: under the 10 s line
    assert control.queue_outage(runtime.ledger).seen == t + 10
    (alert,) = dog.look(t + 15).sent  # confirmed 10 s after it began: critical
    assert (alert.rule, alert.level) == ("queue_unreachable", "critical")
    assert control.queue_outage(runtime.ledger).since == t + 5  # the first sighting's

    private_redis.start()
    back = dog.look(t + 20)
    assert back.reachable and back.standing_in is None
    assert control.queue_outage(runtime.ledger) is None  # nobody confirmed it after this one
    assert [(n.level, n.rule) for n in back.sent] == [("resolved", "queue_unreachable")]
    assert alerting.states(runtime.ledger)["queue_unreachable"].level == "ok"


def test_a_record_another_host_confirms_stays_a_stale_one_goes(on_redis, cli):
    runtime = on_redis(SEER_QUEUE_OUTAGE_ALERT="10s")
    address = runtime.settings.queue_address
    cut_off, fine = Seen(address, reachable=False), Seen(address)
    a = watchdog.Watchdog(runtime, "host-a", 5.0, probe=cut_off)
    b = watchdog.Watchdog(runtime, "host-b", 5.0, probe=fine)
    t = runtime.ledger.now()
    a.look(t)
    for step in range(1, 5):  # host A alone is cut off, and keeps saying so
        a.look(t + 5 * step)
        assert b.look(t + 5 * step + 1).reachable
    outage = control.queue_outage(runtime.ledger)
    assert outage is not None and outage.host == "host-a"
    assert alerting.states(runtime.ledger)["queue_unreachable"].level == "critical"
    # Redis answers here: the rule's summary is what says that host A cannot reach it, in
    # `seer status`, `seer alerts`, `seer metrics` and the console's Alerts pane.
    status = cli("status")
    assert status.code == 2 and "first seen by host-a" in status.out, status.out
    assert "queue unreachable: " not in status.out
    assert [a["rule"] for a in cli("alerts", "list", "--json").json()["active"]] == [
        "queue_unreachable"
    ]
    assert 'seer_alert_level{rule="queue_unreachable"} 2' in cli("metrics").out
    from seer_console.source import SnapshotSource

    shown = SnapshotSource(runtime.settings).read()
    assert [(a.rule, a.level) for a in shown.alerts] == [("queue_unreachable", "critical")]
    # Host A dies cut off: its record is confirmed no more, and host B clears it.
    last = t + 20
    b.look(last + watchdog.UNCONFIRMED_AFTER - 1)
    assert control.queue_outage(runtime.ledger) is not None
    resolved = b.look(last + watchdog.UNCONFIRMED_AFTER + 1)
    assert control.queue_outage(runtime.ledger) is None
    assert [n.level for n in resolved.sent] == ["resolved"]


def test_a_stray_record_nobody_confirms_alerts_nobody(on_redis):
    # A consumer noting the outage just as the queue came back (after the others cleared it)
    # leaves a record with a fresh `since` that nobody confirms: it never turns critical.
    runtime = on_redis(SEER_QUEUE_OUTAGE_ALERT="1s")
    t = runtime.ledger.now()
    control.record_queue_outage(runtime.ledger, "redis://x:1", "late", "host-c", t)
    dog = watchdog.Watchdog(runtime, "host-b", 5.0, probe=Seen("redis://x:1"))
    assert dog.look(t + 10).sent == ()
    assert rules.queue_outage_level(runtime.settings, control.queue_outage(runtime.ledger)) == "ok"
    assert dog.look(t + 10 + watchdog.UNCONFIRMED_AFTER).sent == ()
    assert control.queue_outage(runtime.ledger) is None


def test_many_watchdogs_at_once_send_one_alert_and_one_resolved_notice(on_redis, slack):
    runtime = on_redis(SEER_QUEUE_OUTAGE_ALERT="5s")
    address = runtime.settings.queue_address
    seen = Seen(address, reachable=False)
    dogs = [watchdog.Watchdog(runtime, f"host-{n}", 5.0, probe=seen) for n in range(6)]
    t = runtime.ledger.now()

    def all_look(now: float) -> None:
        threads = [threading.Thread(target=d.look, args=(now,)) for d in dogs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    for step in range(3):
        all_look(t + 5 * step)
    seen.reachable = True
    all_look(t + 15)
    all_look(t + 20)
    texts = [p.body["text"] for p in slack.delivered()]
    assert sum("Queue storage critical" in x for x in texts) == 1, texts
    assert sum("Queue storage back to normal" in x for x in texts) == 1, texts
    slack_rows = [d for d in outbox.recent(runtime.ledger) if d.channel == "slack"]
    assert sorted(d.level for d in slack_rows) == ["critical", "resolved"]


def test_a_silent_scheduler_is_stood_in_for_once_a_minute_cluster_wide(on_redis, slack):
    runtime = on_redis()
    address = runtime.settings.queue_address
    a = watchdog.Watchdog(runtime, "host-a", 5.0, probe=Seen(address))
    b = watchdog.Watchdog(runtime, "host-b", 5.0, probe=Seen(address))
    t = 60 * (runtime.ledger.now() // 60)
    control.record_run(runtime.ledger, "evaluate_rules", t)
    assert a.look(t + 1).standing_in is None and b.look(t + 1).standing_in is None
    with runtime.ledger.write():  # a queue far too deep, which only an evaluation notices
        runtime.ledger.execute("UPDATE counters SET value = 900 WHERE name = 'parcels_queued'")
    late = t + watchdog.SCHEDULER_SILENT + 5
    first, second = a.look(late), b.look(late + 1)
    assert "evaluate_rules has not run" in (first.standing_in or "")
    assert second.standing_in is not None
    assert [first.evaluated, second.evaluated] == [True, False]  # one evaluation a minute
    assert [n.rule for n in first.sent] == ["queue_depth"] and second.sent == ()
    assert any("queue depth critical" in p.body["text"].lower() for p in slack.delivered())
    assert b.look(late + 60).evaluated  # the next minute's, by whoever looks first
    # The scheduler's evaluate_rules runs again: the watchdogs stand down.
    control.record_run(runtime.ledger, "evaluate_rules", late + 61)
    assert a.look(late + 62).standing_in is None


def test_the_threshold_is_a_setting_with_a_default_of_30_seconds():
    assert load_settings({}).queue_outage_alert == 30
    assert load_settings({"SEER_QUEUE_OUTAGE_ALERT": "2m"}).queue_outage_alert == 120
    with pytest.raises(Exception, match="SEER_QUEUE_OUTAGE_ALERT"):
        load_settings({"SEER_QUEUE_OUTAGE_ALERT": "0s"})
