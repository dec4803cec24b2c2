"""The weekly health digest: gathered from the store, rendered by Jinja2 templates, sent through
the alert channels, and scheduled by day, hour and time zone. The last send is recorded per week,
so a restart neither repeats it nor skips it: a digest missed while the agent was down is sent on
start."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from alerts.delivery import Channel, DeliveryFailed, deliver, message_id
from alerts.messages import render, sections_message
from alerts.units import human
from collector.pollreport import PollingCost, polling_cost
from detectors.limits import REPUTATION_ABSENT
from fleetwatch.accounts import account_label, account_names, resource_label, where
from fleetwatch.config.rules import DAYS
from fleetwatch.store import Store
from fleetwatch.store.dialect import dialect_of, json_loaded

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
    cost: PollingCost | None = None
    headroom_others: int = 0  # limits checked that stayed under CLOSE all week (or have no value yet)
    url: str = ""  # the dashboard's digest page, when web.public_url is set


Stats = tuple[float, int, float]  # sum, count, max
# The series of an outcome row read from the store: raw samples (1-minute) and hourly rollups.
_SOURCES = ("samples x", "SUM(x.value), COUNT(*), MAX(x.value)"), ("rollups x", "SUM(x.sum), SUM(x.count), MAX(x.max)")


class _Series:
    """The series of the metrics a digest reads, found in one pass over the series table; their
    samples and rollups are then read by series id (the primary keys' order), never by scanning
    every series of a fleet for each metric."""

    def __init__(self, store: Store, wanted: Iterable[tuple[str, str]]) -> None:
        self.db = store.db
        self.ids_from, self.id_col = dialect_of(store.db).id_list()
        self.join = dialect_of(store.db).ordered_join
        wanted = set(wanted)
        metrics = sorted({m for m, _ in wanted})
        ids: dict[tuple[str, str], list[int]] = {}
        for sid, metric, stat in self.db.execute(
            f"SELECT id, metric, stat FROM series WHERE metric IN ({','.join('?' * len(metrics))})", metrics
        ):
            if (metric, stat) in wanted:
                ids.setdefault((metric, stat), []).append(int(sid))
        self.ids = {k: json.dumps(v) for k, v in ids.items()}

    def weekly(self, metric: str, stat: str, end: int, weeks: int, span: int = WEEK) -> dict[str, dict[int, Stats]]:
        """Per resource and week back from `end` (0: [end - span, end), 1: the one before, ...):
        (sum, count, max), from raw samples and hourly rollups."""
        out: dict[str, dict[int, Stats]] = {}
        if (metric, stat) not in self.ids:
            return out
        for table, agg in _SOURCES:
            sql = (
                f"SELECT s.resource_id, (? - 1 - x.ts) / ? AS k, {agg} FROM "
                f"{self.ids_from} {self.join} series s ON s.id = {self.id_col} "
                f"{self.join} {table} ON x.series_id = s.id AND x.ts >= ? AND x.ts < ? GROUP BY s.resource_id, k"
            )
            for rid, k, total, n, peak in self.db.execute(
                sql, [end, span, self.ids[(metric, stat)], end - weeks * span, end]
            ):
                if n:
                    a = out.setdefault(rid, {}).get(k, (0.0, 0, float("-inf")))
                    out[rid][k] = (a[0] + total, a[1] + n, max(a[2], peak))
        return out

    def stats(self, metric: str, stat: str, start: int, end: int) -> dict[str, Stats]:
        """Per resource: (sum, count, max) of a series over [start, end)."""
        return {rid: weeks[0] for rid, weeks in self.weekly(metric, stat, end, 1, end - start).items() if 0 in weeks}

    def first_seen(self, metric: str, stat: str) -> dict[str, int]:
        """Per resource: the oldest sample or rollup the store holds of the series, where its history starts."""
        out: dict[str, int] = {}
        for table, _ in _SOURCES:
            name = table.split()[0]
            for rid, first in self.db.execute(
                f"SELECT s.resource_id, MIN((SELECT MIN(ts) FROM {name} WHERE series_id = s.id)) "
                f"FROM {self.ids_from} {self.join} series s ON s.id = {self.id_col} GROUP BY s.resource_id",
                [self.ids.get((metric, stat), "[]")],
            ):
                if first is not None:
                    out[rid] = min(out.get(rid, first), int(first))
        return out


def _mean(s: Stats | None) -> float | None:
    return s[0] / s[1] if s and s[1] else None


BASELINE_WEEKS = 8
CLOSE = 0.5  # a limit is shown when its week's peak used at least this share of it (as the overview's near_limits)
PEAKS = (
    ("ClaimedAccountConcurrency", "Maximum"),
    ("DatabaseConnections", "Maximum"),
    ("ApproximateAgeOfOldestMessage", "Maximum"),
    ("Reputation.BounceRate", "Maximum"),
    ("Reputation.ComplaintRate", "Maximum"),
)  # headroom: the week's peak of each
COLD = (("ColdStarts", "Sum"), ("SampledInvocations", "Sum"), ("InitDuration", "Maximum"))
THROTTLE_REASONS = ("KeyRangeThroughput", "ProvisionedThroughput", "AccountLimit", "MaxOnDemandThroughput")
MIN_BASELINE_WEEKS = 2  # an average of one week is last week again
# A week counts as whole when the series' history starts no later than this into it (a poll's
# first point lands up to one period after the hour; rollups are hourly).
WHOLE_SLACK = 3600
# What users feel, per entry-point kind: (label, metric, statistic, "sum" or "mean", unit).
# A REST API publishes 5XXError and an HTTP API 5xx (collector.catalog.api_metric): each API
# has samples under one of the two, so it gets one "5xx rate" row. Both are the share of
# requests that failed (AWS, "Amazon API Gateway dimensions and metrics": 5XXError's Average
# is the 5XX error rate; "Monitor CloudWatch metrics for HTTP APIs": 5xx likewise).
OUTCOMES = (
    (
        "api",
        [
            ("requests", "Count", "Sum", "sum", "count"),
            ("5xx rate", "5XXError", "Average", "mean", "ratio"),
            ("5xx rate", "5xx", "Average", "mean", "ratio"),
            ("p95 latency", "Latency", "p95", "mean", "ms"),
        ],
    ),
    (
        "schedule",
        [
            ("runs", "TriggeredRules", "Sum", "sum", "count"),
            ("failed invocations", "FailedInvocations", "Sum", "sum", "count"),
        ],
    ),
    (
        "ses",
        [
            ("mails sent", "Send", "Sum", "sum", "count"),
            ("bounced", "Bounce", "Sum", "sum", "count"),
            ("rejected", "Reject", "Sum", "sum", "count"),
        ],
    ),
)


def week_values(weekly: dict[int, Stats], first: int | None, end: int, how: str) -> dict[str, Any]:
    """One outcome row's numbers from its weekly (sum, count, max): this week (and whether the
    store holds all of it), last week and the average of up to 8 weeks before this one, each
    from whole weeks only. A whole week without datapoints is 0 for a count (CloudWatch sends
    no datapoint for a count of nothing) and no value for a mean."""

    def whole(k: int) -> bool:
        return first is not None and first <= end - (k + 1) * WEEK + WHOLE_SLACK

    def value(k: int) -> float | None:
        s = weekly.get(k)
        if how == "sum":
            return s[0] if s else 0.0
        return _mean(s)

    prior = [k for k in range(1, BASELINE_WEEKS + 1) if whole(k)]
    baseline: float | None = None
    if len(prior) >= MIN_BASELINE_WEEKS:
        if how == "sum":
            baseline = sum(value(k) or 0.0 for k in prior) / len(prior)
        else:
            pooled = [weekly[k] for k in prior if k in weekly]
            baseline = _mean((sum(p[0] for p in pooled), sum(p[1] for p in pooled), 0.0)) if pooled else None
    this, last = value(0), (value(1) if whole(1) else None)
    return {
        "this": this,
        "this_whole": whole(0),
        "since": first,
        "last": last,
        "avg8": baseline,
        "baseline_weeks": len(prior) if baseline is not None else 0,
        "change": (this - last) / last if whole(0) and this is not None and last else None,
    }


def gather(store: Store, end: int, period: str = "", names: dict[str, str] | None = None, url: str = "") -> Digest:
    """The digest of the week up to `end`. `names` maps account ids to the names people know
    (fleetwatch.accounts.configured(cfg)); the IAM aliases in the store fill the rest."""
    start = end - WEEK
    d = Digest(period or datetime.fromtimestamp(end, ZoneInfo("UTC")).strftime("%G-W%V"), start, end, url=url)
    names = account_names(store.db, names or {})
    resources = _resources(store)
    series = _Series(
        store,
        [(m, st) for _, rows in OUTCOMES for _, m, st, _, _ in rows]
        + list(PEAKS)
        + list(COLD)
        + [(f"{op}{reason}ThrottleEvents", "Sum") for reason in THROTTLE_REASONS for op in ("Read", "Write")],
    )

    def named(r: dict[str, Any]) -> dict[str, str]:
        return {"resource": resource_label(r, names, full=False), "where": where(r, names)}

    for kind, rows in OUTCOMES:
        for label, metric, stat, how, unit in rows:
            weekly, first = series.weekly(metric, stat, end, BASELINE_WEEKS + 1), series.first_seen(metric, stat)
            for rid in sorted(weekly):
                r = resources.get(rid)
                if r and r["kind"] == kind and rid in first:
                    d.outcomes.append(
                        {
                            **named(r),
                            "measure": label,
                            "unit": unit,
                            **week_values(weekly.get(rid, {}), first.get(rid), end, how),
                        }
                    )
    d.outcomes.sort(
        key=lambda o: (o["resource"], o["where"])
    )  # a resource's rows together, in OUTCOMES' order (a stable sort)

    incidents = list(
        store.db.query(
            "SELECT * FROM incidents WHERE started_at >= ? AND started_at < ? AND state != 'absorbed'", [start, end]
        )
    )
    by_detector: dict[str, list[dict[str, Any]]] = {}
    for inc in incidents:
        by_detector.setdefault(json.loads(inc["labels"]).get("detector", "?"), []).append(inc)
    # Paged: someone was told. A firing info incident (a low account limit, a short DLQ retention)
    # notifies nobody, nor does a silenced one: make demo's digest said "20 paged" of 20 incidents
    # when 17 had been sent.
    paged_ids = {
        r[0]
        for r in store.db.execute(
            "SELECT DISTINCT incident_id FROM notifications WHERE status = 'sent' AND kind = 'firing' "
            "AND sent_at >= ? AND sent_at < ?",
            [start, end],
        ).fetchall()
    }
    for det, items in sorted(by_detector.items()):
        fired = [i for i in items if i["firing_at"]]
        impact = sum(((i["resolved_at"] or end) - i["firing_at"]) for i in fired) / 60
        ack = [(i["acked_at"] - i["firing_at"]) / 60 for i in fired if i["acked_at"]]
        res = [(i["resolved_at"] - i["firing_at"]) / 60 for i in fired if i["resolved_at"]]
        d.incidents.append(
            {
                "detector": det,
                "incidents": len(items),
                "paged": sum(1 for i in items if i["id"] in paged_ids),
                "impact_minutes": round(impact),
                "median_minutes_to_ack": round(statistics.median(ack), 1) if ack else None,
                "median_minutes_to_resolve": round(statistics.median(res), 1) if res else None,
            }
        )

    def peak(metric: str, stat: str) -> dict[str, float]:
        return {rid: s[2] for rid, s in series.stats(metric, stat, start, end).items()}

    claimed, conns, age = (
        peak("ClaimedAccountConcurrency", "Maximum"),
        peak("DatabaseConnections", "Maximum"),
        peak("ApproximateAgeOfOldestMessage", "Maximum"),
    )
    bounce, complaint = peak("Reputation.BounceRate", "Maximum"), peak("Reputation.ComplaintRate", "Maximum")
    for rid, r in sorted(resources.items()):
        f, name = r["facts"], (named(r) if r["kind"] != "lambda" else {})
        if r["kind"] == "lambda_account" and f.get("concurrency_limit"):
            d.headroom.append(_room(name, "account concurrency", claimed.get(rid), f["concurrency_limit"], "count"))
        elif r["kind"] == "rds" and f.get("max_connections"):
            d.headroom.append(_room(name, "connections", conns.get(rid), f["max_connections"], "count"))
        elif r["kind"] == "sqs" and f.get("retention"):
            d.headroom.append(_room(name, "oldest message's age against retention", age.get(rid), f["retention"], "s"))
        elif r["kind"] == "ses":
            if f.get("max_24h_send"):
                d.headroom.append(
                    _room(
                        name,
                        "mails in 24 hours against the send quota",
                        f.get("sent_last_24h"),
                        f["max_24h_send"],
                        "count",
                    )
                )
            d.headroom.append(
                _room(
                    name,
                    "bounce rate (review at 5%)",
                    bounce.get(rid),
                    0.05,
                    "ratio",
                    REPUTATION_ABSENT["Reputation.BounceRate"],
                )
            )
            d.headroom.append(
                _room(
                    name,
                    "complaint rate (review at 0.1%)",
                    complaint.get(rid),
                    0.001,
                    "ratio",
                    REPUTATION_ABSENT["Reputation.ComplaintRate"],
                )
            )
    for reason in THROTTLE_REASONS:
        for op in ("Read", "Write"):
            for rid, s in series.stats(f"{op}{reason}ThrottleEvents", "Sum", start, end).items():
                if s[0] > 0 and rid in resources:
                    d.headroom.append(
                        {
                            **named(resources[rid]),
                            "limit": f"{op.lower()} requests throttled ({reason})",
                            "peak": s[0],
                            "of": None,
                            "used": None,
                            "unit": "count",
                            "note": "",
                        }
                    )
    # Only what came close (at least half used at the week's peak, or throttled at all): the rest is counted.
    close = [h for h in d.headroom if (h["used"] is not None and h["used"] >= CLOSE) or (h["of"] is None and h["peak"])]
    d.headroom_others = len(d.headroom) - len(close)
    d.headroom = sorted(close, key=lambda h: -(h["used"] if h["used"] is not None else 2))

    cold, sampled, init = (series.stats(m, s, start, end) for m, s in COLD)
    # Only functions that did start cold: a function with no cold start is not among the slowest.
    profile: list[dict[str, Any]] = [
        {
            **named(resources[rid]),
            "cold_share": cold[rid][0] / s[0],
            "sampled": int(s[0]),
            "max_init_ms": init[rid][2] if rid in init else None,
        }
        for rid, s in sampled.items()
        if s[0] >= 20 and rid in resources and cold.get(rid, (0.0,))[0] > 0
    ]
    d.coldstarts = sorted(profile, key=lambda p: (-(p["max_init_ms"] or 0), -p["cold_share"]))[:5]

    for _rid, r in sorted(resources.items()):
        f = r["facts"]
        if r["kind"] == "sqs" and f.get("retention_shorter_than_source"):
            d.hygiene.append(
                f"DLQ {r['name']} keeps messages no longer than its source ({', '.join(f.get('dlq_of') or [])}): "
                "a message can expire before anyone looks at it"
            )
        if r["kind"] == "sqs" and f.get("max_receive_count") == 1:
            d.hygiene.append(f"queue {r['name']} has maxReceiveCount 1: one failed attempt sends a message to the DLQ")
        if r["kind"] == "ses" and f.get("sandbox"):
            d.hygiene.append(
                f"SES in {account_label(r['account'], names)} {r['region']} "
                "is still in the sandbox (200 mails a day, verified "
                "recipients only)"
            )
        if (
            r["kind"] == "lambda"
            and f.get("reserved_concurrency") is None
            and any(u.startswith(("rds:", "rds_proxy:")) for u in f.get("uses") or [])
        ):
            d.hygiene.append(
                f"function {r['name']} calls a database and has no reserved concurrency: a burst can become a "
                "connection storm"
            )

    sent = store.db.execute(
        "SELECT COUNT(*) FROM notifications WHERE status = 'sent' AND sent_at >= ? AND sent_at < ?", [start, end]
    ).fetchone()[0]
    flaps = store.db.execute("SELECT COALESCE(SUM(flaps), 0) FROM alerts WHERE last_seen >= ?", [start]).fetchone()[0]
    d.noise = {
        "notifications": sent,
        "incidents": len(incidents),
        "per_incident": round(sent / len(incidents), 1) if incidents else 0.0,
        "flaps": flaps,
    }
    d.cost = polling_cost(store.db, end)  # the figure the overview and `fleetwatch plan` state
    return d


def _resources(store: Store) -> dict[str, dict[str, Any]]:
    """The resources the digest names, by id. Functions (most of a fleet) carry only the facts
    it reads, taken out in SQL: parsing every function's facts cost most of a 10,000-function
    digest's time."""
    kinds = [
        k for (k,) in store.db.execute("SELECT DISTINCT kind FROM resources WHERE gone_at IS NULL") if k != "lambda"
    ]
    dialect = dialect_of(store.db)

    def value(key: str) -> str:
        return dialect.json_value("facts", key)

    out = {r["id"]: r for r in store.resources(kinds=kinds)}
    for rid, account, region, name, reserved, uses in store.db.execute(
        f"SELECT id, account, region, name, {value('reserved_concurrency')}, {value('uses')} "
        "FROM resources WHERE kind = 'lambda' AND gone_at IS NULL"
    ):
        out[rid] = {
            "id": rid,
            "account": account,
            "region": region,
            "kind": "lambda",
            "name": name,
            "facts": {"reserved_concurrency": json_loaded(reserved), "uses": json_loaded(uses) or None},
        }
    return out


def _room(
    name: dict[str, str], limit: str, used: float | None, of: float, unit: str, absent: str = ""
) -> dict[str, Any]:
    return {
        **name,
        "limit": limit,
        "peak": used,
        "of": of,
        "used": (used / of) if used is not None and of else None,
        "unit": unit,
        "note": absent if used is None else "",
    }


# -- rendering and sending ---------------------------------------------------------------------


def _view(d: Digest) -> dict[str, Any]:
    def day(ts: int) -> str:
        return datetime.fromtimestamp(ts, ZoneInfo("UTC")).strftime("%a %d %b %Y %H:%M UTC")

    def short(ts: int) -> str:
        return datetime.fromtimestamp(ts, ZoneInfo("UTC")).strftime("%d %b %H:%M")

    def value(v: Any, unit: str) -> str:
        return "–" if v is None else human(v, unit)

    def change(c: float | None) -> str:
        return "" if c is None else ("+" if c > 0 else "") + human(c, "ratio")

    paged = sum(i["paged"] for i in d.incidents)
    return {"d": d, "day": day, "short": short, "value": value, "change": change, "paged": paged}


def render_html(d: Digest) -> str:
    return render("digest.html", **_view(d))


def render_text(d: Digest) -> str:
    return render("digest.txt", **_view(d))


def slack_digest(d: Digest, public_url: str) -> dict[str, Any]:
    """Block Kit: a header, then one section per part of the text digest (outcomes, incidents,
    headroom, cold starts, hygiene, noise and cost), and a button to the dashboard's digest page."""
    parts = render_text(d).split("\n\n")
    summary = (
        f"fleetwatch weekly health digest {d.period}: {d.noise.get('incidents', 0)} incidents, "
        f"{len(d.hygiene)} hygiene findings"
    )
    url = public_url.rstrip("/") + "/digest" if public_url else ""
    return sections_message(f"Weekly health digest {d.period}", summary, parts[1:], url, "Open the digest")


def send_digest(
    store: Store,
    d: Digest,
    targets: list[str],
    channels: dict[str, Channel],
    sender: str,
    now: int,
    sleep: Any,
    attempts: int,
    public_url: str = "",
    scheduled: bool = True,
) -> list[str]:
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
                # Channel (the protocol) has no send_message: the email channels (delivery._Mail) do.
                deliver(partial(channel.send_message, msg), attempts, sleep)  # type: ignore[attr-defined]
            else:
                message = slack_digest(d, public_url)
                # Channel has no post_message: the Slack channels (SlackBot, SlackWebhook) do.
                deliver(partial(channel.post_message, where, message), attempts, sleep)  # type: ignore[attr-defined]
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
        db.execute(
            "INSERT INTO digests (period, due_at, sent_at, targets, status, error) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(period) DO UPDATE SET sent_at = excluded.sent_at, targets = excluded.targets, "
            "status = excluded.status, error = excluded.error",
            [d.period, d.end, now, json.dumps(sorted(took)), status, "; ".join(errors) or None],
        )


def digest_url(cfg: Any) -> str:
    return cfg["web.public_url"].rstrip("/") + "/digest" if cfg["web.public_url"] else ""


def digest_targets(cfg: Any) -> list[str]:
    return list(cfg["digest.targets"]) or [f"email:{a}" for a in cfg["email.to"]]
