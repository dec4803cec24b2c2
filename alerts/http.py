"""One JSON POST with a timeout, for the channels that speak plain HTTP (PagerDuty, webhooks):
the answer's status, headers and body, or a SendError for a network failure (no answer, so the
server may have it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from alerts.delivery import SendError

MAX_ANSWER = 64 * 1024  # what is read of an answer: enough for any error message


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after", "")
        try:
            return float(value) if value else None
        except ValueError:
            return None


def post_json(url: str, body: Any, timeout: float, headers: dict[str, str] | None = None, what: str = "") -> Answer:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "fleetwatch", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as got:  # noqa: S310 - http(s) URLs only, checked by the settings
            return Answer(got.status, {k.lower(): v for k, v in got.headers.items()}, got.read(MAX_ANSWER))
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, exc.read(MAX_ANSWER))
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(f"{what}: {type(reason).__name__}: {reason}", retry=True, unsure=True) from None
