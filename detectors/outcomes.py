"""What users feel (SIGNALS.md §6): API 5XX rate and latency against the API's own recent
baseline and the configured objectives, function error rates, and EventBridge schedules that
did not run when their expression says they should have, or whose target failed."""

from __future__ import annotations

import re
from collections.abc import Iterator

from detectors.base import CRITICAL, WARNING, Finding, Inputs, NoData, Resource, Series, detector, evidence, pct

# The (metric, statistic) series this detector reads; the pass loads only declared series.
READS = {("5XXError", "Average"), ("5xx", "Average"), ("Count", "Sum"), ("Latency", "p95"), ("Errors", "Sum"),
         ("Invocations", "Sum"), ("TriggeredRules", "Sum"), ("FailedInvocations", "Sum")}

RECENT = 5 * 60
BASELINE = 3600
FUNCTION_BASELINE = 2400  # per-function series are loaded for 45 minutes
MIN_REQUESTS = 50  # in 5 minutes: fewer cannot page
MIN_INVOCATIONS = 30  # in 10 minutes
MIN_ERRORS = 5  # failed requests or invocations: two failures of thirty are noise, not an outage
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((\S+) (\S+) \S+ \S+ \S+(?: \S+)?\)$")
GRACE = 5 * 60  # EventBridge metrics are best-effort and may lag


def _weighted_rate(rate: Series, count: Series) -> tuple[float, float]:
    """(errors / requests, requests) from per-minute Average rates weighted by per-minute counts."""
    counts = dict(count.points)
    total = sum(counts.get(t, 0.0) for t, _ in rate.points)
    if not total:
        return 0.0, 0.0
    return sum(v * counts.get(t, 0.0) for t, v in rate.points) / total, total


@detector("outcomes")
def outcomes(inp: Inputs) -> Iterator[Finding | NoData]:
    for api in inp.of_kind("api"):
        yield from _api(inp, api)
    for fn in inp.of_kind("lambda"):
        yield from _function_errors(inp, fn)
    for rule in inp.of_kind("schedule"):
        yield from _schedule(inp, rule)


def _api(inp: Inputs, api: Resource) -> Iterator[Finding]:
    error_metric = "5XXError" if api.facts.get("type") == "REST" else "5xx"
    objective = float(inp.settings.get("objectives.api_error_rate", 0.01))
    latency_objective = float(inp.settings.get("objectives.api_latency_ms", 0) or 0)
    rate = inp.get(api.id, error_metric, "Average")
    count = inp.get(api.id, "Count", "Sum")
    now_rate, requests = _weighted_rate(rate.since(inp.now - RECENT), count.since(inp.now - RECENT))
    base_rate, _ = _weighted_rate(rate.before(inp.now - RECENT).since(inp.now - BASELINE), count.before(inp.now - RECENT))
    if requests >= MIN_REQUESTS and now_rate * requests >= MIN_ERRORS and now_rate >= max(objective, 3 * base_rate):
        since = rate.run_start(lambda v: v >= objective) or inp.now - RECENT
        yield Finding("outcomes", api.id, CRITICAL if now_rate >= 5 * objective else WARNING,
                      f"{api.name}: {pct(now_rate)} of requests failing (5XX) over 5 min, usually {pct(base_rate)}",
                      since, evidence(limit=objective, baseline=base_rate, error_rate=rate, requests=count),
                      cause="", fix="Look at the causes fleetwatch found at the same time; then at the integrated functions "
                      f"({', '.join(api.facts.get('functions', [])) or 'its backends'}).", key="errors")
    latency = inp.get(api.id, "Latency", "p95")
    recent, before = latency.since(inp.now - RECENT), latency.before(inp.now - RECENT).since(inp.now - BASELINE)
    if len(recent) >= 3 and len(before) >= 15:
        now_p95, base_p95 = recent.median() or 0.0, before.median() or 0.0
        over_objective = latency_objective and now_p95 > latency_objective
        if base_p95 and now_p95 >= 2 * base_p95 and (over_objective or not latency_objective):
            yield Finding("outcomes", api.id, WARNING,
                          f"{api.name}: p95 latency {now_p95:.0f} ms, {now_p95 / base_p95:.1f}× its usual {base_p95:.0f} ms",
                          latency.run_start(lambda v: v >= 2 * base_p95) or recent.points[0][0],
                          evidence(limit=latency_objective or None, baseline=base_p95, latency_p95=latency),
                          fix="Look for cold starts, throttling or a slow dependency behind the API.", key="latency")


def _function_errors(inp: Inputs, fn: Resource) -> Iterator[Finding]:
    window = inp.now - 2 * RECENT  # slow-tier signals: two polls
    errors = inp.get(fn.id, "Errors", "Sum")
    invocations = inp.get(fn.id, "Invocations", "Sum")
    n = invocations.since(window).sum()
    if n < MIN_INVOCATIONS:
        return
    failed = errors.since(window).sum()
    if failed < MIN_ERRORS:
        return
    rate = failed / n
    base_n = invocations.before(window).since(inp.now - FUNCTION_BASELINE).sum()
    base = errors.before(window).since(inp.now - FUNCTION_BASELINE).sum() / base_n if base_n else 0.0
    if rate >= max(0.05, 5 * base):
        yield Finding("outcomes", fn.id, CRITICAL if rate >= 0.2 else WARNING,
                      f"{fn.name}: {pct(rate)} of {n:.0f} invocations failed in 10 min, usually {pct(base)}",
                      errors.run_start(lambda v: v > 0) or window, evidence(baseline=base, errors=errors, invocations=invocations),
                      fix=f"Read {fn.name}'s recent error logs; roll back if a deploy preceded this.", key="errors")


def expected_interval(expression: str) -> int | None:
    """Seconds between runs of a rate() or simple cron() expression (minute fixed, hour fixed or
    every hour); None for expressions this cannot reason about."""
    match = _RATE.match(expression.strip())
    if match:
        unit = match.group(2).rstrip("s")
        return int(match.group(1)) * {"minute": 60, "hour": 3600, "day": 86400}[unit]
    match = _CRON.match(expression.strip())
    if match and match.group(1).isdigit():
        return 3600 if match.group(2) == "*" else 86400 if match.group(2).isdigit() else None
    return None


def _schedule(inp: Inputs, rule: Resource) -> Iterator[Finding | NoData]:
    if rule.facts.get("state", "ENABLED") != "ENABLED":
        return
    interval = expected_interval(str(rule.facts.get("expression", "")))
    triggered = inp.get(rule.id, "TriggeredRules", "Sum")
    failed = inp.get(rule.id, "FailedInvocations", "Sum")
    if interval is None:
        yield NoData(rule.id, f"cannot tell when {rule.facts.get('expression')} should run")
        return
    recent_failed = failed.since(inp.now - max(interval, RECENT) - GRACE)
    if recent_failed.sum() > 0:
        runs = triggered.since(inp.now - max(interval, RECENT) - GRACE).sum()
        yield Finding("outcomes", rule.id, CRITICAL,
                      f"{rule.name}: {recent_failed.sum():.0f} of {max(runs, recent_failed.sum()):.0f} scheduled runs failed to invoke "
                      f"{', '.join(rule.facts.get('target_functions', [])) or 'its target'}",
                      recent_failed.points[0][0], evidence(failed=failed, triggered=triggered),
                      cause="the target rejected or could not receive the invocation",
                      fix="Check the target's resource policy (events.amazonaws.com may invoke it), its existence and its errors.",
                      key="failed")
    overdue = interval + max(GRACE, interval // 2)
    last = triggered.latest
    seen_for = inp.now - triggered.points[0][0] if triggered else 0
    if interval < 3600 and (last is None and seen_for == 0):
        return  # nothing known yet: the window holds no run at all (new rule, or history still filling)
    if last is not None and inp.now - last[0] >= overdue:
        yield Finding("outcomes", rule.id, CRITICAL,
                      f"{rule.name}: no run for {(inp.now - last[0]) // 60} min; {rule.facts.get('expression')} should run every "
                      f"{interval // 60} min", last[0] + interval, evidence(limit=interval, triggered=triggered),
                      cause="the schedule stopped triggering (rule disabled, deleted target, or an EventBridge problem)",
                      fix=f"Check {rule.name} is ENABLED and its target exists; run the job by hand if it is overdue.", key="missed")
