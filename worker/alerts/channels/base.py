"""What every alert channel is: the notification it sends, the result it answers, and the
Channel protocol. A channel never raises for a failed delivery: it answers a SendResult that
says whether retrying can help, with a one-line error that never holds a secret.

No channel's library is imported here (requests for Slack, smtplib for email): the console and
the outbox import this module on every start.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Protocol

from worker.redaction import placeholder, redact_text

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


def one_line(text: str, secrets: tuple[str, ...] = ()) -> str:
    """An error fit to store and show: secrets gone, one line, bounded."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, placeholder("secret"))
    text = " ".join(redact_text(text).split())
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 1] + "…"


def server_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = " ".join(text.split())
    return text[:120]


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
