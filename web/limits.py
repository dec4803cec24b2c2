"""How close each known limit is to full (the overview's "Close to a limit"): account
concurrency, SES quota and reputation, database and pool connections, queue age against
retention, each against the last hour of its series."""

from __future__ import annotations

import sqlite3
from typing import Any

from detectors.limits import REPUTATION_ABSENT
from fleetwatch.store.dialect import dialect_of

__all__ = ["CLOSE", "headroom", "near_limits", "overview_limits"]


def _windows(
    conn: sqlite3.Connection,
    kinds: tuple[str, ...],
    metric: str,
    stat: str,
    since: int,
    only: list[str] | None = None,
    peaks: bool = False,
) -> dict[str, tuple[float, float, float]]:
    """(peak, first, latest) of a metric per resource of `kinds` (of those in `only`, if given)
    since `since`; with `peaks`, the peak alone, as (peak, peak, peak).

    Each series is read through the samples' (series_id, ts) key: its peak, and its first and
    latest sample, by three small subqueries, so the cost grows with the number of series and
    not with the samples in the window. A resource with several such series (none today) gets
    the peak of all, the first sample of all and the latest of all; on equal times the series
    stored first wins."""
    window = "FROM samples WHERE series_id = s.id AND ts >= ?"
    edges = (
        ""
        if peaks
        else f", (SELECT ts {window} ORDER BY ts LIMIT 1), (SELECT value {window} ORDER BY ts LIMIT 1), "
        f"(SELECT ts {window} ORDER BY ts DESC LIMIT 1), (SELECT value {window} ORDER BY ts DESC LIMIT 1)"
    )
    among = f" AND s.resource_id IN ({','.join('?' * len(only))})" if only is not None else ""
    sql = (
        f"SELECT s.resource_id, (SELECT MAX(value) {window}){edges} "
        f"FROM series s JOIN resources r ON r.id = s.resource_id "
        f"WHERE r.kind IN ({','.join('?' * len(kinds))}) AND r.gone_at IS NULL AND s.metric = ? AND s.stat = ?{among} "
        f"ORDER BY s.id"
    )
    args = [since] * (1 if peaks else 5) + [*kinds, metric, stat, *(only or ())]
    seen: dict[str, tuple[float, int, float, int, float]] = {}  # peak, first ts, first, latest ts, latest
    for rid, peak, *ends in conn.execute(sql, args):
        if peak is None:  # no sample in the window
            continue
        peak = float(peak)
        if peaks:
            seen[rid] = (max(peak, seen[rid][0]) if rid in seen else peak, 0, peak, 0, peak)
            continue
        t0, v0, t1, v1 = int(ends[0]), float(ends[1]), int(ends[2]), float(ends[3])
        had = seen.get(rid)
        if had is not None:
            peak = max(peak, had[0])
            t0, v0 = (had[1], had[2]) if had[1] <= t0 else (t0, v0)
            t1, v1 = (had[3], had[4]) if had[3] >= t1 else (t1, v1)
        seen[rid] = (peak, t0, v0, t1, v1)
    if peaks:
        return {rid: (peak, peak, peak) for rid, (peak, *_) in seen.items()}
    return {rid: (peak, first, latest) for rid, (peak, _, first, _, latest) in seen.items()}


# How full a limit must be, now or at its peak of the last hour, to be shown on the overview.
CLOSE = 0.5
# The facts headroom() holds series against, and the kind of resource that has each.
HEADROOM_FACTS = {
    "concurrency_limit": "lambda_account",
    "max_24h_send": "ses",
    "sent_last_24h": "ses",
    "max_connections": "rds",
    "retention": "sqs",
}
# The series headroom() reads: (kinds, metric, stat) by name.
HEADROOM_SERIES = {
    "claimed": (("lambda_account",), "ClaimedAccountConcurrency", "Maximum"),
    "conns": (("rds",), "DatabaseConnections", "Maximum"),
    # A proxy reports its pool and the pool's ceiling as metrics (Sum per minute), not as facts.
    "pooled": (("rds_proxy",), "DatabaseConnections", "Sum"),
    "age": (("sqs",), "ApproximateAgeOfOldestMessage", "Maximum"),
    "bounce": (("ses",), "Reputation.BounceRate", "Maximum"),
    "complaint": (("ses",), "Reputation.ComplaintRate", "Maximum"),
}


def headroom(conn: sqlite3.Connection, now: int) -> list[dict[str, Any]]:
    """Every known limit: account concurrency, SES quota and reputation, database and pool
    connections, queue age against retention; each with its latest value, the last hour's peak
    and trend, in its own unit (None with a note where AWS publishes nothing), fullest first."""
    return _limits(conn, now, None)[0]


def near_limits(rows: list[dict[str, Any]], close: float = CLOSE) -> dict[str, Any]:
    """What the overview shows of headroom(): the limits at least `close` full now or at the
    hour's peak, and how many others were checked."""
    near = [h for h in rows if max(h["used"] or 0.0, h["peak_used"] or 0.0) >= close]
    return {"near": near, "checked": len(rows), "close": close}


def overview_limits(conn: sqlite3.Connection, now: int, close: float = CLOSE) -> dict[str, Any]:
    """near_limits(headroom(conn, now), close), reading the first and latest samples only of the
    limits whose hour's peak comes to `close` of them: the overview shows a few of some 200."""
    near, checked = _limits(conn, now, close)
    return near_limits(near, close) | {"checked": checked}


def _limits(conn: sqlite3.Connection, now: int, close: float | None) -> tuple[list[dict[str, Any]], int]:
    """headroom()'s rows, and how many limits were checked. With `close` (over 0), the rows
    include every limit at least `close` full at the hour's peak (which is never under the latest
    value), and maybe others: near_limits() tells which are."""
    since = now - 3600
    # The limits among the facts, taken out in SQL (numbers come back as numbers from either
    # backend), each only from the kind of resource that has it, rather than every row's whole
    # facts parsed here.
    d = dialect_of(conn)
    limits = ", ".join(
        f"CASE WHEN kind = '{kind}' THEN {d.json_value('facts', k)} END AS {k}" for k, kind in HEADROOM_FACTS.items()
    )
    rows = list(  # rows as the connection gives them: read by column name, never changed
        conn.execute(
            f"SELECT id, kind, name, account, region, {limits} FROM resources WHERE gone_at IS NULL "
            "AND kind IN ('lambda_account', 'ses', 'rds', 'rds_proxy', 'sqs') ORDER BY id"
        )
    )
    skim = close is not None and close > 0
    seen = {name: _windows(conn, *spec, since, peaks=skim) for name, spec in HEADROOM_SERIES.items()}
    ceiling = _windows(conn, ("rds_proxy",), "MaxDatabaseConnectionsAllowed", "Sum", since)
    # (resource, limit, unit, series name or the window itself, the limit's value, note)
    found: list[tuple[Any, str, str, Any, float, str]] = []

    def add(r: Any, limit: str, unit: str, series: Any, of: Any, absent: str = "") -> None:
        if of and isinstance(of, (int, float)):
            found.append((r, limit, unit, series, float(of), absent))

    for r in rows:
        if r["kind"] == "lambda_account":
            add(r, "account concurrency", "count", "claimed", r["concurrency_limit"])
        elif r["kind"] == "ses":
            sent = r["sent_last_24h"]
            add(
                r,
                "24-hour send quota",
                "count",
                (sent, sent, sent) if isinstance(sent, (int, float)) else None,
                r["max_24h_send"],
            )
            add(r, "bounce rate (review at 5%)", "ratio", "bounce", 0.05, REPUTATION_ABSENT["Reputation.BounceRate"])
            add(
                r,
                "complaint rate (review at 0.1%)",
                "ratio",
                "complaint",
                0.001,
                REPUTATION_ABSENT["Reputation.ComplaintRate"],
            )
        elif r["kind"] == "rds":
            add(r, "database connections", "count", "conns", r["max_connections"])
        elif r["kind"] == "rds_proxy":
            top = ceiling.get(r["id"])
            add(r, "pooled connections", "count", "pooled", top[2] if top else None)
        elif r["kind"] == "sqs":
            add(r, "oldest message against retention", "s", "age", r["retention"])

    def window(series: Any, rid: str) -> tuple[float, float, float] | None:
        return seen[series].get(rid) if isinstance(series, str) else series

    checked = len(found)
    if close is not None and skim:
        # Only a limit with a peak of at least `close` of it can be near (with a positive limit:
        # a negative one keeps its whole window too); of those the whole window is read.
        found = [f for f in found if f[4] < 0 or ((w := window(f[3], f[0]["id"])) is not None and w[0] / f[4] >= close)]
        for name, spec in HEADROOM_SERIES.items():
            ids = sorted({f[0]["id"] for f in found if f[3] == name})
            seen[name] = {}
            for i in range(0, len(ids), 500):
                seen[name].update(_windows(conn, *spec, since, only=ids[i : i + 500]))
    out = [
        _limit_row(r, limit, unit, window(series, r["id"]), of, absent) for r, limit, unit, series, of, absent in found
    ]
    return sorted(out, key=lambda h: -max(h["used"] or -1.0, h["peak_used"] or -1.0)), checked


def _limit_row(
    r: Any, limit: str, unit: str, seen: tuple[float, float, float] | None, of: float, absent: str
) -> dict[str, Any]:
    row = {
        "resource": r["id"],
        "kind": r["kind"],
        "name": r["name"],
        "account": r["account"],
        "region": r["region"],
        "limit": limit,
        "unit": unit,
        "of": of,
        "value": None,
        "peak": None,
        "used": None,
        "peak_used": None,
        "trend": "",
        "note": absent,
    }
    if seen is not None:
        peak, first, latest = seen
        trend = (
            "rising"
            if latest > first * 1.1 + of * 0.01
            else "falling"
            if latest < first * 0.9 - of * 0.01
            else "steady"
        )
        row.update(value=latest, peak=peak, used=latest / of, peak_used=peak / of, trend=trend, note="")
    return row
