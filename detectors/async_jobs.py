"""Work that runs asynchronously, where the caller never sees the outcome (SIGNALS.md §6):

- a scheduled run whose target function failed. EventBridge invokes Lambda asynchronously, so
  its `FailedInvocations` counts only hand-off failures; whether the job ran is read from the
  target function: its errors, throttles and `AsyncEventsDropped` after the run's trigger;
- a rule's own dead-letter queue (`InvocationsSentToDlq`, `InvocationsFailedToBeSentToDlq`);
- Lambda's asynchronous queue: events dropped, waiting longer and longer (`AsyncEventAge`), or
  lost because the DLQ / on-failure destination could not take them;
- stream consumers falling behind (`IteratorAge`).

AWS sources: Lambda "Types of metrics for Lambda functions"
(https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html): `AsyncEventsReceived`,
`AsyncEventsDropped` (events dropped without successfully executing the function — after the
retries or the maximum event age, or reserved concurrency 0), `AsyncEventAge` (milliseconds from
queueing to invocation; grows while events are retried for errors or throttles),
`DeadLetterErrors`, `DestinationDeliveryFailures`, `IteratorAge` (milliseconds, stream event
source mappings). Retries: function errors are retried twice, one then two minutes apart;
throttles and system errors for up to 6 hours (Lambda "Error handling for asynchronous
invocation"). EventBridge (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html):
`InvocationsSentToDlq`, `InvocationsFailedToBeSentToDlq` by RuleName; its metrics are delivered
best-effort ("a data point ... might not be delivered at all").
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from detectors import schedule_times
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
    series_evidence,
)

READS = {
    ("TriggeredRules", "Sum"),
    ("InvocationsSentToDlq", "Sum"),
    ("InvocationsFailedToBeSentToDlq", "Sum"),
    ("Invocations", "Sum"),
    ("Errors", "Sum"),
    ("Throttles", "Sum"),
    ("AsyncEventsDropped", "Sum"),
    ("AsyncEventAge", "Maximum"),
    ("DeadLetterErrors", "Sum"),
    ("DestinationDeliveryFailures", "Sum"),
    ("IteratorAge", "Maximum"),
}
# A target function's newest invocation, however old: a run whose TriggeredRules point was lost.
LAST_SEEN = {("Invocations", "Sum")}

RECENT = 10 * 60  # two slow-tier (5-minute) polls of the per-function async metrics
TREND = 30 * 60
RETRIES = 3 * 60  # an erroring event's two retries: one minute, then two minutes after
SETTLED = 15 * 60  # a 5-minute Lambda point lands in the store this long after its minute (slow poll + CloudWatch lag)
BUCKET = 300  # per-function series are 5-minute points stamped with their start
ATTEMPTS = 3  # default MaximumRetryAttempts 2: three attempts
MIN_DROPPED_CRIT = 10
AGE_WARN_MS, AGE_CRIT_MS = 10 * 60 * 1000, 3 * 3600 * 1000  # half of the default 6-hour maximum event age
ITERATOR_WARN_MS, ITERATOR_CRIT_MS = 5 * 60 * 1000, 12 * 3600 * 1000  # half of a stream's default 24 h retention
MIN_R2 = 0.6
# How far back from `now` the evaluation of a function looks (the incremental pass re-runs a
# resource when one of its points crosses one of these; schedules are re-run every pass).
HORIZONS = frozenset({RECENT, TREND, 3600, SETTLED})


def _at(t: int) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%H:%M UTC")


def _minutes(ms: float) -> str:
    s = ms / 1000
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.0f} min"


def _in(series: Series, start: int, end: int) -> float:
    return sum(v for t, v in series.points if start <= t <= end)


def targets(inp: Inputs, rule: Resource) -> list[Resource]:
    return inp.named("lambda", rule.account, rule.region, rule.facts.get("target_functions") or [])


def dedicated(inp: Inputs, rule: Resource, fn: Resource) -> bool:
    """A target whose every invocation is this schedule's: no event source mapping, no API in
    front of it, no other schedule. Only then do its errors and invocations speak for the job."""
    if fn.facts.get("event_sources"):
        return False
    if any(fn.name in (a.facts.get("functions") or []) for a in inp.of_kind("api") if a.account == fn.account):
        return False
    return not any(
        r.id != rule.id and fn.name in (r.facts.get("target_functions") or []) for r in inp.of_kind("schedule")
    )


def target_ran(inp: Inputs, rule: Resource, last: int | None, first_due: int) -> bool | None:
    """Did a dedicated target function run after the last run seen (`last`) and by the first
    missed due time? True: the run happened and its TriggeredRules point was lost (EventBridge
    metrics are best-effort). False: no dedicated target ran, and its points for the due time
    have had time to land. None: nothing can tell (no dedicated target, or too early)."""
    fns = [fn for fn in targets(inp, rule) if dedicated(inp, rule, fn)]
    if not fns:
        return None
    for fn in fns:
        seen = inp.get(fn.id, "Invocations", "Sum").latest
        newest = max(inp.last_seen.get((fn.id, "Invocations", "Sum"), 0), seen[0] if seen else 0)
        # A point is stamped with its 5-minute bucket's start: the due run's bucket may start
        # before the due time, but never at or before the last run seen.
        if newest > (last or 0) and newest >= first_due - BUCKET:
            return True
    return False if inp.now >= first_due + SETTLED else None


def _all_targets(inp: Inputs) -> set[str]:
    """Every enabled schedule's target functions: a function's dropped events are told by its
    schedule's finding when one blames it (`blamed` below), so in an incremental pass a target is
    evaluated whenever its schedule is (every pass), whether or not it is blamed this time."""
    return {fn.id for rule in inp.of_kind("schedule") for fn in targets(inp, rule)}


@detector("async_jobs")
def async_jobs(inp: Inputs) -> Iterator[Finding | NoData]:
    blamed: set[str] = set()
    for rule in inp.due("schedule"):
        if str(rule.facts.get("state", "ENABLED")).upper() != "ENABLED":
            continue
        for finding in _scheduled_run(inp, rule):
            blamed.update(finding.evidence.get("functions", []))
            yield finding
        yield from _rule_dlq(inp, rule)
    for fn in inp.due("lambda", always=_all_targets(inp)):
        yield from _async_queue(inp, fn, skip_dropped=fn.id in blamed)
        yield from _iterator_age(inp, fn)


def _scheduled_run(inp: Inputs, rule: Resource) -> Iterator[Finding]:
    """The newest run whose outcome shows, newest first: failed when the target dropped the
    event, or when a dedicated target failed every attempt (three — the default two retries — or,
    once the attempts' points have all had time to land, every one seen); not started when it was
    only throttled. A run with a successful attempt ends the search: the job ran."""
    schedule = schedule_times.parse(str(rule.facts.get("expression", "")), rule.facts.get("timezone"))
    interval = schedule.interval(inp.now) if schedule is not None else None
    triggered = inp.get(rule.id, "TriggeredRules", "Sum")
    for fn in targets(inp, rule):
        span = RETRIES + ATTEMPTS * int(fn.facts.get("timeout") or 3)
        # Runs closer together than one run's attempts share the function's points: only drops tell.
        mine = dedicated(inp, rule, fn) and bool(interval and interval > span + BUCKET)
        series = {
            name: inp.get(fn.id, metric, "Sum")
            for name, metric in (
                ("errors", "Errors"),
                ("invocations", "Invocations"),
                ("throttles", "Throttles"),
                ("dropped", "AsyncEventsDropped"),
            )
        }
        for run in sorted((t for t, v in triggered.points if v > 0), reverse=True):
            start, end = run // BUCKET * BUCKET, run + span
            failed, ran, throttled, dropped = (
                _in(series[k], start, end) for k in ("errors", "invocations", "throttles", "dropped")
            )
            settled = run + span + SETTLED <= inp.now
            if mine and ran > failed:
                break  # an attempt succeeded: the job ran
            every = f" (every {interval // 60} min)" if interval else ""
            ev = series_evidence(
                {k: v.since(start - 3600) for k, v in series.items()}, units={k: "count" for k in series}
            )
            ev["functions"] = [fn.id]
            ev["run"] = {
                "triggered_at": run,
                "attempts": ran,
                "errors": failed,
                "throttles": throttled,
                "dropped": dropped,
            }
            if dropped > 0 or (mine and failed > 0 and failed >= ran and (failed >= ATTEMPTS or settled)):
                how = (
                    f"{fn.name} dropped the event after its retries"
                    if dropped > 0
                    else f"every attempt of {fn.name} failed ({count_text(failed)} of {count_text(ran)})"
                )
                yield Finding(
                    "async_jobs",
                    rule.id,
                    CRITICAL,
                    f"{rule.name}: the run at {_at(run)} failed — {how}{every}",
                    run,
                    ev,
                    cause=f"{fn.name} fails when the schedule invokes it (EventBridge hands it off "
                    "asynchronously, so the rule's FailedInvocations stays at zero)",
                    fix=f"Read {fn.name}'s error logs at {_at(run)}; run the job by hand once fixed.",
                    key="target-failed",
                )
                break
            if mine and settled and throttled > 0 and ran == 0:
                yield Finding(
                    "async_jobs",
                    rule.id,
                    WARNING,
                    f"{rule.name}: the run at {_at(run)} has not started "
                    f"— {fn.name} throttled {count_text(throttled)} times{every}",
                    run,
                    ev,
                    cause=f"{fn.name} has no concurrency free (reserved concurrency or the account's limit); "
                    "Lambda retries a throttled event for up to 6 hours, then drops it",
                    fix=f"Give {fn.name} concurrency (raise its reservation, or free the account's).",
                    key="target-throttled",
                )
                break
            if settled:
                break  # nothing against this run: do not reach back past it


def _rule_dlq(inp: Inputs, rule: Resource) -> Iterator[Finding]:
    since = inp.now - 3600
    sent = inp.get(rule.id, "InvocationsSentToDlq", "Sum").since(since)
    lost = inp.get(rule.id, "InvocationsFailedToBeSentToDlq", "Sum").since(since)
    targets_named = ", ".join(rule.facts.get("target_functions") or []) or "its target"
    if lost.sum() > 0:
        yield Finding(
            "async_jobs",
            rule.id,
            CRITICAL,
            f"{rule.name}: {count_text(lost.sum())} runs could not invoke {targets_named} nor be saved to the rule's "
            "dead-letter queue in the last hour — lost",
            lost.points[0][0],
            evidence(lost=lost, units={"lost": "count"}),
            cause="the rule's DLQ refused the events (its permissions, a deleted queue, or the size limit)",
            fix="Check the DLQ exists and its policy lets events.amazonaws.com send to it; then the target.",
            key="dlq-lost",
        )
    if sent.sum() > 0:
        yield Finding(
            "async_jobs",
            rule.id,
            CRITICAL,
            f"{rule.name}: {count_text(sent.sum())} runs could not invoke {targets_named} and went to the rule's "
            "dead-letter queue in the last hour",
            sent.points[0][0],
            evidence(sent=sent, units={"sent": "count"}),
            cause="EventBridge could not deliver to the target after its retries",
            fix="Fix the target (its existence, its resource policy), then replay the DLQ's events.",
            key="dlq",
        )


def _async_queue(inp: Inputs, fn: Resource, skip_dropped: bool = False) -> Iterator[Finding]:
    since = inp.now - RECENT
    dropped = inp.get(fn.id, "AsyncEventsDropped", "Sum").since(since)
    if dropped.sum() > 0 and not skip_dropped:
        n = dropped.sum()
        yield Finding(
            "async_jobs",
            fn.id,
            CRITICAL if n >= MIN_DROPPED_CRIT else WARNING,
            f"{fn.name}: {count_text(n)} asynchronous events dropped in 10 min without running",
            dropped.points[0][0],
            evidence(dropped=dropped, units={"dropped": "count"}),
            cause="events failed every retry or waited past their maximum age (or the function has reserved "
            "concurrency 0)",
            fix=f"Read {fn.name}'s errors and throttles; replay the dropped events from its DLQ or on-failure "
            "destination if it has one.",
            key="async-dropped",
        )
    lost = {m: inp.get(fn.id, m, "Sum").since(since) for m in ("DeadLetterErrors", "DestinationDeliveryFailures")}
    if any(s.sum() > 0 for s in lost.values()):
        total = sum(s.sum() for s in lost.values())
        yield Finding(
            "async_jobs",
            fn.id,
            WARNING,
            f"{fn.name}: {count_text(total)} failed events could not be "
            "saved to its dead-letter queue or destination in 10 min",
            min(s.points[0][0] for s in lost.values() if s),
            evidence(
                dead_letter_errors=lost["DeadLetterErrors"],
                destination_failures=lost["DestinationDeliveryFailures"],
                units={"dead_letter_errors": "count", "destination_failures": "count"},
            ),
            cause="the DLQ or destination refused them (permissions, a "
            "deleted resource, or the size limit): they are lost",
            fix=f"Check {fn.name}'s DLQ / on-failure destination exists and its execution role may send to it.",
            key="async-lost",
        )
    age = inp.get(fn.id, "AsyncEventAge", "Maximum").since(inp.now - TREND)
    latest = age.latest
    if latest is None or latest[0] < since or latest[1] < AGE_WARN_MS:
        return
    slope, r2 = age.slope_per_minute()
    if latest[1] < AGE_CRIT_MS and (slope <= 0 or r2 < MIN_R2):
        return
    yield Finding(
        "async_jobs",
        fn.id,
        CRITICAL if latest[1] >= AGE_CRIT_MS else WARNING,
        f"{fn.name}: asynchronous events wait {_minutes(latest[1])} before running, and rising",
        age.run_start(lambda v: v >= AGE_WARN_MS) or latest[0],
        evidence(age_ms=age, units={"age_ms": "ms"}),
        cause="events are being retried (function errors or throttles) faster than they succeed; past the "
        "maximum event age (6 h by default) they are dropped",
        fix=f"Look at {fn.name}'s errors and throttles; give it concurrency if it is throttled.",
        key="async-age",
    )


def _iterator_age(inp: Inputs, fn: Resource) -> Iterator[Finding]:
    streams = [
        s["source_arn"]
        for s in fn.facts.get("event_sources") or []
        if ":kinesis:" in str(s.get("source_arn")) or "/stream/" in str(s.get("source_arn"))
    ]
    if not streams:
        return
    age = inp.get(fn.id, "IteratorAge", "Maximum").since(inp.now - TREND)
    latest = age.latest
    if latest is None or latest[0] < inp.now - RECENT or latest[1] < ITERATOR_WARN_MS:
        return
    slope, r2 = age.slope_per_minute()
    if latest[1] < ITERATOR_CRIT_MS and (slope <= 0 or r2 < MIN_R2):
        return
    source = streams[0].split(":")[-1]
    yield Finding(
        "async_jobs",
        fn.id,
        CRITICAL if latest[1] >= ITERATOR_CRIT_MS else WARNING,
        f"{fn.name}: {_minutes(latest[1])} behind its stream {source}, and falling further behind",
        age.run_start(lambda v: v >= ITERATOR_WARN_MS) or latest[0],
        evidence(iterator_age_ms=age, units={"iterator_age_ms": "ms"}),
        cause="the consumer processes records slower than they arrive, or one batch keeps failing and is retried",
        fix=f"Check {fn.name}'s errors (a poison record blocks its shard); raise its parallelization factor or "
        "batch size. Records older than the stream's retention (24 h by default) are lost.",
        key="iterator-age",
    )
