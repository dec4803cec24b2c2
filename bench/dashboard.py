"""How fast the dashboard answers under load.

    python bench/dashboard.py --functions 10000 --incidents 200 [--clients 20] [--seconds 10]

Builds a store directly (as bench/detect_speed.py does: --functions Lambda functions with their
series over --hours, plus APIs, queues, databases, SES and the account, --incidents incidents
of which a fifth are open, and a week of poll log: a poll a minute, six sources), starts
`fleetwatch serve` on it in its own process on a free loopback port, and for --seconds has
--clients concurrent clients (keep-alive connections, one thread each, at most --requests
requests each) ask for the overview (/) and the incident list
(/incidents) in turn, each sending its next request when the last is answered. It does this
twice in the same run: with the default web.cache (2 s; the run spans several expiries, so the
requests that wait for a fresh page are counted) and with web.cache = 0, where every request
reads the store and renders. Prints p50 and p95 per page and configuration and, last,
one JSON line. Target: p95 under 100 ms with the default configuration.

Then, with web.cache = 0 (every request reads the store and renders), every page type on its own:
the overview, the incident list, an incident, the resource list, a resource and the digest
preview (several incidents and resources in turn), --page-seconds each with one client and with
10. Targets (issue 19): p95 under 100 ms for one client and under 300 ms for 10, on 10,000
functions and 200 incidents; the digest preview under 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from detect_speed import ACCOUNT, REGION, build  # noqa: E402

from fleetwatch.store import SeriesKey, open_store  # noqa: E402

PAGES = ("/", "/incidents")
DETECTORS = ("coldstarts", "connections", "queues", "tables", "outcomes", "lambda_account")


def add_fleet(store: Any, now: int, incidents: int) -> None:
    """APIs, queues, databases, SES and incidents on top of the functions."""
    rng = random.Random(7)
    rows = []
    for i in range(50):
        rows.append(
            {
                "id": f"api/{ACCOUNT}/{REGION}/api-{i:02d}",
                "account": ACCOUNT,
                "region": REGION,
                "kind": "api",
                "name": f"api-{i:02d}",
                "facts": {},
                "tags": {"service": f"svc-{i:02d}"},
            }
        )
    for i in range(200):
        rows.append(
            {
                "id": f"sqs/{ACCOUNT}/{REGION}/queue-{i:03d}",
                "account": ACCOUNT,
                "region": REGION,
                "kind": "sqs",
                "name": f"queue-{i:03d}",
                "facts": {"retention": 345600},
                "tags": {},
            }
        )
    for i in range(5):
        rows.append(
            {
                "id": f"rds/{ACCOUNT}/{REGION}/db-{i}",
                "account": ACCOUNT,
                "region": REGION,
                "kind": "rds",
                "name": f"db-{i}",
                "facts": {"max_connections": 500},
                "tags": {},
            }
        )
    rows.append(
        {
            "id": f"ses/{ACCOUNT}/{REGION}/account",
            "account": ACCOUNT,
            "region": REGION,
            "kind": "ses",
            "name": "account",
            "facts": {"max_24h_send": 50000, "sent_last_24h": 1200},
            "tags": {},
        }
    )
    store.upsert_resources(rows, now)
    series = []
    points = range(now - 3600, now, 60)
    for r in rows:
        if r["kind"] == "api":
            dim = (("ApiName", r["name"]),)
            series += [
                (SeriesKey(r["id"], "AWS/ApiGateway", m, dim, s, 60), [(t, rng.uniform(lo, hi)) for t in points])
                for m, s, lo, hi in (
                    ("Count", "Sum", 100, 500),
                    ("5XXError", "Average", 0, 0.01),
                    ("Latency", "p95", 80, 300),
                )
            ]
        elif r["kind"] == "sqs":
            series.append(
                (
                    SeriesKey(
                        r["id"], "AWS/SQS", "ApproximateAgeOfOldestMessage", (("QueueName", r["name"]),), "Maximum", 60
                    ),
                    [(t, rng.uniform(0, 60)) for t in points],
                )
            )
        elif r["kind"] == "rds":
            series.append(
                (
                    SeriesKey(
                        r["id"], "AWS/RDS", "DatabaseConnections", (("DBInstanceIdentifier", r["name"]),), "Maximum", 60
                    ),
                    [(t, rng.uniform(50, 450)) for t in points],
                )
            )
    store.write_samples(series)
    # A week of the agent's own poll log, as `fleetwatch run` leaves it: one poll a minute, six
    # sources in the one place (the overview states its polling cost and last poll from it).
    sources = ("cloudwatch", "discovery", "listmetrics", "sqs", "rds", "ses")
    for hour in range(now - 7 * 86400, now, 3600):
        store.record_polls(
            [
                {
                    "poll_id": f"poll-{t}",
                    "started_at": t,
                    "finished_at": t + 5,
                    "source": source,
                    "account": ACCOUNT,
                    "region": REGION,
                    "status": "ok",
                    "api_calls": 3,
                    "metrics_requested": 500,
                    "cost_usd": 0.0015,
                    "samples_written": 1000,
                }
                for t in range(hour, min(hour + 3600, now), 60)
                for source in sources
            ]
        )
    with store.transaction() as db:
        for i in range(incidents):
            det = DETECTORS[i % len(DETECTORS)]
            resource = rows[i % 50]["id"] if det == "outcomes" else f"lambda/{ACCOUNT}/{REGION}/fn-{i:05d}"
            started = now - (incidents - i) * 1800
            is_open = i >= incidents * 4 // 5
            labels = {
                "detector": det,
                "resource": resource,
                "service": f"svc-{i % 50:02d}",
                "account": ACCOUNT,
                "region": REGION,
                "severity": "critical" if i % 3 == 0 else "warning",
            }
            db["incidents"].insert(
                {
                    "fingerprint": f"fp-{i}",
                    "group_key": f"g-{i}",
                    "state": "firing" if is_open else "resolved",
                    "severity": labels["severity"],
                    "title": f"{resource.rsplit('/', 1)[-1]}: something users feel ({det})",
                    "symptom": "requests failing",
                    "cause": "a cause upstream",
                    "fix": "the fix",
                    "labels": json.dumps(labels),
                    "members": "[]",
                    "version": "v1",
                    "started_at": started,
                    "firing_at": started + 120,
                    "updated_at": started + 600,
                    "resolved_at": None if is_open else started + 1500,
                    "joinable": 0,
                }
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(store_path: Path, cache: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "FLEETWATCH_STORE_PATH": str(store_path),
        "FLEETWATCH_WEB_PORT": str(port),
        "FLEETWATCH_WEB_CACHE": f"{cache}s",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetwatch.cli", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(
                    f"fleetwatch serve exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                ) from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("fleetwatch serve did not start within 60 s")


def load(
    port: int, clients: int, requests: int, seconds: float, pages: tuple[str, ...] = PAGES
) -> dict[str, list[float]]:
    """Each client alternates the pages until `seconds` pass or it has sent `requests`; each
    request times out after 30 s."""
    times: dict[str, list[float]] = {p: [] for p in pages}
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        deadline = time.perf_counter() + seconds
        for i in range(requests):
            if time.perf_counter() > deadline:
                break
            path = pages[(i + n) % len(pages)]
            t = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Accept": "text/html"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException) as exc:
                ok = False
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                with lock:
                    errors.append(str(exc))
            took = (time.perf_counter() - t) * 1000
            with lock:
                if ok:
                    times[path].append(took)
                else:
                    errors.append(f"{path}: failed")
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"  {len(errors)} failed requests, e.g. {errors[0]}")
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=10000)
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--hours", type=float, default=6)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10, help="load time per configuration (default 10)")
    parser.add_argument(
        "--requests", type=int, default=20000, help="at most this many requests per client and configuration"
    )
    parser.add_argument("--store", help="reuse (or build once into) this store file")
    parser.add_argument(
        "--page-seconds", type=float, default=5, help="load time per page type and client count (default 5)"
    )
    parser.add_argument("--no-pages", action="store_true", help="skip the per-page measurement")
    parser.add_argument("--pages-only", action="store_true", help="only the per-page measurement")
    args = parser.parse_args()

    now = int(time.time())
    path = Path(args.store) if args.store else Path(tempfile.mkdtemp()) / "dashboard.db"
    if not path.exists():
        print(
            f"building {path}: {args.functions} functions over {args.hours} h, {args.incidents} incidents", flush=True
        )
        t = time.perf_counter()
        with open_store(path) as store:
            build(store, args.functions, args.hours, now)
            add_fleet(store, now, args.incidents)
        print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    results: dict[str, Any] = {"functions": args.functions, "incidents": args.incidents, "clients": args.clients}
    if args.pages_only:
        print(json.dumps({**results, "pages_uncached": per_page(path, args.page_seconds, args.requests)}))
        return
    for label, cache in (("cached", 2), ("uncached", 0)):
        proc, port = serve(path, cache)
        try:
            load(port, 4, 5, 30)  # warm-up: connections, imports, SQLite page cache
            t = time.perf_counter()
            times = load(port, args.clients, args.requests, args.seconds)
            wall = time.perf_counter() - t
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        n = sum(len(v) for v in times.values())
        print(f"web.cache = {cache} s: {n} requests in {wall:.1f} s ({n / wall:.0f}/s)")
        for page in PAGES:
            print(
                f"  {page:12} p50 {pct(times[page], 0.5):7.1f} ms   p95 "
                f"{pct(times[page], 0.95):7.1f} ms   ({len(times[page])} requests)"
            )
        everything = [x for v in times.values() for x in v]
        results[label] = {
            "web_cache_s": cache,
            "requests_per_s": round(n / wall, 1),
            **{
                f"{'overview' if p == '/' else 'incidents'}_{k}": pct(times[p], q)
                for p in PAGES
                for k, q in (("p50_ms", 0.5), ("p95_ms", 0.95))
            },
            "p50_ms": pct(everything, 0.5),
            "p95_ms": pct(everything, 0.95),
        }
    results["p50_ms"], results["p95_ms"] = results["cached"]["p50_ms"], results["cached"]["p95_ms"]
    if not args.no_pages:
        results["pages_uncached"] = per_page(path, args.page_seconds, args.requests)
    print(json.dumps(results))


# Per page type: (target p95 ms for 1 client, for 10 clients).
TARGETS = {
    "overview": (100, 300),
    "incident list": (100, 300),
    "incident": (100, 300),
    "resource list": (100, 300),
    "resource": (100, 300),
    "digest preview": (1000, None),
}


def page_paths(path: Path) -> dict[str, tuple[str, ...]]:
    """Each page type's URLs on the benchmark's store: five incidents and five resources of
    different kinds in turn, so one row's cached SQLite pages do not stand for all."""
    from urllib.parse import quote

    with open_store(path) as store:
        incidents = [r[0] for r in store.db.execute("SELECT id FROM incidents ORDER BY id DESC LIMIT 5")]
        resources = [
            r[0]
            for r in store.db.execute(
                "SELECT id FROM (SELECT id, kind, ROW_NUMBER() OVER "
                "(PARTITION BY kind ORDER BY id) AS n FROM resources) "
                "WHERE n <= 2 AND kind IN ('lambda', 'api', 'sqs', 'rds', 'ses') ORDER BY kind, id"
            )
        ]
    return {
        "overview": ("/",),
        "incident list": ("/incidents",),
        "incident": tuple(f"/incidents/{i}" for i in incidents),
        "resource list": ("/resources", "/resources?kind=lambda", "/resources?kind=sqs"),
        "resource": tuple(f"/resources/{quote(r, safe='')}" for r in resources),
        "digest preview": ("/digest/preview",),
    }


def per_page(path: Path, seconds: float, requests: int) -> dict[str, Any]:
    proc, port = serve(path, 0)
    out: dict[str, Any] = {}
    try:
        paths = page_paths(path)
        load(port, 2, 3, 60, tuple(p for ps in paths.values() for p in ps))  # warm-up
        print("every page type with web.cache = 0 (p50 / p95; target p95)")
        for kind, urls in paths.items():
            row = {}
            for clients in (1, 10):
                times = [x for v in load(port, clients, requests, seconds, urls).values() for x in v]
                target = TARGETS[kind][0 if clients == 1 else 1]
                row[f"c{clients}"] = {
                    "requests": len(times),
                    "p50_ms": pct(times, 0.5),
                    "p95_ms": pct(times, 0.95),
                    "target_p95_ms": target,
                }
            line = "   ".join(
                f"{c[1:]:>2} client(s): {v['p50_ms']:7.1f} / {v['p95_ms']:7.1f} ms"
                + (f" (< {v['target_p95_ms']})" if v["target_p95_ms"] else "")
                + f" n={v['requests']}"
                for c, v in row.items()
            )
            print(f"  {kind:15} {line}", flush=True)
            out[kind] = row
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return out


if __name__ == "__main__":
    main()
