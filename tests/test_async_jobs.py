"""Asynchronous work whose caller never sees the outcome: a scheduled run whose function failed
(EventBridge invokes Lambda asynchronously, so FailedInvocations counts only hand-off failures),
a best-effort TriggeredRules point that went missing, a rule's DLQ, Lambda's async queue, and
stream consumers falling behind.

AWS: Lambda "Types of metrics for Lambda functions" (monitoring-metrics-types.html: the
asynchronous invocation metrics, DeadLetterErrors, DestinationDeliveryFailures, IteratorAge);
Lambda "Error handling for asynchronous invocation" (two retries, one then two minutes apart);
EventBridge "Monitoring Amazon EventBridge" (eb-monitoring.html: InvocationsSentToDlq,
InvocationsFailedToBeSentToDlq by RuleName; metrics delivered best-effort)."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.async_jobs import async_jobs
from detectors.base import CRITICAL, WARNING, Finding, Inputs, Series
from detectors.outcomes import outcomes
from tests.test_detectors import NOW, M, flat, join, keys, ramp, res, results, shift

RULE = {"expression": "rate(1 hour)", "target_functions": ["job-fn"]}
JOB_FN = {"timeout": 60}


def at(*points: tuple[int, float], period: int = 60) -> Series:
    """Points `minutes` before NOW."""
    return Series(tuple(sorted((NOW - m * M, v) for m, v in points)), period)


def bucket(minutes_ago: int) -> int:
    """How many minutes ago the 5-minute bucket holding that minute started."""
    t = NOW - minutes_ago * M
    return (NOW - t // 300 * 300) // M


def job_inputs(
    series: dict[tuple[str, str, str], Series],
    rule: dict[str, Any] | None = None,
    fn: dict[str, Any] | None = None,
    extra: list[Any] | None = None,
    last_seen: dict[tuple[str, str, str], int] | None = None,
) -> Inputs:
    resources = [res("schedule", "job", rule or RULE), res("lambda", "job-fn", fn or JOB_FN), *(extra or [])]
    by_name = {r.name: r.id for r in resources}
    return Inputs(
        NOW,
        resources,
        {(by_name[n], m, s): v for (n, m, s), v in series.items()},
        last_seen={(by_name[n], m, s): t for (n, m, s), t in (last_seen or {}).items()},
    )


# -- a missed run: corroborated by the target function, or not ----------------------------------


def missed(inp: Inputs) -> list[Finding]:
    return [f for f in outcomes(inp) if isinstance(f, Finding) and f.key == "missed"]


def test_one_missing_triggeredrules_point_of_an_hourly_job_is_a_warning_until_corroborated() -> None:
    # Last run 80 min ago: the run due 20 min ago has no TriggeredRules point.
    runs = {("job", "TriggeredRules", "Sum"): at((80, 1.0))}
    shared = res("api", "api", {"functions": ["job-fn"]})  # an API calls job-fn too: its invocations prove nothing
    (f,) = missed(job_inputs(runs, extra=[shared], last_seen={("job-fn", "Invocations", "Sum"): NOW - 3 * M}))
    assert f.severity == WARNING, "best-effort metrics: one lost point must not page"
    # The dedicated target did not run either, and its points have had time to land: the job is dead.
    (f,) = missed(job_inputs(runs, last_seen={("job-fn", "Invocations", "Sum"): NOW - 80 * M}))
    assert f.severity == CRITICAL and f.started_at == NOW - 20 * M
    # The dedicated target ran after the due time: the run happened, its point was lost.
    assert missed(job_inputs({**runs, ("job-fn", "Invocations", "Sum"): at((bucket(20), 1.0), period=300)})) == []


def test_a_missed_run_is_not_corroborated_before_the_target_s_points_can_have_landed() -> None:
    runs = {
        ("job", "TriggeredRules", "Sum"): at((66, 1.0))
    }  # due 6 min ago: the function's 5-minute point may not be in yet
    (f,) = missed(job_inputs(runs, last_seen={("job-fn", "Invocations", "Sum"): NOW - 66 * M}))
    assert f.severity == WARNING


# -- a scheduled run whose function failed --------------------------------------------------------


def ran_at(minutes_ago: int, errors: float, invocations: float, **more: float) -> dict[tuple[str, str, str], Series]:
    b = bucket(minutes_ago)
    out = {
        ("job", "TriggeredRules", "Sum"): at((minutes_ago, 1.0)),
        ("job-fn", "Errors", "Sum"): at((b, errors), period=300),
        ("job-fn", "Invocations", "Sum"): at((b, invocations), period=300),
    }
    for metric, v in more.items():
        out[("job-fn", metric, "Sum")] = at((b, v), period=300)
    return out


@pytest.mark.parametrize(
    ("label", "series", "expected"),
    [
        ("every attempt errored (three: the default two retries)", ran_at(12, 3, 3), {("target-failed", CRITICAL)}),
        ("one attempt errored and its retry succeeded: the job ran", ran_at(12, 1, 2), set()),
        ("one error, retries not in yet: not decided", ran_at(6, 1, 1), set()),
        (
            "one error, all attempts had time to land (MaximumRetryAttempts 0)",
            ran_at(40, 1, 1),
            {("target-failed", CRITICAL)},
        ),
        ("the event was dropped", ran_at(12, 3, 3, AsyncEventsDropped=1), {("target-failed", CRITICAL)}),
        ("throttled, never invoked", ran_at(40, 0, 0, Throttles=4), {("target-throttled", WARNING)}),
        ("ran fine", ran_at(12, 0, 1), set()),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_scheduled_run_outcomes(
    label: str, series: dict[tuple[str, str, str], Series], expected: set[tuple[str, str]]
) -> None:
    findings, _ = results(async_jobs, job_inputs(series))
    assert keys(findings) == expected


def test_a_failed_run_names_the_run_and_is_not_reported_twice_as_dropped_events() -> None:
    (f,), _ = results(async_jobs, job_inputs(ran_at(12, 3, 3, AsyncEventsDropped=1)))
    assert f.resource_id.startswith("schedule/") and "the run at" in f.title and "job-fn dropped the event" in f.title
    assert f.evidence["run"]["attempts"] == 3 and "FailedInvocations stays at zero" in f.cause


def test_a_shared_target_is_judged_by_its_drops_only() -> None:
    shared = res("api", "api", {"functions": ["job-fn"]})
    assert results(async_jobs, job_inputs(ran_at(12, 3, 3), extra=[shared]))[0] == []
    (f,), _ = results(async_jobs, job_inputs(ran_at(12, 3, 3, AsyncEventsDropped=1), extra=[shared]))
    assert f.key == "target-failed"


# -- the rule's DLQ, Lambda's async queue, streams -----------------------------------------------


@pytest.mark.parametrize(
    ("label", "series", "expected"),
    [
        ("sent to the rule's DLQ", {("job", "InvocationsSentToDlq", "Sum"): at((10, 1.0))}, {("dlq", CRITICAL)}),
        (
            "not even the DLQ took it",
            {("job", "InvocationsFailedToBeSentToDlq", "Sum"): at((10, 1.0))},
            {("dlq-lost", CRITICAL)},
        ),
        (
            "two async events dropped",
            {("job-fn", "AsyncEventsDropped", "Sum"): at((5, 2.0), period=300)},
            {("async-dropped", WARNING)},
        ),
        (
            "forty dropped",
            {("job-fn", "AsyncEventsDropped", "Sum"): at((5, 40.0), period=300)},
            {("async-dropped", CRITICAL)},
        ),
        (
            "the DLQ refused failed events",
            {("job-fn", "DeadLetterErrors", "Sum"): at((5, 3.0), period=300)},
            {("async-lost", WARNING)},
        ),
        (
            "event age rising past 10 min",
            {("job-fn", "AsyncEventAge", "Maximum"): ramp(60_000, 1_500_000, 30, every=5)},
            {("async-age", WARNING)},
        ),
        (
            "event age 20 min but falling: draining",
            {("job-fn", "AsyncEventAge", "Maximum"): ramp(2_400_000, 1_200_000, 30, every=5)},
            set(),
        ),
        (
            "event age at 4 h",
            {("job-fn", "AsyncEventAge", "Maximum"): flat(4 * 3600_000, 30, every=5)},
            {("async-age", CRITICAL)},
        ),
        ("a second of event age: quiet", {("job-fn", "AsyncEventAge", "Maximum"): flat(1000, 30, every=5)}, set()),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_dlq_and_async_queue_cases(
    label: str, series: dict[tuple[str, str, str], Series], expected: set[tuple[str, str]]
) -> None:
    findings, _ = results(async_jobs, job_inputs(series))
    assert keys(findings) == expected


STREAM = {"event_sources": [{"source_arn": "arn:aws:kinesis:us-east-1:111111111111:stream/clicks", "state": "Enabled"}]}


@pytest.mark.parametrize(
    ("label", "fn", "age", "expected"),
    [
        (
            "stream consumer falling behind",
            STREAM,
            join(shift(flat(2000, 15, every=5), 15), ramp(2000, 900_000, 15, every=5)),
            {("iterator-age", WARNING)},
        ),
        (
            "13 h behind: records near the 24 h retention",
            STREAM,
            flat(13 * 3600_000, 30, every=5),
            {("iterator-age", CRITICAL)},
        ),
        ("keeping up", STREAM, flat(800, 30, every=5), set()),
        (
            "an SQS consumer has no iterator",
            {"event_sources": [{"source_arn": "arn:aws:sqs:us-east-1:111111111111:q"}]},
            flat(13 * 3600_000, 30, every=5),
            set(),
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_iterator_age_cases(label: str, fn: dict[str, Any], age: Series, expected: set[tuple[str, str]]) -> None:
    inp = job_inputs({("job-fn", "IteratorAge", "Maximum"): age}, fn=fn)
    findings, _ = results(async_jobs, inp)
    assert keys(findings) == expected
    if expected:
        assert "clicks" in findings[0].title and findings[0].evidence["units"]["iterator_age_ms"] == "ms"


# -- the emulator plays it as AWS does --------------------------------------------------------------


def test_the_emulator_retries_a_failing_scheduled_function_twice_then_drops_the_event(tmp_path: Any) -> None:
    """EventBridge hands report-every-15m's runs to report-fn asynchronously: with report-fn
    failing, each run is three attempts (at +0, +1 and +3 minutes) and one AsyncEventsDropped, and
    the rule's FailedInvocations stays empty — the case FailedInvocations alone cannot see."""
    import numpy as np

    from fleetwatch.clock import FakeClock
    from simulator.fleet import load_fleet
    from simulator.metrics import series_for
    from simulator.model import FleetModel
    from simulator.scenario import load_scenario

    path = tmp_path / "erroring.toml"
    path.write_text(
        'fleet = "shop"\n[[lookalikes]]\nid = "report-fn-erroring"\nresource = "lambda:report-fn"\n'
        'start = "-2h"\nend = "+1h"\neffects = [{ target = "lambda:report-fn", '
        'driver = "error_rate", op = "set", value = 1.0 }]\n'
    )
    fleet = load_fleet("shop")
    anchor = 1_800_000_000 // 3600 * 3600
    model = FleetModel(fleet, load_scenario(str(path), fleet), anchor, FakeClock(anchor))
    m = np.arange(anchor // 60 - 60, anchor // 60)
    rule, fn = fleet.get("schedule:report-every-15m"), fleet.get("lambda:report-fn")
    runs, d = model.drivers(rule, m)["runs"], model.drivers(fn, m)
    assert runs.sum() == 4 and not model.drivers(rule, m)["failed_share"].any()
    assert d["invocations"].sum() == pytest.approx(3 * 4, abs=1) and d["async_dropped"].sum() == pytest.approx(4, abs=1)
    first = int(np.flatnonzero(runs)[0])
    assert d["async_dropped"][first + 3] == 1.0 and d["async_age_ms"][first + 3] == 180_000.0
    assert {s.name for s in series_for(fn)} >= {"AsyncEventsReceived", "AsyncEventsDropped", "AsyncEventAge"}


def test_discovery_marks_schedule_targets_async_and_stream_consumers() -> None:
    # Only these functions get the async / IteratorAge catalog entries (their only_if facts).
    from collector.catalog import CATALOG
    from collector.discovery import _STREAM_ARN, Found, _mark_async_targets

    found = [
        Found("schedule", "job", facts={"target_functions": ["job-fn"]}),
        Found("lambda", "job-fn", facts={}),
        Found("lambda", "api-fn", facts={}),
    ]
    _mark_async_targets(found)
    assert [f.facts.get("async_invoked") for f in found[1:]] == [True, None]
    assert _STREAM_ARN.match("arn:aws:dynamodb:us-east-1:111111111111:table/t/stream/2026-01-01T00:00:00.000")
    assert not _STREAM_ARN.match("arn:aws:sqs:us-east-1:111111111111:q")
    specs = {s.metric: s for s in CATALOG["lambda"]}
    assert specs["AsyncEventsDropped"].applies({"async_invoked": True}) and not specs["AsyncEventsDropped"].applies({})
    assert specs["IteratorAge"].applies({"stream_consumer": True}) and not specs["IteratorAge"].applies(
        {"async_invoked": True}
    )
