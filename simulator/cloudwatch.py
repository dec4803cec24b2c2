"""CloudWatch GetMetricData, ListMetrics and GetInsightRuleReport over the fleet model.

Follows AWS's documented behaviour: at most 500 queries a call, StartTime rounded by its age,
1-minute data for 15 days / 5-minute for 63 / 1-hour for 455, MaxDatapoints (default 100,800)
with NextToken pages, no data after now, and only series the fleet publishes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
from typing import Any

import numpy as np

from simulator.errors import ApiError, validation
from simulator.fleet import Resource
from simulator.mathx import key, uniform
from simulator.metrics import BASIC_STATS, PERCENTILE, SeriesDef, account_series, aggregate, minute_stats, series_for
from simulator.model import FleetModel, in_mode

MAX_QUERIES = 500
DEFAULT_MAX_DATAPOINTS = 100_800
LIST_PAGE = 500
DAY = 86400
_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_OTHER_STATS = re.compile(r"^(tm|wm|tc|ts|TM|WM|TC|TS|PR|IQM)")


class Registry:
    """The series the fleet publishes, per (account, region), built on first use."""

    def __init__(self, model: FleetModel) -> None:
        self.model = model
        self._by_place: dict[tuple[str, str], tuple[list[SeriesDef], dict[tuple, SeriesDef]]] = {}
        self._active: dict[tuple, bool] = {}
        # ListMetrics' paging: per listing (its filters and five-minute step), the series listed so
        # far and where in the matching ones it stopped, so that page n does not scan the whole
        # place again (a 20,000-function place has ~10^5 series and ~10^3 pages).
        self.listings: dict[tuple, tuple[list[SeriesDef], list[SeriesDef], list[int], threading.Lock]] = {}
        # Monitoring account -> the source accounts linked to it (an OAM sink and its links; set
        # with POST /__fleet__/links). Empty: no cross-account observability.
        self.links: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def place(self, account: str, region: str) -> tuple[list[SeriesDef], dict[tuple, SeriesDef]]:
        with self._lock:
            found = self._by_place.get((account, region))
            if found is None:
                ordered: list[SeriesDef] = []
                for res in self.model.fleet.resources:
                    if res.account == account and res.region == region:
                        ordered.extend(series_for(res))
                if (account, region) in self.model.fleet.places():
                    ordered.extend(account_series(account, region))
                index = {(s.namespace, s.name, s.dims): s for s in ordered}
                found = self._by_place[(account, region)] = (ordered, index)
            return found

    def reset(self) -> None:
        with self._lock:
            self._by_place.clear()
            self._active.clear()
            self.listings.clear()
            self.links.clear()

    # -- which series have data: ListMetrics lists only those ---------------------------------

    def active(self, sdef: SeriesDef, since: float, now: float) -> bool:
        """Whether the series has at least one datapoint in [since, now]. Cached per series and
        five-minute step of `now` (ListMetrics pages are asked one after another)."""
        key_ = (
            id(self.model.scenario),
            self.model.seed,
            sdef.account,
            sdef.region,
            sdef.namespace,
            sdef.name,
            sdef.dims,
            int(now - since),
            int(now) // 300,
        )
        with self._lock:
            found = self._active.get(key_)
        if found is None:
            # One bucket per day (or three hours): the answer is "any datapoint at all".
            period = 10800 if now - since <= 10800 else 86400
            ts, _ = series_values(self.model, sdef, "SampleCount", period, since, now)
            found = bool(ts)
            with self._lock:
                if len(self._active) > 2_000_000:
                    self._active.clear()
                self._active[key_] = found
        return found

    def linked(self, monitoring: str, source: str) -> bool:
        """CloudWatch cross-account observability: `source` shares its metrics with `monitoring`.
        An account always sees its own."""
        return source == monitoring or source in self.links.get(monitoring, set())


def _ts(value: Any, name: str) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    raise validation(f"The parameter {name} must be a timestamp.")


def round_start(start: float, now: float) -> int:
    """CloudWatch rounds StartTime down by its age: minute, 5 minutes or hour."""
    age = now - start
    step = 60 if age < 15 * DAY else 300 if age < 63 * DAY else 3600
    return int(start // step * step)


def _stat_ok(stat: str) -> bool:
    if stat in BASIC_STATS:
        return True
    match = PERCENTILE.match(stat)
    return bool(match) and 0.0 <= float(match.group(1)) <= 100.0


def series_values(
    model: FleetModel, sdef: SeriesDef, stat: str, period: int, start: float, end: float, unit: str | None = None
) -> tuple[list[int], list[float]]:
    """Timestamps and values of one series, ascending; buckets with no data are absent."""
    now = model.now()
    if unit and unit != sdef.spec.unit:
        return [], []
    if period < 60 or period % 60:
        return [], []  # every fleet metric is standard resolution: no sub-minute data
    if (
        sdef.namespace == "LambdaInsights"
        and sdef.res is not None
        and not in_mode(model, "lambda_insights", sdef.res.name)
    ):
        return [], []  # no extension layer, no LambdaInsights metrics
    start_r = round_start(start, now)
    end = min(end, now)
    if end <= start_r:
        return [], []
    k = period // 60
    buckets = int(math.ceil((end - start_r) / period))
    # Retention: find the first bucket whose resolution is still stored.
    ts = start_r + period * np.arange(buckets, dtype=np.int64)
    age = now - ts
    kept = (age <= 455 * DAY) & ((age <= 63 * DAY) | (period % 3600 == 0)) & ((age <= 15 * DAY) | (period % 300 == 0))
    if not kept.any():
        return [], []
    first = int(np.argmax(kept))
    ts = ts[first:]
    m0 = (start_r + first * period) // 60
    total = len(ts) * k
    lookback = sdef.spec.lookback
    grid = np.arange(m0 - lookback, m0 + total, dtype=np.int64)
    if sdef.res is None:
        d = model.lambda_account(sdef.account, sdef.region, grid)
        round_key = key(model.seed, sdef.account, sdef.region, "account:round")
    else:
        d = model.drivers(sdef.res, grid)
        # One rounding noise per resource, so every metric counting the same events agrees
        # (Invocations Sum == Duration SampleCount == Errors SampleCount).
        round_key = model.noise_key(sdef.res, "round")
    inputs = sdef.spec.extract(d, sdef.res)  # type: ignore[arg-type]
    inputs = {
        name: (v[lookback:] if isinstance(v, np.ndarray) and v.shape == grid.shape else v) for name, v in inputs.items()
    }
    m = grid[lookback:]
    ms = minute_stats(sdef.spec, inputs, uniform(round_key, m))
    # A minute's datapoint exists once the minute is over, and about one in ten arrives one to
    # three minutes late, as CloudWatch's do while they settle; the future does not exist yet.
    ready = (m + 1) * 60 + late_seconds(round_key, m)
    since_wake = inputs.get("since_wake")
    if isinstance(since_wake, np.ndarray):
        ready = wake_ready(ready, m, since_wake)
    ms.present = ms.present & (ready <= now)
    values, present = aggregate(ms, k, stat)
    keep = present & np.isfinite(values)
    return [int(t) for t in ts[keep]], [float(v) for v in values[keep]]


LATE_SHARE = 0.1


def late_seconds(round_key: np.uint64, m: np.ndarray) -> np.ndarray:
    """How long after its minute ends each datapoint of a resource becomes visible."""
    u = uniform(key(int(round_key), "late"), m)
    return np.where(u < LATE_SHARE, 60 * (1 + np.floor(u / LATE_SHARE * 3)), 0).astype(np.int64)


# SQS: a queue that wakes after being inactive publishes its first metrics late. "CloudWatch
# considers a queue to be active for up to six hours if it contains any messages or if any action
# accesses it", and there is a delay of up to 15 minutes when an inactive queue is activated
# (SQS Developer Guide, "Monitoring Amazon SQS queues using CloudWatch",
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/monitoring-using-cloudwatch.html;
# /work/shared/SIGNALS.md §4). Emulated at its worst: the first 15 minutes of points after a wake
# all appear together, 15 minutes after it, stamped with their own minutes.
SQS_WAKE_DELAY = 15 * 60


def wake_ready(ready: np.ndarray, m: np.ndarray, since_wake: np.ndarray) -> np.ndarray:
    """When each minute's point is visible, given the minutes since its queue woke."""
    waking = since_wake < SQS_WAKE_DELAY // 60
    return np.where(waking, np.maximum(ready, (m - since_wake) * 60 + SQS_WAKE_DELAY), ready)


def _token(request_digest: str, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "h": request_digest}).encode()).decode()


def _untoken(token: str, request_digest: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if data["h"] != request_digest or not isinstance(data["o"], int) or data["o"] < 0:
            raise ValueError
        return data["o"]
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        raise ApiError("InvalidNextToken", "The service couldn't process the NextToken.") from None


def get_metric_data(
    model: FleetModel, registry: Registry, account: str, region: str, body: dict[str, Any]
) -> dict[str, Any]:
    queries = body.get("MetricDataQueries")
    if not isinstance(queries, list) or not queries:
        raise ApiError("MissingParameter", "The parameter MetricDataQueries is required.")
    if len(queries) > MAX_QUERIES:
        raise validation(
            f"1 validation error detected: Value at 'metricDataQueries' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_QUERIES}"
        )
    start = _ts(body.get("StartTime"), "StartTime")
    end = _ts(body.get("EndTime"), "EndTime")
    if start >= end:
        raise validation("The parameter StartTime must be less than the parameter EndTime.")
    max_dp = body.get("MaxDatapoints", DEFAULT_MAX_DATAPOINTS)
    if not isinstance(max_dp, int) or max_dp < 1:
        raise validation("The parameter MaxDatapoints must be greater than 0.")
    scan = body.get("ScanBy", "TimestampDescending")
    if scan not in ("TimestampDescending", "TimestampAscending"):
        raise validation("The parameter ScanBy must be TimestampDescending or TimestampAscending.")
    seen: set[str] = set()
    for i, q in enumerate(queries, 1):
        qid = q.get("Id", "")
        if not _ID.match(qid) or len(qid) > 255:
            raise validation(
                f"The value {qid} for parameter MetricDataQueries.member.{i}.Id is invalid: it must "
                "start with a lowercase letter and contain only letters, numbers and underscores."
            )
        if qid in seen:
            raise validation(f"The values for parameter id in MetricDataQueries must be unique. Duplicate: {qid}")
        seen.add(qid)
        if ("MetricStat" in q) == ("Expression" in q):
            raise validation(
                f"MetricDataQueries.member.{i}: exactly one of MetricStat and Expression must be specified."
            )
        stat = q.get("MetricStat")
        if stat:
            period = stat.get("Period")
            if not isinstance(period, int) or period < 1 or (period not in (1, 5, 10, 20, 30) and period % 60):
                raise validation(
                    f"The parameter MetricDataQueries.member.{i}.MetricStat.Period must be 1, 5, 10, 20, "
                    "30, or a multiple of 60."
                )
            if not (_stat_ok(stat.get("Stat", "")) or _OTHER_STATS.match(stat.get("Stat", ""))):
                raise validation(
                    f"The parameter MetricDataQueries.member.{i}.MetricStat.Stat has an invalid value "
                    f"{stat.get('Stat')!r}."
                )

    results: list[dict[str, Any]] = []
    for q in queries:
        result: dict[str, Any] = {
            "Id": q["Id"],
            "Label": q.get("Label", ""),
            "Timestamps": [],
            "Values": [],
            "StatusCode": "Complete",
            "Messages": [],
        }
        stat = q.get("MetricStat")
        # MetricDataQuery.AccountId (botocore cloudwatch model): "If you are performing a
        # GetMetricData operation in a monitoring account, use this to specify which account to
        # retrieve this metric from." A source account linked to the caller is served; its
        # absence means the caller's own account.
        owner = str(q.get("AccountId") or account)
        index = registry.place(owner, region)[1]
        if not registry.linked(account, owner):
            # UNCONFIRMED: AWS does not document what GetMetricData answers for an AccountId that
            # is not linked to the calling monitoring account. The emulator answers that query
            # with StatusCode Forbidden (a member of botocore's StatusCode enum: Complete |
            # InternalError | PartialData | Forbidden) and no datapoints, so the collector sees
            # an incomplete query rather than a silently empty series.
            result["StatusCode"] = "Forbidden"
            result["Messages"] = [
                {
                    "Code": "Forbidden",
                    "Value": f"Account {owner} is not a source account linked to monitoring account {account}.",
                }
            ]
        elif stat is None:
            result["StatusCode"] = "InternalError"
            result["Messages"] = [
                {"Code": "Unsupported", "Value": "The fleetwatch emulator does not evaluate metric math expressions."}
            ]
        else:
            metric = stat.get("Metric", {})
            dims = tuple(sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
            result["Label"] = result["Label"] or metric.get("MetricName", "")
            sdef = index.get((metric.get("Namespace"), metric.get("MetricName"), dims))
            if sdef is not None and not _stat_ok(stat["Stat"]):
                result["StatusCode"] = "InternalError"
                result["Messages"] = [
                    {"Code": "Unsupported", "Value": f"The fleetwatch emulator does not compute {stat['Stat']}."}
                ]
            elif sdef is not None:
                period = q.get("Period") or stat["Period"]
                ts, vals = series_values(model, sdef, stat["Stat"], period, start, end, stat.get("Unit"))
                if scan == "TimestampDescending":
                    ts, vals = ts[::-1], vals[::-1]
                result["Timestamps"], result["Values"] = ts, vals
        if q.get("ReturnData", True):
            results.append(result)

    digest = hashlib.sha256(
        json.dumps(
            {k: body.get(k) for k in ("MetricDataQueries", "StartTime", "EndTime", "ScanBy", "MaxDatapoints")},
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:32]
    offset = _untoken(body["NextToken"], digest) if body.get("NextToken") else 0
    return _page(results, offset, max_dp, digest)


def _page(results: list[dict[str, Any]], offset: int, max_dp: int, digest: str) -> dict[str, Any]:
    """Cut the flattened datapoints [offset, offset + max_dp) into a page. A query split across
    pages is marked PartialData until its last piece; a query with no datapoints appears once,
    on the page whose range holds its position (the last page's range is open-ended)."""
    total = sum(len(r["Timestamps"]) for r in results)
    limit = offset + max_dp
    page_end = limit if limit < total else math.inf
    page: list[dict[str, Any]] = []
    position = 0
    for r in results:
        n = len(r["Timestamps"])
        lo, hi = max(offset - position, 0), min(limit - position, n)
        if hi > lo or (n == 0 and offset <= position < page_end):
            piece = dict(r)
            piece["Timestamps"], piece["Values"] = r["Timestamps"][lo:hi], r["Values"][lo:hi]
            if hi < n and piece["StatusCode"] == "Complete":
                piece["StatusCode"] = "PartialData"
            page.append(piece)
        position += n
    response: dict[str, Any] = {"MetricDataResults": page, "Messages": []}
    if limit < total:
        response["NextToken"] = _token(digest, limit)
    return response


LIST_WINDOW = 14 * DAY  # ListMetrics lists a metric only if it has data in the past two weeks
RECENT_WINDOW = 3 * 3600  # RecentlyActive=PT3H: in the past three hours
MAX_DIMENSION_FILTERS = 10  # botocore cloudwatch model: DimensionFilters "max": 10


def list_metrics(registry: Registry, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
    """ListMetrics as AWS documents it (API_ListMetrics.html, and botocore's cloudwatch
    2010-08-01 model, ListMetricsInput / ListMetricsOutput):

    - "Up to 500 results are returned for any one call", the rest behind NextToken;
    - "ListMetrics doesn't return information about metrics if those metrics haven't reported
      data in the past two weeks"; RecentlyActive=PT3H (its only valid value) narrows that to
      the past three hours;
    - Dimensions filters: "If you specify one dimension name and a metric has that dimension and
      also other dimensions, it will be returned"; a filter with a Value matches that value only;
    - in a monitoring account, IncludeLinkedAccounts=true adds the linked source accounts'
      metrics, OwningAccount keeps one of them, and OwningAccounts names each metric's account.
    """
    ns, name = body.get("Namespace"), body.get("MetricName")
    filters = body.get("Dimensions") or []
    recent = body.get("RecentlyActive")
    if recent is not None and recent != "PT3H":
        raise ApiError(
            "InvalidParameterValue",
            f"The value {recent} for parameter RecentlyActive is not valid: PT3H is the only valid value.",
        )
    if not isinstance(filters, list) or len(filters) > MAX_DIMENSION_FILTERS:
        raise ApiError(
            "InvalidParameterValue",
            f"The collection Dimensions must not have more than {MAX_DIMENSION_FILTERS} members.",
        )
    for i, f in enumerate(filters, 1):
        if not isinstance(f, dict) or not f.get("Name"):
            raise validation(
                f"1 validation error detected: Value null at 'dimensions.{i}.member.name' "
                "failed to satisfy constraint: Member must not be null"
            )
    linked = bool(body.get("IncludeLinkedAccounts"))
    owner = body.get("OwningAccount")
    accounts = [account]
    if linked:
        accounts += sorted(registry.links.get(account, set()))
        if owner:
            accounts = [owner] if registry.linked(account, owner) else []
    digest = hashlib.sha256(
        json.dumps([ns, name, filters, recent, linked, owner], sort_keys=True).encode()
    ).hexdigest()[:32]
    offset = _untoken(body["NextToken"], digest) if body.get("NextToken") else 0
    now = registry.model.now()
    since = now - (RECENT_WINDOW if recent else LIST_WINDOW)
    key = (
        id(registry.model.scenario),
        registry.model.seed,
        tuple(accounts),
        region,
        digest,
        int(now) // 300,
        int(now - since),
    )
    with registry._lock:
        state = registry.listings.get(key)
    if state is None:
        matched: list[SeriesDef] = []
        for acct in accounts:
            ordered, _ = registry.place(acct, region)
            for s in ordered:
                if (ns and s.namespace != ns) or (name and s.name != name):
                    continue
                dims = dict(s.dims)
                if all(f["Name"] in dims and ("Value" not in f or dims[f["Name"]] == f["Value"]) for f in filters):
                    matched.append(s)
        state = (matched, [], [0], threading.Lock())
        with registry._lock:
            if len(registry.listings) > 256:
                registry.listings.clear()
            registry.listings[key] = state
    # Only what had data in the window is listed. Paging cuts the filtered list, so each page
    # checks the series up to its end, carrying on from where the page before stopped.
    matched, listed, pos, lock = state
    with lock:
        while len(listed) <= offset + LIST_PAGE and pos[0] < len(matched):
            s = matched[pos[0]]
            pos[0] += 1
            if registry.active(s, since, now):
                listed.append(s)
        page = listed[offset : offset + LIST_PAGE]
        more = len(listed) > offset + LIST_PAGE
    response: dict[str, Any] = {
        "Metrics": [
            {"Namespace": s.namespace, "MetricName": s.name, "Dimensions": [{"Name": k, "Value": v} for k, v in s.dims]}
            for s in page
        ]
    }
    if linked:
        response["OwningAccounts"] = [s.account for s in page]
    if more:
        response["NextToken"] = _token(digest, offset + LIST_PAGE)
    return response


# -- Contributor Insights -------------------------------------------------------------------------

_RULE = re.compile(r"^DynamoDBContributorInsights-(PKC|PKT|SKC|SKT)-(.+)-(\d+)$")
BASE_KEYS = 40


def insight_rule_names(res: Resource) -> list[str]:
    mode = res["contributor_insights"]
    if mode == "off":
        return []
    created = res.facts.get("insights_created_ms", 1767225600000)
    codes = ["PKT"] if mode == "THROTTLED_KEYS" else ["PKC", "PKT"]
    if res["sort_key"]:
        codes += [c.replace("PK", "SK") for c in codes]
    return [f"DynamoDBContributorInsights-{code}-{res.name}-{created}" for code in codes]


def get_insight_rule_report(model: FleetModel, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
    name = body.get("RuleName", "")
    match = _RULE.match(name)
    table = model.fleet.by_uid.get(f"dynamodb:{match.group(2)}") if match else None
    if (
        not match
        or table is None
        or table.account != account
        or table.region != region
        or name not in insight_rule_names(table)
    ):
        raise ApiError("ResourceNotFoundException", f"Rule {name} does not exist.")
    start, end = _ts(body.get("StartTime"), "StartTime"), _ts(body.get("EndTime"), "EndTime")
    period = body.get("Period")
    if not isinstance(period, int) or period < 60 or period % 60:
        raise ApiError("InvalidParameterValueException", "Period must be a multiple of 60 seconds.")
    if start >= end:
        raise ApiError("InvalidParameterValueException", "StartTime must be before EndTime.")
    now = model.now()
    start_r = int(start // 60 * 60)
    end = min(end, now)
    buckets = max(int(math.ceil((end - start_r) / period)), 0)
    k = period // 60
    max_count = int(body.get("MaxContributorCount", 10))
    if buckets == 0:
        return {
            "KeyLabels": ["PartitionKey"],
            "AggregationStatistic": "Sum",
            "AggregateValue": 0.0,
            "ApproximateUniqueCount": 0,
            "Contributors": [],
            "MetricDatapoints": [],
        }
    m = start_r // 60 + np.arange(buckets * k, dtype=np.int64)
    d = model.drivers(table, m)
    throttled = match.group(1).endswith("T")
    per_key = _contributions(model, table, d, m, throttled)
    per_key = {
        key_: np.where((m + 1) * 60 <= now, v, 0.0).reshape(buckets, k).sum(axis=1) for key_, v in per_key.items()
    }
    per_key = {key_: v for key_, v in per_key.items() if v.sum() > 0}
    order_by_max = body.get("OrderBy") == "Maximum"
    ranked = sorted(per_key.items(), key=lambda kv: -(kv[1].max() if order_by_max else kv[1].sum()))
    stamps = [int(start_r + i * period) for i in range(buckets)]
    matrix = np.array([v for _, v in ranked]) if ranked else np.zeros((0, buckets))
    datapoints = []
    for i, t in enumerate(stamps):
        column = matrix[:, i] if len(matrix) else np.zeros(0)
        active = column[column > 0]
        if not len(active):
            continue
        datapoints.append(
            {
                "Timestamp": t,
                "UniqueContributors": float(len(active)),
                "MaxContributorValue": float(active.max()),
                "SampleCount": float(active.sum()),
                "Average": float(active.mean()),
                "Sum": float(active.sum()),
                "Minimum": float(active.min()),
                "Maximum": float(active.max()),
            }
        )
    return {
        "KeyLabels": ["PartitionKey"] if match.group(1).startswith("PK") else ["PartitionKey", "SortKey"],
        "AggregationStatistic": "Sum",
        "AggregateValue": float(matrix.sum()),
        "ApproximateUniqueCount": len(ranked),
        "Contributors": [
            {
                "Keys": [key_],
                "ApproximateAggregateValue": float(v.sum()),
                "Datapoints": [
                    {"Timestamp": stamps[i], "ApproximateValue": float(x)} for i, x in enumerate(v) if x > 0
                ],
            }
            for key_, v in ranked[:max_count]
        ],
        "MetricDatapoints": datapoints,
    }


def _contributions(
    model: FleetModel, table: Resource, d: dict[str, np.ndarray], m: np.ndarray, throttled: bool
) -> dict[str, np.ndarray]:
    """Per-minute value per partition key: consumed throughput units (3×WCU + RCU, per minute)
    for the accessed-keys rule, throttle events for the throttled-keys rule."""
    weights = 1.0 / np.arange(1, BASE_KEYS + 1) ** 1.1
    weights /= weights.sum()
    out: dict[str, np.ndarray] = {}
    if throttled:
        spread = sum(
            d[f"{p}_{op}_throttles"] for p in ("provisioned", "account", "ondemand") for op in ("read", "write")
        )
        hot = d["keyrange_read_throttles"] + d["keyrange_write_throttles"]
    else:
        spread = (d["read_units"] + 3 * d["write_units"]) * 60
        hot = (d["hot_key_read_units"] + 3 * d["hot_key_write_units"]) * 60
    for i, w in enumerate(weights):
        out[f"{table['key_prefix']}{i:04d}"] = np.round(spread * w)
    hot_name = None
    for t in (m[hot > 0] * 60 + 30)[:1]:
        hot_name = model.facts_at(table, float(t)).get("hot_key")
    if hot_name:
        out[str(hot_name)] = out.get(str(hot_name), 0) + np.round(hot)
    return out
