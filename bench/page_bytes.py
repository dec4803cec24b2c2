"""Every page of a benchmark store as this tree renders it, for a byte-for-byte check of a change
that should not alter what the dashboard shows; and the overview asked for again and again in
one process, for counting its instructions.

    python bench/page_bytes.py STORE DIR            # write each page's body to DIR
    diff -r DIR_OF_MAIN DIR_OF_BRANCH                # run once from each tree, on the same STORE
    valgrind --tool=callgrind python bench/page_bytes.py STORE --requests N [--path /]

STORE is a store bench/dashboard.py built (--store FILE). The app is served in this process
(FastAPI's TestClient) with web.cache = 0, at the store's own time (a minute after its last
poll), so the pages do not depend on when this runs; the CSRF token the forms carry is fixed.
With --requests, N requests of --path after three to warm up: under callgrind, (instructions
with N = 5 - instructions with N = 0) / 5 is one request's, which the machine's load does not
disturb (docs/benchmarks.md). FLEETWATCH_GC_FREEZE=1 freezes the objects that exist before the
requests, as `fleetwatch serve` does (web/server.py)."""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# More than bench/dashboard.page_paths: the filtered lists, the other pages and the API.
MORE = (
    "/incidents?state=open",
    "/incidents?severity=critical",
    "/silences",
    "/digest",
    "/settings",
    "/resources?kind=api",
    "/resources?kind=rds",
    "/resources?kind=ses",
    "/api/incidents",
    "/healthz",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a store bench/dashboard.py built (--store FILE)")
    parser.add_argument("out", nargs="?", help="write every page's body here (one file a page)")
    parser.add_argument("--requests", type=int, help="instead, ask for --path this many times")
    parser.add_argument("--path", default="/", help="the page --requests asks for (default /, the overview)")
    args = parser.parse_args()
    store = Path(args.store)
    if not store.exists():
        raise SystemExit(f"{store} does not exist: build one with bench/dashboard.py --store {store}")
    if (args.out is None) == (args.requests is None):
        raise SystemExit("give either DIR (to write the pages) or --requests N (to ask for --path N times)")
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        last = db.execute("SELECT MAX(started_at) FROM poll_log").fetchone()[0]
    if last is None:
        raise SystemExit(f"{store} has no poll log: build it with bench/dashboard.py --store FILE")

    from fastapi.testclient import TestClient

    from fleetwatch.clock import FakeClock
    from fleetwatch.config import load_config
    from web.app import create_app

    cfg = load_config(None, environ={"FLEETWATCH_STORE_PATH": str(store), "FLEETWATCH_WEB_CACHE": "0s"})
    app = create_app(cfg, store, FakeClock(last + 60))
    auth = app.state.dash.auth
    auth.new_csrf = lambda: "fixed-csrf-token"  # type: ignore[method-assign]
    auth.csrf_valid = lambda token: token == "fixed-csrf-token"  # type: ignore[method-assign]
    sys.path.insert(0, str(ROOT / "bench"))  # after the app's imports: bench/collector.py is not the package
    from dashboard import page_paths

    # One event loop for every request, as under uvicorn: its worker threads, and so their read
    # connections and the statements prepared on them, last from one request to the next (a
    # TestClient outside `with` starts a loop, threads and connections for each request).
    with TestClient(app) as client:

        def get(path: str) -> bytes:
            resp = client.get(path, headers={"Accept": "text/html"})
            if resp.status_code != 200:
                raise SystemExit(f"{path}: HTTP {resp.status_code}")
            return resp.content

        if args.requests is not None:
            for _ in range(3):
                get(args.path)
            if os.environ.get("FLEETWATCH_GC_FREEZE") == "1":
                gc.freeze()
            for _ in range(args.requests):
                get(args.path)
            return
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        paths = [p for ps in page_paths(store).values() for p in ps] + list(MORE)
        for i, path in enumerate(paths):
            (out / f"{i:02d}.html").write_bytes(path.encode() + b"\n" + get(path))
    print(f"{len(paths)} pages in {out}")


if __name__ == "__main__":
    main()
