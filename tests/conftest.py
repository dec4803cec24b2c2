"""Shared fixtures: one emulated fleet for the session, on loopback, on a fake clock."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from botocore.config import Config

from fleetwatch.clock import FakeClock

ANCHOR = int(datetime(2026, 11, 18, 15, 0, tzinfo=timezone.utc).timestamp())  # a Wednesday afternoon
CREDS = {"aws_access_key_id": "AKIATESTFLEETWATCH01", "aws_secret_access_key": "test-secret"}
NO_RETRY = Config(retries={"max_attempts": 1}, read_timeout=60)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    from simulator.cli import start_emulator

    emu = start_emulator("healthy", clock=FakeClock(ANCHOR), anchor=ANCHOR)
    yield emu
    emu.stop()


@pytest.fixture()
def fleet(emulator: Any) -> Iterator[Any]:
    """The session emulator, reset to the healthy scenario at the anchor after each test."""
    yield emulator
    control(emulator, "/__fleet__/scenario", {"name": "healthy"})
    emulator.model.clock._now = float(ANCHOR)  # the fake clock never goes backwards through its API
    emulator.usage.reset()


def control(emulator: Any, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(emulator.endpoint + path, data=data, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def client(emulator: Any, service: str, region: str = "us-east-1", **creds: str) -> Any:
    return boto3.client(service, endpoint_url=emulator.endpoint, region_name=region, config=NO_RETRY, **(creds or CREDS))
