"""A small world for alerting tests: a store on disk, a fake clock, the Slack stand-in and an
SMTP sink on loopback, a four-resource topology, and a `tick` that runs one evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from alerts.state import Observation
from alerts.store import AlertStore
from detectors.base import Resource
from fleetwatch.agent.alerting import build_pipeline
from fleetwatch.clock import FakeClock
from fleetwatch.config import load_config, setting
from fleetwatch.store import open_store
from simulator.mail import SmtpSink
from simulator.slack import TOKEN, SlackStandIn

T0 = 1_800_000_000 // 3600 * 3600
ACCOUNT, REGION = "111111111111", "us-east-1"
DETECTORS = {"outcomes", "connections", "queues", "coldstarts", "tables", "ses_account", "lambda_account"}


def rid(kind: str, name: str) -> str:
    return f"{kind}/{ACCOUNT}/{REGION}/{name}"


RESOURCES = [
    Resource(
        rid("api", "checkout-api"),
        "api",
        "checkout-api",
        ACCOUNT,
        REGION,
        {"functions": ["checkout-fn"]},
        {"service": "checkout"},
    ),
    Resource(
        rid("lambda", "checkout-fn"),
        "lambda",
        "checkout-fn",
        ACCOUNT,
        REGION,
        {"uses": ["rds:orders-db"]},
        {"service": "checkout"},
    ),
    Resource(rid("rds", "orders-db"), "rds", "orders-db", ACCOUNT, REGION, {}, {"service": "orders"}),
    Resource(rid("sqs", "jobs"), "sqs", "jobs", ACCOUNT, REGION, {"consumers": []}, {"service": "jobs"}),
]


def api_errors(rate: float = 0.12) -> Observation:
    return Observation(
        "outcomes",
        rid("api", "checkout-api"),
        "5xx",
        "finding",
        "critical",
        f"checkout-api: {rate:.0%} of requests failing",
        evidence={"series": {"5xx_rate": [[T0, rate]]}, "limit": 0.01},
    )


def storm(severity: str = "critical") -> Observation:
    return Observation(
        "connections",
        rid("rds", "orders-db"),
        "connections",
        "finding",
        severity,
        "orders-db at 98% of max_connections",
        cause="storm: checkout-fn scaled to 600 concurrent",
        fix="Put RDS Proxy between the functions and the database.",
    )


def queue_growth() -> Observation:
    return Observation("queues", rid("sqs", "jobs"), "growth", "finding", "warning", "jobs: backlog rising")


def fire(world: World, *observed: Observation) -> None:
    """Passes until the first page goes: for = 2 min, and group_wait (30 s, from the incident's
    opening) has passed by then, so on the third pass."""
    for _ in range(3):
        world.tick(*(observed or (api_errors(),)))


@dataclass
class World:
    tmp: Path
    slack: Any
    smtp: Any = None
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))
    settings: dict[str, Any] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=lambda: list(RESOURCES))
    slept: list[float] = field(default_factory=list)
    ses: Any = None  # a sesv2 client, for email.transport = "ses"
    where: Any = None  # the store: a PostgreSQL URL (the store_target fixture), else alerts.db in tmp

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.where = self.where or self.tmp / "alerts.db"
        self.store = open_store(self.where)
        self.alerts = AlertStore(self.store)
        self.reconfigure()

    def reconfigure(self, **settings: Any) -> None:
        self.settings.update(settings)
        values = {
            "slack.bot_token": TOKEN,
            "slack.api_url": self.slack.api_url,
            "slack.channel": "C0ALERTS",
            "alerts.for": 120,
            "alerts.keep_firing_for": 300,
            "alerts.group_wait": 30,
            "alerts.cause_wait": 300,
            "alerts.group_interval": 300,
            "alerts.repeat_interval": 3600,
            "alerts.max_attempts": 4,
            "alerts.timeout": 2,
        }
        if self.smtp is not None:
            values.update(
                {
                    "smtp.host": "127.0.0.1",
                    "smtp.port": self.smtp.port,
                    "smtp.security": "none",
                    "email.to": ["oncall@example.com"],
                }
            )
        values.update(self.settings)
        lines = []
        for key, value in values.items():
            section, _, name = key.partition(".")
            if setting(key).kind == "duration" and isinstance(value, int):
                value = f"{value}s"  # a duration takes its unit
            lines.append(f"{section}.{name} = {_toml(value)}")
        path = self.tmp / "fleetwatch.toml"
        path.write_text("\n".join(lines) + "\n")
        self.cfg = load_config(path, environ={})
        self.pipeline = build_pipeline(self.cfg, self.store, self.clock, sleep=self.sleep, ses=self.ses)

    @property
    def store_env(self) -> dict[str, str]:
        """The environment that points the CLI at this world's store."""
        return (
            {"FLEETWATCH_STORE_URL": self.where}
            if isinstance(self.where, str)
            else {"FLEETWATCH_STORE_PATH": str(self.where)}
        )

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)

    def tick(self, *observed: Observation, ran_ok: set[str] | None = None, step: int = 60) -> Any:
        """One evaluation at the current time, then the clock moves on by `step`."""
        now = int(self.clock.now())
        self.pipeline.observe(list(observed), DETECTORS if ran_ok is None else ran_ok, self.resources, now)
        report = self.pipeline.deliver()
        self.clock.advance(step)
        return report

    def incidents(self) -> list[Any]:
        return self.alerts.incidents()

    def close(self) -> None:
        self.store.close()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path) -> Iterator[World]:
    """`world`: a World whose Slack and SMTP are the stand-ins (import world_fixture into the test
    module; the name differs so that tests' `world` parameters do not shadow the import)."""
    with SlackStandIn() as slack, SmtpSink() as smtp:
        w = World(tmp_path, slack, smtp)
        yield w
        w.close()
