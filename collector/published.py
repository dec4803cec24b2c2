"""Which planned series AWS does not publish, and why: the plan checked against ListMetrics.

After each discovery of a place, ListMetrics is read per (namespace, dimension name) the plan
uses, and every planned (metric, statistic) series of a resource that is not listed becomes a
resource fact, `unpublished`: [{"metric", "stats", "dimensions", "reason"}]. The dashboard's
resource page shows them as "not published — here is why" instead of an empty chart.

What AWS documents, and how it is used here:

- ListMetrics "doesn't return information about metrics if those metrics haven't reported data
  in the past two weeks", and "Up to 500 results are returned for any one call" (API reference,
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_ListMetrics.html; the
  same text in botocore's cloudwatch 2010-08-01 model, operation ListMetrics). So "not listed"
  means "no datapoint in two weeks", which is only sometimes a fault: many AWS metrics are sent
  only when non-zero. The reasons below say which.
- A dimension filter with a name and no value returns every metric having that dimension, other
  dimensions or not (ListMetricsInput.Dimensions in the same model), so one filtered listing per
  (namespace, dimension name) covers every resource of a kind without the rest of the namespace.
  ListMetrics cannot ask for "no dimensions": the account-wide Lambda series (the lambda_account
  resource) would need the whole AWS/Lambda namespace, every function's series included, so they
  are not verified; the SES account's are (AWS/SES is small).
- ListMetrics' quota is 25 transactions per second per account and Region (CloudWatch service
  quotas, https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html,
  as recorded in SIGNALS.md §3). Pages are paced at RATE per second, a fifth of it, leaving the
  rest to whoever else lists metrics in the account; a listing is cut at MAX_PAGES and what it
  did not reach is "not verified", never "not published".
- A new metric may take up to 15 minutes to appear in ListMetrics (same page), so a missing
  series is a fact shown to people, and polling goes on: see `docs/collector.md`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector import plan
from collector.catalog import DETAIL, FAST, SLOW

RATE = 5.0  # ListMetrics calls per second: a fifth of the documented 25 TPS
MAX_PAGES = 100  # per (namespace, dimension name): 50,000 metrics
FACT = "unpublished"
NOT_VERIFIED_KINDS = ("lambda_account",)

TWO_WEEKS = "no datapoint in the past two weeks (ListMetrics lists only metrics with data in that time)"
NONZERO_ONLY = "AWS sends it only when it is not zero; none in the past two weeks means none happened"

# (kind, metric) -> why a series is missing when AWS lists nothing for it. Sources: Lambda,
# https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html; SQS publishes a
# queue's metrics while it is active (messages, or API calls within six hours),
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html;
# DynamoDB throttle events, EventBridge rule metrics and SES event counts are sent only when
# non-zero (SIGNALS.md; the catalog's notes).
REASONS: dict[tuple[str, str], str] = {
    ("lambda", "ProvisionedConcurrencySpilloverInvocations"): NONZERO_ONLY
    + " (no invocation spilled over provisioned concurrency)",
    ("lambda", "Throttles"): "no throttled or successful invocation in the past two weeks",
    ("dynamodb", "ConsumedReadCapacityUnits"): "the table was not read in the past two weeks",
    ("dynamodb", "ConsumedWriteCapacityUnits"): "the table was not written in the past two weeks",
    ("schedule", "TriggeredRules"): NONZERO_ONLY + ": the rule did not run in the past two weeks",
    ("schedule", "Invocations"): NONZERO_ONLY + ": the rule invoked no target in the past two weeks",
    ("schedule", "FailedInvocations"): NONZERO_ONLY + " (no failed invocation)",
    (
        "ses",
        "Reputation.BounceRate",
    ): "SES publishes reputation rates only once the account has sent enough mail to rate; none in two weeks",
    (
        "ses",
        "Reputation.ComplaintRate",
    ): "SES publishes reputation rates only once the account has sent enough mail to rate; none in two weeks",
}
QUIET = {  # the kind's traffic metric: when it too is missing, the resource was idle
    "lambda": ("Invocations", "the function was not invoked in the past two weeks"),
    "api": ("Count", "the API received no request in the past two weeks"),
    "sqs": (
        "NumberOfMessagesSent",
        "the queue was idle for two weeks: SQS publishes a queue's metrics only while it is active",
    ),
    "ses": ("Send", "the account sent no mail in the past two weeks"),
}
# REST APIs publish 4XXError/5XXError; HTTP APIs 4xx/5xx (the catalog's metric_name).
_ERROR_NAMES = {"5XXError": "5xx", "5xx": "5XXError", "4XXError": "4xx", "4xx": "4XXError"}


@dataclass
class Verified:
    """What one verification found: the facts per resource id, and what it could not check."""

    facts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    calls: int = 0

    @property
    def missing(self) -> int:
        return sum(len(v) for v in self.facts.values())

    def note(self) -> str:
        text = (
            f"{self.missing} planned series not published, over "
            f"{len(self.facts)} resources ({self.calls} ListMetrics calls)"
        )
        if self.unverified:
            text += "; not verified: " + "; ".join(self.unverified[:3])
        return text


class Pacer:
    """At most `rate` calls a second. `sleep` and `monotonic` are injected so tests do not wait."""

    def __init__(
        self, rate: float, sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.gap, self.sleep, self.monotonic = 1.0 / rate, sleep, monotonic
        self._last: float | None = None

    def wait(self) -> None:
        now = self.monotonic()
        if self._last is not None and now - self._last < self.gap:
            self.sleep(self.gap - (now - self._last))
            now = self.monotonic()
        self._last = now


def _group(dims: tuple[tuple[str, str], ...]) -> str:
    """The dimension a series is listed by: the resource's own (the first of its set that is
    not Stage), or "" for a dimensionless series."""
    names = [k for k, _ in dims if k != "Stage"]
    return names[0] if names else ""


def listed(
    cw: Any, namespace: str, dimension: str, pacer: Pacer, max_pages: int = MAX_PAGES
) -> tuple[set[tuple[str, tuple[tuple[str, str], ...]]], bool, int]:
    """(metric name, sorted dimensions) of every metric ListMetrics lists, whether the listing
    was complete, and the calls it took."""
    out: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    args: dict[str, Any] = {"Namespace": namespace}
    if dimension:
        args["Dimensions"] = [{"Name": dimension}]
    token, calls = None, 0
    for _ in range(max_pages):
        pacer.wait()
        page = cw.list_metrics(**args, **({"NextToken": token} if token else {}))
        calls += 1
        for m in page.get("Metrics") or []:
            out.add(
                (str(m.get("MetricName")), tuple(sorted((d["Name"], d["Value"]) for d in m.get("Dimensions") or [])))
            )
        token = page.get("NextToken")
        if not token:
            return out, True, calls
    return out, False, calls


def verify(cw: Any, resources: list[dict[str, Any]], pacer: Pacer, max_pages: int = MAX_PAGES) -> Verified:
    """Check every planned series of `resources` (all tiers, detail included) against ListMetrics."""
    planned: dict[tuple[str, str], list[tuple[dict[str, Any], plan.Query]]] = {}
    for res in resources:
        if res["kind"] in NOT_VERIFIED_KINDS:
            continue
        for q in plan.resource_queries(res, (FAST, SLOW, DETAIL)):
            planned.setdefault((q.key.namespace, _group(q.key.dimensions)), []).append((res, q))
    out = Verified()
    for (namespace, dimension), items in sorted(planned.items()):
        seen, complete, calls = listed(cw, namespace, dimension, pacer, max_pages)
        out.calls += calls
        if not complete:
            out.unverified.append(f"{namespace} by {dimension or 'no dimension'}: more than {max_pages} pages")
            continue
        by_resource: dict[str, list[tuple[dict[str, Any], plan.Query]]] = {}
        for res, q in items:
            by_resource.setdefault(res["id"], []).append((res, q))
            out.facts.setdefault(res["id"], [])
        for rid, qs in by_resource.items():
            out.facts[rid].extend(_missing(qs, seen))
    return out


def _missing(
    qs: list[tuple[dict[str, Any], plan.Query]], seen: set[tuple[str, tuple[tuple[str, str], ...]]]
) -> list[dict[str, Any]]:
    """One row per planned metric and dimension set that is not listed, its statistics together
    (ListMetrics knows metrics, not statistics)."""
    rows: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    listed_dims = {dims for _, dims in seen}
    for res, q in qs:
        k = q.key
        if (k.metric, k.dimensions) in seen:
            continue
        row = rows.get((k.metric, k.dimensions))
        if row is None:
            row = rows[(k.metric, k.dimensions)] = {
                "metric": k.metric,
                "stats": [],
                "dimensions": ", ".join(f"{n}={v}" for n, v in k.dimensions),
                "reason": reason(res, k.metric, k.dimensions, seen, listed_dims),
            }
        row["stats"].append(k.stat)
    return sorted(rows.values(), key=lambda r: (r["metric"], r["dimensions"]))


def reason(
    res: dict[str, Any],
    metric: str,
    dims: tuple[tuple[str, str], ...],
    seen: set[tuple[str, tuple[tuple[str, str], ...]]],
    listed_dims: set[tuple[tuple[str, str], ...]],
) -> str:
    kind, name = res["kind"], res["name"]
    other = _ERROR_NAMES.get(metric)
    if other and (other, dims) in seen:
        # Monitor CloudWatch metrics for HTTP APIs: .../apigateway/latest/developerguide/http-api-metrics.html
        return (
            f"HTTP APIs publish {other}, not {metric}"
            if other.endswith("xx")
            else f"REST APIs publish {other}, not {metric}"
        )
    if (
        kind == "api"
        and dims not in listed_dims
        and res["facts"].get("type") == "REST"
        and any(ord(c) > 127 for c in name)
    ):
        # AWS strips the characters it cannot put in a dimension value from ApiName; the
        # published value differs from the API's name, and nothing is listed under it.
        return "the API's name holds non-ASCII characters, which API Gateway strips from the ApiName dimension"
    if (kind, metric) in REASONS:
        return REASONS[(kind, metric)]
    if kind == "dynamodb" and metric.endswith("ThrottleEvents"):
        return NONZERO_ONLY + " (no request was throttled)"
    quiet = QUIET.get(kind)
    if quiet and (quiet[0], dims) not in seen:
        return quiet[1] + " (" + TWO_WEEKS.split(" (")[1]
    return TWO_WEEKS
