"""The emulator answers like AWS: percentiles, pagination, limits, validation, isolation of
namespaces, accounts and regions, X-Ray traces, live queue depth, cost accounting and the clock."""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ANCHOR, client, control


def q(
    qid: str, metric: str, dims: dict[str, str], stat: str, period: int = 60, namespace: str = "AWS/Lambda"
) -> dict[str, Any]:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
            },
            "Period": period,
            "Stat": stat,
        },
    }


def values(result: dict[str, Any]) -> dict[str, list[float]]:
    return {r["Id"]: r["Values"] for r in result["MetricDataResults"]}


FN = {"FunctionName": "checkout-fn"}
SETTLED = ANCHOR - 300  # datapoints arrive up to three minutes late; windows ending here are complete


def test_percentiles_follow_the_duration_distribution(fleet: Any) -> None:
    cw = client(fleet, "cloudwatch")
    start = SETTLED - 30 * 60
    stats = ["p50", "p90", "p99", "Average", "Minimum", "Maximum", "SampleCount"]
    res = cw.get_metric_data(
        MetricDataQueries=[q(f"s{i}", "Duration", FN, s) for i, s in enumerate(stats)]
        + [q("inv", "Invocations", FN, "Sum")],
        StartTime=start,
        EndTime=SETTLED,
        ScanBy="TimestampAscending",
    )
    v = values(res)
    fn = fleet.model.fleet.get("lambda:checkout-fn")
    minutes = np.arange(start // 60, SETTLED // 60)
    median = fleet.model.drivers(fn, minutes)["duration_ms"]
    sigma = fn["duration_sigma"]
    for i, p in enumerate((0.5, 0.9, 0.99)):
        expected = [m * math.exp(sigma * statistics.NormalDist().inv_cdf(p)) for m in median]
        assert v[f"s{i}"] == pytest.approx(expected, rel=1e-6)
    assert v["s3"] == pytest.approx([m * math.exp(sigma**2 / 2) for m in median], rel=1e-9)
    assert all(
        lo < p50 < p90 < p99 < hi
        for lo, p50, p90, p99, hi in zip(v["s4"], v["s0"], v["s1"], v["s2"], v["s5"], strict=True)
    )
    assert v["s6"] == v["inv"]  # one Duration sample per invocation


def test_percentile_over_longer_periods_mixes_the_minutes(fleet: Any) -> None:
    cw = client(fleet, "cloudwatch")
    start = SETTLED - 60 * 60
    one = values(
        cw.get_metric_data(
            MetricDataQueries=[q("a", "Duration", FN, "p95")],
            StartTime=start,
            EndTime=SETTLED,
            ScanBy="TimestampAscending",
        )
    )["a"]
    five = values(
        cw.get_metric_data(
            MetricDataQueries=[q("a", "Duration", FN, "p95", period=300)],
            StartTime=start,
            EndTime=SETTLED,
            ScanBy="TimestampAscending",
        )
    )["a"]
    assert len(one) == 60 and len(five) == 12
    for i, p95 in enumerate(five):
        minutes = one[i * 5 : (i + 1) * 5]
        assert min(minutes) <= p95 <= max(minutes)


def test_pagination_with_max_datapoints(fleet: Any) -> None:
    cw = client(fleet, "cloudwatch")
    queries = [
        q("a", "Invocations", FN, "Sum"),
        q("b", "Errors", FN, "Sum"),
        q("c", "Duration", FN, "p99"),
        q("d", "Invocations", {"FunctionName": "no-such-fn"}, "Sum"),
    ]
    args = {"MetricDataQueries": queries, "StartTime": SETTLED - 3600, "EndTime": SETTLED}
    whole = values(cw.get_metric_data(**args))
    assert [len(whole[k]) for k in "abcd"] == [60, 60, 60, 0]
    pages = list(cw.get_paginator("get_metric_data").paginate(**args, MaxDatapoints=50))
    assert len(pages) == math.ceil(180 / 50)
    joined: dict[str, list[float]] = {}
    for page in pages:
        assert sum(len(r["Values"]) for r in page["MetricDataResults"]) <= 50
        for r in page["MetricDataResults"]:
            joined.setdefault(r["Id"], []).extend(r["Values"])
    assert joined == whole
    layout = [[(r["Id"], len(r["Values"]), r["StatusCode"]) for r in p["MetricDataResults"]] for p in pages]
    assert layout == [
        [("a", 50, "PartialData")],
        [("a", 10, "Complete"), ("b", 40, "PartialData")],
        [("b", 20, "Complete"), ("c", 30, "PartialData")],
        [("c", 30, "Complete"), ("d", 0, "Complete")],
    ]
    with pytest.raises(ClientError) as err:
        cw.get_metric_data(**args, MaxDatapoints=50, NextToken="bm90LWEtdG9rZW4=")
    assert err.value.response["Error"]["Code"] == "InvalidNextToken"


def test_500_queries_a_call_and_no_more(fleet: Any) -> None:
    cw = client(fleet, "cloudwatch")
    many = [q(f"q{i}", "Invocations", FN, "Sum") for i in range(501)]
    with pytest.raises(ClientError) as err:
        cw.get_metric_data(MetricDataQueries=many, StartTime=ANCHOR - 600, EndTime=ANCHOR)
    assert err.value.response["Error"]["Code"] == "ValidationError" and "500" in err.value.response["Error"]["Message"]
    fleet.usage.reset()
    result = cw.get_metric_data(MetricDataQueries=many[:500], StartTime=ANCHOR - 600, EndTime=ANCHOR)
    assert len(result["MetricDataResults"]) == 500
    usage = control(fleet, "/__fleet__/usage")
    assert usage["cloudwatch_metrics_requested"] == 500
    assert usage["cloudwatch_cost_usd"] == pytest.approx(0.005)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"MetricDataQueries": [q("Upper", "Invocations", FN, "Sum")]}, "Id is invalid"),
        ({"MetricDataQueries": [q("a", "Invocations", FN, "Sum"), q("a", "Errors", FN, "Sum")]}, "must be unique"),
        ({"MetricDataQueries": [q("a", "Invocations", FN, "Sum", period=90)]}, "multiple of 60"),
        ({"MetricDataQueries": [q("a", "Invocations", FN, "Avg")]}, "invalid value"),
        ({"MetricDataQueries": [q("a", "Invocations", FN, "Sum")], "StartTime": ANCHOR}, "StartTime must be less"),
    ],
)
def test_validation_errors(fleet: Any, bad: dict[str, Any], message: str) -> None:
    args = {"StartTime": ANCHOR - 600, "EndTime": ANCHOR, **bad}
    with pytest.raises(ClientError) as err:
        client(fleet, "cloudwatch").get_metric_data(**args)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert message in err.value.response["Error"]["Message"]


def test_namespaces_are_isolated(fleet: Any) -> None:
    # moto mixes namespaces when a query has dimensions; the emulator must not.
    cw = client(fleet, "cloudwatch")
    v = values(
        cw.get_metric_data(
            MetricDataQueries=[
                q("lam", "Invocations", FN, "Sum"),
                q("evt", "Invocations", FN, "Sum", namespace="AWS/Events"),
                q("rule", "Invocations", {"RuleName": "cleanup-every-5m"}, "Sum", namespace="AWS/Events"),
            ],
            StartTime=SETTLED - 3600,
            EndTime=SETTLED,
        )
    )
    assert len(v["lam"]) == 60 and v["evt"] == []
    assert len(v["rule"]) == 12  # rate(5 minutes)


def test_accounts_and_regions_are_isolated(fleet: Any) -> None:
    sts = client(fleet, "sts")
    staging = sts.assume_role(RoleArn="arn:aws:iam::210987654321:role/fleetwatch-reader", RoleSessionName="test")[
        "Credentials"
    ]
    creds = {
        "aws_access_key_id": staging["AccessKeyId"],
        "aws_secret_access_key": staging["SecretAccessKey"],
        "aws_session_token": staging["SessionToken"],
    }
    assert client(fleet, "sts", **creds).get_caller_identity()["Account"] == "210987654321"

    def names(region: str, **c: str) -> set[str]:
        pages = (
            client(fleet, "cloudwatch", region, **c)
            .get_paginator("list_metrics")
            .paginate(Namespace="AWS/Lambda", MetricName="Invocations")
        )
        return {d["Value"] for p in pages for m in p["Metrics"] for d in m["Dimensions"]}

    assert names("us-east-1", **creds) == {"staging-checkout-fn"}
    assert "staging-checkout-fn" not in names("us-east-1") and "checkout-fn" in names("us-east-1")
    assert names("eu-west-1") == {"eu-checkout-fn"}
    settings = client(fleet, "lambda", **creds).get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 10
    assert (
        settings["AccountUsage"]["FunctionCount"]
        == len(client(fleet, "lambda", **creds).list_functions()["Functions"])
        == 1
    )
    prod = client(fleet, "lambda").get_account_settings()
    assert prod["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert prod["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000 - 5  # report-fn reserves 5
    assert prod["AccountUsage"]["FunctionCount"] == len(client(fleet, "lambda").list_functions()["Functions"])
    assert client(fleet, "sesv2", "eu-west-1").get_account()["ProductionAccessEnabled"] is True
    assert client(fleet, "sesv2").get_account()["ProductionAccessEnabled"] is False


def test_claimed_account_concurrency_counts_reserved_and_provisioned(fleet: Any) -> None:
    cw = client(fleet, "cloudwatch")
    v = values(
        cw.get_metric_data(
            MetricDataQueries=[
                q("claimed", "ClaimedAccountConcurrency", {}, "Maximum"),
                q("unreserved", "UnreservedConcurrentExecutions", {}, "Maximum"),
                q("all", "ConcurrentExecutions", {}, "Maximum"),
            ],
            StartTime=ANCHOR - 1800,
            EndTime=ANCHOR,
        )
    )
    assert len(v["claimed"]) == 30
    # report-fn reserves 5 and search-fn has 5 provisioned: both are claimed whether used or not.
    assert [c - u for c, u in zip(v["claimed"], v["unreserved"], strict=True)] == [10.0] * 30
    assert all(a >= u for a, u in zip(v["all"], v["unreserved"], strict=True))


def test_xray_traces_carry_initialization_only_on_cold_starts(fleet: Any) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "cold-start-deploy"})
    xr = client(fleet, "xray")
    start = ANCHOR - 45 * 60
    pages = list(
        xr.get_paginator("get_trace_summaries").paginate(
            StartTime=start, EndTime=start + 480, FilterExpression='service("checkout-fn")'
        )
    )
    ids = [s["Id"] for p in pages for s in p["TraceSummaries"]]
    assert len(pages) > 1 and len(ids) == len(set(ids)) >= 50
    traces = [t for i in range(0, len(ids), 5) for t in xr.batch_get_traces(TraceIds=ids[i : i + 5])["Traces"]]
    assert len(traces) == len(ids)
    cold = 0
    for trace in traces:
        docs = {json.loads(s["Document"])["origin"]: json.loads(s["Document"]) for s in trace["Segments"]}
        subs = [s["name"] for s in docs["AWS::Lambda::Function"]["subsegments"]]
        assert subs in (["Initialization", "Invocation", "Overhead"], ["Invocation", "Overhead"])
        if "Initialization" in subs:
            cold += 1
            init = next(s for s in docs["AWS::Lambda::Function"]["subsegments"] if s["name"] == "Initialization")
            assert 0.9 < init["end_time"] - init["start_time"] < 1.6  # checkout-fn init ~1.2 s
    assert 0.3 < cold / len(traces) < 0.7  # half of invocations are cold during the deploy
    unknown = "1-" + ids[0][2:10] + "-" + "0" * 24
    assert xr.batch_get_traces(TraceIds=[unknown])["UnprocessedTraceIds"] == [unknown]
    with pytest.raises(ClientError):
        xr.get_trace_summaries(StartTime=start, EndTime=start + 60, FilterExpression="responsetime > 5")


def test_queue_attributes_show_live_depth(fleet: Any) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "ses-sandbox"})
    sqs = client(fleet, "sqs")
    url = sqs.get_queue_url(QueueName="email-queue")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    visible = values(
        client(fleet, "cloudwatch").get_metric_data(
            MetricDataQueries=[
                q(
                    "v",
                    "ApproximateNumberOfMessagesVisible",
                    {"QueueName": "email-queue"},
                    "Maximum",
                    namespace="AWS/SQS",
                )
            ],
            StartTime=ANCHOR - 120,
            EndTime=ANCHOR,
        )
    )["v"]
    assert int(attrs["ApproximateNumberOfMessages"]) == visible[0] >= 50
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == 5  # the rest still comes from moto
    assert attrs["MessageRetentionPeriod"] == "345600"


def test_clock_moves_and_the_future_does_not_exist(fleet: Any) -> None:
    cw = client(fleet, "cloudwatch")

    def stamps() -> list[int]:
        return cw.get_metric_data(
            MetricDataQueries=[q("a", "Invocations", FN, "Sum")], StartTime=ANCHOR - 600, EndTime=ANCHOR + 600
        )["MetricDataResults"][0]["Timestamps"]

    now = stamps()
    assert 7 <= len(now) <= 10 and all(t.timestamp() < ANCHOR for t in now)  # a few may still be on their way
    control(fleet, "/__fleet__/clock", {"advance": 900})
    assert len(stamps()) == 20  # the window ended 5 minutes ago: every datapoint has arrived
    assert control(fleet, "/__fleet__/clock")["now"] == ANCHOR + 900


def test_same_inputs_same_values_and_seed_changes_them(fleet: Any) -> None:
    cw = client(fleet, "cloudwatch")
    args = {"MetricDataQueries": [q("a", "Invocations", FN, "Sum")], "StartTime": ANCHOR - 3600, "EndTime": ANCHOR}
    first, again = values(cw.get_metric_data(**args))["a"], values(cw.get_metric_data(**args))["a"]
    assert first == again
    control(fleet, "/__fleet__/scenario", {"name": "healthy", "seed": 999})
    assert values(cw.get_metric_data(**args))["a"] != first


def test_history_follows_cloudwatch_retention(fleet: Any) -> None:
    cw = client(fleet, "cloudwatch")
    old = ANCHOR - 20 * 86400
    minute = values(
        cw.get_metric_data(MetricDataQueries=[q("a", "Invocations", FN, "Sum")], StartTime=old, EndTime=old + 3600)
    )["a"]
    five = values(
        cw.get_metric_data(
            MetricDataQueries=[q("a", "Invocations", FN, "Sum", period=300)], StartTime=old, EndTime=old + 3600
        )
    )["a"]
    assert minute == [] and len(five) == 12  # 1-minute data is kept 15 days, 5-minute data 63


def test_insight_rule_report_unknown_rule(fleet: Any) -> None:
    with pytest.raises(ClientError) as err:
        client(fleet, "cloudwatch").get_insight_rule_report(
            RuleName="DynamoDBContributorInsights-PKT-nope-1", StartTime=ANCHOR - 600, EndTime=ANCHOR, Period=60
        )
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    rules = client(fleet, "cloudwatch").describe_insight_rules()["InsightRules"]
    assert {r["Name"].split("-")[1] for r in rules if "-posts-" in r["Name"]} == {"PKC", "PKT"}


def test_fleet_control_plane_is_in_moto(fleet: Any) -> None:
    lam = client(fleet, "lambda")
    mappings = lam.list_event_source_mappings(FunctionName="orders-fn")["EventSourceMappings"]
    assert mappings and mappings[0]["EventSourceArn"].endswith(":orders-queue")
    params = client(fleet, "rds").describe_db_parameters(DBParameterGroupName="orders-db-params")["Parameters"]
    assert {p["ParameterName"]: p["ParameterValue"] for p in params}["max_connections"] == "500"
    assert client(fleet, "rds").describe_db_proxies()["DBProxies"][0]["DBProxyName"] == "catalog-proxy"
    rules = client(fleet, "events").list_rules()["Rules"]
    assert {r["Name"]: r["ScheduleExpression"] for r in rules}["cleanup-every-5m"] == "rate(5 minutes)"
    assert lam.get_function_concurrency(FunctionName="report-fn")["ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName="checkout-fn").get("ReservedConcurrentExecutions") is None
