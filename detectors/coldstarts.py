"""Cold-start spikes (SIGNALS.md §1): the share of sampled invocations that started cold, and
their init duration, against the function's own baseline, with a floor so a handful cannot page;
the cause named (idle gap, deploy, burst, provisioned-concurrency spillover) and init near the
10 s limit called out.

Counts come from X-Ray's *sampled* traces (fleetwatch/XRay series: a trace whose function
segment has an `Initialization` subsegment is a cold start — AWS X-Ray "Lambda" service docs,
services-xray.md), fetched while a cheaper signal asks for them and for as long as the share
stays elevated (collector.probes.still_cold), so they are estimates; the share is what matters.

An episode is the newest run of minutes whose rolling 5-minute share is above the threshold; its
baseline is taken from before the episode's onset (the same clock hour of the week in earlier
weeks when there is one), never from the episode itself, so a spike stays a finding for as long
as it lasts. A deploy's normal blip — each environment starting cold once, in a minute or two —
is not an episode: the share must be elevated in at least MIN_MINUTES separate minutes."""

from __future__ import annotations

import inspect
import statistics
from collections.abc import Iterator
from typing import Any

from detectors.base import CRITICAL, WARNING, Finding, Inputs, Resource, Series, count_text, detector, evidence, pct

# The (metric, statistic) series this detector reads; the pass loads only declared series.
# `Duration` p99 (AWS/Lambda, FunctionName; percentiles supported — Lambda "Types of metrics"
# docs) and API Gateway `Latency` p95 (AWS/ApiGateway, ApiName/Stage — "API Gateway metrics"
# docs) corroborate a smaller rise: cold starts users can feel.
READS = {
    ("ColdStarts", "Sum"),
    ("SampledInvocations", "Sum"),
    ("InitDuration", "Maximum"),
    ("ConcurrentExecutions", "Maximum"),
    ("ProvisionedConcurrencySpilloverInvocations", "Sum"),
    ("Invocations", "Sum"),
    ("Duration", "p99"),
    ("Latency", "p95"),
}

# Held against the same hour of the week in earlier weeks (a Monday-morning wake-up is normal
# for Monday morning), else against the samples before the episode's onset, never below the floor.
WEEKLY = {("ColdStarts", "Sum"), ("SampledInvocations", "Sum")}
MIN_BASELINE_SAMPLED = 50

RECENT = 5 * 60
FLOOR_SHARE = 0.01
RISE = 3.0  # × the baseline share, on cold starts alone
RISE_FELT = 2.0  # × the baseline share, when the API's or the function's tail latency rose with it
LATENCY_RISE = 1.5
START = 0.6  # × the share now: where the search for the episode's onset begins
MIN_COLD = 5  # sampled cold starts in 5 minutes
MIN_SAMPLED = 20  # sampled invocations in 5 minutes
MIN_MINUTES = 3  # separate minutes with an elevated share: a deploy's one-minute blip is not a spike
INIT_LIMIT_MS = 10_000
INIT_NEAR_MS = 8_000
XRAY = "fleetwatch/XRay"
IDLE = 1800  # no invocation for this long: environments are likely reclaimed
IDLE_SEEN = 40 * 60  # how far back per-function series reach (see fleetwatch.agent.detection)
IDLE_UNSEEN = 10 * 60  # nothing before the onset in what is loaded, this long or more: idle
# How far back from `now` a function's evaluation looks (incremental pass).
HORIZONS = frozenset({RECENT, 2 * RECENT, IDLE_SEEN})

Minutes = list[tuple[int, float, float]]  # (minute, cold, sampled), ascending, sampled > 0


@detector("coldstarts")
def coldstarts(inp: Inputs) -> Iterator[Finding]:
    for fn in inp.due("lambda"):
        cold = inp.get(fn.id, "ColdStarts", "Sum")
        sampled = inp.get(fn.id, "SampledInvocations", "Sum")
        if not sampled:
            continue  # no traces read: nothing asked for them, which is the quiet case
        found = _episode(inp, fn, cold, sampled)
        if found is not None:
            yield found


def _minutes(cold: Series, sampled: Series) -> Minutes:
    c = dict(cold.points)
    return [(t, c.get(t, 0.0), n) for t, n in sampled.points if n > 0]


def _rolling(minutes: Minutes, end: int) -> tuple[float, float]:
    """(cold, sampled) over the 5 minutes ending at `end` (inclusive)."""
    c = n = 0.0
    for t, k, s in minutes:
        if end - RECENT < t <= end:
            c, n = c + k, n + s
    return c, n


def _onset(minutes: Minutes, threshold: float) -> int | None:
    """When the newest episode began: the first elevated minute of the newest unbroken run of
    minutes whose rolling share is at or above `threshold` (None if the newest is not)."""
    start = None
    for t, _, _ in reversed(minutes):
        c, n = _rolling(minutes, t)
        if not n or c / n < threshold:
            break
        start = t
    if start is None:
        return None
    elevated = [t for t, k, s in minutes if start - RECENT < t and k / s >= threshold]
    return elevated[0] if elevated else start


def _baseline(inp: Inputs, fn: Resource, minutes: Minutes, onset: int | None) -> tuple[float, str] | None:
    """The usual share and how it was learnt, or None when it cannot be told (every minute read
    is in the episode and the function was busy before it: maybe it is always this cold)."""
    week_n = inp.same_hour(fn.id, "SampledInvocations", "Sum")
    if week_n >= MIN_BASELINE_SAMPLED:
        return inp.same_hour(fn.id, "ColdStarts", "Sum") / week_n, "this hour of the week usually"
    held = _held_baseline(inp, fn)
    if held is not None:
        return held, "usually"
    before = [(k, s) for t, k, s in minutes if onset is None or t < onset]
    n = sum(s for _, s in before)
    if n >= MIN_BASELINE_SAMPLED:
        # The median minute, not the pooled share: traces are read mostly while something looks
        # wrong, so the minutes read before an episode are often an earlier episode's (the tour's
        # burst came an hour after an idle spike of 35 % on the same function, and was held
        # against it). A usual minute is what most minutes read.
        return statistics.median(k / s for k, s in before if s > 0), "usually"
    if onset is not None and _was_idle(inp, fn, onset):
        return FLOOR_SHARE, "idle before; floor"
    if n == 0 and onset is not None and sum(s for _, _, s in minutes) >= MIN_BASELINE_SAMPLED:
        # Nothing read from before the episode, and the function was not idle: what was read
        # may be its normal. Held against itself (the quiet answer) rather than the floor.
        return None
    return FLOOR_SHARE, "no baseline yet; floor"


def _held_baseline(inp: Inputs, fn: Resource) -> float | None:
    """The baseline this function's open spike alert was decided with (Inputs.held, by
    fingerprint): "usually" stays what it was before the episode, however long it lasts."""
    held = getattr(inp, "held", None) or {}
    value = held.get(f"coldstarts:{fn.id}:spike")
    value = value.get("baseline") if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _was_idle(inp: Inputs, fn: Resource, onset: int) -> bool:
    """No invocation in the minutes read before the onset (an idle function publishes no
    Invocations datapoints at all)."""
    invocations = inp.get(fn.id, "Invocations", "Sum")
    if not invocations:
        return False
    earlier = [t for t, v in invocations.before(onset - 60).points if v > 0]
    return not earlier or onset - earlier[-1] >= IDLE


def _felt(inp: Inputs, fn: Resource, onset: int) -> str:
    """Why users feel it: an API in front of the function, or the function's own p99, whose
    latency since the onset is LATENCY_RISE × what it was before ('' if neither)."""
    for api in inp.of_kind("api"):
        if fn.name in (api.facts.get("functions") or []) and api.account == fn.account and api.region == fn.region:
            rise = _rise(inp.get(api.id, "Latency", "p95"), onset, inp.now - RECENT)
            if rise:
                return f"{api.name} p95 latency {rise[0]:.0f} → {rise[1]:.0f} ms"
    # Duration is a 5-minute (slow-tier) series: its newest two points.
    rise = _rise(inp.get(fn.id, "Duration", "p99"), onset, inp.now - 2 * RECENT)
    return f"p99 duration {rise[0]:.0f} → {rise[1]:.0f} ms" if rise else ""


def _rise(series: Series, onset: int, recent: int) -> tuple[float, float] | None:
    """(before the onset, now) when the latency now is LATENCY_RISE × what it was before."""
    before, during = series.before(onset).median(), series.since(max(onset, recent)).median()
    if before and during is not None and during >= LATENCY_RISE * before:
        return before, during
    return None


def _episode(inp: Inputs, fn: Resource, cold: Series, sampled: Series) -> Finding | None:
    minutes = _minutes(cold, sampled)
    since = inp.now - RECENT
    n_cold, n = cold.since(since).sum(), sampled.since(since).sum()
    if n_cold < MIN_COLD or n < MIN_SAMPLED:
        return None
    # The onset depends on the threshold and the baseline on the onset: start a little under the
    # share now (where a step up begins) and settle in a few rounds.
    share = n_cold / n
    threshold, onset, felt = max(FLOOR_SHARE, START * share), None, ""
    base: tuple[float, str] | None = None
    for _ in range(4):
        onset = _onset(minutes, threshold)
        if onset is None:
            return None
        base = _baseline(inp, fn, minutes, onset)
        if base is None:
            return None
        felt = _felt(inp, fn, onset)
        new = max(FLOOR_SHARE, (RISE_FELT if felt else RISE) * base[0])
        if new == threshold:
            break
        threshold = new
    onset = _onset(minutes, threshold)
    if onset is None or base is None:
        return None
    # A spike, not a blip: elevated in MIN_MINUTES separate minutes spread over at least as many
    # (a deploy starts each environment cold once, within a minute or two), and still in two of
    # the last five.
    elevated = [t for t, k, s in minutes if t >= onset and k > 0 and k / s >= threshold]
    if (
        share < threshold
        or len(elevated) < MIN_MINUTES
        or elevated[-1] - elevated[0] < (MIN_MINUTES - 1) * 60
        or sum(1 for t in elevated if t > since - 60) < 2
    ):
        return None
    baseline, usual = base
    init = inp.get(fn.id, "InitDuration", "Maximum")
    worst = init.since(since).max() or 0.0
    cause = _cause(inp, fn, onset)
    near = worst >= INIT_NEAR_MS
    lasted = (inp.now - onset) // 60
    title = (
        f"{fn.name}: {pct(share)} of sampled invocations started cold in 5 min ({usual} {pct(baseline)}), "
        f"for {lasted} min"
        + (f", init up to {worst / 1000:.1f} s" if worst else "")
        + (f"; {felt}" if felt else "")
        + (f" — near the {INIT_LIMIT_MS // 1000} s init limit" if near else "")
    )
    share_series = Series(tuple((t, k / s) for t, k, s in minutes), sampled.period)
    ev = _evidence(baseline, onset, share_series, cold, sampled, init)
    return Finding(
        "coldstarts",
        fn.id,
        CRITICAL if near or share >= 0.25 else WARNING,
        title,
        onset,
        ev,
        cause=cause,
        fix=_fix(cause, near),
        key="spike",
    )


def _evidence(
    baseline: float, onset: int, share: Series, cold: Series, sampled: Series, init: Series
) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "baseline": baseline,
        "limit": INIT_LIMIT_MS,
        "cold_share": share,
        "cold_starts": cold,
        "sampled": sampled,
        "init_ms": init,
    }
    if "units" in inspect.signature(evidence).parameters:
        kw["units"] = {
            "cold_share": "ratio",
            "baseline": "ratio",
            "cold_starts": "count",
            "sampled": "count",
            "init_ms": "ms",
            "limit": "ms",
        }
    out = evidence(**kw)
    out["baseline_since"] = onset  # the baseline is from before this: held while the alert is open
    return out


def _cause(inp: Inputs, fn: Resource, started: int) -> str:
    deployed = int(fn.facts.get("deployed_at") or 0)
    if started - 1800 <= deployed <= started + 300:
        release = fn.facts.get("release") or {}
        if release.get("at") == deployed and release.get("text"):  # an alias moved (collector/probes.py), seen then
            return (
                f"deploy: {release['text']}, seen at {_hhmm(deployed)}; each environment of the new version starts cold"
            )
        return f"deploy: new code at {_hhmm(deployed)}; every environment starts cold"
    spill = inp.get(fn.id, "ProvisionedConcurrencySpilloverInvocations", "Sum").since(started - 600)
    if spill.sum() > 0:
        return f"provisioned concurrency spillover: {count_text(spill.sum())} invocations ran on on-demand environments"
    conc = inp.get(fn.id, "ConcurrentExecutions", "Maximum")
    before = conc.before(started - 120).since(started - 1800).median()
    peak = conc.since(started - 300).max()
    if before is not None and peak is not None and peak >= max(2 * before, before + 5):
        return (
            f"burst: concurrency rose from {count_text(before)} to {count_text(peak)}; each new environment starts cold"
        )
    invocations = inp.get(fn.id, "Invocations", "Sum")
    earlier = [t for t, v in invocations.before(started - 60).points if v > 0]
    idle_since = earlier[-1] if earlier else None
    # No invocation at all before the onset in the minutes loaded: idle for at least that long
    # (an idle function publishes no datapoints), which grows short as a long episode goes on.
    quiet = started - idle_since if idle_since is not None else started - (inp.now - IDLE_SEEN)
    if quiet >= (IDLE if idle_since is not None else IDLE_UNSEEN):
        gap = f"{quiet // 60} min" if idle_since is not None else f"at least {quiet // 60} min"
        return f"idle gap: no invocations for {gap}; its environments were reclaimed"
    return "cold starts above the function's usual share"


def _fix(cause: str, near_limit: bool) -> str:
    tips = {
        "deploy": "Shift traffic gradually (alias weights or CodeDeploy) and pre-warm, or use provisioned concurrency.",
        "provisioned": "Raise provisioned concurrency (or auto-scale it on ProvisionedConcurrencyUtilization).",
        "burst": "Use provisioned concurrency for the expected peak, or smooth the burst upstream (a queue).",
        "idle": "Keep a small provisioned concurrency, or trim imports so the first request after idle is fast.",
    }
    tip = next((t for k, t in tips.items() if cause.startswith(k)), "Trim init work: lazy imports, smaller packages.")
    if near_limit:
        tip = (
            "Init is close to Lambda's 10 s limit (beyond it the init is retried on invoke): move work out of init. "
            + tip
        )
    return tip


def _hhmm(t: int) -> str:
    import time

    return time.strftime("%H:%M UTC", time.gmtime(t))
