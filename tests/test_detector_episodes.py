"""Table tests for findings that must last as long as their episode (issue 16): cold-start
spikes against a baseline from before their onset, queue leaks over the long window, bursts that
drain, and causes named by what the fleet says (SES, account concurrency, database callers)."""

from __future__ import annotations

from typing import Any

import pytest

from collector.probes import still_cold
from detectors.base import CRITICAL, WARNING, Finding, Inputs, Resource, Series
from detectors.coldstarts import coldstarts
from tests.test_detectors import NOW, M, flat, inputs, join, ramp, res, results, shift

# -- cold starts --------------------------------------------------------------------------------


def minutes(values: dict[int, float], start: int, end: int, default: float) -> Series:
    """One point a minute for minutes start..end-1 relative to NOW (negative = before)."""
    return Series(tuple((NOW + m * M, float(values.get(m, default))) for m in range(start, end)))


def until(s: Series, t: int) -> Series:
    return Series(tuple(p for p in s.points if p[0] <= t), s.period)


def cold_at(now: int, cold: Series, sampled: Series, facts: dict[str, Any] | None = None, held: dict[str, Any] | None = None,
            **extra: Series) -> Inputs:
    fn = res("lambda", "fn", facts or {})
    series = {(fn.id, "ColdStarts", "Sum"): until(cold, now), (fn.id, "SampledInvocations", "Sum"): until(sampled, now)}
    resources = [fn]
    if "api_latency" in extra:
        api = res("api", "api", {"functions": ["fn"]})
        resources.append(api)
        series[(api.id, "Latency", "p95")] = until(extra.pop("api_latency"), now)
    stats = {"ConcurrentExecutions": "Maximum", "Duration": "p99"}
    series.update({(fn.id, m, stats.get(m, "Sum")): until(s, now) for m, s in extra.items()})
    return Inputs(now, resources, series, held=held or {})


def test_a_deploy_blip_of_five_cold_starts_then_normal_is_not_a_finding() -> None:
    cold = minutes({-4: 5}, -60, 0, 0)  # five environments started cold right after the deploy
    sampled = minutes({}, -60, 0, 20)
    for now in range(NOW - 4 * M, NOW + 1, M):
        findings, _ = results(coldstarts, cold_at(now, cold, sampled, {"deployed_at": NOW - 5 * M}))
        assert findings == [], (now - NOW) // M


def test_a_deploy_blip_over_two_minutes_is_not_a_finding_either() -> None:
    cold = minutes({-4: 4, -3: 3}, -60, 0, 0)
    sampled = minutes({}, -60, 0, 20)
    findings, _ = results(coldstarts, cold_at(NOW - M, cold, sampled, {"deployed_at": NOW - 5 * M}))
    assert findings == []


def test_a_spike_of_40_percent_for_30_minutes_is_a_finding_on_every_pass_while_it_lasts() -> None:
    # An hour at 1 cold in 100 a minute, then 40 % for 30 minutes, then normal again.
    cold = minutes({m: 40 for m in range(-30, 0)}, -75, 15, 1)
    sampled = minutes({}, -75, 15, 100)
    found = {}
    for m in range(-30, 15):
        findings, _ = results(coldstarts, cold_at(NOW + m * M, cold, sampled))
        found[m] = findings
    spike = [m for m in range(-30, 0) if found[m]]
    assert spike == list(range(-28, 0))  # from its third elevated minute to the end
    for m in spike:
        (f,) = found[m]
        assert f.severity == (CRITICAL if m >= -27 else WARNING) and f.started_at == NOW - 30 * M
        assert "(usually 1.0%)" in f.title  # never learns from the spike itself
        assert m < -25 or "40% of sampled invocations started cold" in f.title
        assert f.evidence["baseline"] == pytest.approx(0.01) and f.evidence["baseline_since"] == NOW - 30 * M
    assert not any(found[m] for m in range(5, 15))  # over within the 5-minute window after it ended


def test_a_share_that_doubles_while_the_api_slows_is_a_finding_and_without_the_slowdown_is_not() -> None:
    cold = minutes({m: 6 for m in range(-10, 0)}, -60, 0, 3)  # 3 % usually, 6 % for ten minutes
    sampled = minutes({}, -60, 0, 100)
    slow = minutes({m: 400 for m in range(-10, 0)}, -60, 0, 180)
    findings, _ = results(coldstarts, cold_at(NOW - M, cold, sampled, api_latency=slow))
    assert [(f.key, f.severity) for f in findings] == [("spike", WARNING)]
    assert "api p95 latency 180 → 400 ms" in findings[0].title
    findings, _ = results(coldstarts, cold_at(NOW - M, cold, sampled, api_latency=minutes({}, -60, 0, 180)))
    assert findings == []


def test_an_episode_longer_than_the_window_holds_the_baseline_of_its_open_alert() -> None:
    cold = minutes({}, -75, 0, 40)  # 40 % for as long as anything was read
    sampled = minutes({}, -75, 0, 100)
    findings, _ = results(coldstarts, cold_at(NOW - M, cold, sampled))
    assert findings == []  # nothing from before it: maybe this function is always this cold
    fn = res("lambda", "fn").id
    held = {f"coldstarts:{fn}:spike": {"baseline": 0.004, "since": NOW - 90 * M}}
    (finding,), _ = results(coldstarts, cold_at(NOW - M, cold, sampled, held=held))
    assert "(usually 0.4%)" in finding.title


def test_the_first_requests_after_an_idle_gap_are_held_against_the_floor_however_long_they_last() -> None:
    cold = minutes({}, -20, 0, 35)
    sampled = minutes({}, -20, 0, 100)
    invocations = minutes({}, -20, 0, 900)  # nothing before: an idle function publishes nothing
    for now in (NOW - 15 * M, NOW - M):
        (finding,), _ = results(coldstarts, cold_at(now, cold, sampled, Invocations=invocations))
        assert finding.cause.startswith("idle gap") and "(idle before; floor 1.0%)" in finding.title


@pytest.mark.parametrize(("label", "cold", "sampled", "expected"), [
    ("40 % in the last minutes", [(NOW - 2 * M, 8.0), (NOW - M, 8.0)], [(NOW - 2 * M, 20.0), (NOW - M, 20.0)], True),
    ("usual 0.3 %", [(NOW - 2 * M, 1.0)], [(NOW - m * M, 30.0) for m in range(1, 11)], False),
    ("two cold of twenty: too few to keep reading", [(NOW - M, 2.0)], [(NOW - M, 20.0)], False),
    ("elevated, but more than ten minutes ago", [(NOW - 12 * M, 8.0)], [(NOW - 12 * M, 20.0)], False),
])
def test_traces_go_on_being_read_while_cold_starts_stay_elevated(label: str, cold: list[tuple[int, float]],
                                                                 sampled: list[tuple[int, float]], expected: bool) -> None:
    assert still_cold(cold, sampled, NOW) is expected
