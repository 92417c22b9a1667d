"""Alert rules, their states and notifications, end to end with a real webhook server and a
real SMTP server; `seer monitor-storage`, `seer alerts`, `seer status`, `seer metrics`."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest

from tests.conftest import BIN
from tests.helpers import wait_for
from tests.peers import SlackPeer, SmtpPeer
from worker.alerts import alerting, outbox
from worker.monitoring import monitor, rules
from worker.runtime import Runtime
from worker.settings import load_settings

GiB = 1024**3


@pytest.fixture
def slack():
    with SlackPeer() as peer:
        yield peer


@pytest.fixture
def smtp():
    with SmtpPeer() as peer:
        yield peer


@pytest.fixture
def wired(runtime, slack, smtp, monkeypatch):
    """The runtime with Slack and email pointed at the local peers."""
    monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", slack.webhook())
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("SMTP_SECURITY", "none")
    monkeypatch.setenv("ALERT_EMAIL_TO", "ops@example.com")
    return Runtime.open()


def set_counter(runtime, name: str, value: int) -> None:
    with runtime.ledger.write():
        runtime.ledger.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))


@pytest.mark.parametrize(
    ("quota", "used", "level"),
    [
        (100 * GiB, 9 * GiB, "ok"),
        (100 * GiB, 11 * GiB, "warning"),  # above 10 GB, the lower of the two lines
        (100 * GiB, 89 * GiB, "warning"),
        (100 * GiB, 91 * GiB, "critical"),
        (1 * GiB, int(0.79 * GiB), "ok"),
        (1 * GiB, int(0.81 * GiB), "warning"),  # 80% of a small quota is below 10 GB
        (1 * GiB, int(0.91 * GiB), "critical"),
    ],
)
def test_cas_rule_follows_the_task_card(quota, used, level):
    settings = load_settings({"ORCHESTRATION_CAS_MAX_SIZE": str(quota)})
    (cas,) = [
        r for r in rules.evaluate(settings, rules.Inputs(used, 0, 0, 0)) if r.rule == "cas_size"
    ]
    assert cas.level == level


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (
            rules.Inputs(0, 100, 10, 3),
            {"queue_depth": "ok", "failed_per_hour": "ok", "compaction_failures": "ok"},
        ),
        (
            rules.Inputs(0, 101, 11, 4),
            {
                "queue_depth": "warning",
                "failed_per_hour": "warning",
                "compaction_failures": "critical",
            },
        ),
        (rules.Inputs(0, 501, 0, 0), {"queue_depth": "critical"}),
    ],
)
def test_other_rules_follow_the_task_card(inputs, expected):
    levels = {r.rule: r.level for r in rules.evaluate(load_settings({}), inputs)}
    assert {k: levels[k] for k in expected} == expected


def test_notify_on_rise_repeat_while_it_holds_resolved_when_it_clears(runtime):
    def run(depth, now):
        set_counter(runtime, "parcels_queued", depth)
        _, sent = monitor.evaluate(runtime, now=now, only=("queue_depth",))
        return [(n.level, n.title) for n in sent]

    t = 1_000_000.0
    assert run(10, t) == []
    assert run(150, t + 60) == [("warning", "Postmaster queue depth warning")]
    assert run(160, t + 120) == []  # holds: no repeat before ALERT_REPEAT_INTERVAL (4h)
    assert run(600, t + 180) == [("critical", "Postmaster queue depth critical")]
    assert run(600, t + 180 + 4 * 3600) == [("critical", "Postmaster queue depth critical")]
    assert run(200, t + 20000) == [("warning", "Postmaster queue depth warning")]
    assert run(0, t + 20060) == [("resolved", "Postmaster queue depth back to normal")]
    assert run(0, t + 20120) == []
    state = alerting.states(runtime.ledger)["queue_depth"]
    assert state.level == "ok" and state.since == t + 20060
    # Each notification went to the log channel (the only one configured here), durably.
    assert outbox.pending_count(runtime.ledger) == 5


def test_simulate_high_usage_reaches_the_webhook_and_the_mailbox(wired, slack, smtp, cli):
    result = cli("monitor-storage", "--simulate-high-usage")
    assert result.code == 0, result.err
    assert "sent 3" in result.out
    (post,) = slack.delivered()
    assert "SIMULATED" in post.body["text"] and "CRITICAL" in post.body["text"].upper()
    (mail,) = smtp.messages
    assert mail.rcpt_tos == ["ops@example.com"] and "SIMULATED" in mail.subject
    assert "CAS storage critical" in mail.subject
    # A drill changes no rule state.
    assert "cas_size" not in alerting.states(wired.ledger) or (
        alerting.states(wired.ledger)["cas_size"].level == "ok"
    )
    assert "SIMULATED" in (wired.layout.logs / "alerts.log").read_text()


def test_dry_run_sends_nothing(wired, slack, smtp, cli):
    set_counter(wired, "cas_bytes", 95 * GiB)
    result = cli("monitor-storage", "--dry-run")
    assert "CRITICAL" in result.out and "nothing sent" in result.out and result.code == 2
    assert cli("monitor-storage", "--dry-run", "--simulate-high-usage").code == 2  # the real level
    assert slack.posts == [] and smtp.messages == []
    assert outbox.pending_count(wired.ledger) == 0


def test_monitor_storage_reports_and_alerts_once(wired, slack, cli):
    set_counter(wired, "cas_bytes", 12 * GiB)
    set_counter(wired, "cas_blobs", 345)
    first = cli("monitor-storage", "--json").json()
    report = first["report"]
    assert (report["cas_bytes"], report["cas_blobs"], report["level"]) == (12 * GiB, 345, "warning")
    assert round(report["percent"], 1) == 12.0
    assert next(p.body["text"] for p in slack.delivered()).count("CAS storage warning") == 1
    cli("monitor-storage")
    assert len(slack.delivered()) == 1  # the rule holds: no second notification
    set_counter(wired, "cas_bytes", GiB)
    cli("monitor-storage")
    assert "back to normal" in slack.delivered()[-1].body["text"]
    assert "storage.report" in (wired.layout.logs / "orchestration.log").read_text()


def test_webhook_answering_500_three_times_then_200_gets_the_alert_exactly_once(wired, slack):
    slack.script = ["500", "500", "500"]
    set_counter(wired, "parcels_queued", 600)
    t = time.time()
    _, sent = monitor.evaluate(wired, now=t, only=("queue_depth",))
    assert len(sent) == 1
    for step in (0, 11, 32, 73, 154):
        monitor.deliver(wired, now=t + step)
    assert len(slack.posts) == 4
    assert len(slack.delivered()) == 1
    slack_rows = [d for d in outbox.recent(wired.ledger) if d.channel == "slack"]
    assert [(d.status, d.attempts) for d in slack_rows] == [("sent", 4)]


def test_alerts_test_and_list(wired, slack, smtp, cli):
    result = cli("alerts", "test")
    assert result.code == 0, result.err
    assert "slack  sent" in result.out and "email  sent" in result.out
    assert len(slack.delivered()) == 1 and len(smtp.messages) == 1
    assert cli("alerts", "test", "--channel", "email").code == 0
    assert len(smtp.messages) == 2 and len(slack.posts) == 1
    listing = cli("alerts", "list", "--json").json()
    assert listing["active"] == [] and set(listing["channels"]) == {"log", "slack", "email"}
    assert {d["status"] for d in listing["deliveries"]} == {"sent"}
    text = cli("alerts", "list").out
    assert "no active alerts" in text
    # Secrets never show.
    assert "SECRET" not in text + result.out and wired.settings.slack_webhook_url not in text


def test_alerts_test_reports_what_happened_to_this_test_alert(wired, slack, smtp, cli):
    assert cli("alerts", "test", "--channel", "slack").code == 0
    slack.default = "500"
    # Each test is tried at once, not left behind the previous one's backoff, and never
    # mistaken for the older test alert that was sent.
    for _ in range(2):
        result = cli("alerts", "test")
        said = dict(line.split(maxsplit=1) for line in result.out.splitlines())
        assert result.code == 1, result
        assert said["slack"].startswith("pending: ") and "HTTP 500" in said["slack"]
        assert "next try in" in said["slack"]
        assert said["email"] == "sent" and said["log"] == "sent"
    assert len(slack.posts) == 3
    slack_tests = [
        (d.status, d.attempts) for d in outbox.recent(wired.ledger) if d.channel == "slack"
    ]
    assert slack_tests == [("pending", 1), ("pending", 1), ("sent", 1)]
    slack.default = "200"
    again = cli("alerts", "test", "--channel", "slack")
    assert again.code == 0 and again.out.strip() == "slack  sent"


def test_alerts_test_with_the_webhook_server_gone(runtime, cli, monkeypatch):
    from tests.peers import free_port

    monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/services/x")
    for _ in range(2):
        result = cli("alerts", "test")
        assert result.code == 1, result
        assert "slack  pending" in result.out and "log    sent" in result.out
        assert "not every channel took it" in result.err


async def test_console_test_alert_key_says_what_the_cli_says(wired, slack):
    from seer_console.app import SeerConsole
    from seer_console.source import SnapshotSource

    slack.default = "500"
    app = SeerConsole(SnapshotSource(wired.settings), refresh=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.press("a")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        notes = [n for n in app._notifications if n.message.startswith("test alert:")]
        assert len(notes) == 1 and notes[0].severity == "warning"
        assert "slack pending" in notes[0].message and "email sent" in notes[0].message


def test_alerts_test_for_an_unconfigured_channel_is_a_clear_error(runtime, cli):
    result = cli("alerts", "test", "--channel", "slack")
    assert result.code == 2 and "ALERT_SLACK_WEBHOOK_URL" in result.err


def test_status_exit_codes_follow_the_worst_rule(runtime, cli, monkeypatch):
    # Pretend both consumers are alive, so that only the rules decide.
    from worker.monitoring import status

    monkeypatch.setattr(
        status.consumers,
        "consumers",
        lambda ledger, **_: [
            status.consumers.ConsumerInfo(q, "h", 1, 0.0, True) for q in ("postmaster", "scheduler")
        ],
    )
    assert cli("status").code == 0
    set_counter(runtime, "parcels_queued", 150)
    result = cli("status", "--json")
    assert result.code == 1 and result.json()["rules"]["queue_depth"] == "warning"
    set_counter(runtime, "cas_bytes", 95 * GiB)
    assert cli("status").code == 2


def test_status_is_unknown_when_the_ledgers_server_is_unreachable(runtime, cli, monkeypatch):
    monkeypatch.setenv("SEER_DATABASE_URL", "postgresql://seer:pw@127.0.0.1:9/seer")
    result = cli("status")
    assert result.code == 3 and "UNKNOWN" in result.err and "127.0.0.1:9" in result.err
    assert "Traceback" not in result.err and "pw@" not in result.err


@pytest.mark.backends("sqlite")
def test_status_is_unknown_when_the_ledger_is_unreadable(runtime, cli):
    runtime.layout.ledger_db.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        runtime.layout.ledger_db.with_name("ledger.db" + suffix).unlink(missing_ok=True)
    result = cli("status")
    assert result.code == 3 and "UNKNOWN" in result.err and "Traceback" not in result.err


def test_metrics_in_prometheus_text_format(runtime, cli):
    set_counter(runtime, "parcels_queued", 7)
    text = cli("metrics").out
    assert "# TYPE seer_queue_depth gauge\nseer_queue_depth 7\n" in text
    assert 'seer_parcels{state="queued"} 7' in text
    assert 'seer_alert_level{rule="cas_size"} 0' in text
    for line in text.splitlines():
        assert line.startswith("#") or line.split(" ")[0].startswith("seer_")


def test_metrics_print_integers_exactly(runtime, cli, monkeypatch):
    monkeypatch.setenv("ORCHESTRATION_CAS_MAX_SIZE", "107374182401")
    set_counter(runtime, "cas_bytes", 123456789012)
    text = cli("metrics").out
    assert "\nseer_cas_quota_bytes 107374182401\n" in text
    assert "\nseer_cas_bytes 123456789012\n" in text
    assert "e+" not in text


def test_metrics_serve_on_loopback(runtime, env):
    proc = subprocess.Popen(
        [str(BIN / "seer"), "metrics", "--serve", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:")
        url = line.split()[1]
        body = wait_for(lambda: urllib.request.urlopen(url, timeout=5).read().decode(), 10)
        assert "seer_cas_bytes" in body
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.queue_facing
def test_rule_evaluation_runs_on_the_scheduler_and_reaches_the_webhook(
    wired, slack, consumers, monkeypatch
):
    set_counter(wired, "parcels_queued", 700)
    consumers("scheduler")  # inherits the environment that points Slack at the local peer
    wait_for(lambda: slack.delivered(), 30, "the queue alert on the webhook")
    assert "queue depth critical" in slack.delivered()[0].body["text"].lower()


def _serve(env, bind: str):
    proc = subprocess.Popen(
        [str(BIN / "seer"), "metrics", "--serve", bind],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("serving http://"), line
    return proc, line.split()[1]


def test_metrics_serve_on_ipv6_loopback(runtime, env):
    proc, url = _serve(env, "[::1]:0")
    try:
        assert url.startswith("http://[::1]:")
        body = wait_for(lambda: urllib.request.urlopen(url, timeout=5).read().decode(), 10)
        assert "seer_cas_bytes" in body
    finally:
        proc.terminate()
        proc.wait(10)


def test_metrics_endpoint_holds_against_idle_half_requests_and_leaks_nothing(runtime, env):
    import socket

    import psutil

    proc, url = _serve(env, "127.0.0.1:0")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    idle = []
    try:
        wait_for(lambda: urllib.request.urlopen(url, timeout=5).read(), 10, "the first scrape")
        for _ in range(60):  # slowloris: a request line begun, never finished
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            idle.append(s)
        server = psutil.Process(proc.pid)
        # Threads stay bounded (16 handlers at most, whatever is connected) ...
        assert server.num_threads() <= 16 + 4
        # ... and a scrape gets through once the idle ones time out (5 s), without spinning.
        body = wait_for(lambda: _try(url), 30, "a scrape while 60 half-requests are held", step=0.2)
        assert "seer_queue_depth" in body
        for _ in range(50):
            urllib.request.urlopen(url, timeout=5).read()
        ledgers = [f for f in server.open_files() if f.path.endswith("ledger.db")]
        assert len(ledgers) <= 2, ledgers
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        proc.wait(10)


def _try(url: str) -> str | None:
    try:
        return urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return None
