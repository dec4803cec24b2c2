"""The fault proxy: each service's own throttling error, server errors, slow answers past the
client's timeout and dropped connections, through real boto3 clients and their retries, at a
rate or on a schedule."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from fleetwatch.clock import FakeClock
from simulator.faultproxy import FaultProxy, Rule, json_rewrite
from tests.conftest import CREDS

NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=10)


@pytest.fixture()
def proxy(fleet: Any) -> Iterator[FaultProxy]:
    with FaultProxy(fleet.endpoint, seed=1) as p:
        yield p


def via(proxy: FaultProxy, service: str, config: Config = NO_RETRY) -> Any:
    return boto3.client(service, endpoint_url=proxy.endpoint, region_name="us-east-1", config=config, **CREDS)


CALLS = {
    "cloudwatch": lambda c: c.list_metrics(Namespace="AWS/Lambda"),
    "dynamodb": lambda c: c.list_tables(),
    "lambda": lambda c: c.list_functions(),
    "xray": lambda c: c.get_trace_summaries(StartTime=0, EndTime=60),
    "sqs": lambda c: c.list_queues(),
    "ses": lambda c: c.get_send_quota(),
    "rds": lambda c: c.describe_db_instances(),
    "logs": lambda c: c.describe_log_groups(),
}


@pytest.mark.parametrize(
    ("service", "code", "status"),
    [
        ("cloudwatch", "Throttling", 400),
        ("dynamodb", "ThrottlingException", 400),
        ("lambda", "TooManyRequestsException", 429),
        ("xray", "ThrottledException", 429),
        ("sqs", "RequestThrottled", 400),
        ("ses", "Throttling", 400),
        ("rds", "Throttling", 400),
        ("logs", "ThrottlingException", 400),
    ],
)
def test_each_service_throttles_with_its_own_error(proxy: FaultProxy, service: str, code: str, status: int) -> None:
    proxy.set_rules([{"mode": "throttle", "times": 1}])
    with pytest.raises(ClientError) as err:
        CALLS[service](via(proxy, service))
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    CALLS[service](via(proxy, service))  # times=1: the next call goes through to the emulator
    assert proxy.stats()["injected"] == 1 and proxy.stats()["forwarded"] == 1


def test_botocore_retries_throttles_and_server_errors_until_its_attempts_run_out(proxy: FaultProxy) -> None:
    retrying = Config(retries={"mode": "standard", "total_max_attempts": 3}, read_timeout=10)
    proxy.set_rules([{"service": "lambda", "mode": "throttle", "times": 2}])
    answer = via(proxy, "lambda", retrying).list_functions()
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2, "two throttles, then the third send succeeded"
    proxy.set_rules([{"service": "dynamodb", "mode": "error", "status": 503}])
    with pytest.raises(ClientError) as err:
        via(proxy, "dynamodb", retrying).list_tables()
    assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert err.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    proxy.set_rules([{"mode": "error", "times": 1}])
    with pytest.raises(ClientError) as err:
        via(proxy, "sqs").list_queues()
    assert (err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InternalFailure",
        500,
    )


def test_a_slow_answer_past_the_read_timeout_and_a_dropped_connection_are_retried(proxy: FaultProxy) -> None:
    impatient = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=0.5, connect_timeout=2)
    proxy.set_rules([{"service": "lambda", "mode": "slow", "seconds": 3, "times": 1}])
    with pytest.raises(ReadTimeoutError):
        via(proxy, "lambda", impatient).list_functions()
    retrying = Config(retries={"mode": "standard", "total_max_attempts": 3}, read_timeout=0.5, connect_timeout=2)
    proxy.set_rules([{"service": "lambda", "mode": "slow", "seconds": 3, "times": 1}])
    assert via(proxy, "lambda", retrying).list_functions()["ResponseMetadata"]["RetryAttempts"] == 1
    proxy.set_rules([{"service": "sqs", "mode": "drop", "times": 1}])
    assert via(proxy, "sqs", retrying).list_queues()["ResponseMetadata"]["RetryAttempts"] == 1
    assert proxy.stats()["slow:lambda:GET /2015-03-31/functions"] == 2
    assert proxy.stats()["drop:sqs:ListQueues"] == 1


def test_a_rate_is_seeded_so_a_run_repeats(fleet: Any) -> None:
    patterns = []
    for _ in range(2):
        with FaultProxy(fleet.endpoint, seed=42) as p:
            p.set_rules([{"service": "dynamodb", "mode": "throttle", "rate": 0.25}])
            client, hit = via(p, "dynamodb"), []
            for _ in range(80):
                try:
                    client.list_tables()
                    hit.append(False)
                except ClientError:
                    hit.append(True)
            patterns.append(hit)
    assert patterns[0] == patterns[1]
    assert 8 <= sum(patterns[0]) <= 35, sum(patterns[0])  # 25 % of 80, within a generous binomial band


def test_a_schedule_after_every_times_and_a_clock_window(fleet: Any) -> None:
    clock = FakeClock(1000)
    with FaultProxy(fleet.endpoint, clock=clock.now) as p:
        p.set_rules([Rule(mode="error", service="sqs", after=2, every=3, times=2)])
        client = via(p, "sqs")
        outcome = []
        for _ in range(12):
            try:
                client.list_queues()
                outcome.append(".")
            except ClientError:
                outcome.append("x")
        # Calls 1-2 pass (after), then every 3rd of the rest fails, twice at most.
        assert "".join(outcome) == "....x..x...."
        p.set_rules([Rule(mode="throttle", service="sqs", start=1060, end=1120)])
        client.list_queues()
        clock.advance(60)
        with pytest.raises(ClientError):
            client.list_queues()
        clock.advance(60)
        client.list_queues()


def test_a_rewrite_changes_the_real_answer(proxy: FaultProxy, fleet: Any) -> None:
    def empty(call: Any, body: dict[str, Any]) -> None:
        body["TableNames"] = ["made-up"]

    proxy.set_rules([Rule(mode="rewrite", service="dynamodb", operation="ListTables", rewrite=json_rewrite(empty))])
    assert via(proxy, "dynamodb").list_tables()["TableNames"] == ["made-up"]


def test_bad_rules_are_refused_with_the_reason(proxy: FaultProxy) -> None:
    def post(rules: Any) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(proxy.endpoint + "/__fault__", data=json.dumps(rules).encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    assert post([{"mode": "explode"}]) == (
        400,
        {"error": "rule 0: mode must be one of throttle, error, slow, drop, rewrite, not 'explode'"},
    )
    assert post([{"mode": "throttle", "rate": 2}])[1]["error"] == "rule 0: rate must be between 0 and 1, not 2"
    assert post([{"mode": "throttle", "colour": "red"}])[1]["error"] == "rule 0: unknown keys ['colour']"
    assert post([{"mode": "rewrite"}])[1]["error"].startswith("rule 0: a rewrite rule needs a rewrite function")
    status, body = post([{"mode": "throttle", "service": "monitoring", "rate": 0.1}])
    assert status == 200 and body["rules"][0]["rate"] == 0.1
