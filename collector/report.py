"""What `fleetwatch plan` prints: the plan per kind and tier, the calls a poll makes, and the
projected monthly CloudWatch bill next to polling the whole catalog every minute."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from collector import coldstart_sources, plan
from collector.catalog import CATALOG, DETAIL, FAST, SLOW


@dataclass
class Projection:
    places: int
    resources: int
    fast_queries: int
    slow_queries: int
    detail_queries: int
    fast_poll_calls: int  # GetMetricData calls of a poll that runs only the fast tier
    slow_poll_calls: int  # ... of a poll that runs both tiers
    monthly_cost_usd: float
    naive_monthly_cost_usd: float
    probe_calls: dict[str, float]  # per poll, by operation
    monitoring_fast_poll_calls: int = 0  # the same through a monitoring account: one client per Region
    monitoring_slow_poll_calls: int = 0
    calls_per_hour: float = 0.0  # GetMetricData calls an hour, each account polling its own
    monitoring_calls_per_hour: float = 0.0  # ... and in monitoring-account mode
    sqs_monthly_cost_usd: float = 0.0  # the GetQueueAttributes probe of every slow poll, at $0.40 per million
    logs_gb_per_day: float = 0.0  # poll.logs_insights_gb_per_day: the cold-start scans' budget
    logs_insights_max_monthly_cost_usd: float = 0.0  # ... as a monthly ceiling, at $0.005 per GB scanned

    @property
    def total_monthly_cost_usd(self) -> float:
        """GetMetricData and the SQS requests of the probes (X-Ray and Logs Insights run only on demand)."""
        return self.monthly_cost_usd + self.sqs_monthly_cost_usd

    @property
    def max_monthly_cost_usd(self) -> float:
        """The total with Logs Insights spending its whole budget every day (it scans only while a
        cold-start trigger asks, so usually far less)."""
        return self.total_monthly_cost_usd + self.logs_insights_max_monthly_cost_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "total_monthly_cost_usd": self.total_monthly_cost_usd,
            "max_monthly_cost_usd": self.max_monthly_cost_usd,
        }


def project(
    by_place: dict[Any, list[dict[str, Any]]], fast_interval: int, slow_interval: int, logs_gb_per_day: float = 0.0
) -> Projection:
    fast = slow = detail = fast_calls = slow_calls = 0
    naive = 0.0
    probe_calls: Counter[str] = Counter()
    resources = 0
    for resources_here in by_place.values():
        resources += len(resources_here)
        f = sum(len(plan.resource_queries(r, [FAST])) for r in resources_here)
        s = sum(len(plan.resource_queries(r, [SLOW])) for r in resources_here)
        d = sum(len(plan.resource_queries(r, [DETAIL])) for r in resources_here)
        fast, slow, detail = fast + f, slow + s, detail + d
        fast_calls += math.ceil(f / plan.MAX_QUERIES)
        slow_calls += math.ceil((f + s) / plan.MAX_QUERIES)
        naive += plan.naive_monthly_cost(resources_here)
        kinds = Counter(r["kind"] for r in resources_here)
        probe_calls["ses:GetAccount (every poll)"] += kinds["ses"]
        probe_calls["lambda:GetAccountSettings (every poll)"] += kinds["lambda_account"]
        probe_calls["sqs:GetQueueAttributes (slow polls)"] += kinds["sqs"]
    sqs = probe_calls["sqs:GetQueueAttributes (slow polls)"] * plan.MONTH / slow_interval * plan.PRICE_PER_SQS_REQUEST
    cost = plan.monthly_cost(fast, slow, fast_interval, slow_interval)
    # Monitoring-account mode: the queries of every account in a Region share calls.
    per_region: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key, resources_here in by_place.items():
        region = getattr(key, "region", None) or str(key).rsplit("/", 1)[-1]
        f = sum(len(plan.resource_queries(r, [FAST])) for r in resources_here)
        per_region[region][0] += f
        per_region[region][1] += f + sum(len(plan.resource_queries(r, [SLOW])) for r in resources_here)
    hub_fast = sum(math.ceil(f / plan.MAX_QUERIES) for f, _ in per_region.values())
    hub_slow = sum(math.ceil(fs / plan.MAX_QUERIES) for _, fs in per_region.values())
    return Projection(
        len(by_place),
        resources,
        fast,
        slow,
        detail,
        fast_calls,
        slow_calls,
        cost,
        naive,
        dict(probe_calls),
        hub_fast,
        hub_slow,
        calls_per_hour(fast_calls, slow_calls, fast_interval, slow_interval),
        calls_per_hour(hub_fast, hub_slow, fast_interval, slow_interval),
        sqs,
        logs_gb_per_day,
        coldstart_sources.monthly_cost(logs_gb_per_day),
    )


def calls_per_hour(fast_poll_calls: int, slow_poll_calls: int, fast_interval: int, slow_interval: int) -> float:
    """GetMetricData calls an hour in steady state: a poll every fast_interval, the slow tier
    with it every slow_interval (no backfill, nothing paging)."""
    polls, slow_polls = 3600 / fast_interval, 3600 / max(slow_interval, fast_interval)
    return (polls - slow_polls) * fast_poll_calls + slow_polls * slow_poll_calls


def render(
    by_place: dict[Any, list[dict[str, Any]]], fast_interval: int, slow_interval: int, logs_gb_per_day: float = 0.0
) -> str:
    p = project(by_place, fast_interval, slow_interval, logs_gb_per_day)
    kinds: dict[str, int] = defaultdict(int)
    for rs in by_place.values():
        for r in rs:
            kinds[r["kind"]] += 1
    lines = [f"query plan for {p.resources} resources in {p.places} account/region place(s)", ""]
    lines.append(f"{'kind':15} {'count':>6}  {'metric':46} {'stat':8} tier")
    for kind, specs in CATALOG.items():
        if not kinds.get(kind):
            continue
        for i, spec in enumerate(specs):
            label = f"{kind:15} {kinds[kind]:6}" if i == 0 else " " * 22
            cond = f" (if {spec.only_if})" if spec.only_if else ""
            lines.append(f"{label}  {spec.namespace + ' ' + spec.metric:46} {spec.stat:8} {spec.tier}{cond}")
    per_month_fast = 30 * 86400 / fast_interval
    per_month_slow = 30 * 86400 / slow_interval
    lines += [
        "",
        f"metrics per poll: {p.fast_queries} fast (every {fast_interval}s), "
        f"{p.slow_queries} slow (every {slow_interval}s), "
        f"up to {p.detail_queries} detail (only while a cheaper signal asks for them)",
        f"GetMetricData calls per poll: {p.fast_poll_calls} on "
        f"fast-only polls, {p.slow_poll_calls} when the slow tier is due "
        f"(500 queries a call, one call per account and region at least)",
        "other calls per poll: " + ", ".join(f"{op} {n:g}" for op, n in p.probe_calls.items()),
        "",
        f"projected CloudWatch GetMetricData cost: ${p.monthly_cost_usd:,.2f} a month "
        f"({p.fast_queries} × {per_month_fast:,.0f} + {p.slow_queries} "
        f"× {per_month_slow:,.0f} metrics at $0.01 per 1,000)",
        f"projected SQS request cost: ${p.sqs_monthly_cost_usd:,.2f} a month "
        f"({p.probe_calls.get('sqs:GetQueueAttributes (slow polls)', 0):g} "
        f"GetQueueAttributes × {per_month_slow:,.0f} polls at $0.40 "
        f"per million); total ${p.total_monthly_cost_usd:,.2f} a month",
        f"Logs Insights cold starts: at most ${p.logs_insights_max_monthly_cost_usd:,.2f} a month "
        f"(poll.logs_insights_gb_per_day {p.logs_gb_per_day:g} GB × "
        f"30 days at ${coldstart_sources.PRICE_PER_GB_SCANNED} per GB "
        f"scanned; it scans only while a cold-start trigger asks, a function's whole log group over the window, so "
        "REPORT lines alone cannot estimate it); with it spent "
        f"every day, at most ${p.max_monthly_cost_usd:,.2f} a month",
        f"the whole catalog every minute would cost ${p.naive_monthly_cost_usd:,.2f} a month "
        f"({p.monthly_cost_usd / p.naive_monthly_cost_usd:.0%} of it)"
        if p.naive_monthly_cost_usd
        else "",
        "detail fetches (DynamoDB throttle reasons, Contributor "
        "Insights, X-Ray traces retrieved or scanned at $0.50 per "
        "million) add cost only while they run; free tiers are "
        "the account's, shared with its own use, so not deducted.",
        "",
        "monitoring-account mode (aws.monitoring_account; CloudWatch cross-account observability):",
        f"  GetMetricData calls an hour: {p.calls_per_hour:,.0f} with each account polling its own, "
        f"{p.monitoring_calls_per_hour:,.0f} through the monitoring account "
        f"({p.monitoring_fast_poll_calls} a fast-only poll and {p.monitoring_slow_poll_calls} with the slow tier, "
        "every account's queries of a Region sharing calls of up to 500 with AccountId on each)",
        f"  cost: ${p.monthly_cost_usd:,.2f} a month either way: GetMetricData is billed per metric requested "
        "($0.01 per 1,000), not per call, so the mode saves calls (and the monitoring account's 50 TPS of "
        "GetMetricData is then shared by every account), not money.",
    ]
    return "\n".join(line for line in lines if line is not None)
