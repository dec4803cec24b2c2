"""The alert pipeline: observe a detection pass (alerts step, regroup into incidents, record),
then deliver what is owed (route -> mute -> dedupe against the log -> send with retry -> record).

It holds no state of its own between calls: everything is in the store, so a restart carries on
where the last run stopped. A send cut short by a crash is looked up where the channel allows it
(Slack bot messages carry their key) and otherwise sent again with the same identity.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from alerts.delivery import Channel, Delivered, DeliveryFailed, SendError, deliver
from alerts.incidents import ABSORBED, Incident, alert_labels, reconcile
from alerts.messages import Notice
from alerts.notify import Timers, muted, owed, targets
from alerts.state import FIRING, RECOVERING, Alert, Observation, Policy, step
from alerts.topology import Topology
from fleetwatch.config.rules import Route, Window

log = logging.getLogger("fleetwatch.alerts")
SETTLE_FOR = 7 * 86400  # how long after it ends an incident may still owe its resolved notice
FAILURE_BACKOFF = 60  # after a target gave up, wait this long before the next evaluation tries it
# What to set when a target names a channel that is not configured.
NO_CHANNEL = {
    "slack": "set slack.bot_token or slack.webhook_url",
    "email": "set smtp.host, or email.transport = 'ses'",
    "pagerduty": "set pagerduty.routing_key (environment FLEETWATCH_PAGERDUTY_ROUTING_KEY) to an Events API v2 "
    "integration key",
    "webhook": "add 'NAME=URL' to webhook.urls",
}


@dataclass(frozen=True)
class AlertSettings:
    policy: Policy = Policy()
    timers: Timers = Timers()
    routes: tuple[Route, ...] = ()
    windows: tuple[Window, ...] = ()
    wiring: tuple[tuple[str, str], ...] = ()
    defaults: tuple[str, ...] = ()
    public_url: str = "http://127.0.0.1:8000"
    max_attempts: int = 6


@dataclass
class Outcome:
    incident_id: int
    target: str
    kind: str
    ok: bool
    error: str = ""


@dataclass
class DeliveryReport:
    outcomes: list[Outcome] = field(default_factory=list)
    recovered: int = 0  # sends of unknown outcome found already delivered

    def summary(self) -> str:
        sent = [o for o in self.outcomes if o.ok]
        failed = [o for o in self.outcomes if not o.ok]
        text = f"{len(sent)} notification{'s' if len(sent) != 1 else ''} sent"
        if failed:
            text += f", {len(failed)} failed (" + "; ".join(f"{o.target}: {o.error}" for o in failed[:3]) + ")"
        return text


class Pipeline:
    def __init__(
        self,
        store: Any,
        settings: AlertSettings,
        channels: dict[str, Channel],
        now: Callable[[], float],
        sleep: Callable[[float], None],
        rng: random.Random | None = None,
        *,
        stopping: Callable[[], bool] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.store, self.settings, self.channels = store, settings, channels
        self.now, self.sleep, self.rng = now, sleep, rng or random.Random()
        # Asked before each send: once the agent is stopping, what is left stays owed for the next start.
        self.stopping = stopping or (lambda: False)
        self.tracer = tracer or trace.NoOpTracer()

    # -- observe -----------------------------------------------------------------------------

    def observe(
        self, observed: Sequence[Observation], ran_ok: set[str], resources: Sequence[Any], at: int
    ) -> list[Incident]:
        alerts = self.store.alerts()
        step(alerts, list(observed), ran_ok, at, self.settings.policy)
        topo = Topology(resources, self.settings.wiring)
        for a in alerts.values():
            a.labels = alert_labels(a, topo)
        open_incidents = self.store.open_incidents()
        ended = [fp for inc in open_incidents.values() for fp in inc.members if fp not in alerts]
        known = {a.fingerprint: a.resource_id for a in self.store.alert_rows(ended)}
        incidents = reconcile(
            alerts, open_incidents, topo, at, nodata_pages=self.settings.timers.notify_nodata, known=known
        )
        self.store.save(alerts, incidents, at)
        return incidents

    # -- deliver -----------------------------------------------------------------------------

    def deliver(self) -> DeliveryReport:
        report = DeliveryReport()
        self._settle_unknown(report)
        now = int(self.now())
        silences = self.store.silences(now)
        for inc in self.store.incidents_to_settle(now - SETTLE_FOR):
            members = self.store.alert_rows(inc.members)
            firing = [a.labels for a in members if a.state in (FIRING, RECOVERING)]
            mute = muted(firing, silences, self.settings.windows, now)
            for target in targets(inc, self.settings.routes, self.settings.defaults):
                history = self.store.history(inc.id, target)
                failed_at = self.store.last_failure(inc.id, target)
                missed = failed_at is not None or self.store.was_interrupted(inc.id, target)
                kind = owed(inc, history, now, self.settings.timers, mute, missed=missed)
                if kind is None:
                    continue
                if (
                    failed_at is not None
                    and now - failed_at < FAILURE_BACKOFF
                    and (not history or failed_at > history[-1].sent_at)
                ):
                    continue
                if self.stopping():
                    return report
                with self.tracer.start_as_current_span(
                    "fleetwatch.notify",
                    attributes={"fleetwatch.incident.id": inc.id, "fleetwatch.target": target, "fleetwatch.kind": kind},
                ) as span:
                    outcome = self._send(inc, target, kind, history, members)
                    if not outcome.ok:
                        span.set_status(Status(StatusCode.ERROR, outcome.error[:200]))
                report.outcomes.append(outcome)
                if outcome.ok:
                    log.info(
                        "sent %s of incident %s to %s",
                        kind,
                        inc.id,
                        target,
                        extra={"incident_id": inc.id, "target": target, "kind": kind},
                    )
        return report

    def _send(self, inc: Incident, target: str, kind: str, history: list, members: list[Alert]) -> Outcome:
        assert inc.id is not None  # read back from the store, which gave it its id
        channel = self.channels.get(target.partition(":")[0])
        # The kind is part of the key: after an interrupted send whose fate is unknown, what is
        # owed next may be another kind (the incident ended meanwhile), and it must not carry the
        # interrupted one's key (nor, by mail, its Message-ID, which clients show once).
        key = f"{inc.id}/{target}/{len(history) + 1}/{kind}"
        if channel is None:
            error = f"no channel for {target}: " + NO_CHANNEL.get(
                target.partition(":")[0], "it is none of slack:, email:, pagerduty: or webhook:"
            )
            self.store.failed(key, inc.id, target, kind, 0, error, int(self.now()))
            return Outcome(inc.id, target, kind, False, error)
        first = next((Delivered(h.external_id, h.thread_id) for h in history if h.external_id), None)
        base = self.settings.public_url.rstrip("/")
        extra: dict[str, Any] = {}
        if kind == ABSORBED:
            extra = {
                "into": inc.absorbed_into,
                "into_url": f"{base}/incidents/{inc.absorbed_into}" if inc.absorbed_into else "",
            }
        notice = Notice(inc, kind, members, f"{base}/incidents/{inc.id}", extra=extra)
        self.store.begin_send(key, inc.id, target, kind, inc.version, int(self.now()))
        try:
            got = deliver(
                lambda: channel.send(target, notice, key, first), self.settings.max_attempts, self.sleep, self.rng
            )
        except DeliveryFailed as exc:
            self.store.failed(key, inc.id, target, kind, exc.attempts, exc.error, int(self.now()))
            log.warning(
                "notification %s of incident %s to %s failed: %s",
                kind,
                inc.id,
                target,
                exc,
                extra={"incident_id": inc.id, "target": target, "kind": kind},
            )
            return Outcome(inc.id, target, kind, False, str(exc))
        self.store.sent(key, got.external_id, got.thread_id or (first.thread_id if first else ""), int(self.now()))
        return Outcome(inc.id, target, kind, True)

    def _settle_unknown(self, report: DeliveryReport) -> None:
        """A 'sending' row means the agent stopped mid-send: ask the channel whether it arrived;
        if it did, log it as sent; if not (or the channel cannot tell), drop the row, and the
        notification is owed again and sent with the same key."""
        for row in self.store.unknown_sends():
            channel = self.channels.get(row["target"].partition(":")[0])
            found = None
            if channel is not None:
                history = self.store.history(row["incident_id"], row["target"])
                first = next((Delivered(h.external_id, h.thread_id) for h in history if h.external_id), None)
                try:
                    found = channel.find(row["target"], row["key"], first)
                except SendError as exc:
                    log.warning("could not look up an interrupted send to %s: %s", row["target"], exc)
            if found is not None:
                self.store.sent(row["key"], found.external_id, found.thread_id, row["sent_at"])
                report.recovered += 1
            else:
                # Not there, or this channel cannot be asked (mail): owed again, and kept as
                # 'unknown', so that if the incident ends before it goes, its end is still told.
                self.store.interrupted(row["key"])
