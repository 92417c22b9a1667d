"""Alert channels: a notification sent to Slack (incoming webhook), email (SMTP) or the log.

A channel never raises for a failed delivery: it answers a SendResult that says whether
retrying can help, with a one-line error that never holds the webhook URL or the SMTP password.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import requests

from worker.files import UnsafeEntry, append_json_line
from worker.layout import Layout
from worker.redaction import placeholder, redact_text
from worker.settings import Settings

LEVELS = ("warning", "critical", "resolved", "test")
ERROR_MAX = 300  # characters of an error kept for the outbox and the console
# A Retry-After larger than this is taken for a mistake: an alert must not wait for days.
RETRY_AFTER_DEFAULT = 30.0
RETRY_AFTER_MAX = 3600.0
SLACK_TEXT_MAX = 3000


@dataclass(frozen=True)
class Notification:
    """What a rule has to say, once; stored as the outbox payload and sent to every channel."""

    rule: str
    level: str
    title: str
    text: str
    at: float
    simulated: bool = False

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"notification level {self.level!r}: expected one of {LEVELS}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Notification:
        data = json.loads(raw)
        # Keys a later version may add are ignored rather than refused.
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send: ok, or failed and whether a retry can help."""

    ok: bool
    permanent: bool = False
    retry_after: float | None = None
    error: str | None = None


class Channel(Protocol):
    name: str

    def send(self, n: Notification) -> SendResult: ...

    def describe(self) -> str: ...


def _one_line(text: str, secrets: tuple[str, ...] = ()) -> str:
    """An error fit to store and show: secrets gone, one line, bounded."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, placeholder("secret"))
    text = " ".join(redact_text(text).split())
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 1] + "…"


def _server_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = " ".join(text.split())
    return text[:120]


class _HideWebhookPaths(logging.Filter):
    """urllib3 logs every request's path at DEBUG, and a webhook's path is its credential."""

    def __init__(self) -> None:
        super().__init__()
        # Replaced, never changed in place: another thread may be logging through it.
        self.secrets: frozenset[str] = frozenset()

    def add(self, secrets: tuple[str, ...]) -> None:
        self.secrets = self.secrets | set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        secrets = self.secrets
        if any(secret in message for secret in secrets):
            for secret in secrets:
                message = message.replace(secret, placeholder("slack-webhook"))
            record.msg, record.args = message, None
        return True


_HIDE_WEBHOOK_PATHS = _HideWebhookPaths()
# A logger's filter sees only its own records, so each urllib3 logger that names a URL gets it.
for _name in ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_HIDE_WEBHOOK_PATHS)

_EMOJI = {
    "critical": ":red_circle:",
    "warning": ":warning:",
    "resolved": ":white_check_mark:",
    "test": ":information_source:",
}


def _mrkdwn(text: str) -> str:
    # The three characters Slack asks to escape; anything else is shown as written.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel:
    """A Slack incoming webhook. The URL is a secret: only its host is ever shown."""

    name = "slack"

    def __init__(self, url: str, connect_timeout: float = 3.05, read_timeout: float = 10) -> None:
        self._url = url
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        parts = urlsplit(url)
        self.host = parts.netloc.rpartition("@")[2] or "(no host)"
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        # Each segment too: a server that echoes one part of the path must not get it stored.
        segments = [s for s in parts.path.split("/") if s and s != "services"]
        pieces = (url, path, parts.path, parts.query, *segments, *parts.query.split("&"))
        self._secrets = tuple(sorted({s for s in pieces if len(s) >= 6}, key=len, reverse=True))
        _HIDE_WEBHOOK_PATHS.add(self._secrets)

    def describe(self) -> str:
        return self.host

    def __repr__(self) -> str:
        return f"SlackChannel({self.host})"

    def payload(self, n: Notification) -> dict:
        lines = [f"{_EMOJI.get(n.level, '')} *{n.level.upper()}* {_mrkdwn(n.title)}".strip()]
        lines.append(_mrkdwn(n.text))
        text = "\n".join(lines)
        return {"text": text[:SLACK_TEXT_MAX]}

    def _error(self, text: str) -> str:
        return _one_line(f"slack: {text}", self._secrets)

    def send(self, n: Notification) -> SendResult:
        try:
            response = requests.post(
                self._url,
                json=self.payload(n),
                timeout=(self.connect_timeout, self.read_timeout),
                # A webhook that redirects is misconfigured; following it would POST elsewhere.
                allow_redirects=False,
            )
        except requests.ConnectTimeout:
            # Exception messages from requests carry the URL: only the class and host are kept.
            return SendResult(
                False,
                error=self._error(
                    f"could not connect to {self.host} within {self.connect_timeout}s "
                    "(ConnectTimeout)"
                ),
            )
        except requests.Timeout as exc:
            return SendResult(
                False,
                error=self._error(
                    f"no answer from {self.host} within {self.read_timeout}s ({type(exc).__name__})"
                ),
            )
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            return SendResult(
                False, True, error=self._error(f"the webhook URL is invalid ({type(exc).__name__})")
            )
        except requests.RequestException as exc:
            return SendResult(
                False, error=self._error(f"cannot reach {self.host} ({type(exc).__name__})")
            )
        return self._outcome(response)

    def _outcome(self, response: requests.Response) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(True)
        body = _server_text(response.text)
        if status == 429:
            wait = _retry_after(response.headers.get("Retry-After"))
            return SendResult(
                False,
                retry_after=wait,
                error=self._error(
                    f"{self.host} rate-limited the webhook (HTTP 429), retry in {wait:g}s"
                ),
            )
        said = f": {body}" if body else ""
        if status >= 500:
            return SendResult(False, error=self._error(f"{self.host} answered HTTP {status}{said}"))
        # 4xx (invalid_payload, channel_not_found, channel_is_archived...) and redirects: the
        # same request will be refused again until someone fixes the webhook.
        return SendResult(
            False, True, error=self._error(f"{self.host} refused: HTTP {status}{said}")
        )


def _retry_after(raw: str | None) -> float:
    try:
        value = float(raw) if raw is not None else RETRY_AFTER_DEFAULT
    except ValueError:
        # Retry-After may also be an HTTP date; Slack sends seconds, so a default will do.
        value = RETRY_AFTER_DEFAULT
    if value != value or value < 0:  # NaN or negative
        value = RETRY_AFTER_DEFAULT
    return min(value, RETRY_AFTER_MAX)


class EmailChannel:
    """Alert mail over SMTP: plain, STARTTLS or implicit TLS, with an optional login."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        security: str,
        username: str,
        password: str,
        sender: str,
        recipients: list[str],
        timeout: float = 10,
    ) -> None:
        if security not in ("none", "starttls", "ssl"):
            raise ValueError(f"SMTP security {security!r}: expected none, starttls or ssl")
        self.host, self.port, self.security = host, port, security
        self.username = username
        self._password = password
        self.sender = sender
        self.recipients = list(recipients)
        self.timeout = timeout

    def describe(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"

    def __repr__(self) -> str:
        return f"EmailChannel({self.describe()})"

    def message(self, n: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"[Seer Ops] {n.level.upper()} {n.title}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(n.at, localtime=True)
        # The sender's domain, not socket.getfqdn(): that may wait on DNS for seconds.
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or "localhost")
        # The notification says itself whether it is simulated (its title and text do).
        msg.set_content(n.text + "\n\n-- \nSeer Ops alerts\n")
        return msg

    def _error(self, text: str) -> str:
        return _one_line(f"email: {text}", (self._password,))

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(timeout=self.timeout)
        try:
            smtp.connect(self.host, self.port)
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self._password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, n: Notification) -> SendResult:
        msg = self.message(n)
        try:
            smtp = self._connect()
            try:
                refused = smtp.send_message(msg, self.sender, self.recipients)
            finally:
                _quit(smtp)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            # Every recipient refused for now (4xx, e.g. greylisting) is worth another try.
            permanent = not all(400 <= code < 500 for code in codes)
            return SendResult(
                False,
                permanent,
                error=self._error(
                    f"{self._where()} refused every recipient: {_refusals(exc.recipients)}"
                ),
            )
        except smtplib.SMTPSenderRefused as exc:
            return self._by_code(exc.smtp_code, f"refused the sender {exc.sender}", exc.smtp_error)
        except smtplib.SMTPAuthenticationError as exc:
            return self._by_code(
                exc.smtp_code, f"refused the login as {self.username}", exc.smtp_error
            )
        except smtplib.SMTPDataError as exc:
            return self._by_code(exc.smtp_code, "refused the message", exc.smtp_error)
        except smtplib.SMTPResponseException as exc:
            return self._by_code(exc.smtp_code, "answered", exc.smtp_error)
        except smtplib.SMTPNotSupportedError as exc:
            # STARTTLS or AUTH asked of a server that lacks it: a configuration to fix.
            return SendResult(False, True, error=self._error(f"{self._where()}: {exc}"))
        except smtplib.SMTPServerDisconnected:
            return SendResult(False, error=self._error(f"{self._where()} closed the connection"))
        except TimeoutError:
            return SendResult(
                False, error=self._error(f"no answer from {self._where()} within {self.timeout}s")
            )
        except ssl.SSLError as exc:
            # Kept retryable: a certificate gets fixed, and a dropped alert would not come back.
            return SendResult(
                False,
                error=self._error(
                    f"TLS with {self._where()} failed ({exc.reason or type(exc).__name__})"
                ),
            )
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return SendResult(False, error=self._error(f"cannot reach {self._where()} ({reason})"))
        except smtplib.SMTPException as exc:
            return SendResult(False, error=self._error(f"{self._where()}: {type(exc).__name__}"))
        if refused:
            return SendResult(
                True, error=self._error(f"{self._where()} refused {_refusals(refused)}")
            )
        return SendResult(True)

    def _by_code(self, code: int, what: str, said: bytes | str) -> SendResult:
        # SMTP's own rule: 4xx means try again later, 5xx means this will not work.
        permanent = 500 <= code < 600
        text = f"{self._where()} {what}: {code} {_server_text(said)}"
        return SendResult(False, permanent, error=self._error(text))


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{addr} ({code} {_server_text(said)})" for addr, (code, said) in refused.items()
    )


def _quit(smtp: smtplib.SMTP) -> None:
    # The message is accepted once DATA is answered: a failing QUIT must not turn that
    # into a failure and a duplicate mail.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


_LOG_LEVELS = {
    "critical": logging.ERROR,
    "warning": logging.WARNING,
    "resolved": logging.INFO,
    "test": logging.INFO,
}


class LogChannel:
    """One JSON line per notification in logs/alerts.log, and a record on `seer.alerts`."""

    name = "log"

    def __init__(self, path: Path, file_mode: int = 0o660, *, base: Path | None = None) -> None:
        self.path = Path(path)
        self.file_mode = file_mode
        # No link below `base` (the storage root) is followed on the way to the file.
        self.base = base
        self.log = logging.getLogger("seer.alerts")

    def describe(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"LogChannel({self.path})"

    def send(self, n: Notification) -> SendResult:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(n.at))}
        try:
            append_json_line(
                self.path,
                dict(sorted({**record, **asdict(n)}.items())),
                self.file_mode,
                base=self.base,
            )
        except UnsafeEntry as exc:
            return SendResult(False, error=_one_line(f"log: {exc}"))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return SendResult(False, error=_one_line(f"log: cannot write {self.path} ({reason})"))
        level = _LOG_LEVELS.get(n.level, logging.WARNING)
        self.log.log(level, "alert %s %s: %s", n.level, n.rule, n.title)
        return SendResult(True)


def channels_from_settings(settings: Settings, layout: Layout) -> dict[str, Channel]:
    """The channels that are on: the log always, Slack and email when their settings are set."""
    channels: dict[str, Channel] = {
        "log": LogChannel(layout.logs / "alerts.log", layout.file_mode, base=layout.root)
    }
    if settings.slack_webhook_url:
        channels["slack"] = _built("slack", lambda: SlackChannel(settings.slack_webhook_url))
    recipients = [a for a in settings.email_to.split(",") if a]
    if settings.smtp_host and recipients:
        channels["email"] = _built(
            "email",
            lambda: EmailChannel(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_security,
                settings.smtp_username,
                settings.smtp_password,
                settings.email_from,
                recipients,
            ),
        )
    return channels


class BrokenChannel:
    """A channel whose settings could not be used: every send fails, naming why, and the
    other channels go on."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why

    def describe(self) -> str:
        return f"unusable: {self.why}"

    def send(self, n: Notification) -> SendResult:
        return SendResult(False, error=f"{self.name}: {self.why}")


def _built(name: str, make: Callable[[], Channel]) -> Channel:
    try:
        return make()
    except Exception as exc:  # settings validation should have caught it: never fatal here
        return BrokenChannel(name, f"its settings cannot be used ({type(exc).__name__})")
