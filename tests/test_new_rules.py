"""The alert rules an operator expects beside the task card's (issue 14, item 8): a consumer
down, a consumer restarting in a loop, the oldest queued parcel waiting too long. Each from ok
to its level at its threshold and back, with `now` passed; their settings; their notices on a
real channel; and a real consumer killed, then stopped on purpose.

A "host" here is a SEER_HOST_ID: consumers registered as host-b cannot be checked by pid from
this process, only by their heartbeats.
"""

from __future__ import annotations

import pytest

from tests.helpers import parcel, wait_for
from tests.peers import SlackPeer
from tests.test_heartbeats import huey_handles_signals
from worker.alerts import alerting
from worker.fleet import consumers as fleet
from worker.fleet import control
from worker.monitoring import monitor, rules
from worker.parcels import intake as parcels
from worker.runtime import Runtime
from worker.settings import load_settings

T = 1_900_000_000.0  # the ledger's time at which the tests' hosts register


def level(runtime, rule: str, now: float) -> rules.Reading:
    """The rule as the scheduler evaluates it at `now` (its state recorded)."""
    readings, _ = monitor.evaluate(runtime, now=now, only=(rule,))
    (reading,) = readings
    return reading


def sent(runtime, rule: str, now: float) -> list[tuple[str, str]]:
    _, notes = monitor.evaluate(runtime, now=now, only=(rule,))
    return [(n.level, n.title) for n in notes]


def crash_and_restart(ledger, queue: str, host: str, now: float) -> None:
    """What a consumer killed and started again by its supervisord leaves: its entry dropped
    by its successor (which, here, is this process again under the same host name)."""
    with ledger.write():
        ledger.execute("DELETE FROM control WHERE key LIKE ?", (f"{fleet.PREFIX}{queue}:{host}:%",))
    assert fleet.register(ledger, queue, now=now, host_id=host) is not None


# -- consumer_down ---------------------------------------------------------------------------


def test_consumer_down_is_critical_past_the_line_and_resolves_at_the_next_beat(runtime):
    ledger = runtime.ledger
    b = fleet.register(ledger, "postmaster", now=T, host_id="host-b")
    fleet.register(ledger, "scheduler", now=T, host_id="host-b")
    assert b is not None
    fleet.beat(ledger, b, now=T + 20)
    # The scheduler of host-b beats on; its postmaster falls silent after T + 20.
    sched = fleet.fleet(ledger, now=T + 20)
    assert {(c.queue, c.state) for c in sched} == {
        ("postmaster", "RUNNING"),
        ("scheduler", "RUNNING"),
    }

    def keep_scheduler(now: float) -> None:
        with ledger.write():
            ledger.execute(
                "UPDATE control SET updated_at = ? WHERE key LIKE ?",
                (now, "consumer:scheduler:host-b:%"),
            )

    keep_scheduler(T + 60)
    assert level(runtime, "consumer_down", T + 60).level == "ok"  # stale, not yet 60 s
    keep_scheduler(T + 80)
    assert level(runtime, "consumer_down", T + 80).level == "ok"  # silent exactly 60 s
    keep_scheduler(T + 94)
    reading = level(runtime, "consumer_down", T + 94)
    assert reading.level == "critical" and reading.value == 74
    assert reading.summary == (
        "seer-postmaster on host-b: no heartbeat for 74 s (critical after 60 s)"
    )
    # It beats again: back to ok, a resolved notice.
    fleet.beat(ledger, b, now=T + 95)
    keep_scheduler(T + 95)
    assert sent(runtime, "consumer_down", T + 96) == [("resolved", "Consumer down back to normal")]
    assert alerting.states(ledger)["consumer_down"].level == "ok"


def test_a_consumer_stopped_on_purpose_is_not_expected_and_a_forgotten_host_neither(runtime):
    ledger = runtime.ledger
    b = fleet.register(ledger, "postmaster", now=T, host_id="host-b")
    c = fleet.register(ledger, "postmaster", now=T, host_id="host-c")
    assert b is not None and c is not None
    # `seer supervisor stop seer-postmaster` on host-b (the rollback's step 2): a graceful
    # stop, a decision; host-c's dies without a word.
    fleet.deregister(ledger, b, now=T + 10)
    reading = level(runtime, "consumer_down", T + 200)
    assert reading.level == "critical"
    assert "on host-c: no heartbeat for 3 min 20 s" in reading.summary
    assert "host-b" not in reading.summary
    states = {(x.host, x.state) for x in fleet.fleet(ledger, now=T + 200)}
    assert states == {("host-b", "STOPPED"), ("host-c", "STALE")}
    # host-c taken out of service for good: a day after it was last heard from it is
    # forgotten, and no longer expected.
    assert fleet.forget(ledger, now=T + fleet.FORGET_AFTER + 20) == 1
    assert level(runtime, "consumer_down", T + fleet.FORGET_AFTER + 21).level == "ok"
    assert fleet.fleet(ledger, now=T + fleet.FORGET_AFTER + 21) == ()
    # Started again on host-b: expected again.
    fleet.register(ledger, "postmaster", now=T + 90000, host_id="host-b")
    assert [x.state for x in fleet.fleet(ledger, now=T + 90001)] == ["RUNNING"]


def test_a_host_forgotten_by_hand_is_no_longer_expected(runtime):
    ledger = runtime.ledger
    fleet.register(ledger, "postmaster", now=T, host_id="host-c")
    assert level(runtime, "consumer_down", T + 300).level == "critical"
    assert fleet.forget_host(ledger, "host-c") == 2  # its entry and its record
    assert level(runtime, "consumer_down", T + 301).level == "ok"


def test_a_dead_consumer_dropped_by_its_successor_of_another_queue_stays_expected(runtime):
    # The postmaster's record keeps when it was last heard from, though its entry went when
    # another consumer of its host registered (entries of dead processes are dropped then).
    ledger = runtime.ledger
    with ledger.write():
        ledger.execute(
            "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?), (?, ?, ?)",
            (
                "consumer:postmaster:" + _here() + ":999999",
                '{"queue": "postmaster", "token": "' + _here() + '/999999/1/1", "started": 1}',
                T,
                "runs:postmaster:" + _here(),
                '{"starts": 1, "restarts": 0, "recent": [], "stopped": null, "lost": null}',
                T,
            ),
        )
    fleet.register(ledger, "scheduler", now=T + 5)
    assert not ledger.rows("SELECT key FROM control WHERE key LIKE 'consumer:postmaster:%'")
    reading = level(runtime, "consumer_down", T + 70)
    assert reading.level == "critical" and reading.value == 70
    assert f"seer-postmaster on {_here()}: not running for 70 s" in reading.summary


def _here() -> str:
    from worker.identity import host_name

    return host_name()


# -- consumer_restarts -----------------------------------------------------------------------


def test_more_than_three_restarts_in_ten_minutes_warn_and_age_out(runtime):
    ledger = runtime.ledger
    fleet.register(ledger, "postmaster", now=T, host_id="host-b")
    for n in range(1, 4):
        crash_and_restart(ledger, "postmaster", "host-b", T + 60 * n)
    assert level(runtime, "consumer_restarts", T + 200).level == "ok"  # 3: not more than 3
    crash_and_restart(ledger, "postmaster", "host-b", T + 240)
    reading = level(runtime, "consumer_restarts", T + 250)
    assert reading.level == "warning" and reading.value == 4
    assert reading.summary == ("seer-postmaster on host-b: 4 restarts in 10 minutes (warning > 3)")
    # The first of them leaves the window at T + 660.
    assert level(runtime, "consumer_restarts", T + 659).level == "warning"
    assert level(runtime, "consumer_restarts", T + 661).level == "ok"


def test_restarts_on_purpose_do_not_count(runtime):
    ledger = runtime.ledger
    for n in range(6):  # `seer supervisor restart` six times: each a graceful stop first
        reg = fleet.register(ledger, "postmaster", now=T + n, host_id="host-b")
        assert reg is not None
        fleet.deregister(ledger, reg, now=T + n + 0.5)
    reg = fleet.register(ledger, "postmaster", now=T + 10, host_id="host-b")
    assert level(runtime, "consumer_restarts", T + 11).level == "ok"
    (row,) = fleet.fleet(ledger, now=T + 11)
    assert row.restarts == 6 and row.restarts_since(T - 1) == 0
    # The per-queue count that `seer status` shows is what it was: every start after the first.
    assert fleet.restarts(ledger) == {"postmaster": 6}


def test_restart_window_and_count_come_from_the_settings(runtime, monkeypatch):
    monkeypatch.setenv("SEER_RESTART_ALERT_COUNT", "1")
    monkeypatch.setenv("SEER_RESTART_ALERT_WINDOW", "2m")
    rt = Runtime.open()
    try:
        fleet.register(rt.ledger, "scheduler", now=T, host_id="host-b")
        crash_and_restart(rt.ledger, "scheduler", "host-b", T + 10)
        crash_and_restart(rt.ledger, "scheduler", "host-b", T + 20)
        reading = level(rt, "consumer_restarts", T + 30)
        assert reading.level == "warning"
        assert reading.summary == (
            "seer-scheduler on host-b: 2 restarts in 2 minutes (warning > 1)"
        )
        assert level(rt, "consumer_restarts", T + 131).level == "ok"
    finally:
        rt.close()


# -- oldest_queued ---------------------------------------------------------------------------


def test_the_oldest_queued_parcel_past_five_minutes_warns_unless_paused(runtime):
    ledger = runtime.ledger
    assert level(runtime, "oldest_queued", T).summary == "no parcel queued (warning after 5 min)"
    items = [parcels.validate(parcel("agent", 1), runtime.settings.max_parcel_size)]
    parcels.queue_parcels(ledger, items, now=T)
    assert level(runtime, "oldest_queued", T + 300).level == "ok"
    reading = level(runtime, "oldest_queued", T + 312)
    assert reading.level == "warning" and reading.value == 312
    assert reading.summary == "oldest queued parcel waiting 5 min 12 s (warning > 5 min)"
    # Paused on purpose: parcels are meant to wait.
    control.pause(ledger, by="test", now=T + 320)
    assert sent(runtime, "oldest_queued", T + 330) == [
        ("resolved", "Oldest queued parcel back to normal")
    ]
    assert "the queue is paused" in level(runtime, "oldest_queued", T + 340).summary
    control.resume(ledger)
    assert sent(runtime, "oldest_queued", T + 350) == [("warning", "Oldest queued parcel warning")]
    runtime.postmaster().deliver_waiting(now=T + 360)
    assert level(runtime, "oldest_queued", T + 361).level == "ok"


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("SEER_CONSUMER_DOWN_ALERT", "0", "a duration from 1s to 86400s"),
        ("SEER_CONSUMER_DOWN_ALERT", "soon", "a duration such as 30, 90s, 15m, 24h or 7d"),
        ("SEER_RESTART_ALERT_COUNT", "100", "a whole number from 0 to 99"),
        ("SEER_RESTART_ALERT_COUNT", "-1", "a whole number from 0 to 99"),
        ("SEER_RESTART_ALERT_WINDOW", "30s", "a duration from 60s to 86400s"),
        ("SEER_OLDEST_QUEUED_ALERT", "31d", "a duration from 1s to 2592000s"),
    ],
)
def test_bad_values_are_refused_in_one_line(runtime, cli, monkeypatch, name, value, allowed):
    monkeypatch.setenv(name, value)
    said = f"{name}={value!r} is not allowed: expected {allowed}"
    result = cli("alerts", "list")
    assert result.code == 2 and result.err.strip() == f"seer: {said}"
    # `seer status` says it as a monitoring plugin would: UNKNOWN, one line.
    result = cli("status")
    assert result.code == 3 and result.err.strip() == f"seer status: UNKNOWN: {said}"


def test_defaults_are_the_issues():
    s = load_settings({})
    assert (s.consumer_down_alert, s.restart_alert_count, s.restart_alert_window) == (60, 3, 600)
    assert s.oldest_queued_alert == 300


# -- notifications, status, metrics ----------------------------------------------------------


@pytest.fixture
def slack():
    with SlackPeer() as peer:
        yield peer


def test_each_new_rule_reaches_slack_and_shows_in_status_alerts_and_metrics(
    runtime, cli, slack, monkeypatch
):
    monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", slack.webhook())
    rt = Runtime.open()
    try:
        ledger = rt.ledger
        now = ledger.now()
        fleet.register(ledger, "postmaster", now=now - 100, host_id="host-b")
        fleet.register(ledger, "scheduler", now=now - 100, host_id="host-b")
        for n in range(4):
            crash_and_restart(ledger, "scheduler", "host-b", now - 20 + n)
        items = [parcels.validate(parcel("agent", 1), rt.settings.max_parcel_size)]
        parcels.queue_parcels(ledger, items, now=now - 400)
        _, notes = monitor.evaluate(rt, now=now)
        assert {n.rule for n in notes} == {"consumer_down", "consumer_restarts", "oldest_queued"}
        assert monitor.deliver(rt, now=now).sent >= 3
        texts = [post.body["text"] for post in slack.delivered()]
        assert any("seer-postmaster on host-b: no heartbeat for 100 s" in t for t in texts)
        assert any("seer-scheduler on host-b: 4 restarts in 10 minutes" in t for t in texts)
        assert any("oldest queued parcel waiting 6 min 40 s" in t for t in texts)
    finally:
        rt.close()

    listed = cli("alerts", "list")
    for rule in ("consumer_down", "consumer_restarts", "oldest_queued"):
        assert rule in listed.out
    status = cli("status", "--json")
    assert status.code == 2  # consumer_down is critical
    shown = status.json()
    assert shown["rules"]["consumer_down"] == "critical"
    assert shown["rules"]["consumer_restarts"] == "warning"
    assert shown["rules"]["oldest_queued"] == "warning"
    assert any("seer-postmaster on host-b: no heartbeat for" in p for p in shown["problems"])
    assert {(h["host"], h["queue"], h["state"]) for h in shown["hosts"]} == {
        ("host-b", "postmaster", "STALE"),
        ("host-b", "scheduler", "RUNNING"),
    }
    metrics = cli("metrics").out
    assert 'seer_alert_level{rule="consumer_down"} 2' in metrics
    assert 'seer_alert_level{rule="consumer_restarts"} 1' in metrics
    assert 'seer_alert_level{rule="oldest_queued"} 1' in metrics
    assert 'seer_host_consumer_running{host="host-b",queue="postmaster"} 0' in metrics
    assert 'seer_host_consumer_restarts_recent{host="host-b",queue="scheduler"} 4' in metrics


def test_the_rules_read_as_often_whatever_the_queue_and_the_fleet(runtime):
    # The same statements for one host and ten parcels as for six hosts and 300 parcels: no
    # read per parcel or per host (the fleet is two reads of the control table).
    ledger = runtime.ledger
    size = runtime.settings.max_parcel_size

    def grow(hosts: range, queued: int) -> None:
        for n in hosts:
            fleet.register(ledger, "postmaster", now=T, host_id=f"host-{n}")
        items = [parcels.validate(parcel("agent", i), size) for i in range(queued)]
        parcels.queue_parcels(ledger, items, now=T)

    def statements() -> tuple[int, rules.Inputs]:
        said: list[str] = []
        for name in ("rows", "row", "scalar"):
            real = getattr(ledger, name)

            def counted(sql, *args, _real=real, **kw):
                said.append(sql)
                return _real(sql, *args, **kw)

            setattr(ledger, name, counted)
        try:
            inputs = rules.read_inputs(ledger, T + 100, settings=runtime.settings)
        finally:
            for name in ("rows", "row", "scalar"):
                delattr(ledger, name)
        return len(said), inputs

    grow(range(1), 10)
    few, inputs = statements()
    assert len(inputs.fleet) == 1 and inputs.oldest_queued_age == 100
    grow(range(1, 6), 290)
    many, inputs = statements()
    assert len(inputs.fleet) == 6 and few == many
    (down,) = [r for r in rules.evaluate(runtime.settings, inputs) if r.rule == "consumer_down"]
    assert down.level == "critical" and down.summary.count(": no heartbeat for 100 s") == 6


# -- a real consumer -------------------------------------------------------------------------


@pytest.mark.queue_facing
@pytest.mark.slow
def test_a_killed_consumer_is_reported_down_by_the_others_watchdog_a_stopped_one_is_not(
    runtime, consumers, slack, monkeypatch
):
    monkeypatch.setenv("SEER_CONSUMER_DOWN_ALERT", "4s")
    monkeypatch.setenv("SEER_HEARTBEAT_TIMEOUT", "6s")  # a beat and a look a second
    monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", slack.webhook())
    ledger = runtime.ledger

    def running(queue: str) -> list[fleet.HostConsumer]:
        return [c for c in fleet.fleet(ledger) if c.queue == queue and c.running]

    scheduler = consumers("scheduler")
    victim = consumers("postmaster")
    wait_for(lambda: running("scheduler") and running("postmaster"), 30, "both registered")
    wait_for(lambda: running("postmaster")[0].rss, 10, "a beat carrying its usage")
    victim.kill()
    killed_at = ledger.now()

    def alerted() -> list[str]:
        return [
            p.body["text"] for p in slack.delivered() if "Consumer down critical" in p.body["text"]
        ]

    # Said by the scheduler's watchdog, which follows the rule at every look.
    (text,) = wait_for(alerted, 30, "the consumer_down alert on the webhook")
    assert "seer-postmaster on " in text and ": not running for " in text
    state = alerting.states(ledger)["consumer_down"]
    assert state.level == "critical" and state.since - killed_at > 3

    # Started again: resolved. Then stopped on purpose: no alert however long it stays down.
    again = consumers("postmaster")
    wait_for(
        lambda: alerting.states(ledger)["consumer_down"].level == "ok",
        30,
        "the resolved state once the postmaster is back",
    )
    # SIGINT once Huey handles it (before, it is a KeyboardInterrupt: no shutdown hooks).
    wait_for(lambda: huey_handles_signals(again.proc.pid), 30, "Huey's signal handlers")
    assert again.stop() == 0
    (row,) = [c for c in fleet.fleet(ledger) if c.queue == "postmaster"]
    assert row.state == "STOPPED"
    assert scheduler.stop() == 0  # the whole host stopped on purpose, as `seer down` does
    assert level(runtime, "consumer_down", ledger.now() + 3600).level == "ok"
    assert row.restarts == 1 and row.restarts_since(0) == 1  # the kill's, not the stop's
