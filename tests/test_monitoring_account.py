"""Monitoring-account mode (CloudWatch cross-account observability): the emulator honours
MetricDataQuery.AccountId and ListMetrics IncludeLinkedAccounts/OwningAccount (botocore's
cloudwatch 2010-08-01 model), and the collector reads every linked account's metrics through
the monitoring account in fewer GetMetricData calls, with the same samples."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector import report
from fleetwatch.store import open_store
from tests.conftest import ANCHOR, ROLES, client, control, make_collector

PROD, STAGING = "123456789012", "210987654321"


@pytest.fixture()
def linked(fleet: Any) -> Iterator[Any]:
    """The shop fleet with staging linked to prod as its monitoring account."""
    control(fleet, "/__fleet__/links", {"monitoring": PROD, "sources": [STAGING]})
    try:
        yield fleet
    finally:
        control(fleet, "/__fleet__/links", {"monitoring": PROD, "sources": []})


def _query(qid: str, fn: str, account: str = "") -> dict[str, Any]:
    q: dict[str, Any] = {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Lambda",
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "FunctionName", "Value": fn}],
            },
            "Period": 60,
            "Stat": "Sum",
        },
    }
    if account:
        q["AccountId"] = account
    return q


def _staging_client(fleet: Any, service: str) -> Any:
    creds = client(fleet, "sts").assume_role(RoleArn=ROLES[1], RoleSessionName="test")["Credentials"]
    return client(
        fleet,
        service,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def test_get_metric_data_serves_a_linked_account_and_refuses_an_unlinked_one(linked: Any) -> None:
    window = {"StartTime": ANCHOR - 1800, "EndTime": ANCHOR}
    own = _staging_client(linked, "cloudwatch").get_metric_data(
        MetricDataQueries=[_query("a", "staging-checkout-fn")], **window
    )
    hub = client(linked, "cloudwatch").get_metric_data(
        MetricDataQueries=[
            _query("a", "staging-checkout-fn", STAGING),
            _query("b", "staging-checkout-fn"),
            _query("c", "checkout-fn", PROD),
        ],
        **window,
    )
    by_id = {r["Id"]: r for r in hub["MetricDataResults"]}
    assert by_id["a"]["Values"] and by_id["a"]["Values"] == own["MetricDataResults"][0]["Values"]
    assert by_id["b"]["Values"] == []  # without AccountId: the caller's own account, which has no such function
    assert by_id["c"]["Values"] and by_id["c"]["StatusCode"] == "Complete"
    # Staging is not a monitoring account: it cannot read prod.
    refused = _staging_client(linked, "cloudwatch").get_metric_data(
        MetricDataQueries=[_query("a", "checkout-fn", PROD)], **window
    )
    assert (
        refused["MetricDataResults"][0]["StatusCode"] == "Forbidden" and refused["MetricDataResults"][0]["Values"] == []
    )


def test_list_metrics_include_linked_accounts_and_owning_account(linked: Any) -> None:
    cw = client(linked, "cloudwatch")
    plain = cw.list_metrics(Namespace="AWS/Lambda", MetricName="Invocations", Dimensions=[{"Name": "FunctionName"}])
    assert "OwningAccounts" not in plain or not plain["OwningAccounts"]
    both = cw.list_metrics(
        Namespace="AWS/Lambda",
        MetricName="Invocations",
        Dimensions=[{"Name": "FunctionName"}],
        IncludeLinkedAccounts=True,
    )
    owners = dict(zip((m["Dimensions"][0]["Value"] for m in both["Metrics"]), both["OwningAccounts"], strict=True))
    assert owners["staging-checkout-fn"] == STAGING and owners["checkout-fn"] == PROD
    only = cw.list_metrics(
        Namespace="AWS/Lambda", MetricName="Invocations", IncludeLinkedAccounts=True, OwningAccount=STAGING
    )
    assert set(only["OwningAccounts"]) == {STAGING}
    assert sorted(tuple(d["Value"] for d in m["Dimensions"]) for m in only["Metrics"]) == [(), ("staging-checkout-fn",)]


def _samples(path: Path) -> set[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return set(
            db.execute(
                "SELECT s.resource_id, s.namespace, s.metric, s.stat, s.period, s.dimensions, p.ts, p.value "
                "FROM samples p JOIN series s ON s.id = p.series_id"
            )
        )


def test_monitoring_account_mode_gets_the_same_samples_in_fewer_calls(linked: Any, tmp_path: Path) -> None:
    reports = {}
    for mode in ("per-account", "monitoring"):
        with open_store(tmp_path / f"{mode}.db") as store:
            collector = make_collector(linked, store, regions=["us-east-1"], probes=False, backfill=1800)
            collector.sleep, collector.monotonic = (lambda s: None), (lambda: 0.0)
            if mode == "monitoring":
                collector.aws.monitoring_account = ROLES[0]  # prod: staging is linked to it
            reports[mode] = collector.poll(force_discovery=True, tiers=("fast", "slow"))
    per, hub = reports["per-account"], reports["monitoring"]
    assert not per.errors and not hub.errors, (per.summary(), hub.summary())
    got = _samples(tmp_path / "monitoring.db")
    assert got and got == _samples(tmp_path / "per-account.db")
    assert {r[0].split("/")[1] for r in got} == {PROD, STAGING}
    assert hub.calls["cloudwatch:GetMetricData"] < per.calls["cloudwatch:GetMetricData"]
    assert hub.metrics == per.metrics  # billed per metric requested: the same either way
    # Every GetMetricData call was the monitoring account's.
    gmd = {s.place.account for s in hub.sources if s.tally.calls.get("cloudwatch:GetMetricData")}
    assert gmd == {PROD}


def test_plan_shows_the_call_saving_and_the_same_cost() -> None:
    def res(i: int) -> dict[str, Any]:
        return {"id": f"lambda/a/r/f{i}", "kind": "lambda", "name": f"f{i}", "facts": {}}

    by_place = {
        f"{acct}/us-east-1": [res(i) for i in range(30)] for acct in ("111111111111", "222222222222", "333333333333")
    }
    p = report.project(by_place, 60, 300)
    # 30 functions × 7 slow metrics = 210 a place: three calls per account, one for the three.
    assert (p.slow_poll_calls, p.monitoring_slow_poll_calls) == (3, 2)
    assert p.monitoring_calls_per_hour < p.calls_per_hour
    text = report.render(by_place, 60, 300)
    assert "monitoring account" in text and "calls an hour" in text and "billed per metric requested" in text
