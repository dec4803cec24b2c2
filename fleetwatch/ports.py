"""Listening ports for the agent's servers (the dashboard, the OTLP receiver): clear errors
before uvicorn would print its own and exit."""

from __future__ import annotations

import errno
import socket


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
                raise OSError(exc.errno, f"port {port} on {host} is already in use: set {setting} to another"
                              + (" (or --port)" if setting == "web.port" else "")) from None
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}; check {host_setting}") from None
