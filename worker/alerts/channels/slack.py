"""Alerts to Slack through an incoming webhook. The URL is a secret: only its host is shown."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import requests

from worker.alerts.channels.base import (
    RETRY_AFTER_DEFAULT,
    RETRY_AFTER_MAX,
    SLACK_TEXT_MAX,
    Notification,
    SendResult,
    one_line,
    server_text,
)
from worker.redaction import placeholder


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
        return one_line(f"slack: {text}", self._secrets)

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
        body = server_text(response.text)
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
