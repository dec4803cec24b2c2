"""Cold-start spikes (SIGNALS.md §1): the share of sampled invocations that started cold, and
their init duration, against the function's own baseline, with a floor so a handful cannot page;
the cause named (idle gap, deploy, burst, provisioned-concurrency spillover) and init near the
10 s limit called out.

Counts come from X-Ray's *sampled* traces (fleetwatch/XRay series, fetched only while a cheaper
signal asked for them), so they are estimates; the share is what matters."""

from __future__ import annotations

from collections.abc import Iterator

from detectors.base import CRITICAL, WARNING, Finding, Inputs, Resource, Series, detector, evidence, pct

# The (metric, statistic) series this detector reads; the pass loads only declared series.
READS = {("ColdStarts", "Sum"), ("SampledInvocations", "Sum"), ("InitDuration", "Maximum"), ("ConcurrentExecutions", "Maximum"),
         ("ProvisionedConcurrencySpilloverInvocations", "Sum"), ("Invocations", "Sum")}

# Held against the same hour of the week in earlier weeks (a Monday-morning wake-up is normal
# for Monday morning), else against the last 40 minutes, and never below the floor.
WEEKLY = {("ColdStarts", "Sum"), ("SampledInvocations", "Sum")}
MIN_BASELINE_SAMPLED = 50

RECENT = 5 * 60
FLOOR_SHARE = 0.01
MIN_COLD = 5  # sampled cold starts in 5 minutes
MIN_SAMPLED = 20  # sampled invocations in 5 minutes
INIT_LIMIT_MS = 10_000
INIT_NEAR_MS = 8_000
XRAY = "fleetwatch/XRay"
IDLE = 1800  # no invocation for this long: environments are likely reclaimed
IDLE_SEEN = 40 * 60  # how far back per-function series reach (see fleetwatch.detection)


@detector("coldstarts")
def coldstarts(inp: Inputs) -> Iterator[Finding]:
    for fn in inp.of_kind("lambda"):
        cold = inp.get(fn.id, "ColdStarts", "Sum")
        sampled = inp.get(fn.id, "SampledInvocations", "Sum")
        if not sampled:
            continue  # no traces read: nothing asked for them, which is the quiet case
        since = inp.now - RECENT
        n_cold, n = cold.since(since).sum(), sampled.since(since).sum()
        if n_cold < MIN_COLD or n < MIN_SAMPLED:
            continue
        share = n_cold / n
        baseline, usual = _baseline(inp, fn, cold.before(since), sampled.before(since))
        if share < max(FLOOR_SHARE, 3 * baseline):
            continue
        init = inp.get(fn.id, "InitDuration", "Maximum")
        worst = init.since(since).max() or 0.0
        started = _spike_start(cold, sampled, max(FLOOR_SHARE, 3 * baseline)) or since
        cause = _cause(inp, fn, started)
        near = worst >= INIT_NEAR_MS
        title = (f"{fn.name}: {pct(share)} of sampled invocations started cold in 5 min ({usual} {pct(baseline)}), "
                 f"init up to {worst / 1000:.1f} s" + (f" — near the {INIT_LIMIT_MS // 1000} s init limit" if near else ""))
        yield Finding("coldstarts", fn.id, CRITICAL if near or share >= 0.25 else WARNING, title, started,
                      evidence(baseline=baseline, limit=INIT_LIMIT_MS, cold_starts=cold, sampled=sampled, init_ms=init),
                      cause=cause, fix=_fix(cause, near), key="spike")


def _baseline(inp: Inputs, fn: Resource, cold: Series, sampled: Series) -> tuple[float, str]:
    week_n = inp.same_hour(fn.id, "SampledInvocations", "Sum")
    if week_n >= MIN_BASELINE_SAMPLED:
        return inp.same_hour(fn.id, "ColdStarts", "Sum") / week_n, "this hour of the week usually"
    if sampled.sum() >= MIN_BASELINE_SAMPLED:
        return cold.sum() / sampled.sum(), "usually"
    return FLOOR_SHARE, "no baseline yet; floor"


def _spike_start(cold: Series, sampled: Series, threshold: float) -> int | None:
    per_minute = dict(sampled.points)
    share = Series(tuple((t, v / per_minute[t]) for t, v in cold.points if per_minute.get(t)))
    return share.run_start(lambda v: v >= threshold)


def _cause(inp: Inputs, fn: Resource, started: int) -> str:
    deployed = int(fn.facts.get("deployed_at") or 0)
    if started - 1800 <= deployed <= started + 300:
        return f"deploy: new code at {_hhmm(deployed)}; every environment starts cold"
    spill = inp.get(fn.id, "ProvisionedConcurrencySpilloverInvocations", "Sum").since(started - 600)
    if spill.sum() > 0:
        return f"provisioned concurrency spillover: {spill.sum():.0f} invocations ran on on-demand environments"
    conc = inp.get(fn.id, "ConcurrentExecutions", "Maximum")
    before = conc.before(started - 120).since(started - 1800).median()
    peak = conc.since(started - 300).max()
    if before is not None and peak is not None and peak >= max(2 * before, before + 5):
        return f"burst: concurrency rose from {before:.0f} to {peak:.0f}; each new environment starts cold"
    invocations = inp.get(fn.id, "Invocations", "Sum")
    earlier = [t for t, v in invocations.before(started - 60).points if v > 0]
    seen_from = invocations.points[0][0] if invocations else started
    idle_since = earlier[-1] if earlier else None
    quiet = started - (idle_since if idle_since is not None else min(seen_from, inp.now - IDLE_SEEN))
    if quiet >= IDLE:
        gap = f"{quiet // 60} min" if idle_since is not None else f"at least {quiet // 60} min"
        return f"idle gap: no invocations for {gap}; its environments were reclaimed"
    return "cold starts above the function's usual share"


def _fix(cause: str, near_limit: bool) -> str:
    tips = {"deploy": "Shift traffic gradually (alias weights or CodeDeploy) and pre-warm, or use provisioned concurrency.",
            "provisioned": "Raise provisioned concurrency (or auto-scale it on ProvisionedConcurrencyUtilization).",
            "burst": "Use provisioned concurrency for the expected peak, or smooth the burst upstream (a queue).",
            "idle": "Keep a small provisioned concurrency, or trim imports so the first request after idle is fast."}
    tip = next((t for k, t in tips.items() if cause.startswith(k)), "Trim init work: lazy imports, smaller packages.")
    if near_limit:
        tip = "Init is close to Lambda's 10 s limit (beyond it the init is retried on invoke): move work out of init. " + tip
    return tip


def _hhmm(t: int) -> str:
    import time

    return time.strftime("%H:%M UTC", time.gmtime(t))
