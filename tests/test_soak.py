"""The soak: a simulated week of `fleetwatch run` against the emulated fleet on a fake clock,
10,080 polls a minute apart plus the first hour, with the orders path failing every day (a
connection storm, a stopped consumer, a filling DLQ) and notifications going to the Slack
stand-in. The emulated fleet runs in its own process (`fleetwatch emulate --fake-clock`), so the
resident memory read at the end of each day is the agent's; the agent moves the emulator's clock
as it waits, as the demo does. The store must stop growing once its retention is reached, and
memory must stay flat.

It takes about six minutes (the emulator computes every GetMetricData answer), so it runs as
`make soak`, not in `make test`. It prints a line per day and writes test-artifacts/soak.json.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.cli.run import EmulatedClock
from fleetwatch.store import open_store
from simulator.slack import TOKEN as SLACK_TOKEN
from simulator.slack import SlackStandIn
from tests.agent_kit import ROOT, agent_config, make_agent

pytestmark = pytest.mark.soak
DAY = 86400
START = 1_800_000_000 // 3600 * 3600  # the scenario's anchor: the week starts here
TABLES = (
    "samples",
    "rollups",
    "series",
    "poll_log",
    "findings",
    "detector_runs",
    "agent_cycles",
    "incidents",
    "incident_events",
    "notifications",
    "alerts",
)


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


class _Emulator:
    """`fleetwatch emulate` as a child process; `endpoint` once it serves."""

    def __init__(self, scenario: str, anchor: int) -> None:
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(anchor))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetwatch.cli",
                "emulate",
                "--scenario",
                scenario,
                "--fake-clock",
                "--anchor",
                iso,
                "--port",
                "0",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # it prints its endpoint once the fleet is provisioned
            if line.startswith("endpoint: "):
                self.endpoint = line.split(" ", 1)[1].strip()
                break
        else:
            raise AssertionError("the emulator exited before serving")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def test_a_week_of_polls_keeps_memory_flat_and_the_store_bounded_by_its_retention(tmp_path: Path) -> None:
    emulator = _Emulator("soak-week", START)
    db = tmp_path / "soak.db"
    days: list[dict[str, Any]] = []
    try:
        clock = EmulatedClock(emulator.endpoint)
        assert clock.now() == START
        with SlackStandIn() as slack:
            cfg = agent_config(
                emulator,
                db,
                FLEETWATCH_SCOPE_INCLUDE_TAGS="service=orders,service=checkout",
                FLEETWATCH_STORE_RAW_RETENTION="1d",
                FLEETWATCH_STORE_ROLLUP_RETENTION="2d",
                FLEETWATCH_STORE_HISTORY_RETENTION="1d",
                FLEETWATCH_STORE_INCIDENT_RETENTION="8d",
                FLEETWATCH_SLACK_BOT_TOKEN=SLACK_TOKEN,
                FLEETWATCH_SLACK_API_URL=slack.api_url,
                FLEETWATCH_SLACK_CHANNEL="C0SOAK",
            )
            with open_store(db) as store:
                agent = make_agent(emulator, cfg, store=store, clock=clock)
                agent.polls = 60  # the first hour: backfill and settle, before memory is first read
                assert agent.run() == 0
                start = {"day": 0, "polls": 60, "rss_mib": round(rss_mib(), 1), "store_bytes": store_bytes(db)}
                print(json.dumps(start), flush=True)
                polls = 60
                for day in range(1, 8):
                    agent.polls = 1440
                    agent.run()
                    polls += 1440
                    counts = {t: store.db[t].count for t in TABLES}
                    days.append(
                        {
                            "day": day,
                            "polls": polls,
                            "rss_mib": round(rss_mib(), 1),
                            "store_bytes": store_bytes(db),
                            "incidents_opened": store.db.execute(
                                "SELECT COALESCE(MAX(id), 0) FROM incidents"
                            ).fetchone()[0],
                            "slack_messages": len(slack.messages()),
                            **counts,
                        }
                    )
                    print(json.dumps(days[-1]), flush=True)
                errors = store.db.execute("SELECT COUNT(*) FROM agent_cycles WHERE status != 'ok'").fetchone()[0]
    finally:
        emulator.stop()
    out = ROOT / "test-artifacts" / "soak.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"start": start, "days": days}, indent=2))
    print(
        json.dumps(
            {
                "soak_polls": polls,
                "rss_start_mib": start["rss_mib"],
                "rss_end_mib": days[-1]["rss_mib"],
                "store_bytes_day2": days[1]["store_bytes"],
                "store_bytes_day7": days[-1]["store_bytes"],
            }
        )
    )

    assert polls >= 10_000 and errors == 0
    # Incidents happened all week and were notified.
    assert days[-1]["incidents_opened"] >= 14 and days[-1]["slack_messages"] >= 14
    assert all(b["incidents_opened"] > a["incidents_opened"] for a, b in pairwise(days)), "every day had new incidents"
    # The store is bounded by its retention: once the raw (1 d) and rollup (2 d) windows are
    # full, from day 3 on, nothing grows from day to day.
    settled = days[2]
    for table in ("samples", "rollups", "poll_log", "findings", "detector_runs", "agent_cycles"):
        assert days[-1][table] <= settled[table] * 1.1 + 50, (
            f"{table} kept growing: {settled[table]} -> {days[-1][table]}"
        )
    assert days[-1]["series"] == settled["series"]
    assert days[-1]["store_bytes"] <= settled["store_bytes"] * 1.25
    # Memory is flat: the last five days add less than a few MiB (nothing is kept per poll).
    assert days[-1]["rss_mib"] - days[1]["rss_mib"] < 16, [d["rss_mib"] for d in days]
    assert days[-1]["rss_mib"] - start["rss_mib"] < 48, (start["rss_mib"], days[-1]["rss_mib"])
