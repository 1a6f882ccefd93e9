"""Ways to tell a subscription's contact that it keeps failing: e-mail (SMTP) or a webhook POST.

A notifier gets an `Alert`, which holds only the subscription id, its contact, counts, times and
reason codes: no event data, so no personal data. `notify` returns once the message is accepted
and raises `NotificationFailed` (message without secrets or personal data) when it is not.
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import asdict, dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

import aiohttp


class NotificationFailed(Exception):
    """The alert could not be handed over; the ledger does not record it, so the next check tries again."""


@dataclass(frozen=True)
class Alert:
    subscription: str
    contact: str  # e-mail address of the subscription's contact
    consecutive_failures: int
    oldest_pending_age_seconds: float | None
    last_reason: str | None
    detected_at: datetime

    @property
    def subject(self) -> str:
        return f"Samband: subscription {self.subscription} keeps failing"

    def text(self) -> str:
        pending = (
            "none" if self.oldest_pending_age_seconds is None else f"{self.oldest_pending_age_seconds / 60:.0f} min"
        )
        return (
            f"Deliveries to subscription {self.subscription} keep failing.\n\n"
            f"Failed attempts in a row: {self.consecutive_failures}\n"
            f"Oldest delivery waiting: {pending}\n"
            f"Last reason: {self.last_reason or 'unknown'}\n"
            f"Detected: {self.detected_at.isoformat()}\n\n"
            "Samband keeps retrying. Check the receiving system; operators see the bus with `samband status`.\n"
            "You get this message at most once a day for this subscription."
        )

    def as_json(self) -> dict:
        return {**asdict(self), "detected_at": self.detected_at.isoformat(), "summary": self.subject}


class Notifier(Protocol):
    async def notify(self, alert: Alert) -> None: ...


class SmtpNotifier:
    """Sends the alert by e-mail to the subscription's contact (stdlib smtplib, in a thread)."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool = False,
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
    ):
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.username, self.password, self.timeout = starttls, username, password, timeout

    async def notify(self, alert: Alert) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = alert.contact
        message["Subject"] = alert.subject
        message.set_content(alert.text())
        try:
            await asyncio.to_thread(self._send, message)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotificationFailed(
                f"SMTP {self.host}:{self.port} refused the alert for {alert.subscription}: {type(exc).__name__}"
            ) from None

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


class WebhookNotifier:
    """POSTs the alert as JSON to an operations webhook (chat, incident tool); any 2xx is accepted."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 10.0):
        self.url = url
        self.headers = headers or {}
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def notify(self, alert: Alert) -> None:
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as session,
                session.post(self.url, json=alert.as_json(), headers=self.headers) as response,
            ):
                if not 200 <= response.status < 300:
                    raise NotificationFailed(f"alert webhook answered {response.status} for {alert.subscription}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotificationFailed(
                f"alert webhook unreachable for {alert.subscription}: {type(exc).__name__}"
            ) from None
