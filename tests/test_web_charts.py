"""What the dashboard's charts show, decided on the server (web/charts.py): each series in its own
unit, the limit or baseline only on the series held against it and in its unit, breaks where
samples are missing, one sample still drawn, resource facts in words and units."""

from __future__ import annotations

import json

from detectors.base import Series, evidence
from web.charts import chart, evidence_charts, fact, fmt, metric_unit, with_gaps

T0 = 1_795_000_000


def test_a_limit_is_drawn_on_the_series_held_against_it_in_its_unit() -> None:
    # A table's consumed capacity against its 1,000 WCU, with the throttle count beside it.
    ev = evidence(
        limit=1000,
        consumed_wcu=Series([(T0 + 60 * i, 900.0 + i) for i in range(5)]),
        throttles=Series([(T0 + 60 * i, float(i)) for i in range(5)]),
        units={"consumed_wcu": "count"},
    )
    consumed, throttles = evidence_charts(ev, window=(T0 + 120, T0 + 600), now=T0 + 600, x_range=(T0, T0 + 600))
    assert [m["label"] for m in json.loads(consumed["spec"])["marks"]] == ["limit 1,000"]
    assert json.loads(throttles["spec"])["marks"] == [], "no 1,000 WCU line on the throttle count"
    rate = evidence(limit=0.01, baseline=0.0011, error_rate=Series([(T0, 0.12)]))
    (only,) = evidence_charts(rate, now=T0 + 60)
    spec = json.loads(only["spec"])
    assert spec["unit"] == "ratio" and [m["label"] for m in spec["marks"]] == ["limit 1%", "baseline 0.11%"]
    assert only["latest_text"] == "12%" and spec["now"] == T0 + 60


def test_missing_samples_break_the_line_and_one_sample_is_still_a_chart() -> None:
    pts = [(T0 + 60 * i, 1.0) for i in range(5)] + [(T0 + 3600 + 60 * i, 2.0) for i in range(3)]
    ts, vs = with_gaps(pts)
    assert vs.count(None) == 1 and vs[5] is None and ts[5] == T0 + 300, (
        "one break, just after the last sample before the gap"
    )
    hourly = [(T0 + 3600 * i, 1.0) for i in range(4)] + [(T0 + 3 * 3600 + 60 * i, 1.0) for i in range(1, 4)]
    assert None not in with_gaps(hourly)[1], "hourly rollups followed by minute samples are not a gap"
    single = chart("throttles", [(T0, 606.0)], "count", x_range=(T0 - 3600, T0 + 3600), now=T0 + 3600)
    spec = json.loads(single["spec"])
    assert not single["empty"] and spec["t"] == [T0] and spec["v"] == [606.0] and spec["x"] == [T0 - 3600, T0 + 3600]
    assert single["latest"] == (T0, 606.0), "the latest value comes with its time, so its age can be shown"


def test_numbers_and_facts_in_a_persons_units() -> None:
    assert metric_unit("5XXError", "Average") == "ratio" and metric_unit("5XXError", "Sum") == "count"
    assert metric_unit("ApproximateAgeOfOldestMessage", "Maximum") == "s" and metric_unit("Latency", "p95") == "ms"
    assert metric_unit("DatabaseConnectionsBorrowLatency", "Average") == "us"
    # make demo's function page charted "InitDuration (Maximum) (count)", latest 1,179: milliseconds
    assert metric_unit("InitDuration", "Maximum") == "ms"
    assert fmt(345600, "s") == "4 d" and fmt(0.1444, "ratio") == "14%" and fmt(None) == "–"
    assert fmt(80530636800, "bytes") == "75 GiB" and fmt(512, "bytes") == "512 B"
    assert fact("production_access", True) == "yes" and fact("sending_enabled", False) == "no"
    assert fact("stages", ["prod", "beta"]) == "prod, beta", "not a Python list repr"
    assert fact("retention", 345600) == "4 d" and fact("total_code_size", 4718592) == "4.5 MiB"
    assert fact("detail_at", T0) == "2026-11-18 11:06 UTC" and fact("cluster", None) == "–"
    assert (
        fact("concurrency_holders", [{"name": "orders-fn", "peak": 611.2, "reserved": None}]) == "orders-fn (peak 611)"
    )
