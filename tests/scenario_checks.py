"""Run a scenario's `visible` checks against the emulator with plain boto3."""

from __future__ import annotations

import json
import statistics
from typing import Any

from simulator.metrics import series_for
from tests.conftest import client

HOUR = 3600


def _window(inc: dict[str, Any], now: float) -> tuple[float, float]:
    return inc["start"], min(inc["end"], now)


def metric_points(emu: Any, check: dict[str, Any], start: float, end: float) -> list[float]:
    fleet = emu.model.fleet
    if "resource" in check:
        res = fleet.get(check["resource"])
        sdef = next(
            s
            for s in series_for(res)
            if s.name == check["metric"]  # "index": a global secondary index's own
            and dict(s.dims).get("GlobalSecondaryIndexName") == check.get("index")
        )
        namespace, dims, region, account = sdef.namespace, sdef.dims, res.region, res.account
    else:
        namespace, dims, region, account = check["namespace"], (), check["region"], check["account"]
    assert account == "123456789012", "checks run in the default account"
    cw = client(emu, "cloudwatch", region)
    result = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": check["metric"],
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                    },
                    "Period": check.get("period", 60),
                    "Stat": check["stat"],
                },
            }
        ],
        StartTime=start,
        EndTime=end,
    )
    return result["MetricDataResults"][0]["Values"]


def cold_share(emu: Any, function: str, start: float, end: float) -> float:
    xr = client(emu, "xray")
    ids = [
        s["Id"]
        for page in xr.get_paginator("get_trace_summaries").paginate(
            StartTime=start, EndTime=end, FilterExpression=f'service("{function}")'
        )
        for s in page["TraceSummaries"]
    ]
    cold = 0
    for i in range(0, len(ids), 5):
        for trace in xr.batch_get_traces(TraceIds=ids[i : i + 5])["Traces"]:
            docs = [json.loads(s["Document"]) for s in trace["Segments"]]
            cold += any(sub["name"] == "Initialization" for d in docs for sub in d.get("subsegments", []))
    return cold / max(len(ids), 1)


def run_check(emu: Any, inc: dict[str, Any], check: dict[str, Any]) -> tuple[bool, str]:
    now = emu.model.now()
    start, end = _window(inc, now)
    base_start = inc["start"] + (_offset(check["baseline"]) if "baseline" in check else -HOUR)
    kind = check["type"]
    if kind == "metric":
        during = metric_points(emu, check, start, end)
        if check.get("absent"):
            before = metric_points(emu, {**check, "stat": "SampleCount"}, base_start - 6 * HOUR, inc["start"])
            ok = not during and (bool(before) or not check.get("present_before", True))
            return ok, f"{check['metric']}: {len(during)} points during (want none), {len(before)} before"
        if "at_least" in check:
            return bool(during) and max(during) >= check[
                "at_least"
            ], f"{check['metric']} max {max(during, default=None)} >= {check['at_least']}"
        if "at_most" in check:
            return bool(during) and max(during) <= check[
                "at_most"
            ], f"{check['metric']} max {max(during, default=None)} <= {check['at_most']}"
        before = metric_points(emu, check, base_start, base_start + HOUR)
        ratio = statistics.median(during) / max(statistics.median(before), 1e-9) if during and before else 0.0
        return ratio >= check["rise"], f"{check['metric']} {check['stat']} rose x{ratio:.2f} (want x{check['rise']})"
    if kind == "xray_cold_starts":
        fn = check["resource"].split(":", 1)[1]
        during = cold_share(emu, fn, start, min(end, start + 10 * 60))
        before = cold_share(emu, fn, base_start, base_start + 20 * 60)
        return during >= check["rise"] * max(
            before, 0.005
        ), f"cold share {before:.4f} -> {during:.4f} (want x{check['rise']})"
    if kind == "ses_account":
        account = client(emu, "sesv2", check.get("region", "us-east-1")).get_account()
        value: Any = account
        for part in check["field"].split("."):
            value = value[part]
        if "equals" in check:
            return value == check["equals"], f"{check['field']} = {value!r} (want {check['equals']!r})"
        return value >= check["at_least"], f"{check['field']} = {value} (want >= {check['at_least']})"
    if kind == "insight_top_key":
        table = emu.model.fleet.get(check["resource"])
        rules = client(emu, "dynamodb").describe_contributor_insights(TableName=table.name)[
            "ContributorInsightsRuleList"
        ]
        rule = next(r for r in rules if f"-{check['rule']}-" in r)
        report = client(emu, "cloudwatch").get_insight_rule_report(
            RuleName=rule, StartTime=start, EndTime=end, Period=60, MaxContributorCount=5
        )
        top = report["Contributors"][0]["Keys"][0] if report["Contributors"] else None
        return top == check["key"], f"top contributor {top!r} (want {check['key']!r})"
    raise AssertionError(f"unknown check type {kind}")


def _offset(text: str) -> int:
    from simulator.scenario import parse_offset

    return parse_offset(text)
