"""The query plan: which metric queries a poll asks, in which tier, over which window, in how
many GetMetricData calls; which costly detail a cheaper signal has asked for; and what that
costs a month.
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from collector import probes
from collector.aws import Place
from collector.catalog import CATALOG, DETAIL, FAST, SLOW, dimension_sets, metric_name
from fleetwatch.store import SeriesKey, index_resource_id

MAX_QUERIES = 500  # GetMetricData: at most 500 queries a call
MAX_DATAPOINTS = 100_800  # and at most 100,800 datapoints a page
PRICE_PER_METRIC = 0.01 / 1000  # GetMetricData: $0.01 per 1,000 metrics requested, never free
PRICE_PER_TRACE = 0.50 / 1_000_000  # X-Ray traces retrieved or scanned, beyond the free tier
# SQS: $0.40 per million (standard-queue) requests after the first million a month, every API
# action a request (https://aws.amazon.com/sqs/pricing/; SIGNALS.md §4: GetQueueAttributes "are SQS
# API requests, not CloudWatch charges"). Free tiers are the account's, shared with its own use,
# so fleetwatch's cost figures count these at the full rate: the most they can add.
PRICE_PER_SQS_REQUEST = 0.40 / 1_000_000
MONTH = 30 * 86400
MAX_HISTORY = 15 * 86400  # CloudWatch keeps 1-minute data for 15 days
GSI_THROTTLES = ("ReadThrottleEvents", "WriteThrottleEvents")  # read per global secondary index too


@dataclass(frozen=True)
class Query:
    key: SeriesKey
    tier: str
    slice: str = ""  # a slow-tier query's slice (slice_cursor): the cursor it moves; "": its tier's

    @property
    def cursor(self) -> str:
        """The (account, region, cursor) row this query's window moves once stored."""
        return self.slice or self.tier

    def request(self, qid: str, account: str = "") -> dict[str, Any]:
        """One MetricDataQuery; `account` sets AccountId, the source account a monitoring
        account reads it from (botocore cloudwatch model, MetricDataQuery.AccountId)."""
        out = {
            "Id": qid,
            "ReturnData": True,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.key.namespace,
                    "MetricName": self.key.metric,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in self.key.dimensions],
                },
                "Period": self.key.period,
                "Stat": self.key.stat,
            },
        }
        if account:
            out["AccountId"] = account
        return out


@dataclass
class PlacePlan:
    place: Place
    queries: list[Query] = field(default_factory=list)
    # Functions whose cold starts should be counted, from whichever source each has (coldstart_sources).
    coldstart_functions: list[dict[str, Any]] = field(default_factory=list)
    insight_rules: list[tuple[str, str]] = field(default_factory=list)  # (resource id, rule name)
    queues: list[tuple[str, str]] = field(default_factory=list)  # (resource id, queue URL) for live depth
    functions: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # name -> (resource id, last modified): deploy watch
    aliased: dict[str, tuple[str, dict[str, Any]]] = field(
        default_factory=dict
    )  # name -> (resource id, facts): alias releases

    def by_tier(self) -> dict[str, int]:
        out = {FAST: 0, SLOW: 0, DETAIL: 0}
        for q in self.queries:
            out[q.tier] += 1
        return out


def resource_queries(resource: dict[str, Any], tiers: Iterable[str]) -> list[Query]:
    kind, facts = resource["kind"], resource["facts"]
    wanted = set(tiers)
    out = []
    for spec in CATALOG.get(kind, ()):
        if spec.tier not in wanted or not spec.applies(facts):
            continue
        for dims in dimension_sets(kind, resource["name"], facts):
            key = SeriesKey(
                resource["id"],
                spec.namespace,
                metric_name(spec, facts),
                tuple(sorted(dims)),
                spec.stat,
                spec.read_period,
            )
            out.append(Query(key, spec.tier))
            # "The TableName dimension returns the ReadThrottleEvents for the table, but not for
            # any global secondary indexes. To view ReadThrottleEvents for a global secondary
            # index, you must specify both TableName and GlobalSecondaryIndexName" (likewise
            # WriteThrottleEvents; "DynamoDB Metrics and dimensions", https://docs.aws.amazon.com/
            # amazondynamodb/latest/developerguide/metrics-dimensions.html).
            if kind == "dynamodb" and spec.metric in GSI_THROTTLES:
                for index in facts.get("indexes") or []:
                    out.append(
                        Query(
                            SeriesKey(
                                index_resource_id(resource["id"], index),
                                spec.namespace,
                                spec.metric,
                                tuple(sorted((*dims, ("GlobalSecondaryIndexName", index)))),
                                spec.stat,
                                spec.read_period,
                            ),
                            spec.tier,
                        )
                    )
    return out


# -- the slow tier, spread over its interval ------------------------------------------------------
#
# With `slices` > 1 (poll.slow_interval / poll.fast_interval: 5 by default), a resource's slow-tier
# series are read in one slice of the slow tier, chosen by a stable hash of its id, and each fast
# poll reads the slice whose turn it is (collector.poll.Collector._slices_due): every slow series
# is still read once per slow interval, but no poll carries the whole slow tier. One resource's
# series stay together (a function's Invocations and Errors are read in the same poll). Each
# slice has its own cursor, so a slice whose turn was missed (an overrun) is read at the next poll.


def slow_slice(resource_id: str, slices: int) -> int:
    """The slice of the slow tier a resource is read in: CRC-32 of its id, the same in every
    process and on every agent (Python's hash() is salted per process)."""
    return zlib.crc32(resource_id.encode()) % slices if slices > 1 else 0


def slice_cursor(index: int, slices: int) -> str:
    """The cursor row of one slice of the slow tier: 'slow' itself when the tier is not spread."""
    return SLOW if slices <= 1 else f"{SLOW}/{index}"


def build(
    place: Place,
    resources: list[dict[str, Any]],
    tiers: Iterable[str],
    triggered: Triggered | None = None,
    slices: int = 1,
    due: set[int] | None = None,
) -> PlacePlan:
    """The place's queries for `tiers`. With the slow tier spread over `slices`, only the
    resources whose slice is in `due` (None: all) have their slow-tier series and live queue
    depth in this plan; the deploy probe (one ListFunctions over the whole place) goes with
    slice 0."""
    tiers = list(tiers)
    plan = PlacePlan(place)
    triggered = triggered or Triggered()
    slow = SLOW in tiers
    for res in resources:
        index = slow_slice(res["id"], slices)
        mine = slow and (due is None or index in due)
        if slow and not mine:
            plan.queries.extend(resource_queries(res, [t for t in tiers if t != SLOW]))
        elif slices > 1:
            label = slice_cursor(index, slices)
            plan.queries.extend(
                Query(q.key, q.tier, label) if q.tier == SLOW else q for q in resource_queries(res, tiers)
            )
        else:
            plan.queries.extend(resource_queries(res, tiers))
        if res["id"] in triggered.detail:
            plan.queries.extend(resource_queries(res, [DETAIL]))
        if res["id"] in triggered.concurrency and not mine:
            # The slow tier's own series (same key, 5-minute period), read on this fast poll as
            # detail (no cursor of its own) unless its slow slice is read now anyway: its newest
            # bucket comes back with the minutes so far.
            plan.queries.extend(
                Query(q.key, DETAIL) for q in resource_queries(res, [SLOW]) if q.key.metric == "ConcurrentExecutions"
            )
        if res["id"] in triggered.mail and not mine:
            plan.queries.extend(
                Query(q.key, DETAIL) for q in resource_queries(res, [SLOW]) if q.key.metric in ("Errors", "Invocations")
            )
        if mine and res["kind"] == "sqs" and res["facts"].get("url"):
            plan.queues.append((res["id"], res["facts"]["url"]))
        if slow and (due is None or 0 in due) and res["kind"] == "lambda":
            plan.functions[res["name"]] = (res["id"], str(res["facts"].get("last_modified", "")))
            if res["facts"].get("aliases"):
                plan.aliased[res["name"]] = (res["id"], res["facts"])
    plan.coldstart_functions = [r for r in resources if r["id"] in triggered.xray]
    plan.insight_rules = [
        (r["id"], rule)
        for r in resources
        if r["id"] in triggered.insights
        for rule in r["facts"].get("contributor_insights_rules", [])
        if "-PKT-" in rule or "-SKT-" in rule
    ]
    return plan


def calls_for(queries: int, minutes: int) -> int:
    """GetMetricData calls for `queries` over `minutes` one-minute points when nothing pages."""
    if queries == 0:
        return 0
    return math.ceil(queries / MAX_QUERIES) * math.ceil(minutes / chunk_minutes(min(queries, MAX_QUERIES)))


def chunk_minutes(batch: int) -> int:
    """The longest window a batch of queries can read without NextToken pages."""
    return max(1, MAX_DATAPOINTS // max(batch, 1))


# -- triggers: cheap signals that ask for costly detail -------------------------------------------


@dataclass
class Triggered:
    detail: set[str] = field(default_factory=set)  # tables whose per-reason throttle metrics are needed
    insights: set[str] = field(default_factory=set)  # tables whose hot keys should be named
    xray: set[str] = field(default_factory=set)  # functions whose cold starts should be counted (by any source)
    # Functions whose own ConcurrentExecutions is read on every fast poll while their account's
    # concurrency is high or climbing (see `_holders_to_read`): the page names who holds it.
    concurrency: set[str] = field(default_factory=set)
    # Functions that send mail through SES whose Errors and Invocations are read on every fast poll
    # while SES accepts sends at its maximum rate (see `_mail_senders_to_read`).
    mail: set[str] = field(default_factory=set)
    reasons: dict[str, str] = field(default_factory=dict)


def _latest_jump(points: list[tuple[int, float]], ratio: float, floor: float) -> bool:
    """The newest value is `ratio` × the median of the ones before it, and `floor` above it."""
    if len(points) < 4:
        return False
    *before, (_, last) = points
    base = statistics.median(v for _, v in before)
    return last >= base * ratio and last >= base + floor


def triggers(store: Any, resources: list[dict[str, Any]], now: int, lookback: int) -> Triggered:
    out = Triggered()
    tables = [r for r in resources if r["kind"] == "dynamodb"]
    functions = [r for r in resources if r["kind"] == "lambda"]
    since = now - lookback
    recent = store.recent_values(
        [r["id"] for r in tables],
        [
            "ReadThrottleEvents",
            "WriteThrottleEvents",
            "ReadKeyRangeThroughputThrottleEvents",
            "WriteKeyRangeThroughputThrottleEvents",
        ],
        since,
        now,
    )
    for t in tables:
        throttled = sum(
            v for m in ("ReadThrottleEvents", "WriteThrottleEvents") for _, v in recent.get((t["id"], m, "Sum"), [])
        )
        if throttled > 0:
            out.detail.add(t["id"])
            out.reasons[t["id"]] = f"{throttled:.0f} throttle events in the last {lookback // 60} min"
        hot = sum(
            v
            for m in ("ReadKeyRangeThroughputThrottleEvents", "WriteKeyRangeThroughputThrottleEvents")
            for _, v in recent.get((t["id"], m, "Sum"), [])
        )
        if hot > 0 and t["facts"].get("contributor_insights") == "ENABLED":
            out.insights.add(t["id"])
    # Half an hour of the slow-tier signals is enough history for "the newest value jumped".
    recent = store.recent_values(
        [r["id"] for r in functions],
        ["Duration", "ConcurrentExecutions", "ProvisionedConcurrencySpilloverInvocations", "Invocations"],
        now - 3600,
        now,
    )
    slow_apis = _slow_apis(store, [r for r in resources if r["kind"] == "api"], now)
    traced = store.recent_values([r["id"] for r in functions], ["ColdStarts", "SampledInvocations"], now - 900, now)
    for fn in functions:
        rid = fn["id"]
        why = ""
        if _latest_jump(recent.get((rid, "Duration", "p99"), []), 2.0, 50.0):
            why = "p99 duration doubled"
        elif _latest_jump(recent.get((rid, "ConcurrentExecutions", "Maximum"), []), 1.5, 5.0):
            why = "concurrency jumped"
        elif any(
            v > 0 and ts >= since
            for ts, v in recent.get((rid, "ProvisionedConcurrencySpilloverInvocations", "Sum"), [])
        ):
            why = "provisioned concurrency spilled over"
        elif int(fn["facts"].get("deployed_at") or 0) >= since:
            why = "new code deployed"
        elif fn["name"] in slow_apis:
            why = slow_apis[fn["name"]]
        elif _woke(recent.get((rid, "Invocations", "Sum"), []), now):
            why = "invoked again after 30 min idle"
        elif probes.still_cold(
            traced.get((rid, "ColdStarts", "Sum"), []), traced.get((rid, "SampledInvocations", "Sum"), []), now
        ):
            why = "cold starts still elevated"
        if why:
            out.xray.add(rid)
            out.reasons[rid] = why
    for rid, why in _holders_to_read(store, resources, functions, recent, now).items():
        out.concurrency.add(rid)
        out.reasons.setdefault(rid, why)
    for rid, why in _mail_senders_to_read(store, resources, functions, now).items():
        out.mail.add(rid)
        out.reasons.setdefault(rid, why)
    return out


# The collector may not import the detectors (tests/test_layers.py): these two equal
# detectors/limits.py's RATE_CAPPED and RATE_RECENT, and tests/test_layers.py asserts that they do.
RATE_CAPPED, RATE_RECENT = 0.8, 5 * 60


# SES at its maximum send rate (detectors/limits.py RATE_CAPPED, from AWS/SES Send, a fast-tier
# series, against the account's MaxSendRate): whether its senders fail is in their Errors and
# Invocations, slow-tier series up to five minutes stale. While sends are at the cap, the functions
# that send through SES (`uses`, from their environment) have both read on every fast poll, so the
# throttled sends show within the minute. Cost: 2 metrics a sender a minute while SES is at its
# cap, $0.00002 a sender a minute.
def _mail_senders_to_read(
    store: Any, resources: list[dict[str, Any]], functions: list[dict[str, Any]], now: int
) -> dict[str, str]:
    accounts = [r for r in resources if r["kind"] == "ses" and float(r["facts"].get("max_send_rate") or 0) > 0]
    senders = [f for f in functions if any(str(u).startswith("ses:") for u in f["facts"].get("uses") or [])]
    if not accounts or not senders:
        return {}
    recent = store.recent_values([a["id"] for a in accounts], ["Send"], now - RATE_RECENT, now)
    for ses in accounts:
        cap = float(ses["facts"]["max_send_rate"])
        per_second = max((v / 60 for _, v in recent.get((ses["id"], "Send", "Sum"), [])), default=0.0)
        if per_second >= RATE_CAPPED * cap:
            why = f"SES sending {per_second:.1f} of its {cap:g} mails a second: reading its senders' errors"
            return {f["id"]: why for f in senders}
    return {}


# Who holds the account's concurrency, read while it matters. A function's own
# ConcurrentExecutions ("the number of active concurrent invocations at a given point in time",
# emitted for every function, one-minute granularity, viewed with MAX — AWS Lambda Developer
# Guide, "Monitoring concurrency", https://docs.aws.amazon.com/lambda/latest/dg/monitoring-concurrency.html)
# is a slow-tier series: read every poll.slow_interval. The account's ClaimedAccountConcurrency and
# regional ConcurrentExecutions (same page: "ClaimedAccountConcurrency ... equals
# UnreservedConcurrentExecutions plus allocated concurrency"; both MAX) are fast-tier. When the
# account's climbs, the functions' points that would name the holders are up to five minutes
# stale and the page goes out naming nobody. So while the account's newest value is at least
# HOLDERS_FRACTION of its limit, or just jumped (HOLDERS_JUMP × its last half hour's median, and
# HOLDERS_CLIMB of the limit above it), at most HOLDERS_READ functions of that place have their
# ConcurrentExecutions read on every fast poll: those whose own concurrency or invocations just
# jumped first, then the highest by their last hour's peak.
#
# Cost: GetMetricData bills $0.01 per 1,000 metrics requested (PRICE_PER_METRIC), so this adds at
# most HOLDERS_READ metrics a minute per place while the account is under pressure:
# 10 × $0.00001 = $0.0001 a minute, $0.006 an hour; an account that sat above half its limit for a
# whole month would pay 10 × 43,200 × $0.00001 = $4.32 more. Bounded by HOLDERS_READ whatever
# the fleet's size.
#
# A function idle until it floods is outside that top ten (its last hour's peak is nothing, and its
# own Invocations are slow-tier too, so no jump shows yet); it would be read at its next slow poll,
# up to five minutes into the flood. So when the functions ranked first held, at their newest
# points, under HOLDERS_EXPLAINED of what the account claims now, the concurrency is held by
# functions not among them: that poll reads the ConcurrentExecutions of every function of the
# place, up to HOLDERS_SWEEP (one GetMetricData call holds 500 queries, MAX_QUERIES). The next
# poll ranks the flooder first by its peak, the holders read explain the account, and the read
# is back to HOLDERS_READ. Cost: at most HOLDERS_SWEEP × $0.00001 = $0.0049 a poll, only while
# the account is pressed and unexplained (one or two polls at a flood's start; every poll for an
# account whose concurrency is spread thin over more than ten functions, $7 a day while pressed).
# CloudWatch Metrics Insights (one query, "SELECT MAX(ConcurrentExecutions) FROM
# SCHEMA("AWS/Lambda", FunctionName) GROUP BY FunctionName ORDER BY MAX() DESC LIMIT 10", AWS
# "Metrics Insights query components and syntax") would name the top ten in one query whatever
# the fleet's size; the emulator does not evaluate it yet.
HOLDERS_READ = 10  # functions a place reads every fast poll while its account is pressed
HOLDERS_EXPLAINED = 0.5  # of the account's newest value: held by the functions ranked first, or read them all
HOLDERS_SWEEP = MAX_QUERIES - 10  # functions read on a poll where the ranked ones do not explain the account
HOLDERS_FRACTION = 0.5  # of the account's concurrency limit
HOLDERS_JUMP, HOLDERS_CLIMB = 1.5, 0.1  # × the last half hour's median, and this share of the limit above it
HOLDERS_FRESH = 600  # the account's newest point must be this recent (seconds) to count


def _account_pressed(store: Any, accounts: list[dict[str, Any]], now: int) -> tuple[str, float]:
    """Why the account's concurrency is worth naming holders for now ("" when it is not), and its
    newest value (concurrent executions)."""
    recent = store.recent_values(
        [a["id"] for a in accounts], ["ClaimedAccountConcurrency", "ConcurrentExecutions"], now - 1800, now
    )
    for acct in accounts:
        limit = float(acct["facts"].get("concurrency_limit") or 0)
        for metric in ("ClaimedAccountConcurrency", "ConcurrentExecutions"):
            points = recent.get((acct["id"], metric, "Maximum"), [])
            if not points or points[-1][0] < now - HOLDERS_FRESH:
                continue
            last = points[-1][1]
            if limit and last >= HOLDERS_FRACTION * limit:
                return f"account concurrency {last:.0f} of {limit:.0f}", last
            if limit and _latest_jump(points, HOLDERS_JUMP, HOLDERS_CLIMB * limit):
                return f"account concurrency jumped to {last:.0f} of {limit:.0f}", last
    return "", 0.0


def _holders_to_read(
    store: Any,
    resources: list[dict[str, Any]],
    functions: list[dict[str, Any]],
    recent: dict[tuple[str, str, str], list[tuple[int, float]]],
    now: int,
) -> dict[str, str]:
    """Function id -> why, for the functions whose ConcurrentExecutions this fast poll reads."""
    accounts = [r for r in resources if r["kind"] == "lambda_account"]
    if not accounts or not functions:
        return {}
    why, claimed = _account_pressed(store, accounts, now)
    if not why:
        return {}

    def rank(fn: dict[str, Any]) -> tuple[int, float, str]:
        conc = recent.get((fn["id"], "ConcurrentExecutions", "Maximum"), [])
        jumped = _latest_jump(conc, 1.5, 5.0) or _latest_jump(
            recent.get((fn["id"], "Invocations", "Sum"), []), 2.0, 50.0
        )
        return (0 if jumped else 1, -max((v for _, v in conc), default=0.0), fn["name"])

    ranked = sorted(functions, key=rank)
    held = sum(
        _newest(recent.get((fn["id"], "ConcurrentExecutions", "Maximum"), []), now) for fn in ranked[:HOLDERS_READ]
    )
    if held >= HOLDERS_EXPLAINED * claimed:
        return {fn["id"]: f"{why}: naming its holders" for fn in ranked[:HOLDERS_READ]}
    sweep = f"{why}, {held:.0f} of it held by the {min(len(ranked), HOLDERS_READ)} busiest: reading every function"
    return {fn["id"]: sweep for fn in ranked[:HOLDERS_SWEEP]}


def _newest(points: list[tuple[int, float]], now: int) -> float:
    """The newest value if it is fresh (HOLDERS_FRESH), else 0."""
    return points[-1][1] if points and points[-1][0] >= now - HOLDERS_FRESH else 0.0


# A burst behind an API: its requests jumped within a minute while its latency rose, less than
# a slowdown alone must. The functions behind it are scaling out now, and every new execution
# environment starts cold; their own ConcurrentExecutions and Invocations are slow-tier series
# that land five to ten minutes later, when a cold-start burst of a few minutes is already over.
# API Gateway sends Count ("the total number API requests in a given period") and Latency every
# minute (AWS, "Monitor CloudWatch metrics for HTTP APIs in API Gateway", .../apigateway/latest/
# developerguide/http-api-metrics.html, and "Amazon API Gateway dimensions and metrics",
# .../api-gateway-metrics-and-dimensions.html for REST APIs): both are fast-tier here, and the
# trigger compares each with its own last half hour only. A surge that scales cleanly
# (latency flat) reads no traces; the traces read are capped per function and poll
# (poll.xray_max_traces), and go on only while the jump holds or cold starts stay elevated.
BURST_REQUESTS, BURST_REQUESTS_FLOOR = 1.5, 60.0  # × the last half hour's median, and requests a minute above it
BURST_LATENCY, BURST_LATENCY_FLOOR = 1.2, 10.0  # × the median p95, and milliseconds above it


def _slow_apis(store: Any, apis: list[dict[str, Any]], now: int) -> dict[str, str]:
    """Function name -> why, for the functions behind APIs whose p95 latency just jumped (users
    feel it; a cold start hides in init time that the function's own Duration does not count),
    or whose requests jumped while their latency rose (a burst scaling them out)."""
    recent = store.recent_values([a["id"] for a in apis], ["Latency", "Count"], now - 1800, now)
    out = {}
    for api in apis:
        latency = recent.get((api["id"], "Latency", "p95"), [])
        why = ""
        if _latest_jump(latency, 1.5, 20.0):
            why = f"{api['name']}'s latency jumped"
        elif _latest_jump(
            recent.get((api["id"], "Count", "Sum"), []), BURST_REQUESTS, BURST_REQUESTS_FLOOR
        ) and _latest_jump(latency, BURST_LATENCY, BURST_LATENCY_FLOOR):
            why = f"{api['name']}'s requests jumped and its latency rose"
        for fn in api["facts"].get("functions", []) if why else ():
            out[fn] = why
    return out


def _woke(points: list[tuple[int, float]], now: int) -> bool:
    """Invoked in the last 10 minutes after 30 minutes or more without an invocation (an idle
    function's Invocations has no datapoints at all; the window read is an hour)."""
    active = [t for t, v in points if v > 0]
    recent = [t for t in active if t >= now - 600]
    if not recent:
        return False
    earlier = [t for t in active if t < recent[0]]
    quiet_since = earlier[-1] if earlier else now - 3600
    return recent[0] - quiet_since >= 1800


# -- cost -----------------------------------------------------------------------------------------


def monthly_cost(fast_queries: int, slow_queries: int, fast_interval: int, slow_interval: int) -> float:
    return (fast_queries * MONTH / fast_interval + slow_queries * MONTH / slow_interval) * PRICE_PER_METRIC


def naive_monthly_cost(resources: list[dict[str, Any]]) -> float:
    """Every metric of the catalog, detail included, polled every minute."""
    every = sum(len(resource_queries(r, (FAST, SLOW, DETAIL))) for r in resources)
    return every * MONTH / 60 * PRICE_PER_METRIC
