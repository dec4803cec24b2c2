"""Serving the dashboard with uvicorn: in the foreground (`fleetwatch serve`, the demo) or in a
thread (the agent, the tests, the benchmark)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from fleetwatch.serving import UvicornThread
from web.app import create_app


class DashboardServer:
    """uvicorn on a thread; `url` once started. Stop with stop() (or the context manager)."""

    def __init__(
        self,
        cfg: Any,
        store_path: str | Path,
        clock: Any,
        host: str | None = None,
        port: int | None = None,
        **app_args: Any,
    ) -> None:
        self.app = create_app(cfg, store_path, clock, **app_args)
        self.http = UvicornThread(
            self.app,
            host or cfg["web.host"],
            cfg["web.port"] if port is None else port,
            name="dashboard",
            setting="web.port",
        )
        self.server = self.http.server

    @property
    def host(self) -> str:
        return self.http.host

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        return self.http.url

    def start(self, timeout: float = 20.0) -> DashboardServer:
        self.http.start(timeout)
        return self

    def stop(self) -> None:
        self.http.stop()
        self.app.state.dash.close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(
    cfg: Any,
    store_path: str | Path,
    clock: Any,
    host: str | None = None,
    port: int | None = None,
    banner: str = "",
    **app_args: Any,
) -> int:
    server = DashboardServer(cfg, store_path, clock, host, port, **app_args)
    # What exists now (the imported modules, FastAPI's routes and models: some 90,000 objects)
    # lives as long as the process. Frozen, the cyclic garbage collector stops walking it: a full
    # collection, about once every 150 overviews of the benchmark's store, cost 60 ms of CPU (a
    # stall of every request in flight), and the collections a request triggers itself cost
    # 0.65 ms per overview, 0.1 ms frozen (bench/dashboard.py's store, 300 overviews in a row).
    gc.collect()
    gc.freeze()
    server.start()
    print(f"dashboard: {server.url}/ {banner}".rstrip() + " (Ctrl-C to stop)", flush=True)
    try:
        thread = server.http.thread
        while thread is not None and thread.is_alive():
            thread.join(timeout=0.5)
    except KeyboardInterrupt:
        print("\nstopping the dashboard", flush=True)
    finally:
        server.stop()
    return 0
