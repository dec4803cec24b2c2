"""Hot partitions (SIGNALS.md §2): key-range throttling while the table as a whole is under its
capacity, told apart from provisioned-capacity, account-limit and on-demand-maximum throttling;
the hot keys named from Contributor Insights; write sharding suggested."""

from __future__ import annotations

from collections.abc import Iterator

from detectors.base import (
    CRITICAL,
    WARNING,
    Finding,
    Inputs,
    Resource,
    Series,
    count_text,
    detector,
    evidence,
    pct,
    series_evidence,
)
from fleetwatch.store import index_resource_id

# The (metric, statistic) series this detector reads; the pass loads only declared series.
READS = (
    {
        (f"{op}{what}", stat)
        for op in ("Read", "Write")
        for what, stat in (
            ("KeyRangeThroughputThrottleEvents", "Sum"),
            ("ProvisionedThroughputThrottleEvents", "Sum"),
            ("AccountLimitThrottleEvents", "Sum"),
            ("MaxOnDemandThroughputThrottleEvents", "Sum"),
        )
    }
    | {(f"Consumed{op}CapacityUnits", "Sum") for op in ("Read", "Write")}
    | {(f"Provisioned{op}CapacityUnits", "Maximum") for op in ("Read", "Write")}
    | {(f"{op}ThrottleEvents", "Sum") for op in ("Read", "Write")}
)

RECENT = 5 * 60
UNDER_CAPACITY = 0.8
LOUD = 1000  # throttle events in 5 minutes that make it critical
# Minutes with throttles (of 5) before a finding: two, so one burst minute is not one; with the
# hard-limit rule's one minute of `for` (alerts.for_limits) a page needs three minutes of them.
MIN_MINUTES = 2
# How far back from `now` a table's evaluation looks (incremental pass), and the one time in its
# facts it holds against `now` (the Contributor Insights report's end, stale after 30 min).
HORIZONS = frozenset({RECENT, 600, 1800})
FACT_TIMES = {"dynamodb": lambda facts: [int(((facts.get("hot_keys") or {}).get("window") or [0, 0])[1])]}

REASONS = {
    "ProvisionedThroughput": (
        "capacity",
        "provisioned capacity exceeded",
        "Raise the table's provisioned capacity or its auto-scaling maximum, or switch to on-demand.",
    ),
    "AccountLimit": (
        "account-limit",
        "the account's per-table throughput quota",
        "Request a higher DynamoDB table-level quota for the account.",
    ),
    "MaxOnDemandThroughput": (
        "on-demand-max",
        "the table's configured on-demand maximum",
        "Raise the table's MaxReadRequestUnits / MaxWriteRequestUnits.",
    ),
}


def _minutes_with(series: Series) -> int:
    return sum(1 for _, v in series.points if v > 0)


def _loud(recent: Series) -> bool:
    """LOUD throttles in 5 minutes, or throttling at that pace since it began: two minutes of 300
    are as loud as five of 200, and not a warning for the minutes the window has yet to fill."""
    begun = next((t for t, v in recent.points if v > 0), None)
    if begun is None:
        return False
    minutes = (recent.points[-1][0] - begun) // recent.period + 1
    return recent.sum() >= LOUD or recent.sum() / max(minutes, MIN_MINUTES) * (RECENT / recent.period) >= LOUD


@detector("tables")
def tables(inp: Inputs) -> Iterator[Finding]:
    for t in inp.due("dynamodb"):
        for op, unit in (("Read", "RCU"), ("Write", "WCU")):
            yield from _table_op(inp, t, op, unit)
            for index in t.facts.get("indexes") or []:
                yield from _index_op(inp, t, index, op)


def _index_op(inp: Inputs, t: Resource, index: str, op: str) -> Iterator[Finding]:
    """A global secondary index's throttles: AWS publishes them only under TableName +
    GlobalSecondaryIndexName, never in the table's own ReadThrottleEvents/WriteThrottleEvents
    ("DynamoDB Metrics and dimensions", .../amazondynamodb/latest/developerguide/metrics-dimensions.html).
    A throttled index also throttles the table's writes to it."""
    series = inp.get(index_resource_id(t.id, index), f"{op}ThrottleEvents", "Sum")
    recent = series.since(inp.now - RECENT)
    if _minutes_with(recent) < 2:
        return
    yield Finding(
        "tables",
        t.id,
        CRITICAL if _loud(recent) else WARNING,
        f"{t.name}: index {index} — {count_text(recent.sum())} {op.lower()} throttles in 5 min",
        series.run_start(lambda v: v > 0) or recent.points[0][0],
        evidence(throttles=series),
        cause=f"the global secondary index {index} is short of {op.lower()} capacity"
        + (" (every table write that touches it is throttled too)" if op == "Write" else ""),
        fix=f"Raise {index}'s provisioned {'write' if op == 'Write' else 'read'} capacity or its auto-scaling maximum "
        "(an index has its own), or spread its partition key.",
        key=f"index-{index}-{op.lower()}",
    )


def _table_op(inp: Inputs, t: Resource, op: str, unit: str) -> Iterator[Finding]:
    since = inp.now - RECENT
    key_range = inp.get(t.id, f"{op}KeyRangeThroughputThrottleEvents", "Sum")
    # Consumed capacity is a slow-tier signal: look back two polls of it.
    consumed = inp.get(t.id, f"Consumed{op}CapacityUnits", "Sum").since(inp.now - 600)
    capacity = t.facts.get(f"{op.lower()}_capacity")
    provisioned = inp.get(t.id, f"Provisioned{op}CapacityUnits", "Maximum")
    if provisioned.latest:
        capacity = provisioned.latest[1]
    # Consumed capacity in the unit capacity is provisioned in (units a second), the series a
    # capacity limit is held against: a throttle count is never drawn or told against WCU.
    # AWS: "Use the Sum statistic … and divide it by the number of seconds" to compare with the
    # provisioned throughput (DynamoDB developer guide, metrics-dimensions.html,
    # ConsumedWriteCapacityUnits / ConsumedReadCapacityUnits).
    per_second = Series(tuple((t_, v / consumed.period) for t_, v in consumed.points), consumed.period)
    used = per_second.max() or 0.0
    consumed_name = f"consumed_{unit.lower()}"
    share = used / capacity if capacity else None
    others = {reason: inp.get(t.id, f"{op}{reason}ThrottleEvents", "Sum") for reason in REASONS}
    hot = key_range.since(since)
    if (
        _minutes_with(hot) >= MIN_MINUTES
        and (share is None or share < UNDER_CAPACITY)
        and not any(s.since(since).sum() for r, s in others.items() if r != "ProvisionedThroughput")
    ):
        keys = _hot_keys(t, inp.now)
        named = f"; hottest key {keys[0]}" if keys else ""
        load = (
            f"while the table uses {pct(share)} of its {count_text(capacity or 0)} {unit}"
            if share is not None
            else "on an on-demand table"
        )
        yield Finding(
            "tables",
            t.id,
            CRITICAL if _loud(hot) else WARNING,
            f"{t.name}: hot partition — {count_text(hot.sum())} {op.lower()} throttles in 5 min {load}{named}",
            key_range.run_start(lambda v: v > 0) or hot.points[0][0],
            # No limit in the evidence: the per-partition 3,000 RCU / 1,000 WCU is not comparable
            # with anything CloudWatch reports (consumption is per table), so it is told in the cause.
            series_evidence({"key_range_throttles": key_range, consumed_name: per_second}),
            cause=f"one partition key takes more than the per-partition {'3,000 RCU' if op == 'Read' else '1,000 WCU'}"
            + (f" ({', '.join(keys[:3])})" if keys else ""),
            fix=(
                "Shard the hot key: write to key#0…key#N (a sharded counter) and sum on read, or cache the "
                "hot item's reads."
                if op == "Write"
                else "Cache the hot item (DAX or an in-process cache), or replicate it under several keys."
            ),
            key=f"hot-{op.lower()}",
            limit=True,
        )
    for reason, (key, cause, fix) in REASONS.items():
        series = others[reason]
        recent = series.since(since)
        if _minutes_with(recent) < MIN_MINUTES:
            continue
        if reason == "ProvisionedThroughput" and _scaling_step(provisioned, inp.now) and _minutes_with(recent) <= 3:
            continue  # auto scaling just raised capacity: a few minutes of throttling is expected
        yield Finding(
            "tables",
            t.id,
            CRITICAL if _loud(recent) else WARNING,
            f"{t.name}: {count_text(recent.sum())} {op.lower()} throttles in 5 min — {cause}"
            + (f" ({pct(share)} of {count_text(capacity or 0)} {unit} used)" if share is not None else ""),
            series.run_start(lambda v: v > 0) or recent.points[0][0],
            series_evidence({consumed_name: per_second, "throttles": series}, limit=capacity)
            if capacity and per_second
            else series_evidence({"throttles": series, consumed_name: per_second}),
            cause=cause,
            fix=fix,
            key=f"{key}-{op.lower()}",
            limit=True,
        )


def _scaling_step(provisioned: Series, now: int) -> bool:
    recent = provisioned.since(now - 600)
    return len(recent) >= 2 and recent.values[-1] > recent.values[0]


def _hot_keys(t: Resource, now: int) -> list[str]:
    report = t.facts.get("hot_keys") or {}
    window = report.get("window") or [0, 0]
    if window[1] < now - 1800:
        return []
    return [k["key"] for k in report.get("top", []) if k.get("key")]
