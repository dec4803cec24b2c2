"""Shared fixtures: one emulated fleet for the session, on loopback, on a fake clock."""

from __future__ import annotations

import fcntl
import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from fleetwatch.clock import FakeClock

ANCHOR = int(datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp())  # a Wednesday afternoon
CREDS = {"aws_access_key_id": "AKIATESTFLEETWATCH01", "aws_secret_access_key": "test-secret"}
NO_RETRY = Config(retries={"total_max_attempts": 1}, read_timeout=60)


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
    return boto3.client(
        service, endpoint_url=emulator.endpoint, region_name=region, config=NO_RETRY, **(creds or CREDS)
    )


ROLES = ["arn:aws:iam::123456789012:role/fleetwatch-reader", "arn:aws:iam::210987654321:role/fleetwatch-reader"]
REGIONS = ["us-east-1", "eu-west-1"]


def set_clock(emulator: Any, t: float) -> None:
    """Put the shared fake clock anywhere, backwards included (only tests may; the `fleet`
    fixture puts it back at the anchor afterwards)."""
    emulator.model.clock._now = float(t)


def make_collector(
    emulator: Any,
    store: Any,
    *,
    regions: list[str] | None = None,
    roles: list[str] | None = None,
    max_attempts: int = 3,
    read_timeout: int = 60,
    endpoint: str = "",
    **kw: Any,
) -> Any:
    """A collector against the emulated fleet (or `endpoint`, a proxy in front of it), on the
    emulator's own fake clock."""
    from collector.aws import Aws
    from collector.poll import Collector

    session = boto3.session.Session(**CREDS)
    aws = Aws(
        regions=regions or REGIONS,
        role_arns=ROLES if roles is None else roles,
        endpoint_url=endpoint or emulator.endpoint,
        session=session,
        max_attempts=max_attempts,
        read_timeout=read_timeout,
        connect_timeout=5,
    )
    kw.setdefault("backfill", 3600)
    if "pacer" not in kw:
        # Discovery's pacing waits move a fake clock of their own, not the emulator's: tests assert
        # exact times (tests/test_discovery_quotas.py paces on the emulator's clock itself).
        from collector.pacing import Pacer
        from fleetwatch.clock import FakeClock

        own = FakeClock(0)
        kw["pacer"] = Pacer(own.now, own.sleep)
    return Collector(store, aws, emulator.model.clock, **kw)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` start first (otherwise in collected order): under pytest-xdist the other
    workers fill in around them, instead of one long test running alone at the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# -- least privilege: every AWS call any test makes through the collector is checked against the
# shipped policy when the session ends (tests/test_iam_policy.py checks it per call as well).
RECORDED: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    from collector import aws

    aws.OBSERVERS.append(lambda account, region, action: RECORDED.add(action))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from collector.policy import POLICY_PATH, allowed, load_policy
    from tests import chaos_kit

    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:
        # A pytest-xdist worker (make test runs several): it hands its calls and chaos rows to the
        # controller (pytest_testnodedown below), which checks and reports them once for the run.
        worker_output["iam_actions"] = sorted(RECORDED)
        worker_output["chaos_rows"] = chaos_kit.ROWS
        return
    # Collecting needs only the read-only policy; mail by SES adds the send policy.
    policy = load_policy() + load_policy(POLICY_PATH.with_name("fleetwatch-ses-send-policy.json"))
    denied = sorted(a for a in RECORDED if not allowed(policy, a))
    if denied:
        print(f"\nIAM policy check: the tests made calls the policies in iam/ do not allow: {denied}")
        session.exitstatus = 1


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist's controller, as each worker ends: its AWS calls and chaos rows join the run's."""
    from tests import chaos_kit

    output = getattr(node, "workeroutput", {})
    RECORDED.update(output.get("iam_actions", ()))
    chaos_kit.ROWS.extend(output.get("chaos_rows", ()))


# -- the dashboard: one store built from the emulated fleet per session, copied for each test
# that changes it.


@pytest.fixture(scope="session")
def web_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Built once per run. Under pytest-xdist the first worker that needs it builds it in the
    run's shared temporary folder, under a lock; the others wait and read it (tests only copy it)."""
    from tests.web_kit import build_web_store

    if not hasattr(request.config, "workerinput"):
        return build_web_store(request.getfixturevalue("emulator"), tmp_path_factory.mktemp("web"))
    folder = tmp_path_factory.getbasetemp().parent / "web-store"
    folder.mkdir(exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        meta = folder / "store.json"
        if not meta.exists():
            built = build_web_store(request.getfixturevalue("emulator"), folder)
            meta.write_text(json.dumps({**built, "path": str(built["path"])}))
        shared = json.loads(meta.read_text())
    return {**shared, "path": Path(shared["path"])}


@pytest.fixture()
def web_copy(web_store: dict[str, Any], tmp_path: Any) -> dict[str, Any]:
    import sqlite3

    target = tmp_path / "web.db"
    with sqlite3.connect(web_store["path"]) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return {**web_store, "path": target}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The chaos table, when chaos tests ran (tests/chaos_kit.py)."""
    from tests import chaos_kit

    if chaos_kit.ROWS:
        chaos_kit.write_artifact()
        terminalreporter.write_sep("=", f"chaos ({'full' if chaos_kit.FULL else 'quick'}; {chaos_kit.ARTIFACT.name})")
        terminalreporter.write_line(chaos_kit.table(chaos_kit.ROWS))


@pytest.fixture()
def aws_calls() -> Iterator[Counter[str]]:
    """Every AWS call any collector client makes during the test, by IAM action (whatever
    thread makes it)."""
    from collector import aws as aws_module

    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def observe(account: str, region: str, action: str) -> None:
        with lock:
            seen[action] += 1

    aws_module.OBSERVERS.append(observe)
    try:
        yield seen
    finally:
        aws_module.OBSERVERS.remove(observe)


# -- the store's two backends: SQLite (a file) and PostgreSQL (a real server, tests/pg_kit.py)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One PostgreSQL server per test session (so per pytest-xdist worker), started on first use.
    Missing or broken PostgreSQL fails the tests that need it, with the fix: never a skip."""
    from tests.pg_kit import PgServer, PgUnavailable

    try:
        server = PgServer().start()
    except PgUnavailable as exc:
        pytest.fail(f"the PostgreSQL store tests need a PostgreSQL server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """Where a test's store lives, once per backend: a SQLite file, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return tmp_path / "s.db"
    return request.getfixturevalue("pg_server").new_database()
