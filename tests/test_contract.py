"""Contract tests against botocore's service models (the pinned botocore's
data/<service>/*/service-2.json): every answer the collector receives from the emulated fleet
over HTTP, in a discovery, a poll with its probes, the SES v1 fallback and the detail probes,
validates against its operation's output shape, and every key the collector reads from an
answer is one the output shape defines. See tests/contract_kit.py for how."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import boto3
from botocore import xform_name
from botocore.stub import Stubber

from collector import discovery, probes
from collector.aws import Place, _timestamp
from collector.metricdata import fetch
from collector.plan import Query
from fleetwatch.store import SeriesKey, open_store
from tests.conftest import CREDS
from tests.contract_kit import Contract, every_call

PROD = "123456789012"


def test_every_answer_the_collector_gets_matches_botocores_models(fleet: Any, tmp_path: Path) -> None:
    contract = Contract()
    with contract.installed(), open_store(tmp_path / "fw.db") as store:
        traces = every_call(fleet, store, PROD)

    assert traces > 0, "no trace was read, so BatchGetTraces went unchecked"
    # Every operation the collector uses was answered and checked (a guard against the check
    # silently seeing nothing).
    for op in (
        "lambda.ListFunctions",
        "lambda.ListProvisionedConcurrencyConfigs",
        "lambda.GetAccountSettings",
        "sqs.GetQueueAttributes",
        "dynamodb.DescribeTable",
        "dynamodb.DescribeContributorInsights",
        "rds.DescribeDBInstances",
        "rds.DescribeDBProxies",
        "events.ListRules",
        "apigateway.GetRestApis",
        "apigatewayv2.GetApis",
        "cloudwatch.GetMetricData",
        "cloudwatch.GetInsightRuleReport",
        "sesv2.GetAccount",
        "ses.GetSendQuota",
        "ses.GetSendStatistics",
        "xray.GetTraceSummaries",
        "xray.BatchGetTraces",
        "sts.AssumeRole",
        "scheduler.ListSchedules",
        "scheduler.GetSchedule",
        "logs.StartQuery",
        "logs.GetQueryResults",
        "xray.GetTraceSegmentDestination",
    ):
        assert contract.calls[op] > 0, (op, sorted(contract.calls))
    assert contract.problems == [], "\n".join(sorted(set(contract.problems)))


# -- AWS's documented answers, through the collector unchanged ---------------------------------
#
# Each fixture under tests/fixtures/aws/ is an answer as AWS documents it (the page is cited in
# the file). It is parsed by botocore's parser for the service's protocol with the collector's
# own timestamp handling (collector/aws.py), exactly as the collector's clients parse AWS's
# bytes, and handed to the collector's parsing functions through a botocore Stubber. A Stubber
# is right here: the documented answer itself is what is tested, and Stubber.add_response
# validates it against the operation's output shape in botocore's model before the collector
# sees it. The Contract tracker also checks every key the collector reads is in the model.

FIXTURES = Path(__file__).parent / "fixtures" / "aws"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.session.Session(**CREDS).client(service, region_name="us-east-1")
    return client, Stubber(client)


def as_parsed(client: Any, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` as the collector's client parses it off the wire."""
    # The parser of the protocol the client speaks (CloudWatch's model lists several).
    parser = type(client._response_parser)(timestamp_parser=_timestamp)
    shape = client.meta.service_model.operation_model(operation).output_shape
    parsed = parser.parse({"status_code": 200, "headers": {}, "body": json.dumps(body).encode()}, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def answer(client: Any, stub: Stubber, operation: str, body: dict[str, Any]) -> None:
    method = xform_name(operation)
    stub.add_response(method, as_parsed(client, operation, body))  # validated against the model here


def test_documented_sesv2_get_account_of_a_sandboxed_account() -> None:
    doc = fixture("sesv2-get-account-sandbox.json")
    client, stub = stubbed("sesv2")
    answer(client, stub, "GetAccount", doc["response"])
    with Contract().installed() as contract, stub:
        got = probes.ses_account(lambda svc: client, "ses/123456789012/us-east-1/account", 1795014000)
    facts = got.facts["ses/123456789012/us-east-1/account"]
    assert facts == {
        "source": "sesv2",
        "production_access": False,
        "sending_enabled": True,
        "enforcement_status": "HEALTHY",
        "max_24h_send": 200.0,
        "max_send_rate": 1.0,
        "sent_last_24h": 37.0,
        "review_status": "PENDING",
    }
    assert {k.metric: pts for k, pts in got.points} == {
        "SES.SentLast24Hours": [(1795014000, 37.0)],
        "SES.Max24HourSend": [(1795014000, 200.0)],
        "SES.MaxSendRate": [(1795014000, 1.0)],
    }
    assert contract.problems == []


def test_documented_dynamodb_contributor_insights_rule_report() -> None:
    doc = fixture("cloudwatch-get-insight-rule-report-dynamodb.json")
    client, stub = stubbed("cloudwatch")
    answer(client, stub, "GetInsightRuleReport", doc["response"])
    rid = "dynamodb/123456789012/us-east-1/posts"
    with Contract().installed() as contract, stub:
        got = probes.hot_keys(lambda svc: client, [(rid, doc["rule"])], doc["start"], doc["end"])
    assert got.facts[rid]["hot_keys"] == {
        "rule": doc["rule"],
        "window": [doc["start"], doc["end"]],
        "top": [{"key": "user#8841", "value": 4100.0}, {"key": "user#17", "value": 610.0}],
    }
    [(key, points)] = got.points
    assert key.metric == "MaxContributorValue" and key.dimensions == (("Rule", doc["rule"]),)
    assert points == [(1795014000, 1300.0), (1795014060, 1400.0), (1795014120, 1400.0)]
    assert contract.problems == []


def test_documented_get_metric_data_with_partial_data_and_an_internal_error() -> None:
    doc = fixture("cloudwatch-get-metric-data-partial.json")
    client, stub = stubbed("cloudwatch")
    answer(client, stub, "GetMetricData", doc["response"])
    queries = [
        Query(
            SeriesKey(
                "lambda/123456789012/us-east-1/my-function",
                "AWS/Lambda",
                metric,
                (("FunctionName", "my-function"),),
                "Sum",
                60,
            ),
            "fast",
        )
        for metric in ("Invocations", "Errors", "Throttles")
    ]
    with Contract().installed() as contract, stub:
        points, problems = fetch(client, queries, doc["start"], doc["end"])
    assert {k.metric: pts for k, pts in points} == {
        "Invocations": [(1795014000, 120.0), (1795014060, 131.0), (1795014120, 118.0)],
        "Errors": [(1795014000, 2.0), (1795014060, 0.0)],
    }  # no datapoint for Throttles: nothing stored, not a zero
    assert problems == ["Throttles InternalError: An internal error occurred while retrieving this metric."]
    assert contract.problems == []


def test_documented_sqs_queue_attributes_in_discovery_and_live_depth() -> None:
    doc = fixture("sqs-get-queue-attributes.json")
    url, attrs = doc["queue_url"], doc["response"]["Attributes"]
    client, stub = stubbed("sqs")
    answer(client, stub, "ListQueues", {"QueueUrls": [url]})
    answer(client, stub, "GetQueueAttributes", doc["response"])
    answer(client, stub, "ListQueueTags", {"Tags": {"team": "payments"}})
    # the live-depth probe asks three attributes; AWS answers with only those
    answer(client, stub, "GetQueueAttributes", {"Attributes": {k: attrs[k] for k in probes.LIVE_ATTRIBUTES}})
    with Contract().installed() as contract, stub:
        [found] = discovery.queues(lambda svc: client, Place("123456789012", "us-east-1"))
        depth, errors = probes.queue_depth(
            lambda svc: client, [("sqs/123456789012/us-east-1/orders-queue", url)], 1795014000
        )
    assert (found.name, found.arn, found.tags) == ("orders-queue", attrs["QueueArn"], {"team": "payments"})
    assert {k: found.facts[k] for k in ("retention", "visibility_timeout", "fifo", "dlq", "max_receive_count")} == {
        "retention": 345600,
        "visibility_timeout": 60,
        "fifo": False,
        "dlq": "orders-dlq",
        "max_receive_count": 5,
    }
    assert errors == [] and {k.metric: pts for k, pts in depth.points} == {
        "SQS.ApproximateNumberOfMessages": [(1795014000, 41.0)],
        "SQS.ApproximateNumberOfMessagesNotVisible": [(1795014000, 3.0)],
        "SQS.ApproximateNumberOfMessagesDelayed": [(1795014000, 0.0)],
    }
    assert contract.problems == []


def test_documented_lambda_trace_with_an_initialization_subsegment() -> None:
    doc = fixture("xray-batch-get-traces-lambda.json")
    client, stub = stubbed("xray")
    answer(client, stub, "GetTraceSummaries", doc["summaries"])
    traces = [
        {
            "Id": t["Id"],
            "Duration": t["Duration"],
            "LimitExceeded": t["LimitExceeded"],
            "Segments": [{"Id": s["id"], "Document": json.dumps(s)} for s in t["segments"]],
        }
        for t in doc["traces"]
    ]
    answer(client, stub, "BatchGetTraces", {"Traces": traces, "UnprocessedTraceIds": []})
    rid = "lambda/123456789012/us-east-1/my-function"
    with Contract().installed() as contract, stub:
        got, read = probes.cold_starts(lambda svc: client, [(rid, doc["function"])], doc["start"], doc["end"], 10)
    series = {k.metric: pts for k, pts in got.points}
    assert read == 2
    assert series["SampledInvocations"] == [(1795014000, 1.0), (1795014060, 1.0)]
    assert series["ColdStarts"] == [(1795014000, 1.0), (1795014060, 0.0)]
    [(minute, init_ms)] = series["InitDuration"]
    assert minute == 1795014000 and math.isclose(init_ms, 412.0, abs_tol=0.01)
    assert contract.problems == []
