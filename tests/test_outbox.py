"""The alert outbox against a real webhook server: retries, backoff, leases, no lock held."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.helpers import other_ledger, wait_for
from tests.peers import SlackPeer, SmtpPeer
from worker.alerts import outbox
from worker.alerts.channels import LogChannel, Notification
from worker.alerts.channels.mail import EmailChannel
from worker.alerts.channels.slack import SlackChannel
from worker.alerts.outbox import DeliveryReport, deliver_due, enqueue

T = 1_700_000_000.0
NOTHING = DeliveryReport(0, 0, 0, 0)


def note(title: str = "Queue depth 612 > 500", level: str = "critical") -> Notification:
    return Notification("queue_depth", level, title, "value: 612\nthreshold: 500", at=T)


@pytest.fixture
def slack() -> Iterator[SlackPeer]:
    with SlackPeer() as peer:
        yield peer


def via(peer: SlackPeer, read_timeout: float = 2.0) -> dict:
    return {"slack": SlackChannel(peer.webhook(), connect_timeout=1.0, read_timeout=read_timeout)}


def row(runtime, row_id: int) -> dict:
    return runtime.ledger.row("SELECT * FROM alert_outbox WHERE id = ?", (row_id,))


def test_enqueue_commits_or_rolls_back_with_the_caller(runtime):
    ledger = runtime.ledger
    state = "INSERT INTO alert_state (rule, level, since, evaluated_at) VALUES (?, ?, ?, ?)"
    with pytest.raises(RuntimeError), ledger.write():
        ledger.execute(state, ("queue_depth", "critical", T, T))
        enqueue(ledger, note(), ["slack", "log"], now=T)
        raise RuntimeError("the rule evaluation failed after queueing")
    assert ledger.scalar("SELECT count(*) FROM alert_outbox") == 0
    assert ledger.scalar("SELECT count(*) FROM alert_state") == 0

    with ledger.write():
        ledger.execute(state, ("queue_depth", "critical", T, T))
        ids = enqueue(ledger, note(), ["slack", "log", "slack"], now=T)
    assert len(ids) == 2 and outbox.pending_count(ledger) == 2
    first = row(runtime, ids[0])
    assert (first["channel"], first["status"], first["next_attempt_at"]) == ("slack", "pending", T)
    assert Notification.from_json(first["payload"]) == note()
    shown = outbox.recent(ledger)
    assert [(d.id, d.channel, d.title) for d in shown] == [
        (ids[1], "log", "Queue depth 612 > 500"),
        (ids[0], "slack", "Queue depth 612 > 500"),
    ]


def test_webhook_failing_three_times_gets_the_alert_once_after_backoff(runtime, slack):
    slack.script = ["500", "500", "500"]
    [row_id] = enqueue(runtime.ledger, note(), ["slack"], now=T)
    channels = via(slack)
    waits = []
    for at in (T, T + 10, T + 30):
        assert deliver_due(runtime.ledger, channels, now=at) == DeliveryReport(retried=1)
        waits.append(row(runtime, row_id)["next_attempt_at"] - at)
        # Not due again before its backoff has passed.
        assert deliver_due(runtime.ledger, channels, now=at + waits[-1] - 1) == NOTHING
    assert waits == [10, 20, 40]
    assert deliver_due(runtime.ledger, channels, now=T + 70) == DeliveryReport(sent=1)
    done = row(runtime, row_id)
    assert (done["status"], done["attempts"], done["sent_at"]) == ("sent", 4, T + 70)
    assert deliver_due(runtime.ledger, channels, now=T + 10_000) == NOTHING
    assert len(slack.delivered()) == 1 and len(slack.posts) == 4
    assert outbox.pending_count(runtime.ledger) == 0


@pytest.mark.parametrize("retry_after, wait", [("2", 10), ("45", 45)])
def test_slack_retry_after_is_honoured_when_longer_than_backoff(runtime, slack, retry_after, wait):
    slack.script = [f"429:{retry_after}"]
    [row_id] = enqueue(runtime.ledger, note(), ["slack"], now=T)
    assert deliver_due(runtime.ledger, via(slack), now=T) == DeliveryReport(retried=1)
    assert row(runtime, row_id)["next_attempt_at"] == T + wait
    # Neither at the Retry-After (2 s is less than the backoff) nor at the plain backoff.
    for early in sorted({T + 2, T + 10 - 0.5, T + 10, T + wait - 0.5} - {T + wait}):
        assert deliver_due(runtime.ledger, via(slack), now=early) == NOTHING
    assert len(slack.posts) == 1
    assert deliver_due(runtime.ledger, via(slack), now=T + wait) == DeliveryReport(sent=1)


def test_permanent_failure_is_not_retried_and_does_not_block_the_next(runtime, slack):
    slack.script = ["404:channel_not_found"]
    [lost] = enqueue(runtime.ledger, note("first"), ["slack"], now=T)
    [later] = enqueue(runtime.ledger, note("second"), ["slack"], now=T + 1)
    report = deliver_due(runtime.ledger, via(slack), now=T + 1)
    assert report == DeliveryReport(sent=1, failed=1)
    failed = row(runtime, lost)
    assert failed["status"] == "failed" and "channel_not_found" in failed["last_error"]
    assert row(runtime, later)["status"] == "sent"
    assert deliver_due(runtime.ledger, via(slack), now=T + 100_000) == NOTHING
    assert len(slack.posts) == 2


def test_a_row_left_sending_is_sent_again_once_its_lease_expires(runtime, slack):
    [row_id] = enqueue(runtime.ledger, note(), ["slack"], now=T)
    with runtime.ledger.write():
        # As a sender that claimed the row at T and then died would leave it.
        runtime.ledger.execute(
            "UPDATE alert_outbox SET status = 'sending', lease_until = ? WHERE id = ?",
            (T + 60, row_id),
        )
    assert deliver_due(runtime.ledger, via(slack), now=T + 30) == NOTHING
    assert outbox.pending_count(runtime.ledger) == 1
    assert deliver_due(runtime.ledger, via(slack), now=T + 61) == DeliveryReport(sent=1)
    assert row(runtime, row_id)["status"] == "sent" and len(slack.delivered()) == 1


def test_a_channel_down_for_long_keeps_the_alert_with_capped_backoff(runtime, slack):
    slack.default = "503"
    [row_id] = enqueue(runtime.ledger, note(), ["slack"], now=T)
    at, waits = T, []
    for _ in range(12):
        assert deliver_due(runtime.ledger, via(slack), now=at) == DeliveryReport(retried=1)
        current = row(runtime, row_id)
        waits.append(current["next_attempt_at"] - at)
        at = current["next_attempt_at"]
    assert waits == [10, 20, 40, 80, 160, 320] + [600] * 6
    assert (current["status"], current["attempts"]) == ("pending", 12)
    assert "HTTP 503" in current["last_error"]
    slack.default = "200"
    assert deliver_due(runtime.ledger, via(slack), now=at) == DeliveryReport(sent=1)
    assert len(slack.delivered()) == 1


def test_a_newer_alert_waits_behind_an_older_one_in_backoff(runtime, slack):
    slack.script = ["500"]
    enqueue(runtime.ledger, note("older"), ["slack"], now=T)
    assert deliver_due(runtime.ledger, via(slack), now=T) == DeliveryReport(retried=1)
    enqueue(runtime.ledger, note("newer", "resolved"), ["slack"], now=T + 1)
    assert deliver_due(runtime.ledger, via(slack), now=T + 2) == NOTHING
    assert deliver_due(runtime.ledger, via(slack), now=T + 10) == DeliveryReport(sent=2)
    titles = [p.body["text"] for p in slack.posts]
    assert ["older" in t for t in titles] == [True, True, False]
    assert "newer" in titles[2]


def test_deliver_due_respects_the_limit(runtime, slack):
    for n in range(5):
        enqueue(runtime.ledger, note(f"alert {n}"), ["slack"], now=T)
    assert deliver_due(runtime.ledger, via(slack), now=T, limit=3) == DeliveryReport(sent=3)
    assert deliver_due(runtime.ledger, via(slack), now=T) == DeliveryReport(sent=2)
    titles = [p.body["text"].splitlines()[0] for p in slack.posts]
    assert titles == [f":red_circle: *CRITICAL* alert {n}" for n in range(5)]


def test_an_unconfigured_channel_keeps_its_rows_pending(runtime, slack):
    slack_row, email_row = enqueue(runtime.ledger, note(), ["slack", "email"], now=T)
    assert deliver_due(runtime.ledger, via(slack), now=T) == DeliveryReport(sent=1, skipped=1)
    waiting = row(runtime, email_row)
    assert (waiting["status"], waiting["attempts"]) == ("pending", 0)
    assert row(runtime, slack_row)["status"] == "sent"
    with SmtpPeer() as smtp:
        email = EmailChannel(
            "127.0.0.1", smtp.port, "none", "", "", "seer@example.com", ["ops@example.com"], 2.0
        )
        channels = {**via(slack), "email": email}
        assert deliver_due(runtime.ledger, channels, now=T + 3600) == DeliveryReport(sent=1)
    assert [m.subject for m in smtp.messages] == ["[Seer Ops] CRITICAL Queue depth 612 > 500"]
    assert len(slack.delivered()) == 1


def test_an_expired_claim_on_an_unconfigured_channel_goes_back_to_pending(runtime):
    [row_id] = enqueue(runtime.ledger, note(), ["email"], now=T)
    with runtime.ledger.write():
        runtime.ledger.execute(
            "UPDATE alert_outbox SET status = 'sending', lease_until = ? WHERE id = ?",
            (T + 60, row_id),
        )
    assert deliver_due(runtime.ledger, {}, now=T + 61) == DeliveryReport(skipped=1)
    assert row(runtime, row_id)["status"] == "pending"


def test_log_channel_through_the_outbox(runtime):
    channels = {"log": LogChannel(runtime.layout.logs / "alerts.log")}
    enqueue(runtime.ledger, note(), ["log"], now=T)
    assert deliver_due(runtime.ledger, channels, now=T) == DeliveryReport(sent=1)
    assert "Queue depth 612" in (runtime.layout.logs / "alerts.log").read_text()


def test_no_write_transaction_is_held_while_sending(runtime, slack):
    slack.script = ["hang"]
    [row_id] = enqueue(runtime.ledger, note(), ["slack"], now=T)
    reports: list[DeliveryReport] = []

    def deliver() -> None:
        try:
            reports.append(deliver_due(runtime.ledger, via(slack, read_timeout=2.0), now=T))
        finally:
            runtime.ledger.close()  # this thread's connection

    sender = threading.Thread(target=deliver)
    sender.start()
    try:
        wait_for(lambda: slack.posts, timeout=5, what="the webhook to receive the POST")
        other = other_ledger(runtime, lock_timeout=0.2)
        try:
            with other.write():
                # The claim committed before the send began.
                status = other.scalar("SELECT status FROM alert_outbox WHERE id = ?", (row_id,))
                assert status == "sending"
                other.execute(
                    "INSERT INTO alert_state (rule, level, since, evaluated_at) "
                    "VALUES (?, ?, ?, ?)",
                    ("cas_size", "warning", T, T),
                )
            # Got within its 0.2 s lock timeout, while the send hangs for 2 s: the lock was
            # free. (How long the COMMIT's fsync takes on a loaded disk is not the point.)
        finally:
            other.close()
        assert sender.is_alive(), "the send should still be hanging"
    finally:
        sender.join(10)
    assert reports == [DeliveryReport(retried=1)]
    hung = row(runtime, row_id)
    assert hung["status"] == "pending" and "no answer" in hung["last_error"]
