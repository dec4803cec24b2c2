"""Alerts grouped into incidents: one incident per problem, led by what users feel.

An alert on a user-facing entry point (an API, a schedule, a queue, the SES account) is a
symptom and is grouped by its resource. Any other alert is a cause: it joins the incident of an
active symptom it can reach in the topology (so a connection storm that makes the checkout API
fail is one incident, titled by the failing API and naming the storm), and otherwise forms an
incident of its own, which waits `cause_wait` before paging in case the symptom follows.
Pure: alerts, open incidents, topology and time in; incidents out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from alerts.state import ACTIVE, ERROR, FIRING, NODATA, PENDING, RECOVERING, RESOLVED, SEVERITY_RANK, Alert, fingerprint
from alerts.topology import Topology

STATE_ORDER = (FIRING, RECOVERING, PENDING, NODATA, ERROR)
ABSORBED = "absorbed"


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
    # Set by reconcile for the caller to record: (event, detail) in order.
    events: list[tuple[str, str]] = field(default_factory=list)
    absorbed_by_key: str | None = None


def resource_labels(resource: Any, resource_id: str) -> dict[str, str]:
    """The labels routes, silences and maintenance windows match on, for one resource."""
    if resource is None:
        return {"resource": resource_id, "name": resource_id.rsplit("/", 1)[-1], "kind": resource_id.split("/", 1)[0]}
    labels = {"resource": resource.id, "name": resource.name, "kind": resource.kind, "account": resource.account,
              "region": resource.region, "service": resource.tags.get("service", "")}
    for k, v in resource.tags.items():
        labels["tag_" + "".join(c if c.isalnum() else "_" for c in k)] = v
    return labels


def alert_labels(alert: Alert, topo: Topology) -> dict[str, str]:
    labels = resource_labels(topo.resources.get(alert.resource_id), alert.resource_id)
    labels.update(detector=alert.detector, severity=alert.severity, state=alert.state)
    return labels


def _rank(a: Alert) -> tuple[int, int, int]:
    return (STATE_ORDER.index(a.state) if a.state in STATE_ORDER else 9, SEVERITY_RANK.get(a.severity, 3), a.active_since or 0)


def group_key(alert: Alert, alerts: dict[str, Alert], topo: Topology) -> tuple[str, bool]:
    """(the group this alert belongs to, whether that group could still join a symptom's)."""
    if alert.kind == "error":
        return f"detector:{alert.detector}", False
    if alert.kind == "nodata" or topo.is_entry(alert.resource_id):
        return alert.resource_id, False
    entries = topo.entries(alert.resource_id)
    if not entries:
        return alert.resource_id, False
    order = {e: i for i, e in enumerate(entries)}
    symptoms = [a for a in alerts.values() if a.kind == "finding" and a.state in ACTIVE and a.resource_id in order]
    if symptoms:
        best = min(symptoms, key=lambda a: (*_rank(a), order[a.resource_id]))
        return best.resource_id, False
    return alert.resource_id, True


def _describe_cause(a: Alert) -> str:
    return a.title + (f" ({a.cause})" if a.cause else "")


def reconcile(alerts: dict[str, Alert], open_incidents: dict[str, Incident], topo: Topology, now: int) -> list[Incident]:
    """Regroup the live alerts and return every incident that exists or changed: the open ones,
    new ones, and those that resolved or were absorbed into another this pass."""
    groups: dict[str, list[Alert]] = {}
    joinable: dict[str, bool] = {}
    for a in alerts.values():
        if a.state == RESOLVED:
            continue
        key, can_join = group_key(a, alerts, topo)
        groups.setdefault(key, []).append(a)
        joinable[key] = joinable.get(key, True) and can_join
    out: list[Incident] = []
    moved_to: dict[str, str] = {}  # alert fingerprint -> the group it is in now
    for key, members in groups.items():
        for a in members:
            moved_to[a.fingerprint] = key
    for key, members in sorted(groups.items()):
        fp = fingerprint({"group": key})
        inc = open_incidents.get(fp)
        if inc is None:
            inc = Incident(fp, key, PENDING, "info", "", now, now)
            inc.events.append(("opened", ", ".join(sorted(a.title for a in members))[:500]))
        _fill(inc, members, topo, now, joinable.get(key, False))
        out.append(inc)
    live = {fingerprint({"group": k}) for k in groups}
    for fp, inc in open_incidents.items():
        if fp in live:
            continue
        targets = {moved_to[m] for m in inc.members if m in moved_to}
        inc.updated_at, inc.resolved_at = now, now
        if targets:
            inc.state, inc.absorbed_by_key = ABSORBED, sorted(targets)[0]
            inc.events.append((ABSORBED, f"joined the incident of {inc.absorbed_by_key}"))
        else:
            inc.state = RESOLVED
            inc.events.append((RESOLVED, ""))
        out.append(inc)
    return out


def _fill(inc: Incident, members: list[Alert], topo: Topology, now: int, joinable: bool) -> None:
    members = sorted(members, key=_rank)
    state = next((s for s in STATE_ORDER if any(a.state == s for a in members)), RESOLVED)
    symptoms = [a for a in members if a.kind == "finding" and topo.is_entry(a.resource_id)]
    causes = [a for a in members if a.kind == "finding" and not topo.is_entry(a.resource_id)]
    lead = symptoms[0] if symptoms else members[0]
    paging = [a for a in members if a.state in (FIRING, RECOVERING, PENDING)] or members
    severity = min((a.severity for a in paging), key=lambda s: SEVERITY_RANK.get(s, 3))
    if symptoms and causes:
        cause = "; ".join(_describe_cause(c) for c in causes[:3])
    else:
        cause = lead.cause or "; ".join(_describe_cause(c) for c in causes[1:3])
    title = lead.title if not (symptoms and causes) else f"{lead.title} — {causes[0].title}"
    if not symptoms and causes and joinable:
        entry = topo.resources.get(topo.entries(causes[0].resource_id)[0])
        title += f" (upstream of {entry.name if entry else topo.entries(causes[0].resource_id)[0]})"
    before = (inc.state, inc.severity, inc.title, inc.cause, inc.members)
    inc.state, inc.severity, inc.symptom = state, severity, lead.title if symptoms else ""
    inc.title, inc.cause = title, cause
    inc.fix = (causes[0].fix if causes and causes[0].fix else lead.fix)
    inc.members = [a.fingerprint for a in members]
    inc.joinable = joinable
    labels = resource_labels(topo.resources.get(inc.group_key), inc.group_key) if not inc.group_key.startswith("detector:") \
        else {"resource": inc.group_key, "name": inc.group_key, "kind": "detector"}
    labels.update(detector=lead.detector, severity=severity, state=state)
    inc.labels = labels
    inc.version = hashlib.sha256(json.dumps(
        [severity, sorted(a.fingerprint for a in members if a.state in (FIRING, RECOVERING))]).encode()).hexdigest()[:12]
    if state == FIRING and inc.firing_at is None:
        inc.firing_at = now
        inc.events.append((FIRING, title))
    elif before[0] != state and before[2]:
        inc.events.append((state, ""))
    if before[1] != severity and before[2]:
        inc.events.append(("severity", f"{before[1]} -> {severity}"))
    added = set(inc.members) - set(before[4])
    if before[2] and added:
        inc.events.append(("joined", "; ".join(a.title for a in members if a.fingerprint in added)[:500]))
    if (inc.state, inc.severity, inc.title, inc.cause, inc.members) != before:
        inc.updated_at = now
