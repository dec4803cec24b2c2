"""The pages benchmark scores what the stand-ins received: its scorer on hand-made messages, and
the demo tour through the agent loop."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_pages", Path(__file__).resolve().parents[1] / "bench" / "pages.py"
)
assert _spec and _spec.loader
pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pages)

T = 1_800_000_000
LABEL = {
    "id": "storm",
    "kind": "connection_exhaustion",
    "resource": "rds:orders-db",
    "outcome": "api:checkout-api",
    "start": T,
    "end": T + 1800,
}


def msg(
    ts: str, at: int, text: str, thread: str | None = None, incident: int = 7, updates: list | None = None
) -> dict[str, Any]:
    return {
        "ts": ts,
        "at": at,
        "text": text,
        "thread_ts": thread,
        "updates": updates or [],
        "metadata": {"event_payload": {"key": f"{incident}/slack:C0/1/firing"}},
    }


def received(slack: list[dict[str, Any]], pd: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"slack": slack, "mail": 0, "pagerduty": {"incidents": pd or [], "events": []}}


def test_one_thread_that_resolves_after_the_end_scores_clean() -> None:
    head = msg(
        "1.0",
        T + 240,
        "[FIRING] CRITICAL: checkout-api: 12% failing — orders-db at 98%",
        updates=[
            {"at": T + 2400, "text": "[RESOLVED] checkout-api: 12% failing — orders-db at 98% — resolved after 36 min"}
        ],
    )
    reply = msg("2.0", T + 2400, "[RESOLVED] checkout-api: 12% failing — orders-db at 98%", thread="1.0")
    pd = [{"dedup_key": "fleetwatch-abc-7", "status": "resolved"}]
    out = pages.score([LABEL], received([head, reply], pd), [], 0, 30, 1.0)
    (row,) = out["labelled"]
    assert row["threads"] == 1 and row["delay_min"] == 4.0 and row["pagerduty"] == 1 and row["pagerduty_resolved"]
    assert (
        row["title_names_outcome"] and row["title_names_cause"] and row["resolved_in_thread"] and not row["premature"]
    )
    assert row["resolved_after_end_min"] == 10.0 and out["false_pages"] == 0


def test_a_second_thread_an_early_resolved_and_an_unrelated_page_are_counted() -> None:
    first = msg("1.0", T + 240, "[FIRING] CRITICAL: orders-db at 98%")
    early = msg("2.0", T + 600, "[RESOLVED] orders-db at 98%", thread="1.0")
    second = msg("3.0", T + 900, "[FIRING] CRITICAL: checkout-api: 12% failing", incident=8)
    noise = msg("4.0", T + 960, "[FIRING] WARNING: images-queue backlog rising", incident=9)
    out = pages.score([LABEL], received([first, early, second, noise]), [{"status": "failed"}], 1, 30, 1.0)
    (row,) = out["labelled"]
    assert row["threads"] == 2 and row["premature"] and not row["title_names_outcome"]
    assert out["false_pages"] == 1 and out["lost_pages"] == 2
    summary = pages.summary([{**out, "healthy": False}])
    assert summary["threads_per_incident_max"] == 2 and summary["premature_resolves"] == 1 and summary["recall"] == 1.0
    assert summary["false_pages_per_1000_resource_days"] == round(1000 / 30, 2)


def test_an_incident_nobody_was_paged_for_is_not_recalled() -> None:
    out = pages.score([LABEL], received([]), [], 0, 30, 1.0)
    assert out["labelled"][0]["threads"] == 0
    assert pages.summary([{**out, "healthy": False}])["recall"] == 0.0


def test_a_problem_that_joined_an_open_thread_counts_from_when_the_thread_named_it() -> None:
    dlq = msg("1.0", T - 1200, "[FIRING] WARNING: orders-dlq: 40 messages dead-lettered")
    joined = msg("2.0", T + 420, "[UPDATED] CRITICAL: orders-queue: none deleted — orders-dlq filling", thread="1.0")
    label = {
        "id": "stopped",
        "kind": "queue_consumer_stopped",
        "resource": "sqs:orders-queue",
        "outcome": None,
        "start": T,
        "end": T + 1800,
    }
    (row,) = pages.score([label], received([dlq, joined]), [], 0, 30, 1.0)["labelled"]
    assert row["threads"] == 1 and row["delay_min"] == 7.0


@pytest.mark.slow
def test_the_demo_tour_pages_every_failure_mode_once_and_resolves_each_in_its_thread() -> None:
    """`make demo`'s four live hours through the agent loop (what the demo runs), scored by what
    the Slack and PagerDuty stand-ins received: each failure mode one thread and one PagerDuty
    incident, ended by RESOLVED in that thread after it ended, and nothing else paged."""
    # In a process of its own: the emulator's moto backends are process-wide, and this test
    # session's fleet is already provisioned in them.
    root = Path(__file__).resolve().parents[1]
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import pages; "
        "print(json.dumps(pages.run_one('tour', None, 3 * 3600)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if not k.startswith(("FLEETWATCH_", "OTEL_"))},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    from simulator.scenario import load_scenario

    assert len(run["labelled"]) == len(load_scenario("tour").incidents) >= 17
    for row in run["labelled"]:
        assert (row["threads"], row.get("pagerduty")) == (1, 1), row
        assert row["resolved_in_thread"] and not row["premature"], row
    assert run["false_pages"] == 0, run["false_titles"]
    assert run["lost_pages"] == 0 and run["threads_unresolved"] == 0
