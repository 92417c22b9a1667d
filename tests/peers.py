"""Real peers for the alert channels: a local Slack-like webhook server and an SMTP server.

Each is a context manager; the test modules wrap them in fixtures. Neither mocks a client:
requests and smtplib talk to real sockets on 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

WEBHOOK_PATH = "/services/T000/B000/SECRETTOKEN"


@dataclass(frozen=True)
class Posted:
    """One POST the webhook server received, and the script step it answered with."""

    path: str
    headers: dict[str, str]
    body: Any
    answer: str


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        peer = self.server.peer
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        answer = peer.next_answer()
        peer.record(Posted(self.path, dict(self.headers.items()), body, answer))
        code, _, arg = answer.partition(":")
        if code == "hang":
            # Longer than any client read timeout in the tests, but bounded (and cut short
            # when the peer stops), then the connection closes with no answer.
            peer.release.wait(float(arg or peer.hang_for))
            self.close_connection = True
            return
        status = int(code)
        headers = {"Content-Type": "text/plain"}
        if status == 200:
            text = arg or "ok"
        elif status == 429:
            text = "rate_limited"
            if arg:
                headers["Retry-After"] = arg
        else:
            text = arg or "internal_error"
        data = text.encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read `posts`, not stderr


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True
    peer: SlackPeer


class SlackPeer:
    """Stands in for a Slack incoming webhook, answering from `script` and then `default`.

    Script steps: "200", "500", "429" (no Retry-After), "429:2" (Retry-After: 2),
    "404:channel_not_found" (status and body), "hang" (no answer for `hang_for` seconds).
    """

    def __init__(self, hang_for: float = 5.0) -> None:
        self.script: list[str] = []
        self.default = "200"
        self.hang_for = hang_for
        self.posts: list[Posted] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = _WebhookServer(("127.0.0.1", 0), _WebhookHandler)
        self._server.peer = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def webhook(self, path: str = WEBHOOK_PATH) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def next_answer(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def record(self, posted: Posted) -> None:
        with self._lock:
            self.posts.append(posted)

    def delivered(self) -> list[Posted]:
        """The posts answered 200: what a Slack channel would show."""
        with self._lock:
            return [p for p in self.posts if p.answer.partition(":")[0] == "200"]

    def __enter__(self) -> SlackPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    body: str
    headers: dict[str, str]


@dataclass
class _Recorder:
    """The aiosmtpd handler: records accepted mail, refuses what the test asks it to."""

    messages: list[Mail] = field(default_factory=list)
    # A reply such as "451 4.7.1 Try again later" or "550 5.1.1 No such user".
    rcpt: str | None = None
    refuse: dict[str, str] = field(default_factory=dict)
    data: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        reply = self.refuse.get(address) or self.rcpt
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.data:
            return self.data
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(("plain",))
        self.messages.append(
            Mail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                str(message["Subject"]),
                body.get_content() if body else "",
                {k: str(v) for k, v in message.items()},
            )
        )
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpPeer:
    """A real SMTP server (aiosmtpd) on 127.0.0.1; with `credentials` it requires AUTH."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.handler = _Recorder()
        self.credentials = credentials
        self.logins: list[str] = []
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if credentials:
            # No TLS here: aiosmtpd would otherwise refuse AUTH over a plain connection.
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False}
        self._controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="smtp.test",
            **kwargs,
        )

    @property
    def messages(self) -> list[Mail]:
        return self.handler.messages

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self.credentials == (
            auth_data.login.decode(),
            auth_data.password.decode(),
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> SmtpPeer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
