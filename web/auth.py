"""Who is asking, and whether a change may go ahead.

Reading may be open on a trusted network (web.read_auth turns that off). Every change needs
one of: a bearer token (web.token), basic credentials (web.username / web.password), or a user
header set by an authenticating proxy (web.user_header, believed only from web.trusted_proxies).

Basic credentials and a proxy's header are sent by the browser on its own, so a change made
with them must also carry a CSRF token: a random value signed with this server's key, set as a
SameSite=Strict cookie and repeated in the form (or the X-CSRF-Token header). A request from a
page on another site can send neither. A bearer token is never sent by a browser on its own, so
requests that carry one need no CSRF token. A cross-site Origin is refused outright."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request

CSRF_COOKIE = "fleetwatch_csrf"
# Guessing credentials: after this many failed sign-ins from one address within the window, that
# address's sign-ins are refused with 429 (right or wrong) until the window has passed. Reads
# that need no sign-in are not affected.
MAX_FAILURES, FAILURE_WINDOW = 10, 60.0
MAX_TRACKED = 10_000  # addresses remembered at once; the oldest is forgotten first


@dataclass
class Who:
    user: str
    ambient: bool  # credentials the browser sends by itself: a change also needs the CSRF token


@dataclass
class Auth:
    token: str = ""
    username: str = ""
    password: str = ""
    user_header: str = ""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1",)
    read_auth: bool = False
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    _failures: dict[str, deque[float]] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_config(cls, cfg: Any) -> Auth:
        return cls(
            cfg["web.token"],
            cfg["web.username"],
            cfg["web.password"],
            cfg["web.user_header"],
            tuple(cfg["web.trusted_proxies"]),
            cfg["web.read_auth"],
        )

    @property
    def configured(self) -> bool:
        return bool(self.token or (self.username and self.password) or self.user_header)

    def who(self, request: Request) -> Who | None:
        header = request.headers.get("authorization", "")
        if not header:
            return self._proxied(request)
        client = request.client.host if request.client else "?"
        wait = self._locked_out(client)
        if wait:
            raise HTTPException(
                429,
                f"too many failed sign-ins from {client}; try again in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        who = self._credentials(header)
        if who is None:
            self._failed(client)
            return self._proxied(request)
        return who

    def _locked_out(self, client: str) -> float:
        """Seconds until this address may try to sign in again (0: it may now)."""
        now = self.clock()
        with self._lock:
            seen = self._failures.get(client)
            while seen and seen[0] <= now - FAILURE_WINDOW:
                seen.popleft()
            if not seen:
                self._failures.pop(client, None)
                return 0.0
            return seen[0] + FAILURE_WINDOW - now if len(seen) >= MAX_FAILURES else 0.0

    def _failed(self, client: str) -> None:
        with self._lock:
            if client not in self._failures and len(self._failures) >= MAX_TRACKED:
                self._failures.pop(next(iter(self._failures)))
            seen = self._failures.setdefault(client, deque(maxlen=MAX_FAILURES))
            seen.append(self.clock())

    def _credentials(self, header: str) -> Who | None:
        scheme, _, value = header.partition(" ")
        if (
            scheme.lower() == "bearer"
            and self.token
            and hmac.compare_digest(value.strip().encode(), self.token.encode())
        ):
            return Who("api-token", ambient=False)
        if scheme.lower() == "basic" and self.username and self.password:
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            ok_user = hmac.compare_digest(user.encode(), self.username.encode())
            ok_password = hmac.compare_digest(password.encode(), self.password.encode())
            return Who(user, ambient=True) if ok_user and ok_password else None
        return None

    def _proxied(self, request: Request) -> Who | None:
        if self.user_header and request.client and request.client.host in self.trusted_proxies:
            user = request.headers.get(self.user_header, "").strip()
            if user:
                return Who(user[:200], ambient=True)
        return None

    def challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="fleetwatch", charset="UTF-8"'} if self.username else {}

    def require_reader(self, request: Request) -> None:
        if self.read_auth and self.who(request) is None:
            raise HTTPException(401, "sign in to read: web.read_auth is on", headers=self.challenge())

    def require_writer(self, request: Request, csrf: str = "") -> Who:
        """The user a change is made as; raises 401 (not signed in) or 403 (cross-site, or no CSRF token)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and _host_of(origin) != request.headers.get("host", ""):
            raise HTTPException(403, "cross-site request refused")
        if not self.configured:
            raise HTTPException(
                401,
                "changes are turned off: set web.token, web.username and web.password, or "
                "web.user_header in the configuration",
            )
        who = self.who(request)
        if who is None:
            raise HTTPException(401, "sign in to make changes", headers=self.challenge())
        if who.ambient:
            given = csrf or request.headers.get("x-csrf-token", "")
            if not (
                given and self.csrf_valid(given) and hmac.compare_digest(given, request.cookies.get(CSRF_COOKIE, ""))
            ):
                raise HTTPException(403, "missing or stale CSRF token: reload the page and try again")
        return who

    # -- CSRF tokens: random.signature, checked against this server's key ---------------------

    def new_csrf(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}"

    def csrf_valid(self, token: str) -> bool:
        nonce, _, sig = token.partition(".")
        return bool(nonce) and hmac.compare_digest(sig, self._sign(nonce))

    def _sign(self, nonce: str) -> str:
        return hmac.new(self.key, nonce.encode(), hashlib.sha256).hexdigest()[:32]


def _host_of(origin: str) -> str:
    return origin.split("://", 1)[-1].rstrip("/")
