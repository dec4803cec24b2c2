"""What each incident owes each target, from its state, the timers and the notification log
(Alertmanager's route -> silence -> dedupe). Pure: nothing here sends or stores.

- first (`firing`): once the incident fires and `group_wait` has passed since it opened
  (`cause_wait` since it fired, for a cause that may yet be joined by its symptom);
- `changed`: its firing alerts changed or its severity got worse than last told, at most once per
  `group_interval` (a severity only milder than last told is not sent: milder_only);
- `repeat`: unchanged and unacknowledged for `repeat_interval`;
- `acknowledged`: once, when someone acknowledged it (on the dashboard, with `fleetwatch ack`, or
  in PagerDuty) after a page reached this target and nothing has said so since;
- `resolved` (or `absorbed` into another incident): once, if anything was sent before.
A silenced or maintenance-muted incident owes nothing new while muted; what it still owes when
the mute ends is sent then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alerts.incidents import ABSORBED, Incident
from alerts.state import ERROR, FIRING, NODATA, RESOLVED, SEVERITY_RANK
from fleetwatch.config.rules import Route, Window, matches_all

ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True)
class Timers:
    group_wait: int = 30
    cause_wait: int = 120
    group_interval: int = 300
    repeat_interval: int = 4 * 3600
    notify_nodata: bool = False
    notify_errors: bool = False


@dataclass(frozen=True)
class Sent:
    kind: str
    version: str
    sent_at: int
    external_id: str = ""
    thread_id: str = ""


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: tuple
    starts_at: int
    ends_at: int

    def active(self, now: int) -> bool:
        return self.starts_at <= now < self.ends_at


def targets(inc: Incident, routes: Sequence[Route], defaults: Sequence[str]) -> list[str]:
    """Every matching route adds its targets; an incident no route matches goes to the defaults."""
    out: list[str] = []
    for route in routes:
        if matches_all(route.matchers, inc.labels):
            out += [t for t in route.targets if t not in out]
    return out or list(defaults)


def muted(
    member_labels: Sequence[dict[str, str]], silences: Sequence[Silence], windows: Sequence[Window], now: int
) -> str:
    """Why the incident is muted ('' if not): every firing member is silenced or in maintenance."""
    if not member_labels:
        return ""
    reasons = []
    for labels in member_labels:
        silence = next((s for s in silences if s.active(now) and matches_all(s.matchers, labels)), None)
        if silence:
            reasons.append(f"silence #{silence.id}")
            continue
        window = next((w for w in windows if matches_all(w.matchers, labels) and w.active(now)), None)
        if window is None:
            return ""
        reasons.append("maintenance window")
    return sorted(set(reasons))[0]


def milder_only(last: Sent, inc: Incident) -> bool:
    """The same alerts firing as when the target was last told, at a milder severity: no update.
    A rate crossing its critical line back and forth sent make demo's orders-dlq thread four
    UPDATEDs in 20 minutes, CRITICAL, WARNING, CRITICAL, WARNING. Going back up to the severity
    told is then no change at all; a new alert or a worse severity is."""
    told = last.version.split(":")
    now = inc.version.split(":")
    if len(told) < 2 or len(now) < 2 or told[0] != now[0]:
        return False
    return SEVERITY_RANK.get(now[1], 3) > SEVERITY_RANK.get(told[1], 3)


def owed(
    inc: Incident, history: Sequence[Sent], now: int, timers: Timers, mute: str = "", missed: bool = False
) -> str | None:
    """The kind of notification this incident owes one target now, or None. `missed`: a page to
    this target failed (the channel was down) and none has been delivered since."""
    last = history[-1] if history else None
    done = inc.state in (RESOLVED, ABSORBED)
    if done:
        if last is not None and last.kind not in (RESOLVED, ABSORBED):
            return ABSORBED if inc.state == ABSORBED else RESOLVED
        if last is None and missed:
            # It fired and ended while the channel was down: the target still hears that it happened.
            return ABSORBED if inc.state == ABSORBED else RESOLVED
        return None
    if inc.severity == "info":
        return None  # a risk worth showing (a low limit, a DLQ that expires first) pages nobody
    if (
        inc.acked_at is not None
        and last is not None
        and last.kind not in (RESOLVED, ABSORBED)
        and not any(h.kind == ACKNOWLEDGED and h.sent_at >= inc.acked_at for h in history)
    ):
        # Told even while muted or recovering: whoever was paged learns someone is on it.
        return ACKNOWLEDGED
    pages = (
        inc.state == FIRING
        or (inc.state == NODATA and timers.notify_nodata)
        or (inc.state == ERROR and timers.notify_errors)
    )
    if not pages or mute:
        return None
    if last is None or last.kind in (RESOLVED, ABSORBED):
        if inc.joinable:  # a cause waits for its symptom from the moment it could page
            since = inc.firing_at if inc.state == FIRING and inc.firing_at is not None else inc.started_at
            return FIRING if now - since >= timers.cause_wait else None
        # group_wait gathers what arrives together; it runs from the incident's opening, so the
        # pending time under `for` counts towards it and a page is not held a pass longer.
        return FIRING if now - inc.started_at >= timers.group_wait else None
    # Told in the form stored before 2026-12-03 (the version's last part) is told all the same.
    same = last.version in (inc.version, inc.version.rsplit(":", 1)[-1])
    changed = not same and not milder_only(last, inc)
    if changed and now - last.sent_at >= timers.group_interval:
        return "changed"
    if inc.acked_at is None and now - last.sent_at >= timers.repeat_interval:
        return "repeat"
    return None
