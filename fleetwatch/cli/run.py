"""`fleetwatch run`: the agent in production. One process: the poll loop, the dashboard, the
OTLP receiver (when enabled), its own telemetry and structured logs; one agent per store.

The loop runs on a worker thread so the main thread is always free to take SIGTERM and Ctrl-C.
The first signal asks the agent to stop (between AWS calls, between notifications); if it has
not stopped within STOP_GRACE seconds (an AWS call hanging to its timeout) the process exits
anyway, which is as safe as a crash: every write is a transaction, cursors move only after their
data, and notifications are logged only once sent. A second signal exits at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from fleetwatch.clock import Clock, FakeClock, SystemClock
from fleetwatch.lock import LockHeld, store_lock
from fleetwatch.logs import follow_clock, setup, teardown
from fleetwatch.store import StoreError, open_store, store_location
from fleetwatch.telemetry import TelemetryError, from_environ

log = logging.getLogger("fleetwatch.run")
STOP_GRACE = 8.0  # under docker stop's 10 s before it sends SIGKILL


class EmulatedClock(FakeClock):
    """The emulated fleet's frozen clock (its /__fleet__/clock), moved forward by the agent as it
    waits, so the demo runs an hour of polls in a minute. Never for real AWS."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        super().__init__(self._info())
        # Moves are read-modify-write across two clocks (ours and the emulator's): one at a time,
        # or two threads waiting at once (the discovery pacer's pool) would set the emulator back.
        self._moving = threading.Lock()

    def _info(self) -> float:
        with urllib.request.urlopen(f"{self.endpoint}/__fleet__/info", timeout=10) as resp:  # noqa: S310 - loopback emulator
            info = json.loads(resp.read())
        if not info.get("fake_clock"):
            raise ValueError(
                f"the emulated fleet at {self.endpoint} runs on the real clock; start it with --fake-clock"
            )
        return float(info["now"])

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.endpoint}/__fleet__/clock",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback emulator
            return dict(json.loads(resp.read()))

    def set(self, epoch_seconds: float) -> float:
        with self._moving:
            now = super().set(epoch_seconds)
            self._post({"set": now})
            return now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go backwards; advance by zero or more seconds")
        with self._moving:
            now = super().set(self.now() + seconds)
            self._post({"set": now})
            return now


class FollowedClock(EmulatedClock):
    """The emulated fleet's frozen clock when something else moves it (`run --follow-clock`):
    several agents on one emulated fleet, which a test or a script moves a minute at a time once
    every agent's cycle is done. Waiting until a time waits, on the wall clock, for the emulated
    fleet to reach it; a pause inside a cycle (a retry's backoff, discovery's pacing) moves only
    this agent's own reading on. Never for real AWS."""

    POLL_SECONDS = 0.02  # how often the emulated fleet's clock is read while waiting

    def __init__(self, endpoint: str, stopping: Any = lambda: False) -> None:
        super().__init__(endpoint)
        self.stopping = stopping

    def set(self, epoch_seconds: float) -> float:
        while self._info() < epoch_seconds and not self.stopping():
            time.sleep(self.POLL_SECONDS)
        # In step with the emulated fleet again: what pauses moved this agent's reading on
        # inside the last cycle is given back, so the agents' clocks agree at each cycle's start.
        with self._lock:
            self._now = float(epoch_seconds)
            return self._now

    def advance(self, seconds: float) -> float:
        return FakeClock.advance(self, seconds)


def following_waiter(clock: FollowedClock, stop: threading.Event) -> Any:
    """The agent's waiter on a followed clock: every wait for a cycle's time waits for the
    emulated fleet to reach it and takes its time again, even when pauses inside the last cycle
    moved this agent's reading past it (otherwise the agent would run ahead of the others)."""
    from fleetwatch.agent.loop import FakeWaiter

    class FollowingWaiter(FakeWaiter):
        def wait_until(self, due: float) -> bool:
            if self.stop.is_set():
                return False
            clock.set(due)
            return not self.stop.is_set()

    return FollowingWaiter(clock, stop)


def config_warnings(cfg: Any) -> list[str]:
    """What is allowed but probably a mistake: secrets in the file, nobody notified. `config check`
    prints them; `run` logs them at start."""
    from fleetwatch.agent.alerting import delivery_warnings
    from fleetwatch.config.loader import config_warnings as file_warnings

    return file_warnings(cfg) + delivery_warnings(cfg)


def run_command(
    cfg: Any,
    environ: Mapping[str, str],
    *,
    polls: int | None = None,
    dashboard: bool = True,
    emulated_clock: bool = False,
    port: int | None = None,
    follow_clock: bool = False,
) -> int:
    """`follow_clock`: wait for the emulated fleet's clock to be moved rather than move it."""
    handler = setup(cfg["log.format"], cfg["log.level"])
    try:
        return _run(cfg, environ, polls, dashboard, emulated_clock or follow_clock, port, followed=follow_clock)
    finally:
        teardown(handler)


def _run(
    cfg: Any,
    environ: Mapping[str, str],
    polls: int | None,
    dashboard: bool,
    emulated_clock: bool,
    port: int | None = None,
    followed: bool = False,
) -> int:
    from collector.aws import Aws, credentials_problem
    from fleetwatch.agent.loop import Agent

    for warning in config_warnings(cfg):
        log.warning("%s", warning)
    problem = credentials_problem(cfg["aws.profile"])
    if problem:  # before anything starts: every AWS call would fail, every minute, forever
        log.error("%s", problem)
        return 2
    try:
        telemetry = from_environ(environ)
    except TelemetryError as exc:
        log.error("%s", exc)
        return 2
    store_path = store_location(cfg)
    try:
        lock = store_lock(store_path, "fleetwatch run", shared=True).acquire()
    except LockHeld as exc:
        log.error("%s", exc, extra={"holder_pid": exc.holder.get("pid")})
        return 3
    except StoreError as exc:  # a PostgreSQL store that cannot be reached to take its lock
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error(
            "cannot lock the store %s: %s; check that its folder exists and is writable",
            store_path,
            exc.strerror or exc,
        )
        return 2
    try:
        try:
            store = open_store(store_path)
        except StoreError as exc:
            log.error("%s", exc)
            return 2
        try:
            clock: Clock
            if emulated_clock:
                if not cfg["aws.endpoint_url"]:
                    log.error("--emulated-clock follows the emulated fleet at aws.endpoint_url, which is not set")
                    return 2
                try:
                    clock = (
                        FollowedClock(cfg["aws.endpoint_url"]) if followed else EmulatedClock(cfg["aws.endpoint_url"])
                    )
                except (OSError, ValueError) as exc:
                    log.error(
                        "--emulated-clock: cannot follow the emulated fleet at %s: %s", cfg["aws.endpoint_url"], exc
                    )
                    return 2
                follow_clock(clock.now)
            else:
                clock = SystemClock()
            stop = threading.Event()
            agent = Agent(
                cfg,
                store,
                Aws.from_config(cfg, tracer=telemetry.tracer),
                clock,
                stop=stop,
                waiter=following_waiter(clock, stop) if isinstance(clock, FollowedClock) else None,
                telemetry=telemetry,
                polls=polls,
                must_read_at_start=True,
            )
            if isinstance(clock, FollowedClock):
                clock.stopping = agent.stopping
            try:
                services = _start_services(cfg, store, clock, telemetry, dashboard, port)
            except (OSError, RuntimeError) as exc:
                log.error("%s", exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
                return 2
            log.info("telemetry: %s", telemetry.plan.describe())
            status = _supervise(agent)
            if status is None:  # the loop did not stop in time; exit without touching the store
                logging.getLogger("fleetwatch").handlers[0].flush()
                os._exit(1)
            for service in reversed(services):
                service.stop()
            return status
        finally:
            store.close()  # not reached after os._exit: a thread may still be writing
    finally:
        telemetry.shutdown()
        lock.release()


def _start_services(cfg: Any, store: Any, clock: Clock, telemetry: Any, dashboard: bool, port: int | None) -> list[Any]:
    started: list[Any] = []
    try:
        if dashboard:
            from web.server import DashboardServer

            started.append(DashboardServer(cfg, store_location(cfg), clock, port=port).start())
            log.info("dashboard on %s", started[-1].url)
        if cfg["otlp.enabled"]:
            from collector.otlp_in import OtlpServer

            otlp_store = open_store(store_location(cfg))
            server = OtlpServer(otlp_store, clock.now, cfg["otlp.host"], cfg["otlp.port"], telemetry.otlp_received)
            started.append(_Closing(server.start(), otlp_store))
            log.info("accepting OTLP/HTTP traces and metrics on %s/v1/traces and /v1/metrics", server.url)
    except BaseException:
        for s in reversed(started):
            s.stop()
        raise
    return started


class _Closing:
    """A started server and the store connection it writes through, stopped together."""

    def __init__(self, server: Any, store: Any) -> None:
        self.server, self.store = server, store

    def stop(self) -> None:
        self.server.stop()
        self.store.close()


def _supervise(agent: Any) -> int | None:
    """Run the agent on a worker thread; the main thread takes the signals. The agent's exit
    status, or None when it did not stop within STOP_GRACE of being asked."""
    result: dict[str, int] = {}
    asked: list[float] = []

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if asked:
            log.warning("%s again: exiting at once (every write is a transaction; the store stays consistent)", name)
            logging.getLogger("fleetwatch").handlers[0].flush()
            os._exit(130)
        asked.append(time.monotonic())
        log.info("%s: stopping after the current AWS call or notification", name)
        agent.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def loop() -> None:
        try:
            result["status"] = agent.run()
        except Exception:  # noqa: BLE001 - cycles catch their own; this is the loop itself failing
            log.exception("the agent loop failed")
            result["status"] = 1

    worker = threading.Thread(target=loop, name="agent", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)  # a short join keeps the main thread free to run signal handlers
            if asked and worker.is_alive() and time.monotonic() - asked[0] > STOP_GRACE:
                log.error(
                    "the agent did not stop within %.0f s (an AWS call is still waiting for its timeout); exiting "
                    "without it: the poll's window is fetched again at the next start",
                    STOP_GRACE,
                )
                return None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return result.get("status", 1)
