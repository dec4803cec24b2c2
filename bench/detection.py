"""Detection quality on the emulated fleet's labelled scenarios, through the real path:
emulator → collector → store → detectors, on a fake clock, a poll and a pass every minute.

    python bench/detection.py [--healthy-hours 24] [--functions 200 --queues 50 --tables 20]

For each scenario with labelled incidents: a fresh store, the clock 30 minutes before the first
incident (after a 2-hour backfill), polls until each incident has ended; an incident is found
when a warning or critical finding lands on its resource (for account-level kinds, on the
account resource of its place). Then the healthy fleet, padded with generated resources, runs
--healthy-hours; every warning or critical finding there is false (counted once per fingerprint
per episode). Prints per scenario and, last, one JSON line with per-detector and overall
recall, false_findings_per_1000_resource_days and median_delay_minutes (limit breaches and
trends separately). Targets: recall 1.0; <= 1 false finding per 1,000 resource-days; median
delay <= 3 min for limits, <= 10 min for trends.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3  # noqa: E402

from collector.aws import Aws  # noqa: E402
from collector.poll import Collector  # noqa: E402
from fleetwatch.agent.detection import detect  # noqa: E402
from fleetwatch.clock import FakeClock  # noqa: E402
from fleetwatch.store import open_store  # noqa: E402
from simulator.cli import DEMO_CREDENTIALS, start_emulator  # noqa: E402
from simulator.scenario import load_scenario, scenario_names  # noqa: E402

LIMITS = {
    "connection_exhaustion",
    "lambda_concurrency",
    "ses_sandbox",
    "ses_reputation",
    "ses_send_rate",
    "table_capacity",
    "hot_partition",
    "dlq",
    "schedule_failed",
}
ACCOUNT_LEVEL = {
    "lambda_concurrency": "lambda_account",
    "ses_sandbox": "ses",
    "ses_reputation": "ses",
    "ses_send_rate": "ses",
}
PAGING = ("warning", "critical")
DETECTOR_OF = {
    "connection_exhaustion": "connections",
    "queue_growth": "queues",
    "queue_consumer_stopped": "queues",
    "dlq": "queues",
    "hot_partition": "tables",
    "table_capacity": "tables",
    "lambda_concurrency": "lambda_account",
    "ses_sandbox": "ses_account",
    "ses_reputation": "ses_account",
    "ses_send_rate": "ses_account",
    "cold_start": "coldstarts",
    "schedule_missed": "outcomes",
    "schedule_failed": "outcomes",
}


def collector_for(emulator: Any, store: Any, clock: FakeClock) -> Collector:
    fleet = emulator.model.fleet
    session = boto3.session.Session(
        aws_access_key_id=DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    aws = Aws(
        regions=sorted({r for a in fleet.accounts for r in a.regions}),
        role_arns=[a.reader_role_arn for a in fleet.accounts],
        endpoint_url=emulator.endpoint,
        session=session,
        read_timeout=120,
        max_attempts=2,
    )
    return Collector(store, aws, clock, backfill=2 * 3600)


def target(emulator: Any, incident: dict[str, Any]) -> str:
    kind, name = incident["resource"].split(":", 1)
    res = emulator.model.fleet.get(incident["resource"])
    if incident["kind"] in ACCOUNT_LEVEL:
        return f"{ACCOUNT_LEVEL[incident['kind']]}/{res.account}/{res.region}/account"
    return f"{kind}/{res.account}/{res.region}/{name}"


def run_scenario(emulator: Any, clock: FakeClock, name: str, tmp: Path) -> list[dict[str, Any]]:
    emulator.model.set_scenario(load_scenario(name, emulator.model.fleet))
    incidents = emulator.model.incident_labels()
    start = min(i["start"] for i in incidents) - 1800
    end = max(min(i["end"], i["start"] + 3600) for i in incidents) + 300
    clock._now = float(start // 60 * 60)  # the bench owns this clock; scenarios rewind it
    found: dict[str, tuple[int, str]] = {}
    wanted = {i["id"]: target(emulator, i) for i in incidents}
    with open_store(tmp / f"{name}.db") as store:
        collector = collector_for(emulator, store, clock)
        while clock.now() <= end and len(found) < len(incidents):
            now = int(clock.now())
            collector.poll()
            for f in detect(store, now).findings:
                if f.severity not in PAGING:
                    continue
                for inc in incidents:
                    if inc["id"] not in found and f.resource_id == wanted[inc["id"]] and now >= inc["start"] - 600:
                        found[inc["id"]] = (now, f.detector)
            clock.advance(60)
    out = []
    for inc in incidents:
        hit = found.get(inc["id"])
        out.append(
            {
                "scenario": name,
                "incident": inc["id"],
                "kind": inc["kind"],
                "found": hit is not None,
                "detector": hit[1] if hit else None,
                "delay_minutes": max(0.0, (hit[0] - inc["start"]) / 60) if hit else None,
            }
        )
    return out


def run_healthy(emulator: Any, clock: FakeClock, hours: float, tmp: Path) -> dict[str, Any]:
    emulator.model.set_scenario(load_scenario("healthy", emulator.model.fleet))
    clock._now = float(int(emulator.model.anchor) // 60 * 60)
    false: list[str] = []
    active: set[str] = set()
    with open_store(tmp / "healthy.db") as store:
        collector = collector_for(emulator, store, clock)
        polls = int(hours * 60)
        started = time.perf_counter()
        for i in range(polls):
            collector.poll()
            now_paging = {
                f.fingerprint + " " + f.title for f in detect(store, int(clock.now())).findings if f.severity in PAGING
            }
            fingerprints = {x.split(" ", 1)[0] for x in now_paging}
            for item in now_paging:
                if item.split(" ", 1)[0] not in active:
                    false.append(item)
            active = fingerprints
            clock.advance(60)
            if (i + 1) % 120 == 0:
                print(
                    f"  healthy: {(i + 1) / 60:.0f} h of {hours:g} h, {len(false)} false finding(s), "
                    f"{time.perf_counter() - started:.0f} s",
                    flush=True,
                )
        resources = len(store.resources())
    days = hours / 24
    return {
        "resources": resources,
        "hours": hours,
        "false_findings": len(false),
        "examples": false[:5],
        "false_findings_per_1000_resource_days": round(len(false) / (resources * days) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthy-hours", type=float, default=24.0)
    parser.add_argument("--functions", type=int, default=200)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--tables", type=int, default=20)
    parser.add_argument("--scenario", action="append", help="only these scenarios (default: every labelled one)")
    args = parser.parse_args()

    anchor = int(time.time()) // 60 * 60
    clock = FakeClock(anchor)
    t0 = time.perf_counter()
    emulator = start_emulator(
        "healthy",
        clock=clock,
        anchor=anchor,
        functions=args.functions,
        extra={"sqs": args.queues, "dynamodb": args.tables},
    )
    print(
        f"emulated fleet of {len(emulator.model.fleet.resources)} resources ready in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    names = args.scenario or [n for n in scenario_names() if n not in ("healthy", "tour")]
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                started = time.perf_counter()
                got = run_scenario(emulator, clock, name, Path(tmp))
                rows += got
                for r in got:
                    print(
                        f"{name:24} {r['incident']:32} "
                        f"{'found' if r['found'] else 'MISSED':6} by {r['detector'] or '-':14} "
                        f"after {r['delay_minutes'] if r['delay_minutes'] is not None else '-'} min "
                        f"({time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
            healthy = run_healthy(emulator, clock, args.healthy_hours, Path(tmp))
    finally:
        emulator.stop()

    by_detector: dict[str, list[bool]] = defaultdict(list)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r["found"])
        by_detector[DETECTOR_OF.get(r["kind"], r["kind"])].append(r["found"])
    delays = {
        "limits": [r["delay_minutes"] for r in rows if r["found"] and r["kind"] in LIMITS],
        "trends": [r["delay_minutes"] for r in rows if r["found"] and r["kind"] not in LIMITS],
    }
    result = {
        "incidents": len(rows),
        "found": sum(r["found"] for r in rows),
        "recall": round(sum(r["found"] for r in rows) / len(rows), 3) if rows else None,
        "recall_by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_kind.items())},
        "recall_by_detector": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_detector.items())},
        "missed": [r["incident"] for r in rows if not r["found"]],
        "median_delay_minutes": {k: (statistics.median(v) if v else None) for k, v in delays.items()},
        "false_findings_per_1000_resource_days": healthy["false_findings_per_1000_resource_days"],
        "healthy": healthy,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
