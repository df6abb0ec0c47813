"""Mail: the message of a notification, and the two ways it leaves — an SMTP server
(aiosmtplib), or, with none configured, an ``.eml`` file under the data directory.

A transport tells apart a mail that certainly was not handed over (``NotHandedOver``: safe to
try again) from one whose hand-over was cut (``HandOverCut``: the server may have it), and
calls ``handing_over`` just before the message itself goes: the sender records it there, so
that after a crash it knows which sends may have arrived (see ``sender``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Protocol

import aiosmtplib

from mercato.platform.files import write_private
from mercato.platform.settings import Settings, SmtpEndpoint, smtp_endpoint
from mercato.platform.waits import within

HandingOver = Callable[[], Awaitable[bool]]


class NotHandedOver(Exception):
    """The server has not got the message. ``permanent``: it refused it for good (5xx)."""

    def __init__(self, reason: str, *, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


class HandOverCut(Exception):
    """The connection failed while the message was going: the server may have it."""


class Overtaken(Exception):
    """Another sender took the mail over (this one's claim ran out): it is theirs to send."""


def message_of(
    *,
    notification_id: str,
    message_id: str,
    kind: str,
    sender: str,
    to_name: str | None,
    to_email: str,
    subject: str,
    text: str,
    html: str,
    created_at: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = formataddr((" ".join((to_name or "").split()), to_email))
    message["Subject"] = subject
    message["Date"] = format_datetime(created_at)
    # Fixed when the notification was made: the same on every attempt, so a receiving side
    # that deduplicates by Message-ID sees one message.
    message["Message-ID"] = message_id
    message["X-Mercato-Notification"] = notification_id
    message["X-Mercato-Kind"] = kind
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def message_id_for(notification_id: str, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "mercato.local"
    return f"<{notification_id}@{domain}>"


class Transport(Protocol):
    channel: str  # as NotificationSent says it
    # Sending twice leaves one copy (a file of the same name): a cut hand-over may be retried.
    idempotent: bool

    @property
    def shown(self) -> str: ...

    async def deliver(self, message: EmailMessage, handing_over: HandingOver) -> None: ...


class SmtpTransport:
    channel = "email"
    idempotent = False

    def __init__(self, endpoint: SmtpEndpoint, timeout: float):
        self.endpoint = endpoint
        self.timeout = timeout

    @property
    def shown(self) -> str:
        return self.endpoint.shown

    async def deliver(self, message: EmailMessage, handing_over: HandingOver) -> None:
        e = self.endpoint
        smtp = aiosmtplib.SMTP(
            hostname=e.host,
            port=e.port,
            use_tls=e.tls,
            start_tls=e.starttls,
            username=e.username,
            password=e.password,
            timeout=self.timeout,
        )
        sender = parseaddr(str(message["From"]))[1]
        recipient = parseaddr(str(message["To"]))[1]
        try:
            try:
                await smtp.connect()  # STARTTLS and login as configured
                await smtp.mail(sender)
                await smtp.rcpt(recipient)
            except aiosmtplib.SMTPResponseException as exc:
                permanent = 500 <= exc.code < 600 and not isinstance(
                    exc, aiosmtplib.SMTPAuthenticationError
                )
                raise NotHandedOver(f"{exc.code} {exc.message}", permanent=permanent) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise NotHandedOver(f"{type(exc).__name__}: {exc}") from exc
            if not await handing_over():
                raise Overtaken(str(message["Message-ID"]))
            try:
                await smtp.data(message.as_bytes())
            except aiosmtplib.SMTPResponseException as exc:
                # The server answered the message with a refusal: it does not have it.
                raise NotHandedOver(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from exc
            except Exception as exc:
                raise HandOverCut(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if smtp.is_connected:
                try:
                    await within(2.0, smtp.quit())
                except Exception:
                    smtp.close()


class FileTransport:
    """No mail server: each message is written to ``<dir>/<notification id>.eml`` (readable by
    the data directory's owner only), which any mail program opens."""

    channel = "file"
    idempotent = True

    def __init__(self, folder: Path):
        self.folder = folder

    @property
    def shown(self) -> str:
        return str(self.folder)

    async def deliver(self, message: EmailMessage, handing_over: HandingOver) -> None:
        if not await handing_over():
            raise Overtaken(str(message["Message-ID"]))
        name = f"{message['X-Mercato-Notification']}.eml"
        try:
            path = self.folder / name
            write_private(path.with_suffix(".eml.part"), message.as_bytes())
            os.replace(path.with_suffix(".eml.part"), path)
        except OSError as exc:
            raise NotHandedOver(f"cannot write {self.folder / name}: {exc}") from exc


def transport_for(settings: Settings) -> Transport:
    if settings.smtp_url:
        return SmtpTransport(smtp_endpoint(settings.smtp_url), settings.smtp_timeout)
    return FileTransport(settings.data_dir / "mail")
