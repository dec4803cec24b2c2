"""What users feel (SIGNALS.md §6): API 5XX rate and latency against the API's own recent
baseline and the configured objectives, function error rates, and EventBridge schedules that
did not run when their expression says they should have, or whose target failed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from detectors import async_jobs, schedule_times
from detectors.base import (
    CRITICAL,
    WARNING,
    Finding,
    Inputs,
    NoData,
    Resource,
    Series,
    count_text,
    detector,
    evidence,
    pct,
)

# The (metric, statistic) series this detector reads; the pass loads only declared series.
READS = {
    ("5XXError", "Average"),
    ("5xx", "Average"),
    ("Count", "Sum"),
    ("Latency", "p95"),
    ("Errors", "Sum"),
    ("Invocations", "Sum"),
    ("TriggeredRules", "Sum"),
    ("FailedInvocations", "Sum"),
    ("InvocationAttemptCount", "Sum"),
    ("TargetErrorCount", "Sum"),
}
# Series whose newest point the pass looks up however old it is: a schedule's last run.
LAST_SEEN = {("TriggeredRules", "Sum"), ("InvocationAttemptCount", "Sum"), ("Invocations", "Sum")}

RECENT = 5 * 60
BASELINE = 3600
FUNCTION_BASELINE = 2400  # per-function series are loaded for 45 minutes
MIN_REQUESTS = 50  # in 5 minutes: fewer cannot page
MIN_INVOCATIONS = 30  # in 10 minutes
MIN_ERRORS = 5  # failed requests or invocations: two failures of thirty are noise, not an outage
GRACE = 5 * 60  # a missed run is reported this long after it was due: EventBridge metrics are best-effort and may lag
LAG = 2 * 60  # a due run's TriggeredRules point is expected in the store this long after it (CloudWatch latency, poll)
_REFERENCE = 1_800_000_000  # any fixed time, for a cron expression's usual interval
# How far back from `now` an API's or function's evaluation looks (incremental pass; schedules,
# whose answer moves with `now` alone, are re-run every pass).
HORIZONS = frozenset({RECENT, 2 * RECENT, BASELINE, FUNCTION_BASELINE})
# Baselines: a finding enters at ENTER× the recent baseline and, once an alert holds the
# pre-incident baseline, stays while the rate is at least HOLD× that baseline (and the objective).
ENTER, HOLD = 3.0, 2.0
LATENCY_ENTER, LATENCY_HOLD = 2.0, 1.5


def _weighted_rate(rate: Series, count: Series) -> tuple[float, float]:
    """(errors / requests, requests) from per-minute Average rates weighted by per-minute counts."""
    counts = dict(count.points)
    total = sum(counts.get(t, 0.0) for t, _ in rate.points)
    if not total:
        return 0.0, 0.0
    return sum(v * counts.get(t, 0.0) for t, v in rate.points) / total, total


@detector("outcomes")
def outcomes(inp: Inputs) -> Iterator[Finding | NoData]:
    for api in inp.due("api"):
        yield from _api(inp, api)
    for fn in inp.due("lambda"):
        yield from _function_errors(inp, fn)
    for rule in inp.due("schedule"):
        yield from _schedule(inp, rule)


def _held(inp: Inputs, resource_id: str, key: str) -> dict[str, Any] | None:
    """The baseline an open alert of this finding was decided with, if any (see Inputs.held)."""
    got = inp.held.get(f"outcomes:{resource_id}:{key}")
    return got if got and isinstance(got.get("baseline"), (int, float)) else None


def _frozen(ev: dict[str, Any], baseline: float, since: int, unit: str) -> dict[str, Any]:
    """Evidence that carries the baseline and when it was decided, so the alert store hands it back
    next pass (Inputs.held) and "usually" stays what it was before the incident."""
    ev["baseline"], ev["baseline_since"] = baseline, since
    ev.setdefault("units", {})["baseline"] = unit
    return ev


def _api(inp: Inputs, api: Resource) -> Iterator[Finding]:
    error_metric = "5XXError" if api.facts.get("type") == "REST" else "5xx"
    objective = float(inp.settings.get("objectives.api_error_rate", 0.01))
    latency_objective = float(inp.settings.get("objectives.api_latency_ms", 0) or 0)
    rate = inp.get(api.id, error_metric, "Average")
    count = inp.get(api.id, "Count", "Sum")
    now_rate, requests = _weighted_rate(rate.since(inp.now - RECENT), count.since(inp.now - RECENT))
    held = _held(inp, api.id, "errors")
    if held:
        # Hysteresis against the pre-incident rate: the last hour now holds the failure itself.
        base_rate, threshold, since = (
            float(held["baseline"]),
            max(objective, HOLD * float(held["baseline"])),
            held.get("since"),
        )
    else:
        base_rate, _ = _weighted_rate(
            rate.before(inp.now - RECENT).since(inp.now - BASELINE), count.before(inp.now - RECENT)
        )
        threshold, since = max(objective, ENTER * base_rate), None
    if requests >= MIN_REQUESTS and now_rate * requests >= MIN_ERRORS and now_rate >= threshold:
        since = int(since) if since else (rate.run_start(lambda v: v >= objective) or inp.now - RECENT)
        failed = now_rate * requests
        yield Finding(
            "outcomes",
            api.id,
            CRITICAL if now_rate >= 5 * objective else WARNING,
            f"{api.name}: {pct(now_rate)} of requests failing (5XX) over 5 min ({failed:,.0f} of {requests:,.0f}), "
            f"usually {pct(base_rate)}",
            since,
            _frozen(
                {
                    **evidence(limit=objective, error_rate=rate, requests=count),
                    "now": {
                        "error_rate": now_rate,
                        "failed": round(failed),
                        "requests": round(requests),
                        "minutes": RECENT // 60,
                    },
                },
                base_rate,
                since,
                "ratio",
            ),
            cause="",
            fix="Look at the causes fleetwatch found at the same time; then at the integrated functions "
            f"({', '.join(api.facts.get('functions', [])) or 'its backends'}).",
            key="errors",
        )
    latency = inp.get(api.id, "Latency", "p95")
    recent, before = latency.since(inp.now - RECENT), latency.before(inp.now - RECENT).since(inp.now - BASELINE)
    held = _held(inp, api.id, "latency")
    if len(recent) >= 3 and (held or len(before) >= 15):
        now_p95 = recent.median() or 0.0
        base_p95 = float(held["baseline"]) if held else before.median() or 0.0
        factor = LATENCY_HOLD if held else LATENCY_ENTER
        over_objective = latency_objective and now_p95 > latency_objective
        if base_p95 and now_p95 >= factor * base_p95 and (over_objective or not latency_objective):
            since = (
                int(held["since"])
                if held and held.get("since")
                else (latency.run_start(lambda v: v >= factor * base_p95) or recent.points[0][0])
            )
            yield Finding(
                "outcomes",
                api.id,
                WARNING,
                f"{api.name}: p95 latency {now_p95:.0f} ms over 5 min, "
                f"{now_p95 / base_p95:.1f}× its usual {base_p95:.0f} ms",
                since,
                _frozen(
                    {
                        **evidence(limit=latency_objective or None, latency_p95=latency),
                        "now": {"latency_p95_ms": round(now_p95, 1), "minutes": RECENT // 60},
                    },
                    base_p95,
                    since,
                    "ms",
                ),
                fix="Look for cold starts, throttling or a slow dependency behind the API.",
                key="latency",
            )


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
    held = _held(inp, fn.id, "errors")
    if held:
        base, threshold = float(held["baseline"]), max(0.05, HOLD * float(held["baseline"]))
    else:
        base_n = invocations.before(window).since(inp.now - FUNCTION_BASELINE).sum()
        base = errors.before(window).since(inp.now - FUNCTION_BASELINE).sum() / base_n if base_n else 0.0
        threshold = max(0.05, 5 * base)
    if rate >= threshold:
        since = int(held["since"]) if held and held.get("since") else (errors.run_start(lambda v: v > 0) or window)
        yield Finding(
            "outcomes",
            fn.id,
            CRITICAL if rate >= 0.2 else WARNING,
            f"{fn.name}: {pct(rate)} of invocations failed in 10 min ({failed:,.0f} of {n:,.0f}), usually {pct(base)}",
            since,
            _frozen(
                {
                    **evidence(errors=errors, invocations=invocations),
                    "now": {"error_rate": rate, "failed": round(failed), "invocations": round(n), "minutes": 10},
                },
                base,
                since,
                "ratio",
            ),
            fix=f"Read {fn.name}'s recent error logs; roll back if a deploy preceded this.",
            key="errors",
        )


def expected_interval(expression: str, at: int | None = None) -> int | None:
    """Seconds between runs of a rate() or cron() expression (for cron, the gap between the two
    due times before `at`); None for expressions that cannot be evaluated."""
    schedule = schedule_times.parse(expression)
    if schedule is None:
        return None
    return schedule.interval(at if at is not None else _REFERENCE)


def _ago(seconds: int) -> str:
    """A duration as a person says it: "45 min", "3 h 10 min", "2 d 4 h"."""
    minutes = max(0, seconds) // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h" if not minutes else f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d" if not hours else f"{days} d {hours} h"


def _every(interval: int) -> str:
    if interval % 86400 == 0:
        return "day" if interval == 86400 else f"{interval // 86400} days"
    if interval % 3600 == 0:
        return "hour" if interval == 3600 else f"{interval // 3600} h"
    return f"{interval // 60} min"


def _at(t: int, now: int) -> str:
    """A due time in UTC (the zone scheduled rules run in), with its date once it is a day old."""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%H:%M UTC" if now - t < 86400 else "%b %d %H:%M UTC")


def _known_since(inp: Inputs, rule: Resource) -> int | None:
    """Since when the schedule is known to exist: its creation time where the API gives one, else
    when fleetwatch first discovered it. EventBridge rules have no creation time (DescribeRule
    returns none), so a rule found already dead is reported from its first due time after that."""
    created = rule.facts.get("created_at")
    start = rule.facts.get("start_date")  # a Scheduler schedule runs from its StartDate on
    if isinstance(created, (int, float)) and created <= inp.now:  # a clock ahead of ours is not believed
        return max(int(created), int(start)) if isinstance(start, (int, float)) else int(created)
    return inp.first_seen.get(rule.id)


def _runs(inp: Inputs, rule: Resource) -> tuple[Series, Series, tuple[str, str, str]] | str:
    """(runs, failed invocations, the runs' key in Inputs.last_seen) of a schedule, or why its
    runs cannot be told. An EventBridge rule: TriggeredRules and FailedInvocations by RuleName.
    A Scheduler schedule: AWS/Scheduler publishes per ScheduleGroup only
    (https://docs.aws.amazon.com/scheduler/latest/UserGuide/monitoring-cloudwatch.html), so its
    group's InvocationAttemptCount and TargetErrorCount when it is alone there, else the
    invocations of a target function only it invokes."""
    if not rule.facts.get("scheduler"):
        return (
            inp.get(rule.id, "TriggeredRules", "Sum"),
            inp.get(rule.id, "FailedInvocations", "Sum"),
            (rule.id, "TriggeredRules", "Sum"),
        )
    if rule.facts.get("group_alone"):
        return (
            inp.get(rule.id, "InvocationAttemptCount", "Sum"),
            inp.get(rule.id, "TargetErrorCount", "Sum"),
            (rule.id, "InvocationAttemptCount", "Sum"),
        )
    own = [fn for fn in async_jobs.targets(inp, rule) if async_jobs.dedicated(inp, rule, fn)]
    if own:
        return inp.get(own[0].id, "Invocations", "Sum"), Series(), (own[0].id, "Invocations", "Sum")
    return (
        f"cannot tell when it ran: AWS/Scheduler counts runs per schedule group, {rule.facts.get('group', 'default')} "
        "holds other schedules, and its target is invoked by more than this schedule"
    )


def _schedule(inp: Inputs, rule: Resource) -> Iterator[Finding | NoData]:
    if str(rule.facts.get("state", "ENABLED")).upper() != "ENABLED":
        return  # disabled on purpose: a state shown on the resource, not an incident
    expression = str(rule.facts.get("expression", ""))
    if expression.startswith("at("):
        return  # a one-time Scheduler schedule: nothing recurs to be missed
    end = rule.facts.get("end_date")
    if isinstance(end, (int, float)) and end < inp.now:
        return  # a Scheduler schedule past its EndDate runs no more
    schedule = schedule_times.parse(expression, rule.facts.get("timezone"))
    interval = schedule.interval(inp.now) if schedule is not None else None
    if schedule is None or interval is None:
        zone = rule.facts.get("timezone")
        yield NoData(
            rule.id, f"cannot tell when {expression or 'its schedule'}{f' in {zone}' if zone else ''} should run"
        )
        return
    got = _runs(inp, rule)
    if isinstance(got, str):
        yield NoData(rule.id, got)
        return
    triggered, failed, key = got
    targets = ", ".join(rule.facts.get("target_functions", [])) or "its target"
    recent_failed = failed.since(inp.now - max(interval, RECENT) - GRACE)
    if recent_failed.sum() > 0:
        runs = triggered.since(inp.now - max(interval, RECENT) - GRACE).sum()
        yield Finding(
            "outcomes",
            rule.id,
            CRITICAL,
            f"{rule.name}: {count_text(recent_failed.sum())} of "
            f"{count_text(max(runs, recent_failed.sum()))} scheduled runs failed to invoke "
            f"{targets}",
            recent_failed.points[0][0],
            evidence(failed=failed, triggered=triggered),
            cause="the target rejected or could not receive the invocation",
            fix=(
                f"Check the target's resource policy ({'scheduler' if rule.facts.get('scheduler') else 'events'}"
                ".amazonaws.com may invoke it), its existence and its errors."
            ),
            key="failed",
        )
    yield from _missed(inp, rule, schedule, interval, triggered, targets, key)


def _missed(
    inp: Inputs,
    rule: Resource,
    schedule: schedule_times.Schedule,
    interval: int,
    triggered: Series,
    targets: str,
    key: tuple[str, str, str],
) -> Iterator[Finding]:
    """A run is missed when its due time has passed and no TriggeredRules point came after the
    run before it. The last run is known however old it is (Inputs.last_seen), so the finding
    stays every pass while the job is dead — that keeps its incident open — and starts at the
    first missed due time, the same every pass. It ends when a run is seen."""
    latest = triggered.latest
    last = max(inp.last_seen.get(key, 0), latest[0] if latest else 0) or None
    reference = last if last is not None else _known_since(inp, rule)
    if reference is None:
        return  # nothing known yet
    first_due = schedule.next_after(reference)
    # A Scheduler schedule's flexible time window lets a run start up to that many minutes late.
    window = int(rule.facts.get("flexible_window_minutes") or 0) * 60
    if first_due is None or inp.now < first_due + GRACE + window:
        return
    # Due times whose datapoint should have landed by now (EventBridge metrics lag; best-effort).
    missed = schedule.count_due(first_due, inp.now - LAG - window)
    # A single lost datapoint of a frequent schedule is not a dead job: two missed runs are.
    if missed < (2 if interval < 30 * 60 else 1):
        return
    severity = _missed_severity(inp, rule, last, first_due, missed)
    if severity is None:
        return
    runs = (
        f"{f'{missed}+' if missed >= 100 else missed} scheduled "
        f"run{'s' if missed != 1 else ''} missed since {_at(first_due, inp.now)}"
    )
    every = (
        f"{schedule.expression} should run every {_every(interval)}"
        if schedule.rate is not None
        else f"{schedule.expression} is due about every {_every(interval)} (UTC)"
    )
    if last is not None:
        title = f"{rule.name}: no run for {_ago(inp.now - last)}, {runs}; {every}"
    else:
        title = f"{rule.name}: {runs}, none seen since it was found {_ago(inp.now - reference)} ago; {every}"
    ev = evidence(triggered=triggered)
    ev["schedule"] = {
        "expression": schedule.expression,
        "every_minutes": interval / 60,
        "last_run": last,
        "first_missed": first_due,
        "missed_runs": missed,
        "quiet_minutes": (inp.now - (last if last is not None else reference)) // 60,
    }
    yield Finding(
        "outcomes",
        rule.id,
        severity,
        title,
        first_due,
        ev,
        cause="the schedule stopped triggering (rule disabled, deleted target, or an EventBridge problem)",
        fix=f"Check {rule.name} is ENABLED and its target {targets} exists; run the job by hand if it is overdue.",
        key="missed",
    )


def _missed_severity(inp: Inputs, rule: Resource, last: int | None, first_due: int, missed: int) -> str | None:
    """EventBridge metrics are best-effort: "A data point for a given minute might be delayed ...
    or it might not be delivered at all" (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html).
    So the target function's own invocations decide: it ran (a dedicated target invoked since) —
    no finding, the point was lost; it did not — CRITICAL. Where nothing can tell, one missed run
    is a WARNING and two are CRITICAL."""
    ran = async_jobs.target_ran(inp, rule, last, first_due)
    if ran:
        return None
    return CRITICAL if ran is False or missed >= 2 else WARNING
