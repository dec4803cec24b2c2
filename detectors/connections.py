"""Connection exhaustion (SIGNALS.md §3): database connections against max_connections, RDS
Proxy connections against MaxDatabaseConnectionsAllowed, borrow latency and setup failures; a
forecast of when the limit is reached; the storm named when callers' Lambda concurrency rose in
the same minutes. A climb about to reach the limit (detectors.base.imminent) pages as the limit
itself does, before it gets there."""

from __future__ import annotations

from collections.abc import Iterator

from detectors.base import (
    CRITICAL,
    WARNING,
    Approach,
    Finding,
    Inputs,
    NoData,
    Resource,
    Series,
    count_text,
    detector,
    evidence,
    imminent,
    pct,
    reaching,
)

# The (metric, statistic) series this detector reads; the pass loads only declared series.
READS = {
    ("DatabaseConnections", "Maximum"),
    ("DatabaseConnections", "Sum"),
    ("MaxDatabaseConnectionsAllowed", "Sum"),
    ("DatabaseConnectionsSetupFailed", "Sum"),
    ("DatabaseConnectionsBorrowLatency", "Average"),
    ("ConcurrentExecutions", "Maximum"),
}

RECENT = 5 * 60
DB_WARN, DB_CRIT = 0.80, 0.90
PROXY_WARN, PROXY_CRIT = 0.70, 0.90  # AWS asks for 30% headroom above recent peak use
# "Rising to full" pages only when full is near: a database ramping to a busy but steady 60 %
# (a morning's traffic) projects "full in ~26 min" on its way up and then levels off.
FORECAST_FROM, FORECAST_HORIZON = 0.60, 15 * 60
SCALE_OUT = 2.0
# How far back from `now` a database's or proxy's evaluation looks (incremental pass; `imminent`'s
# three periods are added per series by the pass).
HORIZONS = frozenset({RECENT, 600, 900})


def _callers(inp: Inputs, db: Resource, since: int) -> list[tuple[Resource, float, float]]:
    """The database's callers whose concurrency rose at least twofold since `since`: (function,
    before, now), the biggest first. Callers are the functions whose environment names it or a
    proxy in front of it (`uses`); a database no function names falls back to the functions
    sharing its `service` tag in its account and region."""
    local = [fn for fn in inp.of_kind("lambda") if fn.account == db.account and fn.region == db.region]
    names = {f"{db.kind}:{db.name}"} | {
        f"rds_proxy:{p.name}"
        for p in inp.of_kind("rds_proxy")
        if db.kind == "rds"
        and db.name in (p.facts.get("targets") or [])
        and p.account == db.account
        and p.region == db.region
    }
    callers = [fn for fn in local if names & set(fn.facts.get("uses") or [])]
    if not callers:
        service = db.tags.get("service")
        callers = [fn for fn in local if not service or fn.tags.get("service") == service]
    out = []
    for fn in callers:
        conc = inp.get(fn.id, "ConcurrentExecutions", "Maximum")
        before = conc.before(since).since(since - 1800).median()
        now = conc.since(since).max()
        if before is not None and now is not None and now >= max(before * SCALE_OUT, before + 20):
            out.append((fn, before, now))
    return sorted(out, key=lambda x: -x[2])


def _storm(inp: Inputs, db: Resource, since: int) -> tuple[str, str]:
    """(cause, title suffix) naming the caller that scaled out, or ("", "") if none did."""
    callers = _callers(inp, db, since - RECENT)
    if not callers:
        return "", ""
    fn, before, now = callers[0]
    others = "".join(f"; {o.name} from {count_text(b)} to {count_text(n)}" for o, b, n in callers[1:3])
    return (
        f"{fn.name} scaled from {count_text(before)} to {count_text(now)} concurrent{others}, "
        "each instance opening its own connection",
        f" since {fn.name} scaled to {count_text(now)} concurrent",
    )


def _forecast(series: Series, limit: float, now: int) -> float | None:
    """Seconds until `limit` at the slope of the last 10 minutes, if rising steadily and still
    rising now (each of the last three minutes by at least 1 % of the limit): a database that
    climbed to a busy level and stays there keeps a rising 10-minute slope for minutes after it
    levelled off."""
    recent = series.since(now - 600)
    slope, r2 = recent.slope_per_minute()
    latest = recent.latest
    climb = recent.rising_to(limit)
    if latest is None or slope <= 0 or r2 < 0.5 or climb is None or climb.per_minute < 0.01 * limit:
        return None
    return max(limit - latest[1], 0.0) / slope * 60


def _rising(climb: Approach | None, share: float) -> str:
    return climb.told() if climb is not None and share < DB_CRIT else ""


STORM_FIX = (
    "Put RDS Proxy (or a pooler) between the functions and the database, cap the callers with reserved "
    "concurrency, or open connections outside the handler and reuse them."
)


@detector("connections")
def connections(inp: Inputs) -> Iterator[Finding | NoData]:
    for db in inp.due("rds"):
        limit = db.facts.get("max_connections")
        conns = inp.get(db.id, "DatabaseConnections", "Maximum")
        recent = conns.since(inp.now - RECENT)
        if not limit:
            yield NoData(db.id, "max_connections unknown (no parameter group value and no formula for this class)")
            continue
        if not recent:
            yield NoData(db.id, "no DatabaseConnections datapoints in 5 minutes")
            continue
        peak = recent.max() or 0.0
        share = peak / limit
        est = " (estimated)" if db.facts.get("max_connections_estimated") else ""
        eta = _forecast(conns, limit, inp.now)
        climb = imminent(conns, limit, inp.now)
        if share >= DB_WARN or climb is not None:
            since = min(conns.run_start(reaching(DB_WARN, of=limit)) or inp.now, climb.since if climb else inp.now)
            cause, suffix = _storm(inp, db, since)
            yield Finding(
                "connections",
                db.id,
                CRITICAL if share >= DB_CRIT or climb else WARNING,
                f"{db.name} at {pct(share)} of max_connections ({count_text(peak)} "
                f"of {count_text(limit)}{est}){_rising(climb, share)}{suffix}",
                since,
                evidence(limit=limit, connections=conns),
                cause=cause or "connections near the database's limit",
                fix=STORM_FIX,
                key="utilisation",
                limit=True,
                sustained=climb is not None,
            )
        elif share >= FORECAST_FROM and eta is not None and eta <= FORECAST_HORIZON:
            yield Finding(
                "connections",
                db.id,
                WARNING,
                f"{db.name} at {pct(share)} of max_connections and rising: full in ~{eta / 60:.0f} min",
                conns.since(inp.now - 600).points[0][0],
                evidence(limit=limit, connections=conns),
                cause=_storm(inp, db, inp.now - 600)[0] or "connections rising steadily",
                fix=STORM_FIX,
                key="forecast",
            )
    for proxy in inp.due("rds_proxy"):
        yield from _proxy(inp, proxy)


def _proxy(inp: Inputs, proxy: Resource) -> Iterator[Finding | NoData]:
    used = inp.get(proxy.id, "DatabaseConnections", "Sum")
    allowed = inp.get(proxy.id, "MaxDatabaseConnectionsAllowed", "Sum")
    recent, ceiling = used.since(inp.now - RECENT), allowed.since(inp.now - RECENT)
    if not recent or not ceiling:
        yield NoData(proxy.id, "no proxy connection datapoints in 5 minutes")
        return
    limit = ceiling.latest[1] if ceiling.latest else 0.0
    peak = recent.max() or 0.0
    climb = imminent(used, limit, inp.now)
    if limit and (peak / limit >= PROXY_WARN or climb is not None):
        since = min(used.run_start(lambda v: v / limit >= PROXY_WARN) or inp.now, climb.since if climb else inp.now)
        yield Finding(
            "connections",
            proxy.id,
            CRITICAL if peak / limit >= PROXY_CRIT or climb else WARNING,
            f"{proxy.name}: {peak:.0f} of {limit:.0f} pooled connections in use ({pct(peak / limit)}; AWS advises 30% "
            f"headroom){_rising(climb, peak / limit)}",
            since,
            evidence(limit=limit, connections=used),
            cause=_storm(inp, proxy, since)[0] or "the pool is nearly full",
            fix="Raise MaxConnectionsPercent (and the target's max_connections), or find what pins sessions.",
            key="pool",
            limit=True,
            sustained=climb is not None,
        )
    failed = inp.get(proxy.id, "DatabaseConnectionsSetupFailed", "Sum").since(inp.now - RECENT)
    if failed.sum() > 0:
        yield Finding(
            "connections",
            proxy.id,
            CRITICAL,
            f"{proxy.name}: {count_text(failed.sum())} database connection setups failed in 5 min",
            failed.points[0][0],
            evidence(failed=failed),
            cause="the database refused new connections",
            fix="Check the target's max_connections and credentials.",
            key="setup-failed",
            limit=True,
        )
    # Average: the statistic AWS names for it (rds-proxy.monitoring.html); no percentile is documented.
    borrow = inp.get(proxy.id, "DatabaseConnectionsBorrowLatency", "Average")
    base = borrow.before(inp.now - 900).median()
    latest = borrow.latest
    if base and latest and latest[0] >= inp.now - 900 and latest[1] > 3 * base and latest[1] > 1000:
        yield Finding(
            "connections",
            proxy.id,
            WARNING,
            f"{proxy.name}: average borrow latency {latest[1] / 1000:.1f} "
            f"ms, {latest[1] / base:.0f}× its usual {base / 1000:.2f} ms",
            borrow.run_start(lambda v: v > 3 * base) or latest[0],
            evidence(baseline=base, borrow_latency=borrow),
            cause="clients wait for pooled connections",
            fix="Raise the pool size or cut the time connections are held.",
            key="borrow-latency",
        )
