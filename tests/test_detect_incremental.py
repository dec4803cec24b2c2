"""The incremental detection pass says exactly what a full pass says, pass after pass, on a fake
clock: findings that open and resolve, a function whose finding appears with no new point (its
healthy point left the window), a queue that stops publishing, a live depth reading that goes
stale, a schedule that misses its runs, facts that change and an agent restart (a new engine:
its first pass is full, from the store). And it does less: most passes evaluate a few resources.
Without the detectors' horizons it would not be the same, which is what shows this test can fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.agent import incremental
from fleetwatch.agent.detection import load_inputs, run
from fleetwatch.agent.incremental import IncrementalDetection
from fleetwatch.store import SeriesKey, open_store

T0 = 1_800_000_000  # on the hour
A, R = "123456789012", "us-east-1"
MINUTES = 58


def rid(kind: str, name: str) -> str:
    return f"{kind}/{A}/{R}/{name}"


def row(kind: str, name: str, **facts: Any) -> dict[str, Any]:
    return {"id": rid(kind, name), "account": A, "region": R, "kind": kind, "name": name, "facts": facts, "tags": {}}


FLEET = [
    row("lambda", "burst-fn"),  # errors for ten minutes, then healthy: a finding opens and resolves
    row("lambda", "fade-fn"),  # a big healthy point, a small failing one, then idle
    row("lambda", "consumer-fn"),
    row("lambda", "job-fn"),
    row("lambda", "stops-fn"),  # publishes until minute 30
    row("sqs", "orders-queue", consumers=["consumer-fn"], retention=345600),  # stops publishing at 25
    row("sqs", "waking-queue", retention=345600),  # no CloudWatch points; a live depth at minute 20
    row("schedule", "nightly-ish", expression="rate(5 minutes)", target_functions=["job-fn"], created_at=T0 - 7200),
    row("lambda_account", "account", concurrency_limit=1000),
]


def fn_point(name: str, bucket: int) -> tuple[float, float] | None:
    """(invocations, errors) of a function's 5-minute bucket, or None: no point (idle)."""
    if name == "burst-fn":
        return (100.0, 30.0) if T0 + 600 <= bucket < T0 + 1200 else (100.0, 0.0)
    if name == "fade-fn":
        return (1000.0, 0.0) if bucket < T0 + 1500 else (40.0, 10.0) if bucket == T0 + 1500 else None
    if name == "stops-fn" and bucket >= T0 + 1800:
        return None
    return (60.0, 0.0)


def write_minute(store: Any, now: int) -> None:
    """What a collector stores at `now`: each function its last complete bucket on its fifth of
    the minutes, the queue its minute, the schedule its runs."""
    batch = []
    bucket = now // 300 * 300 - 300
    for i, r in enumerate(FLEET):
        if r["kind"] == "lambda" and (now // 60) % 5 == i % 5:
            got = fn_point(r["name"], bucket)
            if got is not None:
                for metric, value in zip(("Invocations", "Errors"), got, strict=True):
                    key = SeriesKey(r["id"], "AWS/Lambda", metric, (("FunctionName", r["name"]),), "Sum", 300)
                    batch.append((key, [(bucket, value)]))
    if now < T0 + 25 * 60:
        q = rid("sqs", "orders-queue")
        for metric, stat, value in (
            ("ApproximateNumberOfMessagesVisible", "Maximum", 4.0),
            ("ApproximateAgeOfOldestMessage", "Maximum", 9.0),
            ("NumberOfMessagesSent", "Sum", 50.0),
            ("NumberOfMessagesDeleted", "Sum", 50.0),
        ):
            batch.append(
                (SeriesKey(q, "AWS/SQS", metric, (("QueueName", "orders-queue"),), stat, 60), [(now - 60, value)])
            )
    if now % 300 == 0 and now < T0 + 20 * 60:
        key = SeriesKey(
            rid("schedule", "nightly-ish"), "AWS/Events", "TriggeredRules", (("RuleName", "nightly-ish"),), "Sum", 60
        )
        batch.append((key, [(now, 1.0)]))
    store.write_samples(batch)
    if now == T0 + 20 * 60:  # the collector's live probe: a depth, in the queue's facts
        waking = dict(FLEET[6], facts={**FLEET[6]["facts"], "live_at": now, "live_messages": 3})
        store.upsert_resources([waking], now)


def timeline(path: Path, restart_at: int = 40) -> Iterator[tuple[int, list[Any], list[Any], dict[str, Any]]]:
    """Minute by minute: (minute, the full pass, the incremental pass, what the engine did)."""
    with open_store(path) as store:
        store.upsert_resources(FLEET, T0 - 3600)
        for t in range(T0 - 2700, T0, 60):  # 45 minutes of history
            write_minute(store, t)
        engine = IncrementalDetection(store)
        for m in range(MINUTES):
            now = T0 + m * 60
            write_minute(store, now)
            if m == restart_at:  # the agent restarts: nothing of the engine survives
                engine.close()
                engine = IncrementalDetection(store)
            full = run(load_inputs(store, now))
            inc = engine.detect(now)
            yield m, full.said(), inc.said(), dict(engine.last)


def test_the_incremental_pass_says_what_the_full_pass_says_every_minute(tmp_path: Path) -> None:
    seen: set[str] = set()
    kinds, evaluated = [], []
    for m, full, inc, last in timeline(tmp_path / "fw.db"):
        assert inc == full, f"minute {m}: the incremental pass ({last}) differs from the full pass"
        kinds.append(last["kind"])
        evaluated.append(last["evaluated"])
        for _, _, findings, nodata in full:
            seen |= {f"{fp.split(':')[0]} {fp.split('/')[-1]}" for fp, *_ in findings}
            seen |= {f"nodata {r.split('/')[-1]}" for r, _ in nodata}
    # The timeline is not vacuous: each case happened in it.
    assert {
        "outcomes burst-fn:errors",
        "outcomes fade-fn:errors",
        "outcomes nightly-ish:missed",
        "nodata orders-queue",
        "nodata waking-queue",
    } <= seen, seen
    # Full on start, on the restart and every FULL_EVERY passes; incremental otherwise, and
    # those evaluate a part of the fleet.
    assert kinds[0] == "full" and kinds[40] == "full"
    assert kinds.count("incremental") >= MINUTES - 8
    assert min(e for e, k in zip(evaluated, kinds, strict=True) if k == "incremental") < len(FLEET) // 2


def test_without_the_horizons_the_incremental_pass_would_miss_what_time_alone_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A function whose failing point is left alone in the window, a queue silent for 15 minutes:
    no new point arrives for either. With no horizons the incremental pass would not look."""
    monkeypatch.setattr(incremental, "HORIZONS", frozenset({10**9}))
    differs = [m for m, full, inc, _ in timeline(tmp_path / "fw.db", restart_at=MINUTES) if inc != full]
    assert differs, "the incremental pass without horizons agreed with the full pass: the test cannot fail"


def test_the_engine_knows_what_reads_what(tmp_path: Path) -> None:
    """The schedule's evaluation reads its target's series: a new point of the target re-runs the
    schedule (Tracking, recorded while it was the detector's current resource). A quiet account
    does not read every function (who holds its concurrency is asked only for a finding)."""
    with open_store(tmp_path / "fw.db") as store:
        store.upsert_resources(FLEET, T0 - 3600)
        for t in range(T0 - 2700, T0 + 60, 60):
            write_minute(store, t)
        engine = IncrementalDetection(store)
        engine.detect(T0)
        assert rid("schedule", "nightly-ish") in engine.dependents[rid("lambda", "job-fn")]
        assert rid("sqs", "orders-queue") not in engine.dependents[rid("lambda", "job-fn")]
        assert rid("lambda_account", "account") not in engine.dependents.get(rid("lambda", "burst-fn"), set())


def test_a_new_point_re_runs_what_read_its_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Were schedules not re-run every pass, a new point of its target alone would still re-run it."""
    monkeypatch.setattr(incremental, "ALWAYS_DUE", frozenset())
    job, schedule = rid("lambda", "job-fn"), rid("schedule", "nightly-ish")
    with open_store(tmp_path / "fw.db") as store:
        store.upsert_resources(FLEET, T0 - 3600)
        for t in range(T0 - 2700, T0 + 60, 60):
            write_minute(store, t)
        engine = IncrementalDetection(store)
        engine.detect(T0 + 60)
        engine.detect(T0 + 120)
        assert schedule not in engine.due  # nothing it reads changed
        key = SeriesKey(job, "AWS/Lambda", "Invocations", (("FunctionName", "job-fn"),), "Sum", 300)
        store.write_samples([(key, [(T0, 61.0)])])
        engine.detect(T0 + 180)
        assert engine.last["kind"] == "incremental"
        assert {job, schedule} <= engine.due


@pytest.mark.slow
def test_the_tour_through_the_real_collector_is_the_same_incremental_or_full(fleet: Any, tmp_path: Path) -> None:
    """The emulated fleet's tour (every failure mode, staggered: each opens, pages and resolves)
    through the real collector, a poll a minute on the fake clock, with a restart half way."""
    from tests.conftest import ANCHOR, control, make_collector, set_clock

    control(fleet, "/__fleet__/scenario", {"name": "tour"})
    start, minutes = ANCHOR - 4 * 3600 + 5 * 60, int(TOUR_MINUTES)
    titles: set[str] = set()
    with open_store(tmp_path / "fw.db") as store:
        set_clock(fleet, start)
        collector = make_collector(fleet, store, backfill=2 * 3600)
        engine = IncrementalDetection(store)
        for m in range(minutes):
            now = start + m * 60
            set_clock(fleet, now)
            collector.poll()
            if m == minutes // 2:
                engine.close()
                engine = IncrementalDetection(store)
            full = run(load_inputs(store, now)).said()
            inc = engine.detect(now).said()
            assert inc == full, f"minute {m}: the incremental pass ({engine.last}) differs from the full pass"
            titles |= {f[0].split(":")[0] for _, _, findings, _ in full for f in findings}
    assert {"connections", "queues", "outcomes"} <= titles, titles


TOUR_MINUTES = 75
