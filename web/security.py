"""Headers on every response: a Content-Security-Policy that allows only this server's own
scripts and styles (no inline script, nothing from elsewhere), no framing by other sites, no
MIME sniffing; and a cap on request bodies. A pure ASGI middleware: it adds no per-request task
the way BaseHTTPMiddleware does."""

from __future__ import annotations

from typing import Any

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
MAX_BODY = 64 * 1024
TOO_LARGE = b"request body too large (at most 64 KiB)"


class SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await _plain(send, 413, TOO_LARGE)
            return
        seen, answered, rejected = 0, False, False

        async def limited() -> dict[str, Any]:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY and not rejected:
                    # A body streamed without a length grew past the cap: answer 413 now, and
                    # tell the app the client has gone, so it stops reading; what it answers
                    # after that is dropped.
                    rejected = True
                    if not answered:
                        await _plain(send, 413, TOO_LARGE)
                    return {"type": "http.disconnect"}
            return message

        async def with_headers(message: dict[str, Any]) -> None:
            nonlocal answered
            if rejected:
                return
            if message["type"] == "http.response.start":
                answered = True
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                headers += [h for h in HEADERS if h[0] not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, limited, with_headers)


async def _plain(send: Any, status: int, body: bytes) -> None:
    # The rest of the body is never read, so the connection cannot carry another request: it is
    # closed after this answer (kept open, the server would wait for a body that may never come).
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
