"""A local stand-in for Slack, for the demo and the tests: the Web API methods fleetwatch calls
(chat.postMessage, chat.update, conversations.history, conversations.replies) and an incoming
webhook, with Slack's response shapes; every message kept and readable at /__slack__/messages.

Faults are queued with `fail(...)`: a 429 with Retry-After, a 500, or a slow answer (the request is
carried out, its answer comes late), for the next N calls of a method, so retry, pacing and
timeouts are exercised over real HTTP.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "xoxb-fleetwatch-standin"
WEBHOOK_PATH = "/services/T000/B000/standin"


@dataclass
class Fault:
    method: str  # "chat.postMessage", "webhook", ... or "*"
    status: int = 500
    retry_after: int | None = None
    delay: float = 0.0
    times: int = 1


@dataclass
class SlackState:
    messages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[float, str]] = field(default_factory=list)  # (wall time, method) of every call
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    _ts: Any = field(default_factory=lambda: itertools.count(1))
    # When each message and update arrived, by the clock the caller runs on (an emulated one in
    # the pages benchmark); wall time by default.
    clock: Any = time.time

    def fault_for(self, method: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.method in (method, "*") and f.times > 0:
                    f.times -= 1
                    return f
        return None

    def next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"


class _Handler(BaseHTTPRequestHandler):
    state: SlackState

    def log_message(self, *args: Any) -> None:  # quiet: the tests read the state instead
        pass

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if "json" in (self.headers.get("Content-Type") or ""):
            return json.loads(raw or "{}")
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/__slack__/messages"):
            with self.state.lock:
                self._reply(200, self.state.messages)
        else:
            self._reply(404, {"ok": False, "error": "unknown_method"})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        method = "webhook" if self.path == WEBHOOK_PATH else self.path.rsplit("/", 1)[-1]
        with self.state.lock:
            self.state.calls.append((time.time(), method))
        with self.state.arrived:
            self.state.arrived.notify_all()
        fault = self.state.fault_for(method)
        if fault is not None and not fault.delay:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            error = "ratelimited" if fault.status == 429 else "internal_error"
            self._reply(fault.status, {"ok": False, "error": error} if method != "webhook" else error, headers)
            return
        answer = self._answer(method, body)
        if fault is not None:
            time.sleep(fault.delay)  # the request is done, its answer slow: past the client's timeout, it never arrives
        self._reply(200, answer)

    def _answer(self, method: str, body: dict[str, Any]) -> Any:
        if method == "webhook":
            with self.state.lock:
                self.state.messages.append({"via": "webhook", "channel": "webhook", "ts": self.state.next_ts(), **body})
            return "ok"
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return {"ok": False, "error": "invalid_auth"}
        handler = {
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
        }.get(method)
        return handler(body) if handler else {"ok": False, "error": "unknown_method"}

    @staticmethod
    def _channel_id(name: str) -> str:
        return name if not name.startswith("#") else "C" + name[1:].upper().replace("-", "")[:10]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(str(body.get("channel", "")))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        with self.state.lock:
            msg = {
                "via": "api",
                "channel": channel,
                "ts": self.state.next_ts(),
                "text": body.get("text", ""),
                "blocks": body.get("blocks", []),
                "thread_ts": body.get("thread_ts"),
                "metadata": body.get("metadata"),
                "updates": [],
                "at": self.state.clock(),
            }
            self.state.messages.append(msg)
        return {"ok": True, "channel": channel, "ts": msg["ts"], "message": {"text": msg["text"]}}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            for msg in self.state.messages:
                if msg["channel"] == body.get("channel") and msg["ts"] == body.get("ts"):
                    msg["updates"].append(
                        {"text": body.get("text", ""), "blocks": body.get("blocks", []), "at": self.state.clock()}
                    )
                    return {"ok": True, "channel": msg["channel"], "ts": msg["ts"]}
        return {"ok": False, "error": "message_not_found"}

    def _history(self, body: dict[str, Any]) -> dict[str, Any]:
        oldest = float(body.get("oldest") or 0)
        with self.state.lock:
            found = [
                m
                for m in self.state.messages
                if m["channel"] == body.get("channel") and not m.get("thread_ts") and float(m["ts"]) >= oldest
            ]
        return {"ok": True, "messages": [self._shape(m) for m in reversed(found)], "has_more": False}

    def _replies(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            found = [
                m
                for m in self.state.messages
                if m["channel"] == body.get("channel")
                and (m["ts"] == body.get("ts") or m.get("thread_ts") == body.get("ts"))
            ]
        return {"ok": True, "messages": [self._shape(m) for m in found], "has_more": False}

    @staticmethod
    def _shape(m: dict[str, Any]) -> dict[str, Any]:
        out = {"type": "message", "ts": m["ts"], "text": m["text"]}
        if m.get("metadata"):
            out["metadata"] = m["metadata"]
        return out


class SlackStandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, clock: Any = None) -> None:
        self.state = SlackState()
        if clock is not None:
            self.state.clock = clock
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="slack-standin", daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{WEBHOOK_PATH}"

    def fail(
        self, method: str, status: int = 500, retry_after: int | None = None, delay: float = 0.0, times: int = 1
    ) -> None:
        with self.state.lock:
            self.state.faults.append(Fault(method, status, retry_after, delay, times))

    def heal(self) -> None:
        """Drop every fault still pending: Slack is back."""
        with self.state.lock:
            self.state.faults.clear()

    def wait_for_calls(self, count: int, timeout: float) -> bool:
        """Block until `count` calls have arrived in all (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self.state.arrived:
            while len(self.state.calls) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not self.state.arrived.wait(left):
                    return len(self.state.calls) >= count
        return True

    def messages(self, top_level_only: bool = False) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(m) for m in self.state.messages if not (top_level_only and m.get("thread_ts"))]

    def __enter__(self) -> SlackStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
