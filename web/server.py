"""Serving the dashboard with uvicorn: in the foreground (`fleetwatch serve`, the demo) or in a
thread (the tests, the benchmark, later the agent)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from fleetwatch.ports import check_port, free_port
from web.app import create_app


class DashboardServer:
    """uvicorn on a thread; `url` once started. Stop with stop() (or the context manager)."""

    def __init__(self, cfg: Any, store_path: str | Path, clock: Any, host: str | None = None, port: int | None = None,
                 **app_args: Any) -> None:
        self.host = host or cfg["web.host"]
        self.port = cfg["web.port"] if port is None else port
        self.app = create_app(cfg, store_path, clock, **app_args)
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> DashboardServer:
        check_port(self.host, self.port)
        if self.port == 0:
            self.port = free_port(self.host)
            self.server.config.port = self.port
        self.thread = threading.Thread(target=self.server.run, name="dashboard", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.url}")
            time.sleep(0.02)  # waiting on a real server thread, not on the clock under test
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.app.state.dash.close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(cfg: Any, store_path: str | Path, clock: Any, host: str | None = None, port: int | None = None,
                  banner: str = "") -> int:
    server = DashboardServer(cfg, store_path, clock, host, port)
    server.start()
    print(f"dashboard: {server.url}/ {banner}".rstrip() + " (Ctrl-C to stop)", flush=True)
    try:
        while server.thread is not None and server.thread.is_alive():
            server.thread.join(timeout=0.5)
    except KeyboardInterrupt:
        print("\nstopping the dashboard", flush=True)
    finally:
        server.stop()
    return 0
