"""Which CloudWatch series each resource publishes, and how statistics of any period and
percentile are computed from per-minute statistic sets.

Each metric is one of five shapes, chosen to match how AWS publishes it:
- events:    one datapoint of value 1 per event (Invocations, Count); absent when zero
- binary:    0/1 per request, so Average is a rate (Lambda Errors, API Gateway 5XXError)
- gauge:     one sample per minute (ConcurrentExecutions, DatabaseConnections, queue depth)
- lognormal: one sample per request from a log-normal distribution (Duration, Latency)
- statset:   a per-minute total over n requests (ConsumedWriteCapacityUnits)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.fleet import Resource
from simulator.mathx import norm_cdf, norm_ppf, stochastic_round

Arrays = dict[str, np.ndarray]
Extract = Callable[[Arrays, Resource], dict[str, Any]]
PERCENTILE = re.compile(r"^p(\d{1,3}(?:\.\d{1,10})?)$")
BASIC_STATS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")


@dataclass(frozen=True)
class Spec:
    namespace: str
    name: str
    unit: str
    shape: str
    extract: Extract
    lookback: int = 0  # minutes of history needed before the window (SQS activity)


@dataclass(frozen=True)
class SeriesDef:
    namespace: str
    name: str
    dims: tuple[tuple[str, str], ...]
    spec: Spec
    res: Resource | None  # None: an account-wide series
    account: str
    region: str


# -- the catalog ----------------------------------------------------------------------------------


def _lambda_specs(res: Resource) -> list[Spec]:
    ns = "AWS/Lambda"
    specs = [
        Spec(ns, "Invocations", "Count", "events", lambda d, r: {"count": d["invocations"]}),
        Spec(ns, "Errors", "Count", "binary", lambda d, r: {"n": d["invocations"], "rate": d["error_rate"]}),
        Spec(
            ns,
            "Throttles",
            "Count",
            "binary",
            lambda d, r: {"n": d["invocations"] + d["throttles"], "k": d["throttles"]},
        ),
        Spec(
            ns,
            "Duration",
            "Milliseconds",
            "lognormal",
            lambda d, r: {"n": d["invocations"], "median": d["duration_ms"], "sigma": r["duration_sigma"]},
        ),
        Spec(
            ns,
            "ConcurrentExecutions",
            "Count",
            "gauge",
            lambda d, r: {"value": d["concurrency"], "present": d["invocations"] > 0},
        ),
    ]
    if res["provisioned"]:
        specs.append(
            Spec(
                ns,
                "ProvisionedConcurrencySpilloverInvocations",
                "Count",
                "events",
                lambda d, r: {"count": d["spillover"]},
            )
        )
    if res["schedule"]:
        # Invoked asynchronously by its EventBridge schedule (Lambda "Types of metrics for Lambda
        # functions", asynchronous invocation metrics; AsyncEventAge in milliseconds).
        specs += [
            Spec(ns, "AsyncEventsReceived", "Count", "events", lambda d, r: {"count": d["async_received"]}),
            Spec(ns, "AsyncEventsDropped", "Count", "events", lambda d, r: {"count": d["async_dropped"]}),
            Spec(
                ns,
                "AsyncEventAge",
                "Milliseconds",
                "gauge",
                lambda d, r: {"value": d["async_age_ms"], "present": d["invocations"] > 0},
            ),
        ]
    return specs


def _sqs_active(d: Arrays) -> np.ndarray:
    # CloudWatch publishes SQS metrics only while a queue is active: it held messages or was
    # accessed within the last six hours. Missing is not zero.
    touched = (d["sent"] + d["backlog"] + d["deleted"] + d["inflight"]) > 0.5
    csum = np.concatenate(([0], np.cumsum(touched)))
    idx = np.arange(len(touched))
    return (csum[idx + 1] - csum[np.maximum(idx + 1 - 360, 0)]) > 0


def _sqs_since_wake(d: Arrays) -> np.ndarray:
    """Minutes since the queue last turned active after being inactive (huge while it has been
    active since before the grid began): a waking queue's first points are published late
    (simulator.cloudwatch.SQS_WAKE_DELAY)."""
    active = _sqs_active(d)
    woke = active & ~np.concatenate(([True], active[:-1]))
    idx = np.arange(len(active))
    last = np.maximum.accumulate(np.where(woke, idx, -(10**9)))
    return idx - last


def _sqs_specs(res: Resource) -> list[Spec]:
    ns = "AWS/SQS"

    def gauge(driver: str, rounding: bool = True) -> Extract:
        return lambda d, r: {
            "value": np.round(d[driver]) if rounding else d[driver],
            "present": _sqs_active(d),
            "since_wake": _sqs_since_wake(d),
        }

    return [
        Spec(ns, "ApproximateNumberOfMessagesVisible", "Count", "gauge", gauge("backlog"), 360),
        Spec(ns, "ApproximateNumberOfMessagesNotVisible", "Count", "gauge", gauge("inflight"), 360),
        Spec(
            ns,
            "ApproximateNumberOfMessagesDelayed",
            "Count",
            "gauge",
            lambda d, r: {
                "value": np.zeros(d["sent"].shape),
                "present": _sqs_active(d),
                "since_wake": _sqs_since_wake(d),
            },
            360,
        ),
        Spec(ns, "ApproximateAgeOfOldestMessage", "Seconds", "gauge", gauge("age"), 360),
        Spec(ns, "NumberOfMessagesSent", "Count", "gauge", gauge("sent"), 360),
        Spec(ns, "NumberOfMessagesReceived", "Count", "gauge", gauge("received"), 360),
        Spec(ns, "NumberOfMessagesDeleted", "Count", "gauge", gauge("deleted"), 360),
        Spec(ns, "NumberOfEmptyReceives", "Count", "gauge", gauge("empty_receives"), 360),
    ]


def _dynamodb_specs(res: Resource) -> list[Spec]:
    ns = "AWS/DynamoDB"
    specs = [
        Spec(
            ns,
            "ConsumedReadCapacityUnits",
            "Count",
            "statset",
            lambda d, r: {
                "n": (d["read_units"] + d["hot_key_read_units"]) * 60,
                "total": (d["read_units"] + d["hot_key_read_units"]) * 60,
            },
        ),
        Spec(
            ns,
            "ConsumedWriteCapacityUnits",
            "Count",
            "statset",
            lambda d, r: {
                "n": (d["write_units"] + d["hot_key_write_units"]) * 60,
                "total": (d["write_units"] + d["hot_key_write_units"]) * 60,
            },
        ),
        Spec(ns, "ReadThrottleEvents", "Count", "events", lambda d, r: {"count": _throttles(d, "read")}),
        Spec(ns, "WriteThrottleEvents", "Count", "events", lambda d, r: {"count": _throttles(d, "write")}),
    ]
    for reason, prefix in (
        ("KeyRangeThroughput", "keyrange"),
        ("ProvisionedThroughput", "provisioned"),
        ("AccountLimit", "account"),
        ("MaxOnDemandThroughput", "ondemand"),
    ):
        for op in ("Read", "Write"):
            driver = f"{prefix}_{op.lower()}_throttles"
            specs.append(
                Spec(ns, f"{op}{reason}ThrottleEvents", "Count", "events", lambda d, r, drv=driver: {"count": d[drv]})
            )
    if res["billing"] == "PROVISIONED":
        specs += [
            Spec(
                ns,
                "ProvisionedReadCapacityUnits",
                "Count",
                "gauge",
                lambda d, r: {"value": np.full(d["read_units"].shape, float(r["read_capacity"]))},
            ),
            Spec(
                ns,
                "ProvisionedWriteCapacityUnits",
                "Count",
                "gauge",
                lambda d, r: {"value": np.full(d["write_units"].shape, float(r["write_capacity"]))},
            ),
        ]
    return specs


def _throttles(d: Arrays, op: str) -> np.ndarray:
    return sum(d[f"{p}_{op}_throttles"] for p in ("keyrange", "provisioned", "account", "ondemand"))


def _operation_specs(res: Resource) -> list[tuple[Spec, tuple[tuple[str, str], ...]]]:
    """DynamoDB metrics published per (TableName, Operation)."""
    ns = "AWS/DynamoDB"
    out = []
    for op, kind in (("GetItem", "read"), ("Query", "read"), ("PutItem", "write"), ("UpdateItem", "write")):
        share = 0.5
        out.append(
            (
                Spec(
                    ns,
                    "ThrottledRequests",
                    "Count",
                    "events",
                    lambda d, r, k=kind, s=share: {"count": _throttles(d, k) * s},
                ),
                (("Operation", op),),
            )
        )
        out.append(
            (
                Spec(
                    ns,
                    "SuccessfulRequestLatency",
                    "Milliseconds",
                    "lognormal",
                    lambda d, r, k=kind, s=share: {
                        "n": d[f"{k}_units"] * 60 * s,
                        "median": d["latency_ms"],
                        "sigma": 0.3,
                    },
                ),
                (("Operation", op),),
            )
        )
    return out


def _index_specs(res: Resource, first: bool) -> list[Spec]:
    """What AWS publishes per global secondary index, under TableName + GlobalSecondaryIndexName:
    its own throttle events ("The TableName dimension returns the ReadThrottleEvents for the
    table, but not for any global secondary indexes. To view ReadThrottleEvents for a global
    secondary index, you must specify both TableName and GlobalSecondaryIndexName", likewise
    WriteThrottleEvents), its consumed and provisioned capacity ("DynamoDB Metrics and
    dimensions", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/metrics-dimensions.html).
    Every table write is copied into each index (projection ALL); a tenth of the reads query one.
    The index_*_throttles drivers throttle the table's first index only."""
    ns = "AWS/DynamoDB"
    none = lambda d: np.zeros(d["write_units"].shape)  # noqa: E731
    specs = [
        Spec(
            ns,
            "ConsumedReadCapacityUnits",
            "Count",
            "statset",
            lambda d, r: {"n": d["read_units"] * 6, "total": d["read_units"] * 6},
        ),
        Spec(
            ns,
            "ConsumedWriteCapacityUnits",
            "Count",
            "statset",
            lambda d, r: {"n": d["write_units"] * 60, "total": d["write_units"] * 60},
        ),
        Spec(
            ns,
            "ReadThrottleEvents",
            "Count",
            "events",
            lambda d, r: {"count": d["index_read_throttles"] if first else none(d)},
        ),
        Spec(
            ns,
            "WriteThrottleEvents",
            "Count",
            "events",
            lambda d, r: {"count": d["index_write_throttles"] if first else none(d)},
        ),
    ]
    if res["billing"] == "PROVISIONED":
        specs += [
            Spec(ns, f"Provisioned{op}CapacityUnits", "Count", "gauge", _provisioned(f"{op.lower()}_capacity"))
            for op in ("Read", "Write")
        ]
    return specs


def _provisioned(column: str) -> Extract:
    """A table's provisioned capacity (the resource's `column`), flat over the window."""
    return lambda d, r: {"value": np.full(d["read_units"].shape, float(r[column]))}


def _rds_specs(res: Resource) -> list[Spec]:
    return [
        Spec("AWS/RDS", "DatabaseConnections", "Count", "gauge", lambda d, r: {"value": d["connections"]}),
        Spec("AWS/RDS", "CPUUtilization", "Percent", "gauge", lambda d, r: {"value": d["cpu"]}),
    ]


def _proxy_specs(res: Resource) -> list[Spec]:
    ns = "AWS/RDS"
    return [
        Spec(ns, "ClientConnections", "Count", "gauge", lambda d, r: {"value": d["clients"]}),
        Spec(ns, "DatabaseConnections", "Count", "gauge", lambda d, r: {"value": d["db_connections"]}),
        Spec(
            ns,
            "MaxDatabaseConnectionsAllowed",
            "Count",
            "gauge",
            lambda d, r: {"value": np.full(d["clients"].shape, float(r.facts["max_allowed"]))},
        ),
        Spec(
            ns,
            "DatabaseConnectionsCurrentlyBorrowed",
            "Count",
            "gauge",
            lambda d, r: {"value": np.round(d["db_connections"] * 0.6)},
        ),
        Spec(
            ns,
            "DatabaseConnectionsCurrentlySessionPinned",
            "Count",
            "gauge",
            lambda d, r: {"value": np.round(d["db_connections"] * np.clip(d["pinned_share"], 0, 1))},
        ),
        Spec(
            ns,
            "DatabaseConnectionsBorrowLatency",
            "Microseconds",
            "lognormal",
            lambda d, r: {"n": d["clients"], "median": d["borrow_us"], "sigma": 0.5},
        ),
        Spec(ns, "DatabaseConnectionsSetupFailed", "Count", "events", lambda d, r: {"count": d["setup_failed"]}),
    ]


def _api_specs(res: Resource) -> list[Spec]:
    ns = "AWS/ApiGateway"
    rest = res["type"] == "REST"
    e5, e4 = ("5XXError", "4XXError") if rest else ("5xx", "4xx")
    return [
        Spec(ns, "Count", "Count", "events", lambda d, r: {"count": d["requests"]}),
        Spec(ns, e5, "Count", "binary", lambda d, r: {"n": d["requests"], "rate": d["error5"]}),
        Spec(ns, e4, "Count", "binary", lambda d, r: {"n": d["requests"], "rate": d["error4"]}),
        Spec(
            ns,
            "Latency",
            "Milliseconds",
            "lognormal",
            lambda d, r: {"n": d["requests"], "median": d["latency_ms"], "sigma": r["latency_sigma"]},
        ),
        Spec(
            ns,
            "IntegrationLatency",
            "Milliseconds",
            "lognormal",
            lambda d, r: {
                "n": d["requests"],
                "median": np.maximum(d["latency_ms"] - 6.0, 1.0),
                "sigma": r["latency_sigma"],
            },
        ),
    ]


def _schedule_specs(res: Resource) -> list[Spec]:
    if res["service"] == "scheduler":
        # AWS/Scheduler, per ScheduleGroup (https://docs.aws.amazon.com/scheduler/latest/UserGuide/monitoring-cloudwatch.html).
        # A group of several schedules would publish their sum: not emulated, so such groups publish nothing here.
        if not res.facts.get("group_alone"):
            return []
        ns = "AWS/Scheduler"
        return [
            Spec(ns, "InvocationAttemptCount", "Count", "events", lambda d, r: {"count": d["runs"]}),
            Spec(ns, "TargetErrorCount", "Count", "events", lambda d, r: {"count": d["runs"] * d["failed_share"]}),
        ]
    ns = "AWS/Events"
    # EventBridge sends these only when non-zero.
    return [
        Spec(ns, "TriggeredRules", "Count", "events", lambda d, r: {"count": d["runs"]}),
        Spec(ns, "Invocations", "Count", "events", lambda d, r: {"count": d["runs"] * (1 - d["failed_share"])}),
        Spec(ns, "FailedInvocations", "Count", "events", lambda d, r: {"count": d["runs"] * d["failed_share"]}),
    ]


def _ses_specs(res: Resource) -> list[Spec]:
    ns = "AWS/SES"
    return [
        Spec(ns, "Send", "Count", "events", lambda d, r: {"count": d["sends"]}),
        Spec(ns, "Delivery", "Count", "events", lambda d, r: {"count": d["sends"] * (1 - d["bounce_rate"])}),
        Spec(ns, "Bounce", "Count", "events", lambda d, r: {"count": d["sends"] * d["bounce_rate"]}),
        Spec(ns, "Complaint", "Count", "events", lambda d, r: {"count": d["sends"] * d["complaint_rate"]}),
        Spec(ns, "Reject", "Count", "events", lambda d, r: {"count": d["rejects"]}),
        # Reputation rates are published hourly-ish as a ratio; one sample a minute here. An
        # account with no bounces (complaints) yet has no rate to publish: absent, not 0
        # (issue 17 item 13; the account's rates need mail that bounced or drew complaints, SES
        # "Reputation metrics", https://docs.aws.amazon.com/ses/latest/dg/reputation-dashboard-dg.html).
        Spec(
            ns,
            "Reputation.BounceRate",
            "None",
            "gauge",
            lambda d, r: {"value": d["reputation_bounce"], "present": d["reputation_bounce"] > 0},
        ),
        Spec(
            ns,
            "Reputation.ComplaintRate",
            "None",
            "gauge",
            lambda d, r: {"value": d["reputation_complaint"], "present": d["reputation_complaint"] > 0},
        ),
    ]


LAMBDA_ACCOUNT_SPECS = [
    Spec("AWS/Lambda", "ConcurrentExecutions", "Count", "gauge", lambda d, r: {"value": d["concurrency"]}),
    Spec(
        "AWS/Lambda",
        "UnreservedConcurrentExecutions",
        "Count",
        "gauge",
        lambda d, r: {"value": d["unreserved_concurrency"]},
    ),
    Spec("AWS/Lambda", "ClaimedAccountConcurrency", "Count", "gauge", lambda d, r: {"value": d["claimed"]}),
    Spec("AWS/Lambda", "Invocations", "Count", "events", lambda d, r: {"count": d["invocations"]}),
    Spec("AWS/Lambda", "Errors", "Count", "binary", lambda d, r: {"n": d["invocations"], "k": d["errors"]}),
    Spec(
        "AWS/Lambda",
        "Throttles",
        "Count",
        "binary",
        lambda d, r: {"n": d["invocations"] + d["throttles"], "k": d["throttles"]},
    ),
]


# The one dimension each kind's metrics are published under (SES: account-wide, no dimension).
_DIMENSION = {
    "lambda": "FunctionName",
    "sqs": "QueueName",
    "dynamodb": "TableName",
    "rds": "DBInstanceIdentifier",
    "rds_proxy": "ProxyName",
    "schedule": "RuleName",
}


def rest_api_name_dimension(res: Resource) -> str:
    """What AWS publishes a REST API's metrics under: "API Gateway removes non-ASCII characters
    from the ApiName dimension before sending metrics to CloudWatch. If the APIName doesn't
    contain any ASCII characters, the API ID is used as the ApiName." ("Amazon API Gateway
    dimensions and metrics", https://docs.aws.amazon.com/apigateway/latest/developerguide/
    api-gateway-metrics-and-dimensions.html). Written here apart from the collector's own rule,
    so that the emulator checks the collector rather than echoing it."""
    kept = "".join(ch for ch in res.name if ord(ch) < 128)
    return kept or str(res.facts.get("api_id", res.name))


def _dims(res: Resource) -> list[tuple[tuple[str, str], ...]]:
    if res.kind == "api":
        # REST APIs publish by ApiName; HTTP APIs by the ApiId assigned when they are created.
        name, value = (
            ("ApiName", rest_api_name_dimension(res))
            if res["type"] == "REST"
            else ("ApiId", res.facts.get("api_id", res.name))
        )
        return [((name, value),), ((name, value), ("Stage", res["stage"]))]
    if res.kind == "ses":
        return [()]
    if res.kind == "schedule" and res["service"] == "scheduler":
        return [(("ScheduleGroup", res["group"]),)]
    return [((_DIMENSION[res.kind], res.name),)]


# Lambda Insights: the extension writes one embedded-metric-format event per invocation to
# /aws/lambda-insights, which CloudWatch turns into metrics in the LambdaInsights namespace by
# function_name (and function_name + version), init_duration in milliseconds (AWS, "Example
# telemetry event in CloudWatch Lambda Insights", https://docs.aws.amazon.com/AmazonCloudWatch/
# latest/monitoring/Lambda-Insights-example-event.html). The emulator publishes it by function_name
# from cold starts only, and only while the function is in the `lambda_insights` mode (the layer
# installed; see cloudwatch.series_values).
INSIGHTS_INIT = Spec(
    "LambdaInsights",
    "init_duration",
    "Milliseconds",
    "lognormal",
    lambda d, r: {"n": d["invocations"] * d["cold_share"], "median": d["init_ms"], "sigma": 0.15},
)


_SPECS: dict[str, Callable[[Resource], list[Spec]]] = {
    "lambda": _lambda_specs,
    "sqs": _sqs_specs,
    "dynamodb": _dynamodb_specs,
    "rds": _rds_specs,
    "rds_proxy": _proxy_specs,
    "api": _api_specs,
    "schedule": _schedule_specs,
    "ses": _ses_specs,
}


def series_for(res: Resource) -> list[SeriesDef]:
    out = []
    for dims in _dims(res):
        for spec in _SPECS[res.kind](res):
            out.append(SeriesDef(spec.namespace, spec.name, tuple(sorted(dims)), spec, res, res.account, res.region))
    if res.kind == "lambda":
        out.append(
            SeriesDef(
                INSIGHTS_INIT.namespace,
                INSIGHTS_INIT.name,
                (("function_name", res.name),),
                INSIGHTS_INIT,
                res,
                res.account,
                res.region,
            )
        )
    if res.kind == "dynamodb":
        for spec, extra in _operation_specs(res):
            dims = tuple(sorted((("TableName", res.name), *extra)))
            out.append(SeriesDef(spec.namespace, spec.name, dims, spec, res, res.account, res.region))
        for i, index in enumerate(res["indexes"] or []):
            dims = tuple(sorted((("TableName", res.name), ("GlobalSecondaryIndexName", str(index)))))
            out += [
                SeriesDef(s.namespace, s.name, dims, s, res, res.account, res.region) for s in _index_specs(res, i == 0)
            ]
    return out


def account_series(account: str, region: str) -> list[SeriesDef]:
    return [SeriesDef(s.namespace, s.name, (), s, None, account, region) for s in LAMBDA_ACCOUNT_SPECS]


# -- statistics ---------------------------------------------------------------------------------


@dataclass
class MinuteStats:
    shape: str
    present: np.ndarray
    n: np.ndarray
    total: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    median: np.ndarray | None = None
    sigma: float = 0.0


def minute_stats(spec: Spec, inputs: dict[str, Any], u: np.ndarray) -> MinuteStats:
    shape = spec.shape
    if shape == "events":
        c = stochastic_round(inputs["count"], u)
        ones = np.ones_like(c)
        return MinuteStats(shape, c > 0, c, c, ones, ones)
    if shape == "binary":
        n = stochastic_round(inputs["n"], u)
        k = inputs["k"] if "k" in inputs else inputs["n"] * inputs["rate"]
        k = np.minimum(stochastic_round(k, u), n)
        return MinuteStats(shape, n > 0, n, k, (k >= n).astype(float), (k > 0).astype(float))
    if shape == "gauge":
        v = np.asarray(inputs["value"], dtype=np.float64)
        present = inputs.get("present")
        present = np.ones(v.shape, dtype=bool) if present is None else present
        return MinuteStats(shape, present, np.ones_like(v), v, v, v)
    if shape == "statset":
        n = stochastic_round(inputs["n"], u)
        total = np.where(n > 0, inputs["total"], 0.0)
        avg = np.where(n > 0, total / np.maximum(n, 1), 0.0)
        return MinuteStats(shape, n > 0, n, total, avg, avg)
    # lognormal
    n = stochastic_round(inputs["n"], u)
    med = np.maximum(np.asarray(inputs["median"], dtype=np.float64), 1e-9)
    sigma = float(inputs["sigma"])
    safe_n = np.maximum(n, 1)
    lo = med * np.exp(sigma * norm_ppf(1.0 / (safe_n + 1)))
    hi = med * np.exp(sigma * norm_ppf(safe_n / (safe_n + 1)))
    total = n * med * np.exp(sigma * sigma / 2)
    return MinuteStats(shape, n > 0, n, total, lo, hi, med, sigma)


def aggregate(ms: MinuteStats, k: int, stat: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and presence per bucket of k consecutive minutes (len(minutes) is a multiple of k)."""
    buckets = len(ms.present) // k
    present = ms.present.reshape(buckets, k)
    any_present = present.any(axis=1)
    n = np.where(present, ms.n.reshape(buckets, k), 0.0).sum(axis=1)
    if stat == "SampleCount":
        return n, any_present
    total = np.where(present, ms.total.reshape(buckets, k), 0.0).sum(axis=1)
    if stat == "Sum":
        return total, any_present
    if stat == "Average":
        return total / np.maximum(n, 1e-12), any_present
    lo = np.where(present, ms.lo.reshape(buckets, k), np.inf).min(axis=1)
    hi = np.where(present, ms.hi.reshape(buckets, k), -np.inf).max(axis=1)
    if stat == "Minimum":
        return lo, any_present
    if stat == "Maximum":
        return hi, any_present
    p = float(PERCENTILE.match(stat).group(1)) / 100.0  # type: ignore[union-attr]
    return np.clip(_percentile(ms, k, p, present, n, total), lo, hi), any_present


def _percentile(ms: MinuteStats, k: int, p: float, present: np.ndarray, n: np.ndarray, total: np.ndarray) -> np.ndarray:
    buckets = present.shape[0]
    if ms.shape == "events":
        return np.ones(buckets)
    if ms.shape in ("gauge", "statset"):
        # Nearest rank over the samples in the bucket (a statset is treated as its average).
        values = np.where(present, (ms.lo if ms.shape == "statset" else ms.total).reshape(buckets, k), np.inf)
        ordered = np.sort(values, axis=1)
        count = present.sum(axis=1)
        rank = np.clip(np.ceil(p * count).astype(int) - 1, 0, k - 1)
        return ordered[np.arange(buckets), rank]
    if ms.shape == "binary":
        rank = np.ceil(p * n)
        return (rank > n - total).astype(float)
    z = float(norm_ppf(p))
    log_med = np.log(ms.median.reshape(buckets, k))  # type: ignore[union-attr]
    if k == 1:
        return np.exp(log_med[:, 0] + ms.sigma * z)
    # A mixture of the bucket's minutes, weighted by request count: solve F(x) = p by bisection.
    weights = np.where(present, ms.n.reshape(buckets, k), 0.0)
    wsum = np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    masked = np.where(present, log_med, np.nan)
    lo = np.nanmin(np.where(present, masked, np.inf), axis=1) + ms.sigma * z
    hi = np.nanmax(np.where(present, masked, -np.inf), axis=1) + ms.sigma * z
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, 0.0)
    for _ in range(40):
        mid = (lo + hi) / 2
        cdf = (weights * norm_cdf((mid[:, None] - log_med) / ms.sigma)).sum(axis=1, keepdims=True) / wsum
        below = cdf[:, 0] < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return np.exp((lo + hi) / 2)
