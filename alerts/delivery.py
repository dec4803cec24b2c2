"""One retry loop for every channel, and the channels: Slack (bot token or incoming webhook,
through slack_sdk), mail by SMTP or by SES. PagerDuty (alerts/pagerduty.py) and generic webhooks
(alerts/webhook.py) are channels too, through the same loop.

A channel's `send` raises `SendError`, saying whether trying again can help and, for a 429,
how long Slack asked us to wait. `deliver` retries with exponential backoff and full jitter,
honours Retry-After, paces Slack to one message a second per channel, and gives up after
`attempts` with the last error (the caller records it and shows it; the notification stays owed).
"""

from __future__ import annotations

import hashlib
import random
import smtplib
import ssl
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol, TypeVar

from alerts.messages import Notice, email_message, slack_message

T = TypeVar("T")
SLACK_PACE = 1.0  # Slack allows about one message a second per channel
BACKOFF_BASE, BACKOFF_CAP, RETRY_AFTER_CAP = 1.0, 60.0, 900.0


class SendError(Exception):
    def __init__(
        self, message: str, retry: bool = True, retry_after: float | None = None, unsure: bool = False
    ) -> None:
        super().__init__(message)
        # unsure: no answer came back (a timeout, a dropped connection), so the server may have it.
        self.retry, self.retry_after, self.unsure = retry, retry_after, unsure


class DeliveryFailed(Exception):
    def __init__(self, attempts: int, error: str) -> None:
        super().__init__(f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}: {error}")
        self.attempts, self.error = attempts, error


@dataclass
class Delivered:
    external_id: str = ""
    thread_id: str = ""


class Channel(Protocol):
    def send(self, target: str, notice: Notice, key: str, first: Delivered | None) -> Delivered: ...

    def find(self, target: str, key: str, first: Delivered | None) -> Delivered | None:
        """A send whose outcome is unknown (the agent stopped mid-send): find it if the channel can."""
        ...


def deliver(
    send: Callable[[], T], attempts: int, sleep: Callable[[float], None], rng: random.Random | None = None
) -> T:
    rng = rng or random.Random()
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            return send()
        except SendError as exc:
            last = str(exc)
            if not exc.retry or attempt == attempts:
                raise DeliveryFailed(attempt, last) from exc
            if exc.retry_after is not None:
                sleep(min(max(exc.retry_after, 0.0), RETRY_AFTER_CAP))
            else:
                sleep(rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))))
    raise DeliveryFailed(attempts, last)  # pragma: no cover - the loop returns or raises


class Pacer:
    """At most one send a second per key (a Slack channel), waiting on the injected clock."""

    def __init__(self, now: Callable[[], float], sleep: Callable[[float], None], gap: float = SLACK_PACE) -> None:
        self.now, self.sleep, self.gap = now, sleep, gap
        self.last: dict[str, float] = {}

    def wait(self, key: str) -> None:
        due = self.last.get(key, float("-inf")) + self.gap
        if (delay := due - self.now()) > 0:
            self.sleep(delay)
        self.last[key] = self.now()


def _network(exc: BaseException) -> SendError:
    return SendError(f"{type(exc).__name__}: {exc}", retry=True, unsure=True)


# -- Slack -------------------------------------------------------------------------------------


class SlackBot:
    """chat.postMessage for the first notification; later ones update that message (chat.update)
    and add to its thread. Each message carries its notification key as message metadata, so a
    send cut short by a crash, or one whose answer never came back, is found (conversations.history)
    instead of sent twice."""

    def __init__(self, token: str, base_url: str, timeout: int, pacer: Pacer) -> None:
        from slack_sdk import WebClient

        # retry_handlers=[]: retries belong to `deliver`, one loop for every channel.
        self.client = WebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=[])
        self.pacer = pacer
        self._unsure: set[str] = set()  # keys whose last attempt got no answer

    def _call(self, method: str, **kwargs: Any) -> Any:
        from slack_sdk.errors import SlackApiError

        self.pacer.wait(kwargs.get("channel", ""))
        try:
            return getattr(self.client, method)(**kwargs)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = exc.response.get("error", "") if isinstance(exc.response.data, dict) else ""
            if status == 429 or error == "ratelimited":
                after = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after") or "1"
                raise SendError(f"Slack {method}: rate limited (429)", retry_after=float(after)) from None
            if status >= 500:
                raise SendError(f"Slack {method}: HTTP {status}") from None
            raise SendError(
                f"Slack {method}: {error or f'HTTP {status}'}", retry=error in ("internal_error", "fatal_error")
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise _network(exc) from None

    def send(self, target: str, notice: Notice, key: str, first: Delivered | None) -> Delivered:
        if key in self._unsure and (found := self.find(target, key, first)) is not None:
            self._unsure.discard(key)
            return found
        try:
            got = self._send(target, notice, key, first)
        except SendError as exc:
            if exc.unsure:
                self._unsure.add(key)
            raise
        self._unsure.discard(key)
        return got

    def _send(self, target: str, notice: Notice, key: str, first: Delivered | None) -> Delivered:
        channel = target.partition(":")[2]
        message = slack_message(notice)
        metadata = {"event_type": "fleetwatch_notification", "event_payload": {"key": key}}
        if first is None:
            got = self._call("chat_postMessage", channel=channel, metadata=metadata, unfurl_links=False, **message)
            return Delivered(str(got["ts"]), str(got["channel"]))
        self._call("chat_update", channel=first.thread_id, ts=first.external_id, **message)
        # The thread gets the short form where there is one ("Acknowledged by X").
        got = self._call(
            "chat_postMessage",
            channel=first.thread_id,
            thread_ts=first.external_id,
            metadata=metadata,
            unfurl_links=False,
            **slack_message(notice, reply=True),
        )
        return Delivered(str(got["ts"]), first.thread_id)

    def post_message(self, channel: str, message: dict[str, Any]) -> None:
        """A message that is not a notification (the digest): no update, no thread."""
        self._call("chat_postMessage", channel=channel, unfurl_links=False, **message)

    def find(self, target: str, key: str, first: Delivered | None) -> Delivered | None:
        channel = first.thread_id if first else target.partition(":")[2]
        if channel.startswith("#"):
            return None  # conversations.history needs the channel ID, learnt from the first reply
        # The newest 200 messages, not a time range: an interrupted send is the agent's latest
        # word in the channel, and its key is unique, whatever the clocks of the two sides say.
        kwargs: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": 200}
        method = "conversations_history"
        if first is not None:
            method, kwargs["ts"] = "conversations_replies", first.external_id
        got = self._call(method, **kwargs)
        for m in got.get("messages", []):
            if (m.get("metadata") or {}).get("event_payload", {}).get("key") == key:
                return Delivered(str(m["ts"]), channel)
        return None


class SlackWebhook:
    """An incoming webhook: simpler, but it cannot update a message, so every notification is a
    new message (and one cut short by a crash may be sent again)."""

    def __init__(self, url: str, timeout: int, pacer: Pacer) -> None:
        from slack_sdk.webhook import WebhookClient

        self.client = WebhookClient(url, timeout=timeout, retry_handlers=[])
        self.pacer = pacer

    def send(self, target: str, notice: Notice, key: str, first: Delivered | None) -> Delivered:
        self.post(slack_message(notice, reply=notice.kind == "acknowledged"))
        return Delivered()

    def post_message(self, channel: str, message: dict[str, Any]) -> None:
        self.post(message)

    def post(self, payload: dict[str, Any]) -> None:
        self.pacer.wait("webhook")
        try:
            got = self.client.send(**payload)
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise _network(exc) from None
        if got.status_code == 200:
            return
        if got.status_code == 429:
            after = got.headers.get("Retry-After") or got.headers.get("retry-after") or "1"
            raise SendError("Slack webhook: rate limited (429)", retry_after=float(after))
        raise SendError(f"Slack webhook: HTTP {got.status_code} {str(got.body)[:200]}", retry=got.status_code >= 500)

    def find(self, target: str, key: str, first: Delivered | None) -> Delivered | None:
        return None


# -- mail ----------------------------------------------------------------------------------------


def message_id(key: str) -> str:
    """The same notification always has the same Message-ID, so a resend after a crash is one
    message to mail clients, and later notifications thread under the first."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@fleetwatch>"


def build_email(sender: str, to: str, notice: Notice, key: str, first: Delivered | None) -> EmailMessage:
    subject, text, html = email_message(notice)
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, sender, to
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id(key)
    if first is not None and first.external_id:
        msg["In-Reply-To"] = msg["References"] = first.external_id
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


class _Mail:
    """Incident mail: built once, handed to the transport's `send_message`. Mail cannot be looked
    up after a crash; it is sent again with the same Message-ID."""

    sender: str

    def send(self, target: str, notice: Notice, key: str, first: Delivered | None) -> Delivered:
        msg = build_email(self.sender, target.partition(":")[2], notice, key, first)
        self.send_message(msg)
        return Delivered(msg["Message-ID"])

    def send_message(self, msg: EmailMessage) -> None:
        raise NotImplementedError

    def find(self, target: str, key: str, first: Delivered | None) -> Delivered | None:
        return None


class Smtp(_Mail):
    def __init__(
        self,
        host: str,
        port: int,
        security: str,
        username: str,
        password: str,
        sender: str,
        timeout: int,
        ca_file: str = "",
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.sender, self.timeout = username, password, sender, timeout
        self.ca_file = ca_file

    def _tls(self) -> ssl.SSLContext:
        """Certificate and host name checked always; an internal CA can be named by smtp.ca_file."""
        return ssl.create_default_context(cafile=self.ca_file or None)

    def send_message(self, msg: EmailMessage) -> None:
        try:
            if self.security == "tls":
                server: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._tls())
            else:
                server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with server:
                if self.security == "starttls":
                    server.starttls(context=self._tls())
                if self.username:
                    server.login(self.username, self.password)
                server.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise SendError(
                f"SMTP {self.host}:{self.port}: authentication failed ({exc.smtp_code}); check smtp.username "
                "and smtp.password",
                retry=False,
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise SendError(
                f"SMTP {self.host}:{self.port}: {exc.smtp_code} {_text(exc.smtp_error)}",
                retry=400 <= exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise SendError(
                f"SMTP {self.host}:{self.port}: recipients refused {list(exc.recipients)}", retry=False
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise SendError(
                f"SMTP {self.host}:{self.port}: the server's certificate is not trusted ({exc.verify_message}); "
                "set smtp.ca_file to the authority that signed it, or fix smtp.host to the name on it",
                retry=False,
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise SendError(
                f"SMTP {self.host}:{self.port}: {exc}; set smtp.security to match the server", retry=False
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise _network(exc) from None


class Ses(_Mail):
    """Mail through SES SendEmail (raw MIME), with an injected sesv2 client, or a factory that
    makes it on first use (so missing credentials are a recorded delivery failure, not a crash
    at start-up)."""

    def __init__(self, client: Any, sender: str, factory: Callable[[], Any] | None = None) -> None:
        self.client, self.sender, self.factory = client, sender, factory

    def send_message(self, msg: EmailMessage) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self.client is None and self.factory is not None:
            try:
                self.client = self.factory()
            except (BotoCoreError, ClientError, ValueError) as exc:
                raise SendError(
                    f"SES: cannot make a client ({exc}); check the AWS credentials and aws.regions", retry=False
                ) from None
        try:
            self.client.send_email(FromEmailAddress=self.sender, Content={"Raw": {"Data": msg.as_bytes()}})
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise SendError(
                f"SES SendEmail: {code}: {exc.response.get('Error', {}).get('Message', '')}",
                retry=code in ("Throttling", "TooManyRequestsException", "ServiceUnavailable", "InternalFailure"),
            ) from None
        except BotoCoreError as exc:
            raise _network(exc) from None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
