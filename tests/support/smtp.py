"""A real SMTP server on 127.0.0.1 that keeps what it receives (aiosmtpd), with AUTH PLAIN
over the plain connection: Go's net/smtp (Alertmanager) only sends credentials without TLS to
localhost, which 127.0.0.1 is."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from rollout.review.localstack import HOST, free_port, wait_for


class SmtpSink:
    def __init__(self, username: str, password: str) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                sink.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = (data.login.decode(), data.password.decode()) == (username, password)
            if ok:
                sink.logins.append(data.login.decode())
            return AuthResult(success=ok)

        self.port = free_port()
        self._controller = Controller(
            Handler(), hostname=HOST, port=self.port, authenticator=authenticate, auth_require_tls=False,
            # aiosmtpd's LOGIN challenges ("User Name") are not the "Username:" Alertmanager expects
            auth_exclude_mechanism=["LOGIN"],
        )

    @property
    def smarthost(self) -> str:
        return f"{HOST}:{self.port}"

    def wait_for(self, match, timeout: float = 30.0) -> EmailMessage:  # noqa: ANN001
        return wait_for(lambda: next((m for m in self.messages if match(m)), None), timeout, "an e-mail at the SMTP sink")

    def __enter__(self) -> Self:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
