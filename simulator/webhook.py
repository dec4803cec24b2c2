"""A local webhook receiver, for the demo and the tests: it records every POST (path, headers,
JSON body) and answers 200, or what a queued fault says (a status, with Retry-After for a 429),
so retries are exercised over real HTTP. `JsonStandIn` is the server both this and the PagerDuty
stand-in are built on."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1024 * 1024


@dataclass
class Fault:
    status: int = 500
    retry_after: int | None = None
    times: int = 1


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the stand-in answered

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class JsonStandIn:
    """A ThreadingHTTPServer on loopback whose POSTs go to `answer(path, headers, body)`;
    every request is recorded with what it was answered."""

    name = "stand-in"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.received: list[Received] = []
        self.faults: list[Fault] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: the tests read what was received
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, MAX_BODY))
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                status, answer, headers = outer._dispatch(got)
                got.status = status
                with outer.arrived:
                    outer.received.append(got)
                    outer.arrived.notify_all()
                data = json.dumps(answer).encode() if not isinstance(answer, bytes) else answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=self.name, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, status: int = 500, retry_after: int | None = None, times: int = 1) -> None:
        """The next `times` requests are answered `status` (with Retry-After if given), untouched."""
        with self.lock:
            self.faults.append(Fault(status, retry_after, times))

    def heal(self) -> None:
        with self.lock:
            self.faults.clear()

    def _fault(self) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.times > 0:
                    f.times -= 1
                    return f
        return None

    def _dispatch(self, got: Received) -> tuple[int, Any, dict[str, str]]:
        fault = self._fault()
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return fault.status, self.fault_body(fault.status), headers
        return self.answer(got)

    def fault_body(self, status: int) -> Any:
        return {"error": f"HTTP {status}"}

    def answer(self, got: Received) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until `count` requests have arrived in all (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not self.arrived.wait(left):
                    return len(self.received) >= count
        return True

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def __enter__(self) -> Any:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookReceiver(JsonStandIn):
    """Any path; answers 200 `{}` to a JSON body, 400 to anything else; a bearer token, when
    given, is required (401 without it)."""

    name = "webhook-standin"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str = "") -> None:
        super().__init__(host, port)
        self.token = token

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def answer(self, got: Received) -> tuple[int, Any, dict[str, str]]:
        if self.token and got.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "unauthorized"}, {}
        try:
            got.json()
        except ValueError:
            return 400, {"error": "not JSON"}, {}
        return 200, {}, {}

    def payloads(self) -> list[Any]:
        """The JSON bodies that were accepted, in order."""
        return [r.json() for r in self.requests() if 200 <= r.status < 300]
