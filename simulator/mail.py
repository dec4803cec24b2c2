"""A local SMTP server that keeps what it receives, for the demo and the tests (aiosmtpd): real
SMTP on loopback, optionally with AUTH, STARTTLS or TLS from the start, and faults (a 451 or a
554) for the next N messages."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        with self.sink.lock:
            if self.sink.faults:
                code = self.sink.faults.pop(0)
                return f"{code} {'try again later' if code < 500 else 'rejected'}"
            msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
            self.sink.received.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(
        self,
        port: int = 0,
        username: str = "",
        password: str = "",
        security: str = "none",
        cert: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """security: 'none', 'starttls' (required before AUTH and mail) or 'tls' (TLS from the start),
        the latter two with cert = (certificate PEM file, key PEM file)."""
        self.port = port or free_port()
        self.received: list[tuple[list[str], EmailMessage]] = []
        self.faults: list[int] = []
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if username:

            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
                ok = (
                    isinstance(auth_data, LoginPassword)
                    and auth_data.login.decode() == username
                    and auth_data.password.decode() == password
                )
                return AuthResult(success=ok, handled=False)

            # Loopback only: AUTH over plain SMTP is allowed when security is 'none', so the login path
            # is exercised without a certificate too. With TLS from the start the whole session is
            # encrypted, but aiosmtpd counts only STARTTLS as TLS for AUTH, so it is not asked there.
            kwargs = {"authenticator": authenticate, "auth_require_tls": security == "starttls", "auth_required": True}
        if security != "none":
            assert cert is not None, "STARTTLS and TLS need cert=(certificate file, key file)"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*cert)
            if security == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context)
        self.controller = Controller(_Handler(self), hostname=host, port=self.port, **kwargs)

    def fail(self, code: int, times: int = 1) -> None:
        with self.lock:
            self.faults += [code] * times

    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        with self.lock:
            return list(self.received)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()
