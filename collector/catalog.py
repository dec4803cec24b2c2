"""The metric catalog: for each resource kind, which CloudWatch metric, statistic and period
fleetwatch reads, and in which tier (see SIGNALS.md for why each one is here).

- fast:   limits and user-visible outcomes, every poll.fast_interval (1 minute by default);
- slow:   the slower-moving context, every poll.slow_interval;
- detail: costly or only occasionally useful, fetched only while a cheaper signal in the store
          says it is needed (see `collector.triggers`).

CloudWatch bills GetMetricData per metric requested, not per datapoint, so the tier is what
sets the bill; the window length is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FAST, SLOW, DETAIL = "fast", "slow", "detail"
TIERS = (FAST, SLOW, DETAIL)
# Limits, outcomes and detail at one-minute resolution; the slower-moving context at five
# minutes. CloudWatch bills per metric, not per datapoint, so this costs nothing, and it keeps
# a 1,000-function store (and every detection pass over it) five times smaller.
PERIODS = {FAST: 60, SLOW: 300, DETAIL: 60}
ALIGN = 300  # every window starts on a multiple of the longest period, so buckets never shift


@dataclass(frozen=True)
class MetricSpec:
    namespace: str
    metric: str
    stat: str
    tier: str
    why: str
    only_if: str = ""  # a resource fact that must be truthy for the metric to exist ("!fact": falsy)
    period: int = 0  # the period AWS documents for the metric, where the tier's would be wrong

    def applies(self, facts: dict[str, Any]) -> bool:
        if self.only_if.startswith("!"):
            return not facts.get(self.only_if[1:])
        return not self.only_if or bool(facts.get(self.only_if))

    @property
    def read_period(self) -> int:
        return self.period or PERIODS[self.tier]


def _m(ns: str, metric: str, stat: str, tier: str, why: str, only_if: str = "", period: int = 0) -> MetricSpec:
    return MetricSpec(ns, metric, stat, tier, why, only_if, period)


L, Q, D, R, A, E, S = "AWS/Lambda", "AWS/SQS", "AWS/DynamoDB", "AWS/RDS", "AWS/ApiGateway", "AWS/Events", "AWS/SES"

CATALOG: dict[str, tuple[MetricSpec, ...]] = {
    "lambda_account": (
        _m(L, "ClaimedAccountConcurrency", "Maximum", FAST, "account concurrency in use vs the account limit"),
        _m(L, "ConcurrentExecutions", "Maximum", FAST, "regional concurrency"),
        _m(L, "Throttles", "Sum", FAST, "requests rejected for concurrency, region-wide"),
        _m(L, "UnreservedConcurrentExecutions", "Maximum", SLOW, "concurrency of functions without reservations"),
        _m(L, "Invocations", "Sum", SLOW, "region-wide traffic, the denominator of throttle and error rates"),
        _m(L, "Errors", "Sum", SLOW, "region-wide function errors"),
    ),
    "lambda": (
        _m(L, "Invocations", "Sum", SLOW, "traffic; cold-start and error rates are shares of it"),
        _m(L, "Errors", "Sum", SLOW, "function errors"),
        _m(L, "Throttles", "Sum", SLOW, "invocations rejected for concurrency"),
        _m(L, "Duration", "p95", SLOW, "latency the caller waits for"),
        _m(L, "Duration", "p99", SLOW, "tail latency; cold starts show here first"),
        _m(L, "ConcurrentExecutions", "Maximum", SLOW, "scale-out, the cause of cold starts and connection storms"),
        _m(
            L,
            "ProvisionedConcurrencySpilloverInvocations",
            "Sum",
            SLOW,
            "all provisioned concurrency in use: cold starts",
            only_if="provisioned_concurrency",
        ),
        # Asynchronous invocation (Lambda "Types of metrics for Lambda functions": AsyncEventAge in
        # milliseconds, the others counts), read where the function is known to be invoked
        # asynchronously: an EventBridge schedule's target, or a function with a dead-letter queue.
        _m(L, "AsyncEventsReceived", "Sum", SLOW, "events queued for asynchronous invocation", only_if="async_invoked"),
        _m(
            L,
            "AsyncEventAge",
            "Maximum",
            SLOW,
            "how long events wait in Lambda's async queue (retries raise it)",
            only_if="async_invoked",
        ),
        _m(
            L,
            "AsyncEventsDropped",
            "Sum",
            SLOW,
            "async events dropped without running: the job did not run",
            only_if="async_invoked",
        ),
        _m(L, "DeadLetterErrors", "Sum", SLOW, "failed events the DLQ refused: lost", only_if="async_invoked"),
        _m(
            L,
            "DestinationDeliveryFailures",
            "Sum",
            SLOW,
            "events the on-failure destination refused: lost",
            only_if="async_invoked",
        ),
        _m(L, "IteratorAge", "Maximum", SLOW, "how far a stream consumer is behind (ms)", only_if="stream_consumer"),
    ),
    "sqs": (
        _m(Q, "ApproximateAgeOfOldestMessage", "Maximum", FAST, "messages are deleted at the retention period"),
        _m(Q, "ApproximateNumberOfMessagesVisible", "Maximum", FAST, "backlog, and DLQ depth: jobs that did not run"),
        _m(Q, "ApproximateNumberOfMessagesNotVisible", "Maximum", SLOW, "in flight, against the in-flight quota"),
        _m(Q, "NumberOfMessagesSent", "Sum", SLOW, "inflow"),
        _m(Q, "NumberOfMessagesDeleted", "Sum", SLOW, "outflow: a stopped consumer deletes nothing"),
    ),
    "dynamodb": (
        _m(D, "ReadThrottleEvents", "Sum", FAST, "reads rejected"),
        _m(D, "WriteThrottleEvents", "Sum", FAST, "writes rejected"),
        _m(D, "ConsumedReadCapacityUnits", "Sum", SLOW, "read load against provisioned capacity"),
        _m(D, "ConsumedWriteCapacityUnits", "Sum", SLOW, "write load against provisioned capacity"),
        _m(
            D,
            "ProvisionedReadCapacityUnits",
            "Maximum",
            SLOW,
            "the read capacity (auto scaling moves it)",
            only_if="read_capacity",
        ),
        _m(D, "ProvisionedWriteCapacityUnits", "Maximum", SLOW, "the write capacity", only_if="write_capacity"),
        *(
            _m(D, f"{op}{reason}ThrottleEvents", "Sum", DETAIL, why)
            for reason, why in (
                ("KeyRangeThroughput", "a hot partition key, not missing capacity"),
                ("ProvisionedThroughput", "provisioned capacity exceeded or auto scaling lagging"),
                ("AccountLimit", "the account's per-table quota"),
                ("MaxOnDemandThroughput", "the table's configured on-demand maximum"),
            )
            for op in ("Read", "Write")
        ),
    ),
    "rds": (
        _m(R, "DatabaseConnections", "Maximum", FAST, "connections vs max_connections"),
        _m(R, "CPUUtilization", "Average", SLOW, "database load"),
    ),
    # "Monitoring RDS Proxy metrics with Amazon CloudWatch" (https://docs.aws.amazon.com/AmazonRDS/
    # latest/UserGuide/rds-proxy.monitoring.html): the "current number" metrics are reported every
    # minute with a valid period of 1 minute, and Sum adds up the proxy's EC2 instances. Summed
    # over five minutes they would read five times too high, so they are read per minute even in
    # the slow tier. DatabaseConnectionsBorrowLatency's "most useful statistic" is Average (no
    # percentile is documented for it).
    "rds_proxy": (
        _m(R, "DatabaseConnections", "Sum", FAST, "pooled connections vs MaxDatabaseConnectionsAllowed"),
        _m(R, "MaxDatabaseConnectionsAllowed", "Sum", FAST, "the pool's ceiling"),
        _m(R, "DatabaseConnectionsSetupFailed", "Sum", FAST, "the database refused new connections"),
        _m(R, "ClientConnections", "Sum", SLOW, "clients (functions) connected to the proxy", period=60),
        _m(R, "DatabaseConnectionsBorrowLatency", "Average", SLOW, "waiting for a pooled connection"),
        _m(R, "DatabaseConnectionsCurrentlySessionPinned", "Sum", SLOW, "pinning defeats multiplexing", period=60),
    ),
    "api": (
        _m(A, "{5xx}", "Average", FAST, "share of requests failing: the Average of 5XXError is the error rate"),
        _m(A, "Count", "Sum", FAST, "requests"),
        _m(A, "Latency", "p95", FAST, "latency users feel"),
        _m(A, "{4xx}", "Average", SLOW, "share of requests rejected as client errors"),
        _m(A, "IntegrationLatency", "p95", SLOW, "the backend's share of the latency"),
    ),
    "schedule": (
        # EventBridge rules (not Scheduler schedules): "Monitoring Amazon EventBridge" (eb-monitoring.html), RuleName.
        _m(
            E,
            "TriggeredRules",
            "Sum",
            FAST,
            "the schedule ran (sent only when non-zero: missing is 'did not run')",
            only_if="!scheduler",
        ),
        _m(E, "FailedInvocations", "Sum", FAST, "the target could not be invoked", only_if="!scheduler"),
        _m(E, "Invocations", "Sum", SLOW, "targets invoked", only_if="!scheduler"),
        _m(
            E,
            "InvocationsSentToDlq",
            "Sum",
            SLOW,
            "runs that could not invoke the target, kept in the rule's DLQ",
            only_if="!scheduler",
        ),
        _m(
            E,
            "InvocationsFailedToBeSentToDlq",
            "Sum",
            SLOW,
            "runs that could not invoke the target nor reach the DLQ: lost",
            only_if="!scheduler",
        ),
        # EventBridge Scheduler: AWS/Scheduler, per ScheduleGroup only (Scheduler user guide, "Monitoring
        # Amazon EventBridge Scheduler with Amazon CloudWatch"), so read for a schedule alone in its group.
        _m(
            "AWS/Scheduler",
            "InvocationAttemptCount",
            "Sum",
            FAST,
            "the schedule tried to invoke its target: it ran",
            only_if="group_alone",
        ),
        _m(
            "AWS/Scheduler",
            "TargetErrorCount",
            "Sum",
            FAST,
            "the target returned an error to the invocation",
            only_if="group_alone",
        ),
        _m(
            "AWS/Scheduler",
            "InvocationDroppedCount",
            "Sum",
            FAST,
            "runs dropped after the retry policy was exhausted: lost",
            only_if="group_alone",
        ),
    ),
    "ses": (
        _m(S, "Bounce", "Sum", FAST, "mail not delivered"),
        _m(S, "Reject", "Sum", FAST, "mail SES refused to send because it found a virus (not a sandbox refusal)"),
        # Every minute: sends pressed against the per-second MaxSendRate are a limit (detectors/limits.py
        # RATE_CAPPED); one series a place, $0.00001 a minute, $0.43 a month.
        _m(S, "Send", "Sum", FAST, "mail sent, against the per-second send rate and the 24-hour quota"),
        _m(S, "Delivery", "Sum", SLOW, "mail delivered"),
        _m(S, "Complaint", "Sum", SLOW, "recipients marking mail as spam"),
        _m(S, "Reputation.BounceRate", "Maximum", SLOW, "review at 5%, pause at 10%"),
        _m(S, "Reputation.ComplaintRate", "Maximum", SLOW, "review at 0.1%, pause at 0.5%"),
    ),
}

_DIMENSION = {
    "lambda": "FunctionName",
    "sqs": "QueueName",
    "dynamodb": "TableName",
    "rds": "DBInstanceIdentifier",
    "rds_proxy": "ProxyName",
    "schedule": "RuleName",
}


def rest_api_name(name: str, api_id: str) -> str:
    """The ApiName a REST API's metrics are published under: "API Gateway removes non-ASCII
    characters from the ApiName dimension before sending metrics to CloudWatch. If the APIName
    doesn't contain any ASCII characters, the API ID is used as the ApiName." ("Amazon API
    Gateway dimensions and metrics", https://docs.aws.amazon.com/apigateway/latest/developerguide/
    api-gateway-metrics-and-dimensions.html)"""
    return "".join(ch for ch in name if ord(ch) < 128) or api_id


def dimension_sets(kind: str, name: str, facts: dict[str, Any]) -> list[tuple[tuple[str, str], ...]]:
    """The dimension sets a resource's metrics are read under."""
    if kind in ("ses", "lambda_account"):
        return [()]
    if kind == "schedule" and facts.get("scheduler"):
        return [(("ScheduleGroup", str(facts.get("group", "default"))),)]
    if kind == "api":
        key, value = (
            ("ApiName", rest_api_name(name, str(facts.get("api_id", name))))
            if facts.get("type") == "REST"
            else ("ApiId", str(facts.get("api_id", name)))
        )
        return [((key, value), ("Stage", stage)) for stage in facts.get("stages", [])]
    return [((_DIMENSION[kind], name),)]


def api_metric(metric: str, api_type: Any) -> str:
    """REST APIs publish 5XXError / 4XXError ("Amazon API Gateway dimensions and metrics",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html);
    HTTP APIs publish 5xx / 4xx ("Monitor CloudWatch metrics for HTTP APIs in API Gateway",
    .../http-api-metrics.html). `metric` is "{5xx}" or "{4xx}"; any other name is returned as is."""
    rest = api_type == "REST"
    return {"{5xx}": "5XXError" if rest else "5xx", "{4xx}": "4XXError" if rest else "4xx"}.get(metric, metric)


def metric_name(spec: MetricSpec, facts: dict[str, Any]) -> str:
    return api_metric(spec.metric, facts.get("type"))
