"""The agent against the session's emulated fleet: its configuration, in-process agents on the
emulator's fake clock, and `fleetwatch run` as a child process for the signal tests."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3

from fleetwatch.config import load_config
from tests.conftest import CREDS

ROOT = Path(__file__).resolve().parent.parent


def agent_env(emulator: Any, store_path: Path, **extra: str) -> dict[str, str]:
    """The home account (123456789012, where plain credentials land) in us-east-1, backfilling
    an hour, with incidents firing after a minute."""
    where = (
        {"FLEETWATCH_STORE_URL": store_path}
        if isinstance(store_path, str)
        else {"FLEETWATCH_STORE_PATH": str(store_path)}
    )
    env = {
        **where,
        "FLEETWATCH_AWS_ENDPOINT_URL": emulator.endpoint,
        "FLEETWATCH_AWS_REGIONS": "us-east-1",
        "FLEETWATCH_POLL_BACKFILL": "1h",
        "FLEETWATCH_ALERTS_FOR": "1m",
        "FLEETWATCH_ALERTS_GROUP_WAIT": "0",
        "FLEETWATCH_AWS_MAX_ATTEMPTS": "3",
        "FLEETWATCH_LOG_FORMAT": "json",
    }
    env.update(extra)
    return env


def agent_config(emulator: Any, store_path: Path, **extra: str) -> Any:
    return load_config(None, environ=agent_env(emulator, store_path, **extra))


def session(**events: Any) -> boto3.session.Session:
    """A boto3 session with the test credentials; `events` registers botocore handlers on it
    (event name -> handler), inherited by every client the agent makes from it."""
    s = boto3.session.Session(**CREDS)
    for name, handler in events.items():
        s.events.register(name, handler)
    return s


def make_agent(emulator: Any, cfg: Any, *, boto_session: boto3.session.Session | None = None, **kw: Any) -> Any:
    from collector.aws import Aws
    from fleetwatch.agent.loop import Agent

    telemetry = kw.get("telemetry")
    aws = Aws.from_config(cfg, session=boto_session or session(), tracer=telemetry.tracer if telemetry else None)
    clock = kw.pop("clock", None) or emulator.model.clock
    return Agent(cfg, kw.pop("store"), aws, clock, **kw)


def spawn_run(env: dict[str, str], *args: str, stderr: Any = subprocess.PIPE, **popen: Any) -> subprocess.Popen[str]:
    """`fleetwatch run` as its own process, as production runs it; stderr carries its JSON logs
    (to a file, for a child that may log more than a pipe holds before it is read)."""
    full = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": CREDS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDS["aws_secret_access_key"],
        "PYTHONPATH": str(ROOT),
        **env,
    }
    for k in [k for k in full if k.startswith(("OTEL_", "FLEETWATCH_")) and k not in env]:
        del full[
            k
        ]  # the developer's own settings (and the Makefile's FLEETWATCH_CHROMIUM) stay out of the agent under test
    return subprocess.Popen(
        [sys.executable, "-m", "fleetwatch.cli", "run", *args],
        env=full,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        **popen,
    )


class LogLines:
    """A child's stderr, line by line, read on a thread so waits are bounded."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        assert proc.stderr is not None
        stream = proc.stderr
        threading.Thread(target=lambda: [self.lines.put(line) for line in stream], daemon=True).start()

    def wait_for(self, text: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            entry = json.loads(line)
            self.seen.append(entry)
            if text in entry["message"]:
                return entry
        raise AssertionError(f"no log line with {text!r} in {timeout} s; saw {[e['message'] for e in self.seen]}")

    def rest(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(json.loads(self.lines.get(timeout=5)))
            except queue.Empty:
                return out
