"""What a chart shows, decided on the server; uPlot draws it in the browser (web/static/charts.js,
uPlot fetched from the npm registry by web/assets.py and served from /static/vendor/).

A chart is a dict: its title and unit, a summary in words for people and screen readers (latest
value with its time, peak, the limit), and `spec`, the JSON the script draws from: the times and
values (None where samples are missing, so the line breaks), the page's shared time range, the
limit or baseline in the series' own unit, the incident window and "now". Long series are cut
to at most MAX_POINTS by keeping each bucket's highest value, so a spike is never smoothed away."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from alerts.units import human, unit_of

MAX_POINTS = 1500
# A sample further from the one before than GAP times that one's own spacing starts a new line.
GAP = 2.5
UNIT_WORDS = {"ratio": "%", "percent": "%", "ms": "ms", "us": "µs", "s": "time", "count": "count", "bytes": "bytes"}

# CloudWatch's unit of each metric the collector reads (collector/catalog.py), from AWS's metric
# references: Lambda https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html
# (Duration, IteratorAge, AsyncEventAge in ms), SQS https://docs.aws.amazon.com/AWSSimpleQueueService/
# latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html (ApproximateAgeOfOldestMessage in s),
# API Gateway https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html
# (Latency, IntegrationLatency in ms; 4XXError/5XXError's Average is the error rate), RDS
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html (CPUUtilization in %),
# RDS Proxy https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy.monitoring.html
# (DatabaseConnectionsBorrowLatency in µs), SES https://docs.aws.amazon.com/ses/latest/dg/reputation-dashboard-dg.html
# (Reputation.BounceRate and ComplaintRate as fractions). InitDuration is the collector's own
# series, in milliseconds like the REPORT line's "Init Duration" and Lambda Insights' init_duration
# it is read from (collector/coldstart_sources.py cites them). Everything else is a count.
METRIC_UNITS = {
    "Duration": "ms",
    "InitDuration": "ms",
    "IteratorAge": "ms",
    "AsyncEventAge": "ms",
    "Latency": "ms",
    "IntegrationLatency": "ms",
    "ApproximateAgeOfOldestMessage": "s",
    "CPUUtilization": "percent",
    "DatabaseConnectionsBorrowLatency": "us",
    "Reputation.BounceRate": "ratio",
    "Reputation.ComplaintRate": "ratio",
}
RATE_WHEN_AVERAGED = {"4XXError", "5XXError", "4xx", "5xx"}


def metric_unit(metric: str, stat: str = "") -> str:
    if metric in RATE_WHEN_AVERAGED and stat == "Average":
        return "ratio"
    return METRIC_UNITS.get(metric, "count")


def fmt(value: Any, unit: str = "count") -> str:
    """A value in a person's units (alerts/units.human; bytes with binary prefixes), "–" for none."""
    if value is None:
        return "–"
    if unit == "bytes" and isinstance(value, (int, float)):
        v, prefix = float(value), ""
        for prefix in ("", "Ki", "Mi", "Gi", "Ti"):
            if abs(v) < 1024 or prefix == "Ti":
                break
            v /= 1024
        return f"{v:.3g} {prefix}B" if prefix else f"{v:,.0f} B"
    return human(value, unit)


# The unit of a resource fact, by its name (collector/discovery.py stores them): sizes in bytes
# (Lambda's code sizes, https://docs.aws.amazon.com/lambda/latest/api/API_AccountLimit.html), memory
# in MB, durations in seconds (SQS retention and visibility, Lambda timeout), times as epoch seconds.
FACT_UNITS = {
    "memory": "MB",
    "memory_size": "MB",
    "timeout": "s",
    "retention": "s",
    "visibility_timeout": "s",
    "delay": "s",
    "code_size_limit": "bytes",
    "total_code_size": "bytes",
    "code_size": "bytes",
    "ephemeral_storage": "MB",
    "max_message_size": "bytes",
}


def fact(name: str, value: Any) -> str:
    """A resource fact as words: yes/no, lists joined, sizes and durations in units, epoch times
    as UTC dates (the page script shows them in the viewer's zone where marked up as times)."""
    if value is None or value == "" or value == []:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_item(v) for v in value[:50]) + (f" … and {len(value) - 50} more" if len(value) > 50 else "")
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_item(v)}" for k, v in list(value.items())[:50])
    if isinstance(value, (int, float)):
        unit = FACT_UNITS.get(name)
        if name.endswith("_at") or name.endswith("_date"):
            from datetime import datetime

            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC") if value > 10**8 else str(value)
        if unit == "MB":
            return f"{value:,.0f} MB"
        return fmt(value, unit or "count")
    return str(value)


def _item(v: Any) -> str:
    if isinstance(v, dict):
        name = v.get("name") or v.get("metric") or v.get("id")
        rest = ", ".join(f"{k} {_item(x)}" for k, x in v.items() if x not in (None, "", []) and k not in ("name",))
        return f"{name} ({rest})" if name and rest else str(name or rest)
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return "–" if v is None else str(v)


def downsample(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    pts = sorted((float(t), float(v)) for t, v in points if v is not None and math.isfinite(float(v)))
    if len(pts) <= limit:
        return pts
    size = math.ceil(len(pts) / limit)
    return [max(pts[i : i + size], key=lambda p: p[1]) for i in range(0, len(pts), size)]


def with_gaps(pts: Sequence[tuple[float, float]]) -> tuple[list[float], list[float | None]]:
    """Times and values, with a None between two samples further apart than GAP times the
    spacing before them: the line breaks where data is missing instead of bridging it."""
    ts: list[float] = []
    vs: list[float | None] = []
    for i, (t, v) in enumerate(pts):
        if i >= 1:
            gap = t - pts[i - 1][0]
            step = (pts[i - 1][0] - pts[i - 2][0]) if i >= 2 else (pts[i + 1][0] - t if i + 1 < len(pts) else gap)
            if step > 0 and gap > GAP * step:
                ts.append(pts[i - 1][0] + step)
                vs.append(None)
        ts.append(t)
        vs.append(v)
    return ts, vs


def chart(
    title: str,
    points: Sequence[tuple[float, float]],
    unit: str = "count",
    *,
    x_range: tuple[float, float] | None = None,
    limit: float | None = None,
    baseline: float | None = None,
    window: tuple[float, float] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    pts = downsample(points)
    ts, vs = with_gaps(pts)
    marks = {
        name: value
        for name, value in (("limit", limit), ("baseline", baseline))
        if value is not None and math.isfinite(value)
    }
    peak = max(pts, key=lambda p: p[1]) if pts else None
    spec = {
        "unit": unit,
        "t": ts,
        "v": vs,
        "label": title,
        "x": list(x_range) if x_range else ([pts[0][0], pts[-1][0]] if pts else None),
        "marks": [{"name": k, "value": v, "label": f"{k} {fmt(v, unit)}"} for k, v in marks.items()],
        "window": list(window) if window else None,
        "now": now,
    }
    return {
        "title": title,
        "unit": unit,
        "unit_word": UNIT_WORDS.get(unit, unit),
        "empty": not pts,
        "points": len(pts),
        "latest": pts[-1] if pts else None,
        "latest_text": fmt(pts[-1][1], unit) if pts else "",
        "peak_text": fmt(peak[1], unit) if peak else "",
        "marks": {k: fmt(v, unit) for k, v in marks.items()},
        "spec": json.dumps(spec, separators=(",", ":"), allow_nan=False),
    }


def evidence_charts(
    evidence: dict[str, Any],
    window: tuple[float, float] | None = None,
    now: float | None = None,
    x_range: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """One chart per series in a finding's evidence, each in its own unit. The limit and baseline
    are held against the first series (detectors.base.evidence), so they are drawn on that one
    only, in its unit: a 1,000 WCU limit never lands on a throttle-count chart."""
    limit, baseline = _num(evidence.get("limit")), _num(evidence.get("baseline"))
    out = []
    for i, (name, points) in enumerate((evidence.get("series") or {}).items()):
        try:
            pts = [(float(p[0]), float(p[1])) for p in points]
        except (TypeError, ValueError, IndexError):
            continue
        unit = unit_of(evidence, str(name))
        first = i == 0
        out.append(
            chart(
                str(name).replace("_", " "),
                pts,
                unit,
                x_range=x_range,
                window=window,
                now=now,
                limit=limit if first and unit_of(evidence, "limit") == unit else None,
                baseline=baseline if first and unit_of(evidence, "baseline") == unit else None,
            )
        )
    return out


def evidence_range(evidences: Sequence[dict[str, Any]], start: float, end: float) -> tuple[float, float]:
    """One time range for every chart of an incident: its evidence and its window, up to now."""
    times = [
        float(p[0])
        for ev in evidences
        for pts in (ev.get("series") or {}).values()
        for p in pts
        if isinstance(p, (list, tuple)) and p and isinstance(p[0], (int, float))
    ]
    lo = min([*times, start])
    hi = max([*times, end])
    pad = max(60.0, (hi - lo) * 0.03)
    return lo - pad, hi + pad


def _num(v: Any) -> float | None:
    try:
        f = float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
    return f if f is not None and math.isfinite(f) else None
