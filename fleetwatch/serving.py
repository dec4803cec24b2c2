"""The agent's HTTP servers (the dashboard, the OTLP receiver): uvicorn on a thread of its own,
with clear errors about the port before uvicorn would print its own and exit."""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Any, Self

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port(host: str, port: int, setting: str = "web.port") -> None:
    """Raise OSError naming `setting` if host:port cannot be listened on (0 means any port)."""
    if port == 0:
        return
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            host_setting = setting.replace(".port", ".host")
            if exc.errno == errno.EADDRINUSE:
                env = "FLEETWATCH_" + setting.replace(".", "_").upper()
                raise OSError(
                    exc.errno,
                    f"port {port} on {host} is already in use: set {setting} ({env}) to another, or 0 "
                    "for any free one" + (", or pass --port PORT" if setting == "web.port" else ""),
                ) from None
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}; check {host_setting}") from None


class UvicornThread:
    """An ASGI app served by uvicorn on a daemon thread; `url` once started. `setting` names the
    port's setting in errors (web.port, otlp.port)."""

    def __init__(self, app: Any, host: str, port: int, *, name: str, setting: str, grace: int = 3) -> None:
        self.host, self.port, self.name, self.setting = host, port, name, setting
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=grace,
            )
        )
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> Self:
        check_port(self.host, self.port, self.setting)
        if self.port == 0:
            self.port = free_port(self.host)
            self.server.config.port = self.port
        self.thread = threading.Thread(target=self.server.run, name=self.name, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} did not start on {self.url}")
            time.sleep(0.02)  # waiting on a real server thread, not on the clock under test
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=timeout)
