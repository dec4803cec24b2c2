"""Detection end to end: the emulated fleet's labelled incidents go through the real collector
and store into the detectors, which name them (and their causes); the healthy fleet stays quiet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleetwatch.agent.detection import detect
from fleetwatch.store import open_store
from tests.conftest import control, make_collector, set_clock


def incident(fleet: Any, scenario: str) -> dict[str, Any]:
    control(fleet, "/__fleet__/scenario", {"name": scenario})
    (label,) = fleet.model.incident_labels()
    return label


@pytest.mark.parametrize(
    ("scenario", "minutes_in", "detector", "resource", "severity", "words"),
    [
        (
            "connection-storm",
            8,
            "connections",
            "rds/123456789012/us-east-1/orders-db",
            "critical",
            ["since orders-fn scaled to"],
        ),
        (
            "proxy-exhaustion",
            8,
            "connections",
            "rds_proxy/123456789012/us-east-1/catalog-proxy",
            "critical",
            ["setups failed"],
        ),
        (
            "queue-consumer-stopped",
            12,
            "queues",
            "sqs/123456789012/us-east-1/orders-queue",
            "critical",
            ["none deleted", "orders-fn"],
        ),
        (
            "dlq-filling",
            5,
            "queues",
            "sqs/123456789012/us-east-1/orders-dlq",
            "warning",
            ["dead-lettered from orders-queue"],
        ),
        ("queue-growth", 8, "queues", "sqs/123456789012/us-east-1/images-queue", "warning", ["backlog", "rising"]),
        (
            "hot-partition",
            6,
            "tables",
            "dynamodb/123456789012/us-east-1/posts",
            "critical",
            ["hot partition", "post#8812#likes"],
        ),
        (
            "table-capacity",
            6,
            "tables",
            "dynamodb/123456789012/us-east-1/inventory",
            "critical",
            ["provisioned capacity exceeded"],
        ),
        (
            "schedule-missed",
            11,
            "outcomes",
            "schedule/123456789012/us-east-1/cleanup-every-5m",
            "critical",
            ["no run for"],
        ),
        (
            "schedule-failed",
            16,
            "outcomes",
            "schedule/123456789012/us-east-1/report-every-15m",
            "critical",
            ["failed to invoke report-fn"],
        ),
        (
            "cold-start-deploy",
            3,
            "coldstarts",
            "lambda/123456789012/us-east-1/checkout-fn",
            "critical",
            ["started cold", "deploy"],
        ),
        (
            "cold-start-idle",
            4,
            "coldstarts",
            "lambda/123456789012/us-east-1/feed-fn",
            "critical",
            ["started cold", "idle gap"],
        ),
        ("cold-start-burst", 4, "coldstarts", "lambda/123456789012/us-east-1/feed-fn", "warning", ["started cold"]),
        (
            "lambda-concurrency",
            8,
            "lambda_account",
            "lambda_account/123456789012/us-east-1/account",
            "critical",
            ["throttled"],
        ),
    ],
    ids=lambda x: x if isinstance(x, str) and "-" in x and "/" not in x else "",
)
def test_labelled_incidents_are_found_with_their_cause(
    fleet: Any,
    tmp_path: Path,
    scenario: str,
    minutes_in: int,
    detector: str,
    resource: str,
    severity: str,
    words: list[str],
) -> None:
    label = incident(fleet, scenario)
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, backfill=2 * 3600)
        for m in (minutes_in - 2, minutes_in - 1, minutes_in):  # detail arrives a poll after its trigger
            set_clock(fleet, label["start"] + m * 60)
            collector.poll()
        detection = detect(store, int(label["start"] + minutes_in * 60))
        found = [
            f
            for f in detection.findings
            if f.detector == detector
            and f.resource_id == resource
            and f.severity == severity
            and all(w in f.title + " " + f.cause for w in words)
        ]
        assert found, detection.summary()
        assert label["start"] - 900 <= found[0].started_at <= label["start"] + minutes_in * 60
        rows = store.db.execute(
            "SELECT detector, status FROM detector_runs WHERE pass_id = ?", [detection.pass_id]
        ).fetchall()
        assert {d for d, _ in rows} >= {
            "connections",
            "queues",
            "lambda_account",
            "ses_account",
            "tables",
            "outcomes",
            "coldstarts",
        }
        assert {s for _, s in rows} == {"ok"}
        stored = store.db.execute(
            "SELECT title, cause, started_at FROM findings WHERE pass_id = ? AND resource_id = ?",
            [detection.pass_id, resource],
        ).fetchall()
        assert (found[0].title, found[0].cause, found[0].started_at) in stored


@pytest.mark.slow
def test_the_healthy_fleet_pages_nobody_for_an_hour(fleet: Any, store_target: Any) -> None:
    """On both store backends: the collector's writes and the detectors' reads of an hour."""
    from tests.conftest import ANCHOR

    with open_store(store_target) as store:
        collector = make_collector(fleet, store, backfill=2 * 3600)
        paging = []
        for minute in range(0, 60, 3):
            set_clock(fleet, ANCHOR + minute * 60)
            collector.poll()
            detection = detect(store, ANCHOR + minute * 60)
            paging += [f.title for f in detection.findings if f.severity in ("warning", "critical")]
            assert all(r.status == "ok" for r in detection.runs)
        assert paging == []
