"""The dashboard server's CPU per request, page type by page type: a figure that a shared machine
disturbs far less than latency does.

    python bench/page_cpu.py STORE [--requests 100] [--pages overview,incident list]

Serves STORE (a store bench/dashboard.py built, e.g. with --store) with `fleetwatch serve` and
web.cache = 0 from this tree, as bench/dashboard.py does, and asks for each page type's URLs
(bench/dashboard.page_paths) one request at a time on one keep-alive connection: 10 to warm up,
then --requests. The server's CPU time over them (user + system, /proc/PID/stat, in clock ticks of
10 ms, so use 100 requests or more) divided by their number is the CPU one request costs, which
with the GIL is what ten concurrent clients queue behind (issue 19: the overview's p95 at 10
clients is roughly ten to fifteen times it). Linux only."""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard import page_paths, serve  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a store bench/dashboard.py built (--store FILE)")
    parser.add_argument("--requests", type=int, default=100, help="requests per page type (default 100)")
    parser.add_argument("--pages", default="overview", help="page types, comma-separated (default overview)")
    args = parser.parse_args()
    store = Path(args.store)
    if not store.exists():
        raise SystemExit(f"{store} does not exist: build one with bench/dashboard.py --store {store}")
    paths = page_paths(store)
    kinds = [k.strip() for k in args.pages.split(",")]
    unknown = [k for k in kinds if k not in paths]
    if unknown:
        raise SystemExit(f"unknown page type {unknown[0]!r}: use {', '.join(paths)}")
    proc, port = serve(store, 0)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def get(path: str) -> None:
            conn.request("GET", path, headers={"Accept": "text/html"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"{path}: HTTP {resp.status}")

        for kind in kinds:
            urls = paths[kind]
            for i in range(10):
                get(urls[i % len(urls)])
            cpu, wall = cpu_seconds(proc.pid), time.perf_counter()
            for i in range(args.requests):
                get(urls[i % len(urls)])
            cpu, wall = cpu_seconds(proc.pid) - cpu, time.perf_counter() - wall
            print(
                f"{kind:15} server CPU {1000 * cpu / args.requests:6.1f} ms a request, "
                f"wall {1000 * wall / args.requests:6.1f} ms ({args.requests} requests; "
                f"load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()
