"""Each alert's state machine, as in Prometheus alerting rules: a finding is pending until it has
held for `for`, then firing; when it stops it is recovering for `keep_firing_for` (a flap inside
that time keeps the same alert firing) and then resolved. NoData and detector errors are states
of their own. Pure: the current alerts, what this pass observed, and the time in; transitions out.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

PENDING, FIRING, RECOVERING, RESOLVED, NODATA, ERROR = "pending", "firing", "recovering", "resolved", "nodata", "error"
ACTIVE = (PENDING, FIRING, RECOVERING)
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def fingerprint(labels: dict[str, str]) -> str:
    """Identity from the identifying labels only, never from the text."""
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Observation:
    """One thing a detection pass said: a finding, a NoData, or a detector error."""

    detector: str
    resource_id: str
    key: str
    kind: str  # "finding", "nodata" or "error"
    severity: str
    title: str
    cause: str = ""
    fix: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    started_at: int | None = None
    limit: bool = False  # a hard-limit rule: pending for Policy.for_limits
    # The detector's data already shows it over minutes (detectors.base.Finding.sustained): the
    # alert counts as active since `started_at`, so `for` runs from there.
    sustained: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(
            {"detector": self.detector, "resource": self.resource_id, "key": self.key, "kind": self.kind}
        )


@dataclass
class Alert:
    fingerprint: str
    detector: str
    resource_id: str
    key: str
    kind: str
    state: str
    severity: str
    title: str
    cause: str = ""
    fix: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    started_at: int | None = None
    active_since: int | None = None
    firing_since: int | None = None
    recovering_since: int | None = None
    last_seen: int | None = None
    resolved_at: int | None = None
    flaps: int = 0
    incident_id: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    for_: int = 120
    keep_firing_for: int = 300
    # A rule measured against a hard limit waits less: at max_connections or throttled by a partition,
    # users are already failing, and the signal is not a statistical guess that a blip could fake.
    for_limits: int = 60


@dataclass(frozen=True)
class Transition:
    fingerprint: str
    old: str
    new: str


def _held_since(ob: Observation, since: int, now: int) -> int:
    """Since when the finding has held: from the pass that first saw it, or, for a sustained one,
    from when its data shows it began (never later than the pass that saw it)."""
    if ob.sustained and ob.started_at:
        return min(since, ob.started_at, now)
    return since


def with_peak(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A finding's evidence with the highest point its held series reached over the alert's life
    (`peak`: series, at, value), carried from pass to pass: each pass's evidence holds only its
    last 30 points, so the RESOLVED notice would otherwise know only the end of the climb. Kept
    only for a series held against a limit (the first one, detectors.base.evidence), where higher
    is worse. Not against a baseline alone: an unusual drop is worse the lower it goes, and a
    count such as "runs triggered" has no peak worth telling."""
    series = new.get("series") or {}
    if not series or "limit" not in new:
        return new
    name, points = next(iter(series.items()))
    values = [(p[0], float(p[1])) for p in points if isinstance(p[1], (int, float)) and math.isfinite(p[1])]
    best = max(values, key=lambda p: p[1], default=None)
    prev = old.get("peak") if isinstance(old.get("peak"), dict) else None
    if prev is not None and prev.get("series") == name and (best is None or prev["value"] >= best[1]):
        return {**new, "peak": prev}
    return {**new, "peak": {"series": name, "at": best[0], "value": best[1]}} if best is not None else new


def step(
    alerts: dict[str, Alert], observed: list[Observation], ran_ok: set[str], now: int, policy: Policy
) -> list[Transition]:
    """Advance every alert by one pass. Alerts of detectors that did not run cleanly this pass
    (errored, or not asked for) keep their state: silence from a broken detector is not recovery."""
    moves: list[Transition] = []
    seen = set()
    for ob in observed:
        fp = ob.fingerprint
        seen.add(fp)
        alert = alerts.get(fp)
        if alert is None or alert.state == RESOLVED:
            alert = Alert(
                fp,
                ob.detector,
                ob.resource_id,
                ob.key,
                ob.kind,
                RESOLVED,
                ob.severity,
                ob.title,
                flaps=alert.flaps if alert else 0,
            )
            alerts[fp] = alert
        old = alert.state
        hold = policy.for_limits if ob.limit else policy.for_
        alert.severity, alert.title, alert.cause, alert.fix, alert.evidence = (
            ob.severity,
            ob.title,
            ob.cause,
            ob.fix,
            with_peak(ob.evidence, alert.evidence) if ob.kind == "finding" else ob.evidence,
        )
        alert.last_seen, alert.resolved_at = now, None
        if ob.kind != "finding":
            alert.state = NODATA if ob.kind == "nodata" else ERROR
            alert.active_since = alert.active_since if old == alert.state else now
        elif old in (RESOLVED, NODATA, ERROR):
            alert.state, alert.active_since, alert.started_at = PENDING, _held_since(ob, now, now), ob.started_at or now
            alert.firing_since = alert.recovering_since = None
            if now - alert.active_since >= hold:
                alert.state, alert.firing_since = FIRING, now
        elif old == PENDING:
            alert.active_since = _held_since(ob, alert.active_since or now, now)
            if now - alert.active_since >= hold:
                alert.state, alert.firing_since = FIRING, now
        elif old == RECOVERING:
            alert.state, alert.recovering_since = FIRING, None
            alert.flaps += 1
        if alert.state != old:
            moves.append(Transition(fp, old, alert.state))
    for fp, alert in alerts.items():
        if fp in seen or alert.state == RESOLVED or alert.detector not in ran_ok:
            continue
        old = alert.state
        if old == FIRING and policy.keep_firing_for > 0:
            alert.state, alert.recovering_since = RECOVERING, now
        elif old == RECOVERING and now - (alert.recovering_since or now) < policy.keep_firing_for:
            continue
        else:
            alert.state, alert.resolved_at = RESOLVED, now
        moves.append(Transition(fp, old, alert.state))
    return moves
