"""Alert channels against real peers: a local webhook server and a local SMTP server."""

from __future__ import annotations

import json
import logging
import socket
import stat
import time
from collections.abc import Iterator

import pytest

from tests.peers import WEBHOOK_PATH, SlackPeer, SmtpPeer
from worker.alerts.channels import LogChannel, Notification, SendResult, channels_from_settings
from worker.alerts.channels.mail import EmailChannel
from worker.alerts.channels.slack import SlackChannel
from worker.layout import Layout
from worker.settings import load_settings

SECRET = "SECRETTOKEN"
PASSWORD = "hunter2-Sw0rdfish"


def note(level: str = "critical", title: str = "Queue depth 612 > 500") -> Notification:
    text = "value: 612\nthreshold: 500\nsince: 12:00\nstorage root: /srv/seer\nhost: box"
    return Notification("queue_depth", level, title, text, at=1_700_000_000.0)


@pytest.fixture
def slack() -> Iterator[SlackPeer]:
    with SlackPeer() as peer:
        yield peer


@pytest.fixture
def smtp() -> Iterator[SmtpPeer]:
    with SmtpPeer() as peer:
        yield peer


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def slack_channel(peer: SlackPeer, read_timeout: float = 2.0) -> SlackChannel:
    return SlackChannel(peer.webhook(), connect_timeout=1.0, read_timeout=read_timeout)


def email_channel(port: int, recipients: list[str] | None = None, **kw) -> EmailChannel:
    options = {"security": "none", "username": "", "password": "", "timeout": 2.0, **kw}
    return EmailChannel(
        host="127.0.0.1",
        port=port,
        sender="seer@example.com",
        recipients=recipients or ["ops@example.com"],
        **options,
    )


def test_notification_round_trips_as_json():
    n = Notification("cas_size", "warning", "CAS at 85%", "value: 85%", 12.5, simulated=True)
    assert Notification.from_json(n.to_json()) == n
    with pytest.raises(ValueError, match="level"):
        Notification("cas_size", "loud", "t", "x", 1.0)


def test_slack_posts_json_with_the_title(slack):
    channel = slack_channel(slack)
    assert channel.send(note()) == SendResult(True)
    [posted] = slack.posts
    assert posted.path == WEBHOOK_PATH
    assert posted.headers["Content-Type"] == "application/json"
    assert "Queue depth 612 &gt; 500" in posted.body["text"]
    assert "CRITICAL" in posted.body["text"] and "threshold: 500" in posted.body["text"]
    # Only the host is ever shown: the path is the credential.
    assert channel.describe() == f"127.0.0.1:{slack.port}"
    assert SECRET not in repr(channel)


def test_slack_429_gives_retry_after(slack):
    slack.script = ["429:2", "429", "429:soon"]
    channel = slack_channel(slack)
    results = [channel.send(note()) for _ in range(3)]
    assert [r.retry_after for r in results] == [2.0, 30.0, 30.0]
    assert not any(r.ok or r.permanent for r in results)
    assert "429" in results[0].error


def test_slack_500_is_retryable(slack):
    slack.script = ["500"]
    result = slack_channel(slack).send(note())
    assert (result.ok, result.permanent, result.retry_after) == (False, False, None)
    assert "HTTP 500" in result.error


@pytest.mark.parametrize(
    "answer, said",
    [
        ("404:channel_not_found", "channel_not_found"),
        ("410:channel_is_archived", "channel_is_archived"),
        ("400:invalid_payload", "invalid_payload"),
        ("403:invalid_token", "invalid_token"),
    ],
)
def test_slack_4xx_is_permanent_and_says_why(slack, answer, said):
    slack.script = [answer]
    result = slack_channel(slack).send(note())
    assert (result.ok, result.permanent) == (False, True)
    assert said in result.error and answer.partition(":")[0] in result.error


def test_slack_4xx_body_is_truncated_to_one_line(slack):
    slack.script = ["404:" + "no_such_channel " * 100]
    result = slack_channel(slack).send(note())
    assert result.permanent and len(result.error) <= 300 and "\n" not in result.error


def test_slack_that_hangs_times_out_within_the_read_timeout(slack):
    slack.script = ["hang"]
    started = time.monotonic()
    result = slack_channel(slack, read_timeout=0.5).send(note())
    elapsed = time.monotonic() - started
    assert (result.ok, result.permanent) == (False, False)
    assert "no answer" in result.error and "0.5s" in result.error
    assert 0.4 < elapsed < 3


def test_webhook_secret_never_in_errors_or_logs(slack, closed_port, caplog):
    # urllib3 logs each request's path at DEBUG: the level most likely to leak it.
    caplog.set_level(logging.DEBUG)
    slack.script = ["200", "500", "429:1", "404:channel_not_found", "hang"]
    channel = slack_channel(slack, read_timeout=0.5)
    results = [channel.send(note()) for _ in range(5)]
    refused = SlackChannel(f"http://127.0.0.1:{closed_port}{WEBHOOK_PATH}", 1.0, 0.5)
    results.append(refused.send(note()))
    assert results[0].ok and not any(r.ok for r in results[1:])
    assert "cannot reach" in results[-1].error
    for result in results[1:]:
        assert SECRET not in result.error and "/services/" not in result.error
    assert any(r.name.startswith("urllib3") for r in caplog.records), "urllib3 logged nothing"
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_email_sends_subject_recipients_and_body(smtp):
    channel = email_channel(smtp.port, ["ops@example.com", "oncall@example.com"])
    assert channel.send(note()) == SendResult(True)
    [mail] = smtp.messages
    assert mail.mail_from == "seer@example.com"
    assert mail.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    assert mail.subject == "[Seer Ops] CRITICAL Queue depth 612 > 500"
    assert "threshold: 500" in mail.body and "storage root: /srv/seer" in mail.body
    assert channel.describe() == f"127.0.0.1:{smtp.port} (none)"


@pytest.mark.parametrize(
    "stage, reply, permanent",
    [
        ("rcpt", "451 4.7.1 Greylisted, try again later", False),
        ("data", "451 4.3.0 Mail server temporarily rejected message", False),
        ("rcpt", "550 5.1.1 No such user", True),
        ("data", "550 5.7.1 Message rejected as spam", True),
    ],
)
def test_email_4xx_is_retryable_and_5xx_permanent(smtp, stage, reply, permanent):
    setattr(smtp.handler, stage, reply)
    result = email_channel(smtp.port).send(note())
    assert (result.ok, result.permanent) == (False, permanent)
    assert reply.split()[0] in result.error
    assert smtp.messages == []


def test_email_with_one_recipient_refused_is_ok_and_names_it(smtp):
    smtp.handler.refuse["gone@example.com"] = "550 5.1.1 No such user"
    result = email_channel(smtp.port, ["ops@example.com", "gone@example.com"]).send(note())
    assert result.ok and "gone@example.com" in result.error and "550" in result.error
    assert "ops@example.com" not in result.error
    assert [m.rcpt_tos for m in smtp.messages] == [["ops@example.com"]]


def test_email_to_an_unreachable_port_is_retryable(closed_port):
    result = email_channel(closed_port, username="seer", password=PASSWORD).send(note())
    assert (result.ok, result.permanent) == (False, False)
    assert "cannot reach" in result.error and PASSWORD not in result.error


def test_email_logs_in_and_never_shows_the_password():
    with SmtpPeer(credentials=("seer", PASSWORD)) as peer:
        good = email_channel(peer.port, username="seer", password=PASSWORD).send(note())
        bad = email_channel(peer.port, username="seer", password=PASSWORD + "x").send(note())
    assert good.ok and peer.logins == ["seer"] and len(peer.messages) == 1
    assert (bad.ok, bad.permanent) == (False, True)
    assert "535" in bad.error and "login" in bad.error
    assert PASSWORD not in bad.error


def test_email_starttls_to_a_server_without_it_is_permanent(smtp):
    result = email_channel(smtp.port, security="starttls").send(note())
    assert (result.ok, result.permanent) == (False, True)
    assert "STARTTLS" in result.error
    assert smtp.messages == []


def test_log_channel_appends_json_lines_with_the_file_mode(runtime, caplog):
    caplog.set_level(logging.INFO, logger="seer.alerts")
    channel = LogChannel(runtime.layout.logs / "alerts.log", 0o660)
    assert channel.send(note("critical")).ok
    assert channel.send(note("resolved", "Queue depth back to 3")).ok
    path = runtime.layout.logs / "alerts.log"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["level"], x["rule"]) for x in lines] == [
        ("critical", "queue_depth"),
        ("resolved", "queue_depth"),
    ]
    assert lines[0]["title"] == "Queue depth 612 > 500" and lines[0]["at"] == 1_700_000_000.0
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    levels = [(r.name, r.levelno) for r in caplog.records if r.name == "seer.alerts"]
    assert levels == [("seer.alerts", logging.ERROR), ("seer.alerts", logging.INFO)]


def test_log_channel_that_cannot_write_is_retryable(tmp_path):
    result = LogChannel(tmp_path / "missing" / "alerts.log").send(note())
    assert (result.ok, result.permanent) == (False, False)
    assert "cannot write" in result.error


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, ["log"]),
        ({"ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x"}, ["log", "slack"]),
        ({"SMTP_HOST": "smtp.example.com"}, ["log"]),
        ({"ALERT_EMAIL_TO": "ops@example.com"}, ["log"]),
        (
            {
                "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x",
                "SMTP_HOST": "smtp.example.com",
                "ALERT_EMAIL_TO": "ops@example.com, oncall@example.com",
            },
            ["log", "slack", "email"],
        ),
    ],
)
def test_channels_from_settings_enables_exactly_the_configured(env, environ, expected):
    settings = load_settings({"SEER_STORAGE_PATH": env["SEER_STORAGE_PATH"], **environ})
    layout = Layout.from_settings(settings)
    channels = channels_from_settings(settings, layout)
    assert list(channels) == expected
    assert all(channel.name == name for name, channel in channels.items())
    assert channels["log"].describe() == str(layout.logs / "alerts.log")
    if "slack" in channels:
        assert channels["slack"].describe() == "hooks.slack.com"
    if "email" in channels:
        assert channels["email"].recipients == ["ops@example.com", "oncall@example.com"]
        assert channels["email"].describe() == "smtp.example.com:25 (starttls)"


def test_a_server_that_echoes_part_of_the_webhook_path_gets_none_of_it_stored(slack):
    for segment in ("SECRETTOKEN", "B000/SECRETTOKEN", "/services/T000/B000/SECRETTOKEN"):
        slack.script = [f"404:no such webhook {segment} here"]
        result = slack_channel(slack).send(note())
        assert not result.ok and SECRET not in result.error, result.error
        assert "no such webhook" in result.error
