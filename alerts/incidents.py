"""Alerts grouped into incidents: one incident per problem, kept for its whole life.

The rules (docs/incidents.md draws them as a state diagram):
- An alert joins an incident when it becomes active and keeps that incident until it resolves;
  nothing is re-parented after the fact and incidents never merge, so an incident keeps its
  number, its Slack thread and its mail thread from the first page to RESOLVED.
- A new alert joins the open incident it is related to — on the same resource, or linked in the
  topology (one reaches the other, or both reach the same user-facing entry point) — the oldest
  such incident if several are; otherwise it opens an incident of its own. So the incident is
  keyed by its cause or its symptom, whichever appeared first: a cause that arrives later joins
  the symptom's incident, a symptom that arrives later joins the cause's, and a symptom that
  outlives its cause keeps the incident.
- The incident leads with what users feel: its title is the worst symptom's (an alert on an
  entry point: an API, a schedule, a queue, the SES account) followed by its causes; a cause
  with no symptom yet is titled by itself and, while it can still be joined by a symptom, waits
  `cause_wait` before paging (a critical cause pages at once).
- It resolves when none of its alerts is active any more (a recovering alert still counts).
- NoData is a state shown on the resource, not an incident, unless `alerts.notify_nodata` asks
  for it; a detector error is an incident of its own per detector.
Pure: alerts, open incidents, topology and time in; incidents out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from alerts.state import ACTIVE, ERROR, FIRING, NODATA, PENDING, RECOVERING, RESOLVED, SEVERITY_RANK, Alert
from alerts.topology import Topology

STATE_ORDER = (FIRING, RECOVERING, PENDING, NODATA, ERROR)
ABSORBED = "absorbed"  # incidents merged by earlier versions; no longer made, still read and told
ACCOUNT_WIDE = frozenset({"lambda_account", "ses"})
# Statistical findings (detectors/unusual.py): beside a rule's finding in the same incident they
# are supporting evidence — never its title, and their coming and going is no update to send.
SUPPORTING = frozenset({"unusual"})


@dataclass
class Incident:
    fingerprint: str
    group_key: str
    state: str
    severity: str
    title: str
    started_at: int
    updated_at: int
    id: int | None = None
    symptom: str = ""
    cause: str = ""
    fix: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    version: str = ""
    firing_at: int | None = None
    resolved_at: int | None = None
    acked_by: str | None = None
    acked_at: int | None = None
    absorbed_into: int | None = None
    joinable: bool = False
    cause_title: str = ""  # the title of the cause it names, kept after that cause ended
    symptom_alert: str = ""  # the alerts its title names (fingerprints), kept while they are live
    cause_alert: str = ""
    # Set by reconcile for the caller to record: (event, detail) in order.
    events: list[tuple[str, str]] = field(default_factory=list)
    # The alerts that are in this incident now (by fingerprint); set by reconcile.
    live: list[str] = field(default_factory=list)


def resource_labels(resource: Any, resource_id: str) -> dict[str, str]:
    """The labels routes, silences and maintenance windows match on, for one resource."""
    if resource is None:
        return {"resource": resource_id, "name": resource_id.rsplit("/", 1)[-1], "kind": resource_id.split("/", 1)[0]}
    labels = {
        "resource": resource.id,
        "name": resource.name,
        "kind": resource.kind,
        "account": resource.account,
        "region": resource.region,
        "service": resource.tags.get("service", ""),
    }
    for k, v in resource.tags.items():
        labels["tag_" + "".join(c if c.isalnum() else "_" for c in k)] = v
    return labels


def alert_labels(alert: Alert, topo: Topology) -> dict[str, str]:
    labels = resource_labels(topo.resources.get(alert.resource_id), alert.resource_id)
    labels.update(detector=alert.detector, severity=alert.severity, state=alert.state)
    return labels


def _rank(a: Alert) -> tuple[int, int, int]:
    return (
        STATE_ORDER.index(a.state) if a.state in STATE_ORDER else 9,
        SEVERITY_RANK.get(a.severity, 3),
        a.active_since or 0,
    )


def _describe_cause(a: Alert) -> str:
    return a.title + (f" ({a.cause})" if a.cause else "")


class _Links:
    """Whether two resources' problems are one problem, from the topology: the same resource, one
    reaching the other along cause -> effect edges, or both reaching the same entry point."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self._reach: dict[str, frozenset[str]] = {}

    def reach(self, resource_id: str) -> frozenset[str]:
        if resource_id not in self._reach:
            seen, todo = {resource_id}, [resource_id]
            while todo:
                for nxt in self.topo.edges.get(todo.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            self._reach[resource_id] = frozenset(seen)
        return self._reach[resource_id]

    def related(self, a: str, b: str) -> bool:
        if a == b or b in self.reach(a) or a in self.reach(b):
            return True
        # Two causes behind one entry point are one problem (a database and the function that
        # scaled out), but an account-wide resource reaches so much that sharing an entry point
        # with it says nothing: it joins only what it reaches or what reaches it.
        if {_kind(self.topo, a), _kind(self.topo, b)} & ACCOUNT_WIDE:
            return False
        return bool(set(self.entries(a)) & set(self.entries(b)))

    def entries(self, resource_id: str) -> tuple[str, ...]:
        return (resource_id,) if self.topo.is_entry(resource_id) else self.topo.entries(resource_id)


def _groups(a: Alert, nodata_pages: bool) -> bool:
    """Whether this alert belongs in an incident at all."""
    if a.state == RESOLVED:
        return False
    if a.kind == "nodata":
        return nodata_pages
    return a.kind == "error" or a.state in ACTIVE


def reconcile(
    alerts: dict[str, Alert],
    open_incidents: dict[int, Incident],
    topo: Topology,
    now: int,
    nodata_pages: bool = False,
    known: dict[str, str] | None = None,
) -> list[Incident]:
    """Put every live alert in an incident (its own if it already has one) and return every
    incident that is open or changed this pass: the open ones, new ones, and those that ended.
    New incidents have no id yet; their alerts are tied to them by `Incident.live`. `known`:
    the resource of each alert the open incidents held that has ended before this pass."""
    links = _Links(topo)
    incidents = {inc_id: inc for inc_id, inc in open_incidents.items()}
    for inc in incidents.values():
        inc.live = []
    new: list[Incident] = []
    pending = sorted(
        (a for a in alerts.values() if _groups(a, nodata_pages)), key=lambda a: (a.active_since or now, a.fingerprint)
    )
    for a in pending:
        if a.incident_id in incidents:
            incidents[a.incident_id].live.append(a.fingerprint)
    for inc in incidents.values():
        # What paged is over when only standing risks (info) are left in it: they go on in an
        # incident of their own, and this one ends with RESOLVED.
        if inc.severity != "info" and inc.live and all(alerts[fp].severity == "info" for fp in inc.live):
            for fp in inc.live:
                alerts[fp].incident_id = None
            inc.live = []
        # Supporting evidence outliving the rules it supported does not hold the incident open:
        # it ends with RESOLVED, and they stay with it (not re-homed, no page of their own).
        elif (
            inc.live
            and all(alerts[fp].detector in SUPPORTING for fp in inc.live)
            and any(fp not in alerts or alerts[fp].detector not in SUPPORTING for fp in inc.members)
        ):
            inc.live = []
    for a in pending:
        if a.incident_id in incidents:
            continue
        if a.detector in SUPPORTING and a.incident_id is not None:
            continue  # its incident ended with the rules it supported
        home = _home(a, [*incidents.values(), *new], alerts, links, known or {})
        if home is None:
            # It began when its first alert began to hold: the pass that saw it, or for a sustained
            # finding when its data shows it began — so group_wait does not hold back a page for a
            # problem the data has shown for minutes.
            opened = min(a.active_since or now, now) if a.state in ACTIVE else now
            home = Incident(_incident_fingerprint(a, now), _group_key(a), PENDING, a.severity, "", opened, now)
            home.events.append(("opened", a.title[:500]))
            new.append(home)
        elif a.fingerprint not in home.members:
            home.events.append(("joined", a.title[:500]))
        home.live.append(a.fingerprint)
        a.incident_id = home.id
    out: list[Incident] = []
    where = {**(known or {}), **{fp: a.resource_id for fp, a in alerts.items()}}
    for inc in [*incidents.values(), *new]:
        members = [alerts[fp] for fp in inc.live]
        if not members:
            inc.state, inc.updated_at, inc.resolved_at = RESOLVED, now, now
            # Its labels were last set while it recovered: they say what it is now.
            inc.labels = {**inc.labels, "state": RESOLVED}
            inc.events.append((RESOLVED, ""))
        else:
            _fill(inc, members, topo, now, where)
        out.append(inc)
    return out


def _group_key(a: Alert) -> str:
    return f"detector:{a.detector}" if a.kind == "error" else a.resource_id


def _incident_fingerprint(a: Alert, now: int) -> str:
    return hashlib.sha256(json.dumps([_group_key(a), a.fingerprint, now]).encode()).hexdigest()[:16]


def _home(
    a: Alert, candidates: list[Incident], alerts: dict[str, Alert], links: _Links, known: dict[str, str]
) -> Incident | None:
    """The open incident a new alert belongs to: the oldest related one (None: a new problem).
    Related to anything the incident has held, not only what is live in it this very pass: the
    alert that opened it may have ended as this one began."""
    key = _group_key(a)
    best = None
    for inc in candidates:
        if inc.resolved_at is not None:
            continue
        if (inc.severity == "info") != (a.severity == "info"):
            # A standing risk (a low limit, a short DLQ retention) is no home for a page (it may be
            # days old), nor a page for it (it would hold the page open as long as the risk stands).
            continue
        if a.kind == "error" or inc.group_key.startswith("detector:"):
            hit = inc.group_key == key
        else:
            held = {inc.group_key} | {
                alerts[fp].resource_id if fp in alerts else known.get(fp, "") for fp in (*inc.members, *inc.live)
            }
            hit = any(r and not r.startswith("detector:") and links.related(a.resource_id, r) for r in held)
        if hit and (best is None or (inc.started_at, inc.id or 1 << 62) < (best.started_at, best.id or 1 << 62)):
            best = inc
    return best


def _pick(named: str, candidates: list[Alert], causes: bool, named_on: str = "") -> Alert | None:
    """The alert an incident's title names among the live `candidates`: the best one, the first
    time; then the same one, while it is live, unless a clearly better one is (more severe, or a
    root cause where it named a function's own failure rate); once it has ended, another live
    alert on the same resource (`named_on`: orders-db's forecast gives way to orders-db at 100%),
    else None (the title keeps its last words)."""

    def weight(a: Alert) -> tuple[int, int]:
        return (int(causes and a.detector == "outcomes"), SEVERITY_RANK.get(a.severity, 3))

    def best_of(alerts: list[Alert]) -> Alert | None:
        return min(alerts, key=lambda a: (*weight(a), *_rank(a)), default=None)

    best = best_of(candidates)
    if not named:
        return best
    current = next((a for a in candidates if a.fingerprint == named), None)
    if current is None:
        return best_of([a for a in candidates if named_on and a.resource_id == named_on])
    return best if best is not None and weight(best) < weight(current) else current


def _kind(topo: Topology, resource_id: str) -> str:
    r = topo.resources.get(resource_id)
    return r.kind if r else resource_id.split("/", 1)[0]


def _also(topo: Topology, inc: Incident, held: list[str], where: dict[str, str]) -> str:
    """ " (and orders-dlq)": the other entry points this incident's symptoms were on, live or
    ended, so a head that moved on to a worse symptom still names every place users felt it."""
    named = where.get(inc.symptom_alert, "")
    others = sorted(
        {
            topo.resources[r].name
            for r in (where.get(fp, "") for fp in held)
            if r and r != named and r in topo.resources and topo.is_entry(r) and _kind(topo, r) not in ACCOUNT_WIDE
        }
    )
    others = [n for n in others if n not in inc.symptom]
    if not others:
        return ""
    return " (and " + ", ".join(others[:2]) + (f" and {len(others) - 2} more" if len(others) > 2 else "") + ")"


def _behind(topo: Topology, resource_id: str, title: str) -> str:
    """ " — behind storefront-api": the user-facing entry points a cause with no symptom yet
    serves, for a title that would otherwise not say where users would feel it."""
    names = [topo.resources[e].name for e in topo.served(resource_id) if e in topo.resources]
    if not names or any(n in title for n in names):
        return ""
    return " — behind " + ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")


def _fill(inc: Incident, members: list[Alert], topo: Topology, now: int, where: dict[str, str]) -> None:
    """`where`: the resource of every alert known this pass, live or just ended, by fingerprint."""
    members = sorted(members, key=_rank)
    supporting = [a for a in members if a.detector in SUPPORTING]
    ruled = [a for a in members if a not in supporting]
    if any(a.kind == "finding" for a in ruled):
        members = ruled  # what the incident says and pages on; the supporting findings are appended
        backing = {a.fingerprint for a in supporting}
        inc.symptom_alert = "" if inc.symptom_alert in backing else inc.symptom_alert  # a rule now leads
        inc.cause_alert = "" if inc.cause_alert in backing else inc.cause_alert
    else:
        supporting = []
    state = next((s for s in STATE_ORDER if any(a.state == s for a in members)), RESOLVED)
    symptoms = [a for a in members if a.kind == "finding" and topo.is_entry(a.resource_id)]
    causes = [a for a in members if a.kind == "finding" and not topo.is_entry(a.resource_id)]
    # An account-wide entry point beside a symptom it reaches is that symptom's cause: the SES
    # account refusing mail and the queue whose consumer sends it lead with the queue users wait on.
    upstream = [
        a
        for a in symptoms
        if _kind(topo, a.resource_id) in ACCOUNT_WIDE
        and any(o.resource_id != a.resource_id and o.resource_id in topo.entries(a.resource_id) for o in symptoms)
    ]
    if upstream:
        symptoms = [a for a in symptoms if a not in upstream]
        causes = sorted([*upstream, *causes], key=_rank)
        if inc.symptom_alert in {a.fingerprint for a in upstream}:
            inc.symptom_alert = inc.symptom = ""  # it named the SES account: the queue leads now
    paging = [a for a in members if a.state in (FIRING, RECOVERING, PENDING)] or members
    severity = min((a.severity for a in paging), key=lambda s: SEVERITY_RANK.get(s, 3))
    # The title names what users feel and what caused it, and keeps naming them for the incident's
    # life — the same alerts while they are live (their numbers refreshed), and their last words
    # once they have ended — so the thread's head says what the incident was about.
    symptom = _pick(inc.symptom_alert, symptoms, False, where.get(inc.symptom_alert, ""))
    named_cause = _pick(inc.cause_alert, causes, True, where.get(inc.cause_alert, ""))
    if symptom is not None:
        inc.symptom_alert, inc.symptom = symptom.fingerprint, symptom.title
    if named_cause is not None:
        inc.cause_alert, inc.cause_title = named_cause.fingerprint, named_cause.title
    lead = symptom or named_cause or members[0]
    symptom_title, cause_title = inc.symptom, inc.cause_title
    others = [c for c in causes if c is not named_cause]
    if symptom_title:
        # The named cause leads the cause line as it leads the title; once its alert has ended
        # (the database recovered before the API's errors cleared), in its last words.
        named = [_describe_cause(named_cause)] if named_cause else [cause_title] if cause_title else []
        cause = "; ".join(named + [_describe_cause(c) for c in others[:2]]) or inc.cause
    else:
        cause = lead.cause or "; ".join(_describe_cause(c) for c in others[:2])
    if supporting:
        cause = "; ".join([c for c in (cause,) if c] + [f"supporting: {a.title}" for a in supporting[:2]])
    if lead.kind != "finding":
        title = lead.title
    elif symptom_title:
        symptom_title += _also(topo, inc, [*inc.members, *(a.fingerprint for a in members)], where)
        title = f"{symptom_title} — {cause_title}" if cause_title else symptom_title
    else:
        title = (cause_title or lead.title) + _behind(
            topo, where.get(inc.cause_alert, lead.resource_id), cause_title or lead.title
        )
    # A cause that could still be joined by what users feel waits `cause_wait` before paging.
    joinable = (
        not symptoms and bool(causes) and severity != "critical" and any(topo.entries(c.resource_id) for c in causes)
    )
    before = (inc.state, inc.severity, inc.title, inc.cause, list(inc.members))
    inc.state, inc.severity = state, severity
    inc.title, inc.cause = title, cause
    inc.fix = (named_cause.fix if named_cause and named_cause.fix else lead.fix) or inc.fix
    inc.members = list(dict.fromkeys([*inc.members, *(a.fingerprint for a in [*members, *supporting])]))
    inc.joinable = joinable
    if lead.kind == "error":
        labels = {"resource": inc.group_key, "name": inc.group_key, "kind": "detector"}
    else:
        labels = resource_labels(topo.resources.get(lead.resource_id), lead.resource_id)
    labels.update(detector=lead.detector, severity=severity, state=state)
    inc.labels = labels
    # What a notification told: the alerts firing, the severity (alerts.notify reads both back),
    # and the version in the form stored before 2026-12-03 (one hash of the two), so that a
    # notification told in that form is not told again just because the form changed.
    firing = sorted(a.fingerprint for a in members if a.state in (FIRING, RECOVERING))
    told = hashlib.sha256(json.dumps(firing).encode()).hexdigest()[:12]
    legacy = hashlib.sha256(json.dumps([severity, firing]).encode()).hexdigest()[:12]
    inc.version = f"{told}:{severity}:{legacy}"
    if state == FIRING and inc.firing_at is None:
        inc.firing_at = now
        inc.events.append((FIRING, title))
    elif before[0] != state and before[2]:
        inc.events.append((state, ""))
    if before[1] != severity and before[2]:
        inc.events.append(("severity", f"{before[1]} -> {severity}"))
    if (inc.state, inc.severity, inc.title, inc.cause, inc.members) != before:
        inc.updated_at = now
