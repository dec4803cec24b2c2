"""The weekly health digest: gathered from the store, rendered by Jinja2 templates, sent through
the alert channels, and scheduled by day, hour and time zone. The last send is recorded per week,
so a restart neither repeats it nor skips it: a digest missed while the agent was down is sent on
start."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from alerts.delivery import Channel, DeliveryFailed, deliver, message_id
from alerts.messages import render, sections_message
from detectors.limits import REPUTATION_ABSENT
from fleetwatch.config.rules import DAYS
from fleetwatch.store import Store

WEEK = 7 * 86400


# -- schedule ---------------------------------------------------------------------------------

def due_at(now: float, day: str, hour: int, zone: str) -> tuple[str, int]:
    """The most recent scheduled send at or before `now`: (period name, when), e.g.
    ("2026-W47", ...). The period names the ISO week of the local send day."""
    tz = ZoneInfo(zone)
    local = datetime.fromtimestamp(now, tz)
    back = (local.weekday() - DAYS.index(day)) % 7
    # Arithmetic on a zoned datetime keeps the wall clock, so this is `hour` local time, DST included.
    when = (local - timedelta(days=back)).replace(hour=hour, minute=0, second=0, microsecond=0)
    if when > local:
        when -= timedelta(days=7)
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}", int(when.timestamp())


def owed_digest(store: Store, now: float, cfg: Any) -> tuple[str, int] | None:
    """The digest period that is due and not yet sent, or None."""
    period, when = due_at(now, cfg["digest.day"], cfg["digest.hour"], cfg["digest.timezone"])
    row = store.db.execute("SELECT status FROM digests WHERE period = ?", [period]).fetchone()
    return None if row and row[0] == "sent" else (period, when)


# -- gathering --------------------------------------------------------------------------------

@dataclass
class Digest:
    period: str
    start: int
    end: int
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    headroom: list[dict[str, Any]] = field(default_factory=list)
    coldstarts: list[dict[str, Any]] = field(default_factory=list)
    hygiene: list[str] = field(default_factory=list)
    noise: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)


def _stats(store: Store, metric: str, stat: str, start: int, end: int) -> dict[str, tuple[float, int, float]]:
    """Per resource: (sum, count, max) of a series over [start, end), from raw samples and rollups."""
    out: dict[str, tuple[float, int, float]] = {}
    for sql in ("SELECT s.resource_id, SUM(x.value), COUNT(*), MAX(x.value) FROM samples x JOIN series s ON s.id = x.series_id "
                "WHERE s.metric = ? AND s.stat = ? AND x.ts >= ? AND x.ts < ? GROUP BY s.resource_id",
                "SELECT s.resource_id, SUM(x.sum), SUM(x.count), MAX(x.max) FROM rollups x JOIN series s ON s.id = x.series_id "
                "WHERE s.metric = ? AND s.stat = ? AND x.ts >= ? AND x.ts < ? GROUP BY s.resource_id"):
        for rid, total, n, peak in store.db.execute(sql, [metric, stat, start, end]):
            if n:
                a = out.get(rid, (0.0, 0, float("-inf")))
                out[rid] = (a[0] + total, a[1] + n, max(a[2], peak))
    return out


def _mean(s: tuple[float, int, float] | None) -> float | None:
    return s[0] / s[1] if s and s[1] else None


def gather(store: Store, end: int, period: str = "") -> Digest:
    start = end - WEEK
    d = Digest(period or datetime.fromtimestamp(end, ZoneInfo("UTC")).strftime("%G-W%V"), start, end)
    resources = {r["id"]: r for r in store.resources()}
    windows = {"this": (start, end), "last": (start - WEEK, start), "avg8": (end - 8 * WEEK, end)}

    def per_week(metric: str, stat: str, how: str) -> dict[str, dict[str, float | None]]:
        got = {k: _stats(store, metric, stat, *w) for k, w in windows.items()}
        out: dict[str, dict[str, float | None]] = {}
        for rid in set().union(*got.values()):
            row = {}
            for k, stats in got.items():
                s = stats.get(rid)
                value = (s[0] if how == "sum" else _mean(s)) if s else None
                row[k] = value / 8 if (k == "avg8" and how == "sum" and value is not None) else value
            out[rid] = row
        return out

    # A REST API publishes 5XXError and an HTTP API 5xx (collector.catalog.api_metric): each API
    # has samples under one of the two, so it gets one "5xx rate" row.
    for kind, rows in (("api", [("requests", "Count", "Sum", "sum"), ("5xx rate", "5XXError", "Average", "mean"),
                                ("5xx rate", "5xx", "Average", "mean"),
                                ("p95 latency ms", "Latency", "p95", "mean")]),
                       ("schedule", [("runs", "TriggeredRules", "Sum", "sum"), ("failed invocations", "FailedInvocations", "Sum", "sum")]),
                       ("ses", [("sent", "Send", "Sum", "sum"), ("bounced", "Bounce", "Sum", "sum"), ("rejected", "Reject", "Sum", "sum")])):
        for label, metric, stat, how in rows:
            for rid, row in sorted(per_week(metric, stat, how).items()):
                r = resources.get(rid)
                if r and r["kind"] == kind:
                    d.outcomes.append({"resource": f"{r['kind']}:{r['name']}", "measure": label, **row})

    incidents = list(store.db.query("SELECT * FROM incidents WHERE started_at >= ? AND started_at < ? AND state != 'absorbed'",
                                    [start, end]))
    by_detector: dict[str, list[dict[str, Any]]] = {}
    for inc in incidents:
        by_detector.setdefault(json.loads(inc["labels"]).get("detector", "?"), []).append(inc)
    for det, items in sorted(by_detector.items()):
        fired = [i for i in items if i["firing_at"]]
        impact = sum(((i["resolved_at"] or end) - i["firing_at"]) for i in fired) / 60
        ack = [(i["acked_at"] - i["firing_at"]) / 60 for i in fired if i["acked_at"]]
        res = [(i["resolved_at"] - i["firing_at"]) / 60 for i in fired if i["resolved_at"]]
        d.incidents.append({"detector": det, "incidents": len(items), "fired": len(fired), "impact_minutes": round(impact),
                            "median_minutes_to_ack": round(statistics.median(ack), 1) if ack else None,
                            "median_minutes_to_resolve": round(statistics.median(res), 1) if res else None})

    def peak(metric: str, stat: str) -> dict[str, float]:
        return {rid: s[2] for rid, s in _stats(store, metric, stat, start, end).items()}

    claimed, conns, age = peak("ClaimedAccountConcurrency", "Maximum"), peak("DatabaseConnections", "Maximum"), \
        peak("ApproximateAgeOfOldestMessage", "Maximum")
    bounce, complaint = peak("Reputation.BounceRate", "Maximum"), peak("Reputation.ComplaintRate", "Maximum")
    for rid, r in sorted(resources.items()):
        f, name = r["facts"], f"{r['kind']}:{r['name']} ({r['account']} {r['region']})"
        if r["kind"] == "lambda_account" and f.get("concurrency_limit"):
            d.headroom.append(_room(name, "account concurrency", claimed.get(rid), f["concurrency_limit"]))
        elif r["kind"] == "rds" and f.get("max_connections"):
            d.headroom.append(_room(name, "connections", conns.get(rid), f["max_connections"]))
        elif r["kind"] == "sqs" and f.get("retention"):
            d.headroom.append(_room(name, "oldest message age s", age.get(rid), f["retention"]))
        elif r["kind"] == "ses":
            if f.get("max_24h_send"):
                d.headroom.append(_room(name, "24-hour send quota", f.get("sent_last_24h"), f["max_24h_send"]))
            d.headroom.append(_room(name, "bounce rate (review at 5%)", bounce.get(rid), 0.05,
                                    REPUTATION_ABSENT["Reputation.BounceRate"]))
            d.headroom.append(_room(name, "complaint rate (review at 0.1%)", complaint.get(rid), 0.001,
                                    REPUTATION_ABSENT["Reputation.ComplaintRate"]))
    for reason in ("KeyRangeThroughput", "ProvisionedThroughput", "AccountLimit", "MaxOnDemandThroughput"):
        for op in ("Read", "Write"):
            for rid, s in _stats(store, f"{op}{reason}ThrottleEvents", "Sum", start, end).items():
                if s[0] > 0 and rid in resources:
                    d.headroom.append({"resource": f"dynamodb:{resources[rid]['name']}", "limit": f"{op.lower()} throttles: {reason}",
                                       "peak": s[0], "of": None, "used": None})

    cold, sampled, init = (_stats(store, m, s, start, end) for m, s in
                           (("ColdStarts", "Sum"), ("SampledInvocations", "Sum"), ("InitDuration", "Maximum")))
    profile = [{"function": resources[rid]["name"] if rid in resources else rid, "cold_share": cold.get(rid, (0, 0, 0))[0] / s[0],
                "sampled": int(s[0]), "max_init_ms": init[rid][2] if rid in init else None}
               for rid, s in sampled.items() if s[0] >= 20]
    d.coldstarts = sorted(profile, key=lambda p: -(p["max_init_ms"] or 0))[:5]

    for rid, r in sorted(resources.items()):
        f = r["facts"]
        if r["kind"] == "sqs" and f.get("retention_shorter_than_source"):
            d.hygiene.append(f"DLQ {r['name']} keeps messages no longer than its source ({', '.join(f.get('dlq_of') or [])}): "
                             "a message can expire before anyone looks at it")
        if r["kind"] == "sqs" and f.get("max_receive_count") == 1:
            d.hygiene.append(f"queue {r['name']} has maxReceiveCount 1: one failed attempt sends a message to the DLQ")
        if r["kind"] == "ses" and f.get("sandbox"):
            d.hygiene.append(f"SES in account {r['account']} {r['region']} is still in the sandbox (200 mails a day, verified "
                             "recipients only)")
        if r["kind"] == "lambda" and f.get("reserved_concurrency") is None and \
                any(u.startswith(("rds:", "rds_proxy:")) for u in f.get("uses") or []):
            d.hygiene.append(f"function {r['name']} calls a database and has no reserved concurrency: a burst can become a "
                             "connection storm")

    sent = store.db.execute("SELECT COUNT(*) FROM notifications WHERE status = 'sent' AND sent_at >= ? AND sent_at < ?",
                            [start, end]).fetchone()[0]
    flaps = store.db.execute("SELECT COALESCE(SUM(flaps), 0) FROM alerts WHERE last_seen >= ?", [start]).fetchone()[0]
    d.noise = {"notifications": sent, "incidents": len(incidents),
               "per_incident": round(sent / len(incidents), 1) if incidents else 0.0, "flaps": flaps}
    cost = store.db.execute("SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(api_calls), 0), COUNT(*) FROM poll_log "
                            "WHERE started_at >= ? AND started_at < ?", [start, end]).fetchone()
    d.cost = {"usd": round(cost[0], 2), "api_calls": cost[1], "polls": cost[2], "usd_per_month": round(cost[0] * 30 / 7, 2)}
    return d


def _room(resource: str, limit: str, used: float | None, of: float, absent: str = "") -> dict[str, Any]:
    return {"resource": resource, "limit": limit, "peak": used, "of": of, "used": (used / of) if used is not None and of else None,
            "note": absent if used is None else ""}


# -- rendering and sending ---------------------------------------------------------------------

def render_html(d: Digest) -> str:
    return render("digest.html", d=d)


def render_text(d: Digest) -> str:
    return render("digest.txt", d=d)


def slack_digest(d: Digest, public_url: str) -> dict[str, Any]:
    """Block Kit: a header, then one section per part of the text digest (outcomes, incidents,
    headroom, cold starts, hygiene, noise and cost), and a button to the dashboard's digest page."""
    parts = render_text(d).split("\n\n")
    summary = (f"fleetwatch weekly health digest {d.period}: {d.noise.get('incidents', 0)} incidents, "
               f"{len(d.hygiene)} hygiene findings")
    url = public_url.rstrip("/") + "/digest" if public_url else ""
    return sections_message(f"Weekly health digest {d.period}", summary, parts[1:], url, "Open the digest")


def send_digest(store: Store, d: Digest, targets: list[str], channels: dict[str, Channel], sender: str, now: int,
                sleep: Any, attempts: int, public_url: str = "", scheduled: bool = True) -> list[str]:
    """Send to every target that has not yet taken this period's digest; the period counts as
    sent when all of them have, and a retry goes only to those that failed. Returns errors.
    An unscheduled send (`fleetwatch digest --send`) goes to every target and records nothing,
    so it never stands in for the scheduled one."""
    row = store.db.execute("SELECT targets FROM digests WHERE period = ?", [d.period]).fetchone() if scheduled else None
    took = set(json.loads(row[0]) if row and row[0] else [])
    errors = []
    for target in targets:
        if target in took:
            continue
        kind, _, where = target.partition(":")
        channel = channels.get(kind)
        try:
            if channel is None:
                raise DeliveryFailed(0, f"no channel for {target}")
            if kind == "email":
                msg = EmailMessage()
                msg["Subject"], msg["From"], msg["To"] = f"[fleetwatch] Weekly health digest {d.period}", sender, where
                msg["Message-ID"] = message_id(f"digest/{d.period}/{target}")
                msg.set_content(render_text(d))
                msg.add_alternative(render_html(d), subtype="html")
                deliver(lambda: channel.send_message(msg), attempts, sleep)  # type: ignore[attr-defined]
            else:
                message = slack_digest(d, public_url)
                deliver(lambda: channel.post_message(where, message), attempts, sleep)  # type: ignore[attr-defined]
        except DeliveryFailed as exc:
            errors.append(f"{target}: {exc}")
            continue
        took.add(target)
        if scheduled:  # recorded per target as it goes: a crash between two does not resend to the first
            _record(store, d, now, took, targets, errors)
    if scheduled:
        _record(store, d, now, took, targets, errors)
    return errors


def _record(store: Store, d: Digest, now: int, took: set[str], targets: list[str], errors: list[str]) -> None:
    """`targets` holds the targets that took this period's digest; it is sent when all have."""
    status = "sent" if took >= set(targets) else "failed" if errors else "sending"
    with store.transaction() as db:
        db.execute("INSERT INTO digests (period, due_at, sent_at, targets, status, error) VALUES (?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT(period) DO UPDATE SET sent_at = excluded.sent_at, targets = excluded.targets, "
                   "status = excluded.status, error = excluded.error",
                   [d.period, d.end, now, json.dumps(sorted(took)), status, "; ".join(errors) or None])


def digest_targets(cfg: Any) -> list[str]:
    return list(cfg["digest.targets"]) or [f"email:{a}" for a in cfg["email.to"]]
