"""Alert channels: a notification sent to Slack (incoming webhook), email (SMTP) or the log.

The protocol and the records are in `base`; each channel is a module of its own, imported
only when its settings turn it on (Slack pulls in requests, email smtplib).
"""

from __future__ import annotations

from collections.abc import Callable

from worker.alerts.channels.base import (
    LEVELS,
    BrokenChannel,
    Channel,
    Notification,
    SendResult,
)
from worker.alerts.channels.log import LogChannel
from worker.layout import Layout
from worker.settings import Settings

__all__ = [
    "LEVELS",
    "BrokenChannel",
    "Channel",
    "LogChannel",
    "Notification",
    "SendResult",
    "channels_from_settings",
]


def channels_from_settings(settings: Settings, layout: Layout) -> dict[str, Channel]:
    """The channels that are on: the log always, Slack and email when their settings are set."""
    channels: dict[str, Channel] = {
        "log": LogChannel(layout.logs / "alerts.log", layout.file_mode, base=layout.root)
    }
    if settings.slack_webhook_url:
        from worker.alerts.channels.slack import SlackChannel

        channels["slack"] = _built("slack", lambda: SlackChannel(settings.slack_webhook_url))
    recipients = [a for a in settings.email_to.split(",") if a]
    if settings.smtp_host and recipients:
        from worker.alerts.channels.mail import EmailChannel

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


def _built(name: str, make: Callable[[], Channel]) -> Channel:
    try:
        return make()
    except Exception as exc:  # settings validation should have caught it: never fatal here
        return BrokenChannel(name, f"its settings cannot be used ({type(exc).__name__})")
