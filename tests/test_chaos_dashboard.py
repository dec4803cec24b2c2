"""The dashboard under attack from loopback: a flood of requests from many connections at once,
mixing guessed passwords and tokens, oversized bodies (declared and streamed), very long URLs,
pages that do not exist and the expensive pages, while an on-call engineer keeps loading the
overview. Every overview answers, in time; the guessing is cut off after ten failures, even for
the right password; nothing oversized is read. `fleetwatch serve` runs in its own process."""

from __future__ import annotations

import base64
import http.client
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from tests import chaos_kit
from tests.web_kit import PASSWORD, TOKEN, USER
from web.auth import FAILURE_WINDOW, MAX_FAILURES, Auth

ROOT = Path(__file__).resolve().parent.parent


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
        for attempt in range(2):
            try:
                self.conn.request(
                    method,
                    path,
                    body=body,
                    headers=headers or {},
                    encode_chunked=body is not None and not isinstance(body, bytes),
                )
                resp = self.conn.getresponse()
                resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                return resp.status
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt or not (body is None or isinstance(body, bytes)):
                    return 0  # a streamed body is spent: the server closed the upload (after its 413)
        return 0


def attack(client: Client, rng: random.Random, incident: int) -> tuple[str, int]:
    kind = rng.choice(
        [
            "password",
            "password",
            "token",
            "declared huge",
            "streamed huge",
            "long url",
            "missing",
            "overview",
            "digest",
            "api",
        ]
    )
    if kind == "password":
        return kind, client.request(
            "POST",
            f"/incidents/{incident}/ack",
            b"csrf=x",
            {
                "Authorization": basic(USER, f"guess-{rng.random()}"),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
    if kind == "token":
        return kind, client.request(
            "POST", f"/api/incidents/{incident}/ack", b"{}", {"Authorization": f"Bearer guess{rng.random()}"}
        )
    if kind == "declared huge":
        return kind, client.request("POST", "/silences", b"x" * 1024, {"Content-Length": str(50 * 2**20)})
    if kind == "streamed huge":
        return kind, client.request(
            "POST",
            "/api/silences",
            iter([b"x" * 65536] * 4),
            {"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        )
    if kind == "long url":
        return kind, client.request("GET", "/resources/" + "a" * 60_000)
    if kind == "missing":
        return kind, client.request("GET", f"/no/such/page/{rng.random()}")
    if kind == "digest":
        return kind, client.request("GET", "/digest/preview")
    if kind == "api":
        return kind, client.request("GET", "/api/incidents?limit=500")
    return kind, client.request("GET", "/")


@pytest.mark.slow
def test_the_overview_keeps_answering_under_a_flood_of_bad_requests(web_store: dict[str, Any]) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "FLEETWATCH_STORE_PATH": str(web_store["path"]),
        "FLEETWATCH_WEB_TOKEN": TOKEN,
        "FLEETWATCH_WEB_USERNAME": USER,
        "FLEETWATCH_WEB_PASSWORD": PASSWORD,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetwatch.cli", "serve", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once it listens
        assert line.startswith("dashboard: "), line + (
            proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
        )
        url = urlsplit(line.split()[1])
        host, port = url.hostname or "127.0.0.1", int(url.port or 0)
        requests, workers, limit_s = chaos_kit.size(1500, 15000), chaos_kit.size(16, 48), chaos_kit.size(60.0, 300.0)
        results: Counter[tuple[str, int]] = Counter()
        lock, stop = threading.Lock(), threading.Event()
        counter = iter(range(requests))
        began = time.monotonic()
        deadline = began + limit_s

        def flood(seed: int) -> None:
            rng, client = random.Random(seed), Client(host, port)
            while not stop.is_set() and time.monotonic() < deadline:
                with lock:
                    if next(counter, None) is None:
                        return
                got = attack(client, rng, web_store["storm"])
                with lock:
                    results[got] += 1

        # The on-call engineer: the overview, again and again, while the flood runs.
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            jobs = [pool.submit(flood, i) for i in range(workers)]
            oncall = Client(host, port)
            while not all(j.done() for j in jobs) and len(latencies) < 5000:
                t0 = time.perf_counter()
                statuses[oncall.request("GET", "/", headers={"Accept": "text/html"})] += 1
                latencies.append(time.perf_counter() - t0)
            for j in jobs:
                j.result(timeout=limit_s + 60)
            stop.set()
        elapsed = time.monotonic() - began
        # The right token, from an address that has just guessed ten times (the flood's own
        # lockout may have run out as it ended): refused too, until the window passes.
        guesser = Client(host, port)
        for i in range(MAX_FAILURES):
            guesser.request(
                "POST", f"/api/incidents/{web_store['storm']}/ack", b"{}", {"Authorization": f"Bearer wrong{i}"}
            )
        locked = guesser.request(
            "POST", f"/api/incidents/{web_store['storm']}/ack", b"{}", {"Authorization": f"Bearer {TOKEN}"}
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    sent = sum(results.values())
    by_kind: dict[str, Counter[int]] = {}
    for (kind, status), n in results.items():
        by_kind.setdefault(kind, Counter())[status] += n
    assert sent >= min(requests, 500), sent
    assert statuses == Counter({200: len(latencies)}), statuses
    p95 = sorted(latencies)[int(len(latencies) * 0.95) - 1]
    assert p95 < 2.0, f"the overview took {p95:.2f} s (95th percentile) under the flood"
    # Ten guesses a minute get an answer; the rest 429. Guesses already in flight when the tenth
    # failed (one per connection at most) still get their 401.
    guesses = by_kind.get("password", Counter()) + by_kind.get("token", Counter())
    allowed = MAX_FAILURES * (elapsed / FAILURE_WINDOW + 1) + workers
    assert guesses[401] <= allowed and guesses[429] and not guesses[200], (guesses, allowed)
    assert locked == 429, "a locked-out address cannot confirm a right guess"
    for kind in ("declared huge", "streamed huge"):
        assert set(by_kind.get(kind, {})) <= {413, 0}, (kind, by_kind.get(kind))
    assert set(by_kind.get("long url", {})) <= {400, 404, 414, 431, 0}, by_kind.get("long url")
    unanswered = sum(
        n for (kind, status), n in results.items() if status == 0 and kind not in ("streamed huge", "declared huge")
    )
    assert unanswered == 0, by_kind
    chaos_kit.record(
        "dashboard flood from loopback",
        bad_inputs_tried=sent,
        handled=sent - unanswered,
        overview_requests=len(latencies),
        overview_median_s=round(statistics.median(latencies), 3),
        overview_p95_s=round(p95, 3),
        seconds=round(elapsed, 1),
        by_kind={k: dict(v) for k, v in by_kind.items()},
    )


def _request(auth_header: str, client: str = "127.0.0.1") -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [(b"authorization", auth_header.encode())],
            "client": (client, 5000),
            "query_string": b"",
        }
    )


def test_failed_sign_ins_lock_an_address_out_for_the_window_only() -> None:
    now = [1000.0]
    auth = Auth(token=TOKEN, clock=lambda: now[0])
    for _ in range(MAX_FAILURES):
        assert auth.who(_request("Bearer wrong")) is None
    try:
        auth.who(_request(f"Bearer {TOKEN}"))
        raise AssertionError("the right token was accepted during the lockout")
    except HTTPException as exc:
        assert exc.status_code == 429 and exc.headers == {"Retry-After": str(int(FAILURE_WINDOW))}
    assert auth.who(_request(f"Bearer {TOKEN}", client="10.0.0.9")) is not None, "other addresses are not locked out"
    now[0] += FAILURE_WINDOW
    assert auth.who(_request(f"Bearer {TOKEN}")) is not None, "the lockout ends with its window"
