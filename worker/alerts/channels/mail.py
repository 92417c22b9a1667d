"""Alert mail over SMTP: plain, STARTTLS or implicit TLS, with an optional login."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from worker.alerts.channels.base import Notification, SendResult, one_line, server_text


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
        return one_line(f"email: {text}", (self._password,))

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
        text = f"{self._where()} {what}: {code} {server_text(said)}"
        return SendResult(False, permanent, error=self._error(text))


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{addr} ({code} {server_text(said)})" for addr, (code, said) in refused.items()
    )


def _quit(smtp: smtplib.SMTP) -> None:
    # The message is accepted once DATA is answered: a failing QUIT must not turn that
    # into a failure and a duplicate mail.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
