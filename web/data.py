"""What the dashboard and the API show, read from the store over a read-only connection per
thread (WAL lets them read while the agent writes). Every function takes that connection and
the time, and returns plain dicts: the templates and the JSON API share them."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from collector.catalog import api_metric
from collector.pollreport import polling_cost
from fleetwatch.store.dialect import Dialect, dialect_of, is_url, json_loaded

# What the overview shows of the limits; headroom and near_limits are read from here too.
from web.limits import CLOSE as CLOSE
from web.limits import headroom as headroom
from web.limits import near_limits as near_limits
from web.limits import overview_limits
from web.unpublished import not_published

ENTRY_KINDS = ("api", "schedule", "ses", "sqs")
# Signals shown first for an entry point: what its users feel, with the unit of each (see
# web/charts.METRIC_UNITS). "{5xx}" is 5XXError for a REST API and 5xx for an HTTP API
# (collector.catalog.api_metric). A queue is an entry point when users wait on what it carries:
# one that is not a dead-letter queue.
ENTRY_SIGNALS = {
    "api": (("{5xx}", "Average", "5xx rate", "ratio"), ("Latency", "p95", "p95 latency", "ms")),
    "schedule": (("FailedInvocations", "Sum", "failed runs", "count"), ("TriggeredRules", "Sum", "runs", "count")),
    "ses": (("Bounce", "Sum", "bounced", "count"), ("Send", "Sum", "sent", "count")),
    "sqs": (
        ("ApproximateAgeOfOldestMessage", "Maximum", "oldest message", "s"),
        ("ApproximateNumberOfMessagesVisible", "Maximum", "waiting", "count"),
    ),
}
PAGE = 100


class Reader:
    """A read-only connection per thread: to the SQLite file, or for a PostgreSQL store (a
    postgresql:// URL) a read-only session answering the same `?` SQL (fleetwatch.store.pgdb)."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._local = threading.local()

    def conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if is_url(self.path):
                from fleetwatch.store.pgdb import PgDatabase, connect, explain

                try:
                    conn = PgDatabase(str(self.path), connect(str(self.path), read_only=True), read_only=True)
                except Exception as exc:  # noqa: BLE001 - psycopg's errors, said as the store says them
                    raise explain(str(self.path), exc) from exc
            else:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=5.0)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn


def _dialect(conn: Any) -> Dialect:
    return dialect_of(conn)


def _rows(conn: sqlite3.Connection, sql: str, args: Any = ()) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sql, args)]


def _loads(value: str | None, default: Any) -> Any:
    try:
        return json.loads(value) if value else default
    except ValueError:
        return default


# -- incidents ---------------------------------------------------------------------------------

INCIDENT_FILTERS = ("state", "severity", "service", "account", "detector")


def _incident(row: dict[str, Any]) -> dict[str, Any]:
    labels = _loads(row.get("labels"), {})
    return {
        "id": row["id"],
        "state": row["state"],
        "severity": row["severity"],
        "title": row["title"] or "",
        "symptom": row["symptom"] or "",
        "cause": row["cause"] or "",
        "fix": row["fix"] or "",
        "detector": labels.get("detector", ""),
        "service": labels.get("service", ""),
        "account": labels.get("account", ""),
        "resource": labels.get("resource", ""),
        "labels": labels,
        "started_at": row["started_at"],
        "firing_at": row["firing_at"],
        "updated_at": row["updated_at"],
        "resolved_at": row["resolved_at"],
        "acked_by": row["acked_by"],
        "acked_at": row["acked_at"],
        "absorbed_into": row["absorbed_into"],
    }


def incidents(
    conn: sqlite3.Connection, filters: dict[str, str] | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Open ones first, the worst first (critical, warning, info; firing before pending), newest
    first within that; then the ended ones, newest first. `state` is a stored state, or 'open'
    (not resolved, not absorbed)."""
    sql = "SELECT * FROM incidents WHERE 1=1"
    args: list[Any] = []
    for key, value in (filters or {}).items():
        if not value:
            continue
        if key == "state" and value == "open":
            sql += " AND resolved_at IS NULL AND state != 'absorbed'"
        elif key in ("state", "severity"):
            sql, args = sql + f" AND {key} = ?", [*args, value]
        elif key in ("service", "account", "detector"):
            sql, args = sql + f" AND {_dialect(conn).json_text('labels', key)} = ?", [*args, value]
    sql += (
        " ORDER BY (resolved_at IS NULL) DESC,"
        " CASE WHEN resolved_at IS NULL THEN CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END END,"
        " CASE WHEN resolved_at IS NULL THEN CASE state WHEN 'firing' "
        "THEN 0 WHEN 'recovering' THEN 1 WHEN 'pending' THEN 2"
        " ELSE 3 END END, id DESC LIMIT ?"
    )
    return [_incident(r) for r in _rows(conn, sql, [*args, limit])]


def incident_facets(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """The values each filter can take, from the incidents stored."""
    out: dict[str, list[str]] = {"state": ["open"], "severity": []}
    out["state"] += [r[0] for r in conn.execute("SELECT DISTINCT state FROM incidents ORDER BY state")]
    out["severity"] = [r[0] for r in conn.execute("SELECT DISTINCT severity FROM incidents ORDER BY severity")]
    for key in ("service", "account", "detector"):
        out[key] = [
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT v FROM (SELECT {_dialect(conn).json_text('labels', key)} AS v "
                "FROM incidents) l WHERE v IS NOT NULL AND v != '' ORDER BY v"
            )
        ]
    return out


def incident(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any] | None:
    rows = _rows(conn, "SELECT * FROM incidents WHERE id = ?", [incident_id])
    if not rows:
        return None
    inc = _incident(rows[0])
    inc["events"] = _rows(
        conn, "SELECT ts, event, detail FROM incident_events WHERE incident_id = ? ORDER BY id", [incident_id]
    )
    inc["notifications"] = _rows(
        conn, "SELECT target, kind, status, sent_at FROM notifications WHERE incident_id = ? ORDER BY id", [incident_id]
    )
    inc["failures"] = _rows(
        conn,
        "SELECT target, kind, attempts, error, failed_at FROM notification_failures WHERE incident_id = ? ORDER BY id",
        [incident_id],
    )
    members = _loads(rows[0]["members"], [])
    alerts = (
        _rows(
            conn,
            f"SELECT * FROM alerts WHERE fingerprint IN ({','.join('?' * len(members))}) ORDER BY fingerprint",
            members,
        )
        if members
        else []
    )
    # What users feel first, then the cause the title names, then the rest most severe first; the
    # statistical findings (unusual), which only back a rule up, last.
    lead = {rows[0].get("symptom_alert") or "": 0, rows[0].get("cause_alert") or "": 1}
    lead.pop("", None)
    alerts.sort(
        key=lambda a: (
            a["detector"] == "unusual",
            lead.get(a["fingerprint"], 2),
            {"critical": 0, "warning": 1, "info": 2}.get(a["severity"], 3),
            a["fingerprint"],
        )
    )
    inc["alerts"] = [
        {
            "fingerprint": a["fingerprint"],
            "detector": a["detector"],
            "resource": a["resource_id"],
            "state": a["state"],
            "severity": a["severity"],
            "title": a["title"] or "",
            "cause": a["cause"] or "",
            "evidence": _loads(a["evidence"], {}),
        }
        for a in alerts
    ]
    return inc


# -- findings ----------------------------------------------------------------------------------


def findings(conn: sqlite3.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """The findings of the latest detection pass that produced any, most severe first."""
    last = conn.execute("SELECT MAX(ts) FROM findings").fetchone()[0]
    if last is None:
        return []
    rows = _rows(
        conn,
        "SELECT ts, detector, resource_id, severity, title, evidence FROM findings WHERE ts = ? "
        "ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, id LIMIT ?",
        [last, limit],
    )
    for r in rows:
        r["evidence"] = _loads(r["evidence"], {})
    return rows


# -- resources and series ----------------------------------------------------------------------


def _resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "name": row["name"],
        "account": row["account"],
        "region": row["region"],
        "arn": row.get("arn") or "",
        "facts": _loads(row.get("facts"), {}),
        "tags": _loads(row.get("tags"), {}),
        "first_seen": row.get("first_seen"),
        "last_seen": row.get("last_seen"),
    }


def resource_kinds(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        r[0]: r[1]
        for r in conn.execute("SELECT kind, COUNT(*) FROM resources WHERE gone_at IS NULL GROUP BY kind ORDER BY kind")
    }


def resources(conn: sqlite3.Connection, kind: str = "", q: str = "", page: int = 0) -> tuple[list[dict[str, Any]], int]:
    """One page of resources by kind and name search (a substring, matched literally), and the total."""
    where = " WHERE gone_at IS NULL"
    args: list[Any] = []
    if kind:
        where, args = where + " AND kind = ?", [*args, kind]
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where, args = (
            where + " AND (LOWER(name) LIKE LOWER(?) ESCAPE '\\' OR LOWER(id) LIKE LOWER(?) ESCAPE '\\')",
            [*args, f"%{escaped}%", f"%{escaped}%"],
        )
    total = conn.execute("SELECT COUNT(*) FROM resources" + where, args).fetchone()[0]
    rows = _rows(
        conn,
        "SELECT * FROM resources" + where + " ORDER BY kind, name, id LIMIT ? OFFSET ?",
        [*args, PAGE, page * PAGE],
    )
    return [_resource(r) for r in rows], int(total)


def resource(conn: sqlite3.Connection, resource_id: str) -> dict[str, Any] | None:
    rows = _rows(conn, "SELECT * FROM resources WHERE id = ?", [resource_id])
    if not rows:
        return None
    r = _resource(rows[0])
    r["series"] = _rows(
        conn,
        "SELECT id, namespace, metric, stat, period, dimensions FROM series WHERE resource_id = ? "
        "ORDER BY metric, stat",
        [resource_id],
    )
    r["incidents"] = incidents_for(conn, resource_id)
    r["unpublished"] = not_published(conn, r["facts"], r["series"])
    # Its state now, as each detector sees it: NoData (an idle queue publishes nothing) is shown
    # here, on the resource, rather than as an incident.
    r["alerts"] = _rows(
        conn,
        "SELECT detector, state, severity, title, last_seen FROM alerts WHERE resource_id = ? AND state != 'resolved' "
        "ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, detector",
        [resource_id],
    )
    return r


def incidents_for(conn: sqlite3.Connection, resource_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """Incidents led by the resource, or that any of its alerts took part in."""
    return [
        _incident(r)
        for r in _rows(
            conn,
            f"SELECT * FROM incidents WHERE {_dialect(conn).json_text('labels', 'resource')} = ? "
            "OR id IN (SELECT incident_id FROM alerts WHERE resource_id = ? AND incident_id IS NOT NULL) "
            "ORDER BY id DESC LIMIT ?",
            [resource_id, resource_id, limit],
        )
    ]


# The limit a resource's series is held against, from its facts, in the series' own unit:
# max_connections (count), retention (s), the account's concurrency (count).
SERIES_LIMITS = {
    ("rds", "DatabaseConnections"): "max_connections",
    ("sqs", "ApproximateAgeOfOldestMessage"): "retention",
    ("lambda_account", "ClaimedAccountConcurrency"): "concurrency_limit",
    ("lambda_account", "ConcurrentExecutions"): "concurrency_limit",
}


def limit_of(r: dict[str, Any], metric: str) -> float | None:
    key = SERIES_LIMITS.get((r["kind"], metric))
    value = r["facts"].get(key) if key else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def incident_window(incs: list[dict[str, Any]], start: int, end: int) -> tuple[int, int] | None:
    """The latest incident of a resource that overlaps [start, end], as (started, resolved or end)."""
    for inc in sorted(incs, key=lambda i: i["started_at"] or 0, reverse=True):
        stop = inc["resolved_at"] or end
        if inc["started_at"] and inc["started_at"] <= end and stop >= start:
            return int(inc["started_at"]), int(stop)
    return None


def series_points(conn: sqlite3.Connection, series_id: int, start: int, end: int) -> list[tuple[int, float]]:
    """Raw samples in [start, end), and hourly rollup averages where raw samples were pruned."""
    raw = [
        (int(t), float(v))
        for t, v in conn.execute(
            "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
            [series_id, start, end],
        )
    ]
    first = raw[0][0] if raw else end
    rolled = [
        (int(t), float(s) / n)
        for t, s, n in conn.execute(
            "SELECT ts, sum, count FROM rollups WHERE series_id = ? AND ts >= ? AND ts < ? AND count > 0 ORDER BY ts",
            [series_id, start, min(first, end)],
        )
    ]
    return rolled + raw


def series_of(conn: sqlite3.Connection, resource_id: str, metric: str = "") -> list[dict[str, Any]]:
    sql, args = (
        "SELECT id, resource_id, namespace, metric, stat, period FROM series WHERE resource_id = ?",
        [resource_id],
    )
    if metric:
        sql, args = sql + " AND metric = ?", [*args, metric]
    return _rows(conn, sql + " ORDER BY metric, stat", args)


# -- overview ----------------------------------------------------------------------------------


def _latest(
    conn: sqlite3.Connection, reads: list[tuple[str, str, str]], since: int, until: int
) -> dict[tuple[str, str, str], float]:
    """The latest value between `since` and `until` (the page's now: a store can hold later
    samples, e.g. one replayed or shown at an earlier time) of (resource, metric, stat) series,
    in one query."""
    if not reads:
        return {}
    out: dict[tuple[str, str, str], float] = {}
    for i in range(0, len(reads), 300):
        chunk = reads[i : i + 300]
        cond = " OR ".join("(s.resource_id = ? AND s.metric = ? AND s.stat = ?)" for _ in chunk)
        args = [x for r in chunk for x in r]
        sql = (
            f"SELECT s.resource_id, s.metric, s.stat, x.value FROM series s JOIN samples x ON x.series_id = s.id "
            f"WHERE ({cond}) AND x.ts = (SELECT MAX(ts) FROM samples WHERE series_id = s.id AND ts >= ? AND ts <= ?)"
        )
        for rid, metric, stat, value in conn.execute(sql, [*args, since, until]):
            out[(rid, metric, stat)] = float(value)
    return out


def entries(
    conn: sqlite3.Connection, now: int, open_incidents: list[dict[str, Any]], limit: int = 50
) -> list[dict[str, Any]]:
    """The user-facing entry points and whether they hurt now: those with an open incident first."""
    hurting: dict[str, dict[str, Any]] = {}
    for inc in open_incidents:
        hurting.setdefault(inc["resource"], inc)
    # Of the facts, only the two this reads, each from the kind that has it, taken out in SQL
    # rather than every row's whole facts parsed here (a queue's list its consumers, an API its
    # functions and stages); the rows as the connection gives them until the page's few are kept.
    d = _dialect(conn)
    found = [
        r
        for r in conn.execute(
            f"SELECT id, kind, name, account, region, CASE WHEN kind = 'api' THEN {d.json_text('facts', 'type')} "
            f"END AS api_type, CASE WHEN kind = 'sqs' THEN {d.json_value('facts', 'dlq_of')} END AS dlq_of "
            f"FROM resources WHERE gone_at IS NULL AND kind IN ({','.join('?' * len(ENTRY_KINDS))}) "
            "ORDER BY kind, name, id",
            ENTRY_KINDS,
        )
        if not json_loaded(r["dlq_of"])  # a dead-letter queue: nobody waits on what it holds
    ]
    rank = {"critical": 0, "warning": 1, "info": 2}
    found.sort(
        key=lambda r: (rank.get(hurting[r["id"]]["severity"], 3) if r["id"] in hurting else 9, r["kind"], r["name"])
    )
    found = found[:limit]
    reads = [(r["id"], api_metric(m, r["api_type"]), s) for r in found for m, s, _, _ in ENTRY_SIGNALS[r["kind"]]]
    latest = _latest(conn, reads, now - 1800, now)
    rows = []
    for r in found:
        hurt = hurting.get(r["id"])
        rows.append(
            {
                "id": r["id"],
                "kind": r["kind"],
                "name": r["name"],
                "account": r["account"],
                "region": r["region"],
                "incident": {"id": hurt["id"], "title": hurt["title"], "severity": hurt["severity"]} if hurt else None,
                "signals": [
                    {"label": label, "unit": unit, "value": latest.get((r["id"], api_metric(m, r["api_type"]), s))}
                    for m, s, label, unit in ENTRY_SIGNALS[r["kind"]]
                ],
            }
        )
    return rows


def agent_health(conn: sqlite3.Connection, now: int) -> dict[str, Any]:
    last = conn.execute("SELECT MAX(finished_at) FROM poll_log").fetchone()[0]
    # Each source and place whose latest poll of the last day failed: the failed rows of the day
    # (the poll_log_failed index holds only them, migration 0016) that no later row of the same
    # source and place follows. A failed row's successor is a poll or so later, so each check
    # reads a few rows forward by id; reading every row of the day to keep each place's latest, as
    # this once did, cost more than the rest of the overview's reads together.
    errored = _rows(
        conn,
        "SELECT p.source, p.account, p.region, p.status, p.error, p.started_at FROM poll_log p "
        "WHERE p.status != 'ok' AND p.started_at >= ? AND NOT EXISTS (SELECT 1 FROM poll_log q "
        "WHERE q.id > p.id AND q.started_at >= ? AND q.source = p.source "
        "AND COALESCE(q.account, '') = COALESCE(p.account, '') AND COALESCE(q.region, '') = COALESCE(p.region, '')) "
        "ORDER BY p.source, p.account, p.region",
        [now - 86400, now - 86400],
    )
    cost = polling_cost(conn, now)  # the figure the digest and `fleetwatch plan` state too
    late = conn.execute(
        "SELECT COUNT(*), COALESCE(MAX(overrun), 0) FROM agent_cycles WHERE scheduled_at >= ? AND overrun > 0",
        [now - 86400],
    ).fetchone()
    runs = _rows(
        conn,
        "SELECT detector, status, error, ts FROM detector_runs WHERE pass_id = "
        "(SELECT pass_id FROM detector_runs ORDER BY id DESC LIMIT 1) AND status != 'ok' ORDER BY detector",
    )
    return {
        "last_poll": last,
        "last_poll_age": (now - last) if last else None,
        "errored_sources": errored,
        "errored_detectors": runs,
        "cost_per_month_usd": round(cost.usd_per_month, 2),
        "api_calls_last_7d": cost.api_calls,
        "cost": cost.sentence(),
        "overruns_24h": int(late[0]),
        "worst_overrun_s": float(late[1]),
    }


def overview(conn: sqlite3.Connection, now: int) -> dict[str, Any]:
    open_incs = incidents(conn, {"state": "open"}, limit=50)
    return {
        "now": now,
        "entries": entries(conn, now, open_incs),
        "incidents": open_incs,
        "headroom": overview_limits(conn, now),
        "agent": agent_health(conn, now),
    }


# -- silences and digests ----------------------------------------------------------------------


def silences(conn: sqlite3.Connection, now: int, include_expired: bool = False) -> list[dict[str, Any]]:
    sql = "SELECT id, matchers, starts_at, ends_at, author, comment, created_at, expired_at FROM silences"
    args: list[Any] = []
    if not include_expired:
        sql, args = sql + " WHERE ends_at > ?", [now]
    rows = _rows(conn, sql + " ORDER BY ends_at DESC LIMIT 500", args)
    for r in rows:
        r["active"] = r["starts_at"] <= now < r["ends_at"]
    return rows


def last_digest(conn: sqlite3.Connection) -> dict[str, Any] | None:
    rows = _rows(
        conn, "SELECT period, due_at, sent_at, targets, status, error FROM digests ORDER BY due_at DESC LIMIT 1"
    )
    return rows[0] if rows else None
