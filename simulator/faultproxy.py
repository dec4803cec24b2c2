"""A fault-injecting HTTP proxy on loopback, between an AWS client and the emulated AWS.

Every request is forwarded to the upstream endpoint unless a rule picks it. A rule matches by
the request's service (its SigV4 signing name), operation, account and region, all optional,
and then does one of:

- ``throttle``: the service's own throttling error, as that service sends it (CloudWatch
  ``Throttling``, DynamoDB ``ThrottlingException``, Lambda ``TooManyRequestsException`` 429,
  X-Ray ``ThrottledException`` 429, ...);
- ``error``: a server error, 500 ``InternalFailure`` or 503 ``ServiceUnavailable`` by default;
- ``slow``: the answer held back ``seconds`` (past the client's read timeout, say), then sent;
- ``drop``: the connection closed without an answer;
- ``rewrite``: the real answer, passed through a function first (in-process rules only), for
  malformed and surprising responses.

When a rule applies is up to the test: ``rate`` (a probability per matching call, from a seeded
generator, so a run repeats), ``after`` (let the first N matching calls through), ``every`` (the
Nth, 2Nth, ... matching call), ``times`` (at most this many injections) and ``start``/``end``
(on the proxy's clock, e.g. the emulator's fake clock). The first rule that applies wins.

    python -m simulator.faultproxy --upstream http://127.0.0.1:5000 --port 5001
    curl -X POST localhost:5001/__fault__ -d '[{"service": "monitoring", "mode": "throttle", "rate": 0.1}]'

Counts of what was injected and forwarded are at GET /__fault__/stats.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from simulator.errors import ApiError
from simulator.server import Call, error_reply, throttle_error

MODES = ("throttle", "error", "slow", "drop", "rewrite")
MAX_SLOW = 120.0  # seconds; a slow answer never holds a proxy thread longer than this
UPSTREAM_TIMEOUT = 300.0
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
}
_JSON_KEYS = {
    "service",
    "operation",
    "account",
    "region",
    "mode",
    "rate",
    "after",
    "every",
    "times",
    "start",
    "end",
    "status",
    "code",
    "message",
    "seconds",
}

Rewrite = Callable[[Call, bytes], bytes]


@dataclass
class Rule:
    mode: str
    service: str | None = None
    operation: str | None = None
    account: str | None = None
    region: str | None = None
    rate: float = 1.0
    after: int = 0
    every: int = 1
    times: int | None = None
    start: float | None = None
    end: float | None = None
    status: int | None = None
    code: str | None = None
    message: str | None = None
    seconds: float = 0.0
    rewrite: Rewrite | None = None
    matched: int = field(default=0, init=False)
    injected: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {self.rate!r}")
        if int(self.every) < 1 or int(self.after) < 0 or (self.times is not None and int(self.times) < 0):
            raise ValueError("every must be 1 or more; after and times 0 or more")
        if not 0.0 <= float(self.seconds) <= MAX_SLOW:
            raise ValueError(f"seconds must be between 0 and {MAX_SLOW:g}")
        if self.mode == "rewrite" and self.rewrite is None:
            raise ValueError("a rewrite rule needs a rewrite function (in-process rules only)")
        if self.mode == "error" and self.status is not None and not 500 <= int(self.status) <= 599:
            raise ValueError(f"an error rule's status is a 5xx, not {self.status}")

    @classmethod
    def from_json(cls, data: Any, index: int) -> Rule:
        if not isinstance(data, dict):
            raise ValueError(f"rule {index}: must be an object")
        unknown = set(data) - _JSON_KEYS
        if unknown:
            raise ValueError(f"rule {index}: unknown keys {sorted(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rule {index}: {exc}") from None

    def matches(self, call: Call) -> bool:
        return all(
            want in (None, getattr(call, attr))
            for attr, want in (
                ("service", self.service),
                ("operation", self.operation),
                ("account", self.account),
                ("region", self.region),
            )
        )

    def describe(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in sorted(_JSON_KEYS) if getattr(self, k) not in (None,)}
        return {**out, "matched": self.matched, "injected": self.injected}


class FaultProxy:
    """The proxy; a context manager that serves on a thread until it exits."""

    def __init__(
        self,
        upstream: str,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// endpoint, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.host, self.port = host, port
        self.clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._stats: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- rules ----------------------------------------------------------------------------------

    def set_rules(self, rules: list[Rule | dict[str, Any]]) -> None:
        checked = [r if isinstance(r, Rule) else Rule.from_json(r, i) for i, r in enumerate(rules)]
        with self._lock:
            self._rules = checked

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.describe() for r in self._rules]

    def stats(self) -> dict[str, int]:
        """Counts: 'forwarded', 'injected', and per 'mode:service:operation'."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()

    def _pick(self, call: Call) -> Rule | None:
        now = self.clock() if self.clock is not None else None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(call):
                    continue
                if now is not None and (
                    (rule.start is not None and now < rule.start) or (rule.end is not None and now >= rule.end)
                ):
                    continue
                rule.matched += 1
                n = rule.matched - rule.after
                if n <= 0 or n % rule.every or (rule.times is not None and rule.injected >= rule.times):
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                rule.injected += 1
                self._stats["injected"] += 1
                self._stats[f"{rule.mode}:{call.service}:{call.operation}"] += 1
                return rule
            self._stats["forwarded"] += 1
        return None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        self._stopping.set()  # wakes slow answers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def wait(self, seconds: float) -> bool:
        """Hold a slow answer; True when the proxy is stopping instead."""
        return self._stopping.wait(min(seconds, MAX_SLOW))


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as AWS endpoints and botocore's pool use

    def log_message(self, *args: Any) -> None:  # quiet: the counts are in stats()
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if path.startswith("/__fault__"):
            self._control(path, body)
            return
        call = Call(self._environ(path, query), body)
        rule = self.owner._pick(call)
        if rule is None:
            self._forward(body)
        elif rule.mode == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif rule.mode == "slow":
            if not self.owner.wait(rule.seconds):
                self._forward(body)
        elif rule.mode == "rewrite":
            self._forward(body, rewrite=lambda raw: rule.rewrite(call, raw))  # type: ignore[misc]
        else:
            if rule.mode == "throttle":
                exc = throttle_error(call, rule.message or "Rate exceeded")
            else:
                status = int(rule.status or 500)
                exc = ApiError(
                    rule.code or ("ServiceUnavailable" if status == 503 else "InternalFailure"),
                    rule.message or "injected server error",
                    status,
                )
            self._send(*error_reply(call, exc))

    def _environ(self, path: str, query: str) -> dict[str, Any]:
        env = {
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
        }
        for name in ("Authorization", "X-Amz-Target", "X-Moto-Account-Id"):
            if self.headers.get(name):
                env["HTTP_" + name.upper().replace("-", "_")] = self.headers[name]
        return env

    def _forward(self, body: bytes, rewrite: Callable[[bytes], bytes] | None = None) -> None:
        host, port = self.owner.upstream
        conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP}
            if rewrite is not None and resp.status == 200:
                data = rewrite(data)
            self._send(resp.status, out, data)
        except OSError as exc:
            self._send(502, {"Content-Type": "text/plain"}, f"fault proxy: upstream failed: {exc}".encode())
        finally:
            conn.close()

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client gave up (a slow answer past its timeout)

    def _control(self, path: str, body: bytes) -> None:
        status, payload = 200, None
        if path == "/__fault__/stats":
            payload = self.owner.stats()
        elif path == "/__fault__" and self.command == "POST":
            try:
                data = json.loads(body or b"[]")
                self.owner.set_rules(data if isinstance(data, list) else data.get("rules", []))
                payload = {"rules": self.owner.rules()}
            except (ValueError, AttributeError) as exc:
                status, payload = 400, {"error": str(exc)}
        elif path == "/__fault__":
            payload = {"rules": self.owner.rules()}
        else:
            status, payload = 404, {"error": f"no control endpoint {self.command} {path}"}
        self._send(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())


def json_rewrite(edit: Callable[[Call, dict[str, Any]], dict[str, Any] | None]) -> Rewrite:
    """A rewrite for JSON answers: `edit` gets the parsed body and returns the new one (or
    edits it in place and returns None). NaN and infinities are written as Python's json does,
    which is how a surprising answer would reach botocore's parser."""

    def rewrite(call: Call, raw: bytes) -> bytes:
        data = json.loads(raw)
        changed = edit(call, data)
        return json.dumps(data if changed is None else changed).encode()

    return rewrite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the emulated AWS endpoint, e.g. http://127.0.0.1:5000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", default="[]", help="JSON list of rules to start with")
    args = parser.parse_args()
    proxy = FaultProxy(args.upstream, args.host, args.port, seed=args.seed)
    try:
        proxy.set_rules(json.loads(args.rules))
    except ValueError as exc:
        parser.error(f"--rules: {exc}")
    proxy.start()
    print(f"endpoint: {proxy.endpoint}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
