"""Contract tests against botocore's service models (the pinned botocore's
data/<service>/*/service-2.json): every answer the collector receives from the emulated fleet
over HTTP, in a discovery, a poll with its probes, the SES v1 fallback and the detail probes,
validates against its operation's output shape, and every key the collector reads from an
answer is one the output shape defines. See tests/contract_kit.py for how."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collector import probes
from collector.aws import Place
from fleetwatch.store import open_store
from tests.conftest import ANCHOR, control, make_collector
from tests.contract_kit import Contract

PROD = "123456789012"


def test_every_answer_the_collector_gets_matches_botocores_models(fleet: Any, tmp_path: Path) -> None:
    contract = Contract()
    with contract.installed(), open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store)
        collector.poll()  # discovery, every metric tier, and the state probes
        control(fleet, "/__fleet__/faults", [{"operation": "GetAccount", "mode": "error", "code": "UnknownOperationException",
                                              "status": 404}])
        try:
            collector.poll(tiers=("fast",))  # the SES v1 fallback
        finally:
            control(fleet, "/__fleet__/faults", [])
        # The detail probes, called as the collector calls them when a trigger fires.
        place = Place(PROD, "us-east-1")
        clients = lambda svc: collector.aws.client(place, svc)  # noqa: E731
        posts = store.resource(f"dynamodb/{PROD}/us-east-1/posts")
        rule = next(r for r in posts["facts"]["contributor_insights_rules"] if "-PKT-" in r)
        probes.hot_keys(clients, [(posts["id"], rule)], ANCHOR - 900, ANCHOR)
        _, traces = probes.cold_starts(clients, [(f"lambda/{PROD}/us-east-1/feed-fn", "feed-fn")], ANCHOR - 300, ANCHOR, 10)

    assert traces > 0, "no trace was read, so BatchGetTraces went unchecked"
    # Every operation the collector uses was answered and checked (a guard against the check
    # silently seeing nothing).
    for op in ("lambda.ListFunctions", "lambda.ListProvisionedConcurrencyConfigs", "lambda.GetAccountSettings",
               "sqs.GetQueueAttributes", "dynamodb.DescribeTable", "dynamodb.DescribeContributorInsights",
               "rds.DescribeDBInstances", "rds.DescribeDBProxies", "events.ListRules", "apigateway.GetRestApis",
               "apigatewayv2.GetApis", "cloudwatch.GetMetricData", "cloudwatch.GetInsightRuleReport", "sesv2.GetAccount",
               "ses.GetSendQuota", "ses.GetSendStatistics", "xray.GetTraceSummaries", "xray.BatchGetTraces",
               "sts.AssumeRole"):
        assert contract.calls[op] > 0, (op, sorted(contract.calls))
    assert contract.problems == [], "\n".join(sorted(set(contract.problems)))
