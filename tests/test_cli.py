"""The emulator commands' error paths and listing, and `store info`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from fleetwatch import cli
from fleetwatch.store import SCHEMA_VERSION
from tests.conftest import ROLES, control


def test_list_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["emulate", "--list-scenarios"], environ={}) == 0
    out = capsys.readouterr().out
    assert "connection-storm" in out and "tour" in out and "healthy" in out


def test_unknown_scenario_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["emulate", "--scenario", "nope", "--port", "0"], environ={}) == 2
    err = capsys.readouterr().err
    assert "no scenario 'nope'" in err and "connection-storm" in err and "Traceback" not in err


def test_bad_anchor(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["emulate", "--anchor", "yesterday"], environ={}) == 2
    assert "not an ISO-8601 time" in capsys.readouterr().err


def test_store_info_creates_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "fw.db"
    assert cli.main(["store", "info"], environ={"FLEETWATCH_STORE_PATH": str(db)}) == 0
    out = capsys.readouterr().out
    assert f"schema {SCHEMA_VERSION}" in out and "samples: 0 rows" in out and db.exists()
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    assert cli.main(["store", "info"], environ={"FLEETWATCH_STORE_PATH": str(bogus)}) == 2
    assert "not a SQLite database" in capsys.readouterr().err


def _env(emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # boto3 takes credentials from the process environment, as it would in production.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTFLEETWATCH01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return {
        "FLEETWATCH_STORE_PATH": str(tmp_path / "fw.db"),
        "FLEETWATCH_AWS_ENDPOINT_URL": emulator.endpoint,
        "FLEETWATCH_AWS_REGIONS": "us-east-1,eu-west-1",
        "FLEETWATCH_AWS_ROLE_ARNS": ",".join(ROLES),
        "FLEETWATCH_POLL_BACKFILL": "1h",
    }


def test_plan_prints_the_plan_calls_and_cost(
    fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["plan"], environ=_env(fleet, tmp_path, monkeypatch)) == 0
    out = capsys.readouterr().out
    assert "discovery 210987654321/us-east-1:" in out and "AWS/DynamoDB WriteKeyRangeThroughputThrottleEvents" in out
    match = re.search(r"projected CloudWatch GetMetricData cost: \$([\d,.]+) a month", out)
    naive = re.search(r"whole catalog every minute would cost \$([\d,.]+) a month", out)
    # (a third or less at the benchmark's fleet size; this small fleet's limits and outcomes weigh more)
    assert match and naive and float(match.group(1).replace(",", "")) < float(naive.group(1).replace(",", "")) / 2
    assert re.search(r"GetMetricData calls per poll: 4 on fast-only polls", out)  # one per account and region


def test_collect_once_prints_the_poll_and_fails_on_errored_sources(
    fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env(fleet, tmp_path, monkeypatch)
    assert cli.main(["collect", "--once"], environ=env) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"poll \S+ \(\w+\): \d+ API calls, \d+ metrics requested \(\$[\d.]+\), \d+ samples stored, 0 errored", out
    )
    control(
        fleet,
        "/__fleet__/faults",
        [{"account": "210987654321", "mode": "error", "code": "AccessDeniedException", "status": 403}],
    )
    try:
        assert cli.main(["collect", "--once"], environ=env) == 1
    finally:
        control(fleet, "/__fleet__/faults", [])
    assert "ERROR 210987654321/us-east-1 cloudwatch: GetMetricData: AccessDeniedException" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_runs_the_agent_with_its_telemetry_on(tmp_path: Path) -> None:
    """`make demo` in small: `fleetwatch demo` runs `fleetwatch run` against the emulated fleet,
    with its traces and metrics going to the demo's OTLP receiver."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "FLEETWATCH_CHROMIUM": "ignored by the demo"}  # a stray setting must not break it
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetwatch.cli",
            "demo",
            "--port",
            "0",
            "--polls",
            "3",
            "--dashboard-port",
            "0",
            "--store",
            str(tmp_path / "demo" / "fleetwatch.db"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fleetwatch run --config" in proc.stdout and "--emulated-clock" in proc.stdout
    assert proc.stderr.count("poll finished") == 4, proc.stderr[-3000:]
    line = next(out for out in proc.stdout.splitlines() if out.startswith("telemetry received from the agent:"))
    spans = int(line.split(":", 1)[1].split()[0])
    assert spans > 50 and "fleetwatch.poll.duration" in line and "fleetwatch.aws.calls" in line
    assert (tmp_path / "demo" / "fleetwatch.toml").is_file() and (tmp_path / "demo" / "slack-messages.json").is_file()
    pager = json.loads((tmp_path / "demo" / "pagerduty-events.json").read_text())
    assert set(pager) == {"events", "incidents"}, "what the PagerDuty stand-in received is kept"
    assert 'url = "http://127.0.0.1:' in (tmp_path / "demo" / "fleetwatch.toml").read_text(), (
        "PagerDuty points at the stand-in"
    )
    assert "routing_key" not in (tmp_path / "demo" / "fleetwatch.toml").read_text(), (
        "the key comes from the environment"
    )
