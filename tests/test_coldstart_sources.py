"""Cold starts from every source a real fleet has (issue 17, items 1 and 5): Logs Insights over
REPORT lines when functions are untraced or the account is in Transaction Search mode, X-Ray only
where it can answer, the right function's segment in a trace through several, SnapStart restores,
and the Logs Insights query's statuses, budget and cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collector import coldstart_sources, probes
from collector.aws import Place
from fleetwatch.agent.detection import detect
from fleetwatch.store import SeriesKey, open_store
from tests.conftest import ANCHOR, client, control, make_collector, set_clock

PROD = "123456789012"
FN = "lambda/123456789012/us-east-1/{}"


def _label(fleet: Any, scenario: str) -> dict[str, Any]:
    control(fleet, "/__fleet__/scenario", {"name": scenario})
    (label,) = fleet.model.incident_labels()
    return label


def _namespaces(store: Any, rid: str) -> set[str]:
    return {
        ns
        for (ns,) in store.db.execute(
            "SELECT DISTINCT namespace FROM series WHERE resource_id = ? AND metric = 'ColdStarts'", [rid]
        ).fetchall()
    }


@pytest.mark.parametrize(
    ("scenario", "minutes_in", "function", "words"),
    [
        ("cold-start-deploy", 3, "checkout-fn", ["started cold", "deploy"]),
        ("cold-start-idle", 4, "feed-fn", ["started cold", "idle gap"]),
        ("cold-start-burst", 4, "feed-fn", ["started cold"]),
    ],
)
@pytest.mark.parametrize(
    "mode", [{"untraced": ["*"]}, {"transaction_search": [PROD]}], ids=["untraced", "transaction-search"]
)
def test_cold_start_scenarios_are_found_without_xray(
    fleet: Any, tmp_path: Path, scenario: str, minutes_in: int, function: str, words: list[str], mode: dict[str, Any]
) -> None:
    label = _label(fleet, scenario)
    control(fleet, "/__fleet__/modes", mode)
    rid = FN.format(function)
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, backfill=2 * 3600)
        reports = []
        for m in (minutes_in - 2, minutes_in - 1, minutes_in):
            set_clock(fleet, label["start"] + m * 60)
            reports.append(collector.poll())
        detection = detect(store, int(label["start"] + minutes_in * 60))
        found = [
            f
            for f in detection.findings
            if f.detector == "coldstarts" and f.resource_id == rid and all(w in f.title + " " + f.cause for w in words)
        ]
        assert found, detection.summary()
        assert _namespaces(store, rid) == {coldstart_sources.LOGS_NS}
        assert sum(r.calls["logs:StartQuery"] for r in reports) >= 1
        assert sum(r.calls["xray:BatchGetTraces"] for r in reports) == 0
        # Logs Insights is billed per GB scanned, and the poll's cost says so.
        scanned = sum(r.scanned_bytes for r in reports)
        assert scanned > 0 and sum(r.cost for r in reports) > sum(r.metrics for r in reports) * 0.01 / 1000
        assert control(fleet, "/__fleet__/usage")["logs_insights_bytes_scanned"] == scanned


def test_xray_is_not_asked_for_traces_under_transaction_search(fleet: Any, tmp_path: Path) -> None:
    label = _label(fleet, "cold-start-deploy")
    control(fleet, "/__fleet__/modes", {"transaction_search": [PROD]})
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[], sources=("xray",))
        reports = []
        for m in (1, 2, 3):
            set_clock(fleet, label["start"] + m * 60)
            reports.append(collector.poll())
        xray = [s for s in reports[-1].sources if s.source == "xray"]
        assert xray and "Transaction Search is on" in xray[0].note
        # Asked once per discovery interval, not per poll.
        assert sum(r.calls["xray:GetTraceSegmentDestination"] for r in reports) == 1
        assert sum(r.calls["xray:BatchGetTraces"] + r.calls["xray:GetTraceSummaries"] for r in reports) == 0
    # BatchGetTraces really finds nothing in such an account (the emulator as AWS documents it).
    xr = client(fleet, "xray")
    ids = [
        s["Id"]
        for s in xr.get_trace_summaries(
            StartTime=label["start"], EndTime=label["start"] + 120, FilterExpression='service("checkout-fn")'
        )["TraceSummaries"]
    ][:5]
    assert ids and xr.batch_get_traces(TraceIds=ids)["Traces"] == []
    assert xr.get_trace_segment_destination()["Destination"] == "CloudWatchLogs"


def test_untraced_functions_are_never_read_from_xray(fleet: Any, tmp_path: Path) -> None:
    label = _label(fleet, "cold-start-deploy")
    control(fleet, "/__fleet__/modes", {"untraced": ["checkout-fn"]})
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[])
        collector.discover()
        facts = store.resource(FN.format("checkout-fn"))["facts"]
        assert (facts["tracing"], facts["log_group"], facts["log_format"]) == (
            "PassThrough",
            "/aws/lambda/checkout-fn",
            "Text",
        )
        assert store.resource(FN.format("feed-fn"))["facts"]["tracing"] == "Active"
        chosen = coldstart_sources.assign([store.resource(FN.format("checkout-fn"))], ("xray",))
        assert chosen["xray"] == [] and len(chosen["none"]) == 1
    assert (
        client(fleet, "xray").get_trace_summaries(
            StartTime=label["start"], EndTime=label["start"] + 120, FilterExpression='service("checkout-fn")'
        )["TraceSummaries"]
        == []
    )


def _cold_share(fleet: Any, function: str, start: int, end: int) -> tuple[float, float]:
    place = Place(PROD, "us-east-1")
    import boto3

    from collector.aws import Aws
    from tests.conftest import CREDS

    aws = Aws(regions=["us-east-1"], role_arns=[], endpoint_url=fleet.endpoint, session=boto3.session.Session(**CREDS))
    got, _ = probes.cold_starts(lambda svc: aws.client(place, svc), [(FN.format(function), function)], start, end, 400)
    series = {k.metric: sum(v for _, v in pts) for k, pts in got.points}
    return series["ColdStarts"], series["SampledInvocations"]


def test_a_trace_through_two_functions_is_read_from_the_functions_own_segment(fleet: Any) -> None:
    label = _label(fleet, "cold-start-deploy")
    control(fleet, "/__fleet__/modes", {"callers": {"checkout-fn": "catalog-fn"}})
    set_clock(fleet, label["start"] + 6 * 60)
    trace = client(fleet, "xray").batch_get_traces(
        TraceIds=[
            client(fleet, "xray").get_trace_summaries(
                StartTime=label["start"], EndTime=label["start"] + 60, FilterExpression='service("checkout-fn")'
            )["TraceSummaries"][0]["Id"]
        ]
    )
    names = [__import__("json").loads(s["Document"])["name"] for s in trace["Traces"][0]["Segments"]]
    assert names[0] == "catalog-fn" and "checkout-fn" in names  # the caller's segments come first
    cold, sampled = _cold_share(fleet, "checkout-fn", label["start"], label["start"] + 5 * 60)
    assert sampled > 20 and cold / sampled > 0.3  # half of checkout-fn's invocations started cold


def test_snapstart_restores_count_as_cold_starts(fleet: Any, tmp_path: Path) -> None:
    label = _label(fleet, "cold-start-deploy")
    control(fleet, "/__fleet__/modes", {"snap_start": ["checkout-fn"]})
    set_clock(fleet, label["start"] + 6 * 60)
    cold, sampled = _cold_share(fleet, "checkout-fn", label["start"], label["start"] + 5 * 60)
    assert sampled > 20 and cold / sampled > 0.3  # X-Ray: a Restore subsegment, not Initialization
    rid = FN.format("checkout-fn")
    place = Place(PROD, "us-east-1")
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[])
        clients = lambda svc: collector.aws.client(place, svc)  # noqa: E731
        got, scanned = coldstart_sources.report_lines(
            clients,
            [(rid, "/aws/lambda/checkout-fn")],
            label["start"],
            label["start"] + 300,
            now=fleet.model.clock.now,
            wait=fleet.model.clock.sleep,
            timeout=30,
        )
    series = {k.metric: pts for k, pts in got.points}
    assert sum(v for _, v in series["ColdStarts"]) / sum(v for _, v in series["SampledInvocations"]) > 0.3
    assert all(v < 1200 * 0.5 for _, v in series["InitDuration"])  # a restore, much shorter than the 1.2 s init
    assert scanned > 0


def test_report_lines_count_every_invocation_as_cloudwatch_does(fleet: Any, tmp_path: Path) -> None:
    label = _label(fleet, "cold-start-deploy")
    set_clock(fleet, label["start"] + 6 * 60)
    start, end = label["start"], label["start"] + 300
    place = Place(PROD, "us-east-1")
    rid = FN.format("checkout-fn")
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[])
        clients = lambda svc: collector.aws.client(place, svc)  # noqa: E731
        before = fleet.model.clock.now()
        got, _ = coldstart_sources.report_lines(
            clients,
            [(rid, "/aws/lambda/checkout-fn"), (FN.format("feed-fn"), "/aws/lambda/feed-fn")],
            start,
            end,
            now=fleet.model.clock.now,
            wait=fleet.model.clock.sleep,
            timeout=30,
        )
        assert fleet.model.clock.now() > before  # it waited for the Running query, on the fake clock
    series = {(k.resource_id, k.metric): dict(pts) for k, pts in got.points}
    invoked = client(fleet, "cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Invocations",
                        "Dimensions": [{"Name": "FunctionName", "Value": "checkout-fn"}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=start,
        EndTime=end,
    )["MetricDataResults"][0]
    published = {int(t.timestamp()): v for t, v in zip(invoked["Timestamps"], invoked["Values"], strict=True)}
    # Every minute CloudWatch has published so far (some land late) has as many REPORT lines.
    assert len(published) >= 3 and all(series[(rid, "SampledInvocations")][t] == v for t, v in published.items())
    cold = series[(rid, "ColdStarts")]
    assert sum(cold.values()) / sum(series[(rid, "SampledInvocations")].values()) == pytest.approx(0.5, abs=0.08)
    assert all(900 < v < 1700 for v in series[(rid, "InitDuration")].values())  # checkout-fn's 1.2 s init
    assert sum(series[(FN.format("feed-fn"), "ColdStarts")].values()) < 0.05 * sum(
        series[(FN.format("feed-fn"), "SampledInvocations")].values()
    )


@pytest.mark.parametrize("status", ["Failed", "Timeout", "Cancelled", "Running"])
def test_a_query_that_does_not_complete_leaves_its_window_to_the_next_poll(
    fleet: Any, tmp_path: Path, status: str
) -> None:
    label = _label(fleet, "cold-start-deploy")
    control(fleet, "/__fleet__/modes", {"untraced": ["*"], "logs_query_status": status})
    rid = FN.format("checkout-fn")
    cold = SeriesKey(rid, coldstart_sources.LOGS_NS, "ColdStarts", (), "Sum", 60)
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[], logs_query_timeout=20)
        for m in (1, 2):
            set_clock(fleet, label["start"] + m * 60)
            report = collector.poll()
        logs = [s for s in report.sources if s.source == "coldstarts:logs"]
        assert (
            logs and logs[0].status == "error" and (status if status != "Running" else "still Running") in logs[0].error
        )
        assert store.series_samples(cold, 0, ANCHOR) == []
        control(fleet, "/__fleet__/modes", {"logs_query_status": ""})
        set_clock(fleet, label["start"] + 3 * 60)
        collector.poll()
        stored = store.series_samples(cold, 0, ANCHOR)
        # The minutes the failed queries were asked for are read now.
        assert [t for t, _ in stored][0] <= label["start"] + 60 and sum(v for _, v in stored) > 50


def test_the_scan_budget_hands_functions_to_xray_once_spent(fleet: Any, tmp_path: Path) -> None:
    label = _label(fleet, "cold-start-deploy")
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[], logs_gb_per_day=0.000_001)  # 1 kB
        for m in (1, 2, 3):
            set_clock(fleet, label["start"] + m * 60)
            report = collector.poll()
        logs = next(s for s in report.sources if s.source == "coldstarts:logs")
        assert "budget" in logs.note and report.calls["logs:StartQuery"] == 0
        assert report.calls["xray:BatchGetTraces"] >= 1  # checkout-fn is traced: X-Ray reads it instead
        assert coldstart_sources.XRAY_NS in _namespaces(store, FN.format("checkout-fn"))


def test_lambda_insights_counts_cold_starts_only_where_init_duration_is_per_cold_start() -> None:
    rid, other = FN.format("checkout-fn"), FN.format("feed-fn")
    keys = {
        (k.resource_id, k.metric, k.stat): k
        for k in coldstart_sources.insights_keys([(rid, "checkout-fn"), (other, "feed-fn")])
    }
    assert keys[(rid, "init_duration", "SampleCount")].namespace == "LambdaInsights"
    assert keys[(rid, "init_duration", "SampleCount")].dimensions == (("function_name", "checkout-fn"),)
    points = [
        (keys[(rid, "Invocations", "Sum")], [(60, 400.0), (120, 380.0)]),
        (keys[(rid, "init_duration", "SampleCount")], [(60, 200.0)]),
        (keys[(rid, "init_duration", "Minimum")], [(60, 900.0)]),
        (keys[(rid, "init_duration", "Maximum")], [(60, 1400.0)]),
        # feed-fn's extension reports init_duration 0 on warm invocations: not a cold count.
        (keys[(other, "Invocations", "Sum")], [(60, 1000.0)]),
        (keys[(other, "init_duration", "SampleCount")], [(60, 1000.0)]),
        (keys[(other, "init_duration", "Minimum")], [(60, 0.0)]),
    ]
    got, unusable = coldstart_sources.insights_points(points)
    series = {(k.resource_id, k.metric): pts for k, pts in got.points}
    assert series[(rid, "ColdStarts")] == [(60, 200.0), (120, 0.0)]
    assert series[(rid, "SampledInvocations")] == [(60, 400.0), (120, 380.0)]
    assert series[(rid, "InitDuration")] == [(60, 1400.0)]
    assert unusable == [other] and (other, "ColdStarts") not in series


def test_sources_are_chosen_best_first() -> None:
    fns = [
        {"id": "a", "name": "a", "facts": {"lambda_insights": True, "tracing": "Active", "log_format": "Text"}},
        {"id": "b", "name": "b", "facts": {"lambda_insights": False, "tracing": "Active", "log_format": "JSON"}},
        {"id": "c", "name": "c", "facts": {"lambda_insights": False, "tracing": "PassThrough", "log_format": "Text"}},
        {"id": "d", "name": "d", "facts": {"lambda_insights": False, "tracing": "PassThrough", "log_format": "JSON"}},
    ]
    got = coldstart_sources.assign(fns, coldstart_sources.SOURCES)
    assert {s: [f["id"] for f in v] for s, v in got.items()} == {
        "lambda_insights": ["a"],
        "logs": ["c"],
        "xray": ["b"],
        "none": ["d"],
    }
    got = coldstart_sources.assign(fns, ("xray",))
    assert [f["id"] for f in got["xray"]] == ["a", "b"]
