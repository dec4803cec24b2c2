"""PagerDuty: incidents out through the Events API v2, acknowledgements back in through V3
webhooks.

Out (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/, and the Events API v2
OpenAPI document in github.com/PagerDuty/api-schema reference/events-v2/openapiv3.json): a JSON
POST to https://events.pagerduty.com/v2/enqueue with `routing_key`, `event_action` (`trigger`,
`acknowledge`, `resolve`) and a `dedup_key` (at most 255 characters) that ties the three to one
PagerDuty alert; a trigger carries `payload` (`summary` at most 1,024 characters, `source`,
`severity` one of critical / error / warning / info, optional `timestamp`, `component`, `group`,
`class`, `custom_details`) and `links`. Answers: 202 `{"status": "success", "message": "Event
processed", "dedup_key": ...}`; 400 `{"status": "invalid event", "message": ..., "errors": [...]}`,
not to be retried; 429 and 5xx, to be retried after some time. The documented rate limit is about
120 events a minute per integration key (docs/events-API-v2/05-Rate-Limits.md), so the one retry
loop's backoff (and any Retry-After) is enough pacing.

fleetwatch's dedup key is `fleetwatch-<installation>-<incident id>`: stable for the incident's life,
and distinct between two stores sending to the same service.

In (https://developer.pagerduty.com/docs/webhooks/webhook-signatures/, PagerDuty/developer-docs
docs/webhooks/04-Signatures.md and 01-Overview.md): a V3 webhook subscription POSTs
`{"event": {"event_type": "incident.acknowledged", "agent": {"summary": NAME, ...}, "data":
{"type": "incident", "incident_key": DEDUP_KEY, ...}}}` signed in `X-PagerDuty-Signature`:
`v1=<hex HMAC-SHA256 of the raw body with the subscription's secret>`, several comma-separated
while a secret is rotated; any one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any

from alerts.delivery import Delivered, SendError
from alerts.http import post_json
from alerts.messages import Notice, clean, one_line

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX, DEDUP_MAX = 1024, 255
SEVERITY = {
    "critical": "critical",
    "warning": "warning",
    "info": "info",
}  # PagerDuty also has "error"; we have no such level
ACTION = {
    "firing": "trigger",
    "changed": "trigger",
    "acknowledged": "acknowledge",
    "resolved": "resolve",
    "absorbed": "resolve",
}
FROM_PAGERDUTY = " (PagerDuty)"  # how an acknowledgement that came from PagerDuty is signed
_KEY = re.compile(r"^fleetwatch-([0-9a-f]{8,16})-(\d{1,19})$")


def installation_id(store: Any, public_url: str) -> str:
    """Tells this installation's dedup keys from another's sending to the same PagerDuty service:
    a hash of when its store was made (the first migration's time) and its public URL, stable for
    the store's life."""
    made = ""
    if store is not None:
        row = store.db.execute("SELECT applied_at FROM fleetwatch_migrations ORDER BY id LIMIT 1").fetchone()
        made = str(row[0]) if row else ""
    return hashlib.sha256(f"{made}|{public_url}".encode()).hexdigest()[:8]


def dedup_key(installation: str, incident_id: int) -> str:
    return f"fleetwatch-{installation}-{incident_id}"[:DEDUP_MAX]


def incident_of(key: str, installation: str) -> int | None:
    """Our incident id from a dedup key (a PagerDuty incident's `incident_key`), or None when the
    key is not ours or belongs to another installation."""
    m = _KEY.match(key or "")
    return int(m.group(2)) if m and m.group(1) == installation else None


class PagerDuty:
    """Target `pagerduty:NAME`; `routing_keys` maps NAME to an Events API v2 integration key
    (pagerduty.routing_key is `default`)."""

    def __init__(self, routing_keys: dict[str, str], url: str, timeout: float, installation: str) -> None:
        self.routing_keys, self.url, self.timeout, self.installation = routing_keys, url, timeout, installation

    def send(self, target: str, notice: Notice, key: str, first: Delivered | None) -> Delivered:
        name = target.partition(":")[2]
        routing_key = self.routing_keys.get(name)
        if not routing_key:
            raise SendError(
                f"no PagerDuty routing key for {target}: set pagerduty.routing_key (environment "
                "FLEETWATCH_PAGERDUTY_ROUTING_KEY) to an Events API v2 integration key; only pagerduty:default "
                "is configured that way",
                retry=False,
            )
        inc = notice.incident
        dedup = dedup_key(self.installation, int(inc.id or 0))
        action = ACTION.get(notice.kind)
        if action is None:
            return Delivered(dedup)  # a repeat: PagerDuty's escalation policy re-notifies on its own
        if action == "acknowledge" and (inc.acked_by or "").endswith(FROM_PAGERDUTY):
            return Delivered(dedup)  # it came from PagerDuty: nothing to tell it
        event: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup}
        if action == "trigger":
            event.update(self._trigger(notice))
        got = post_json(self.url, event, self.timeout, what=f"PagerDuty {action}")
        body = got.json() if isinstance(got.json(), dict) else {}
        if got.status == 202 or (200 <= got.status < 300):
            return Delivered(str(body.get("dedup_key") or dedup))
        detail = "; ".join(clean(e, 200) for e in (body.get("errors") or [])[:5]) or clean(body.get("message", ""), 200)
        detail = detail.replace(routing_key, "********")  # should an answer ever quote the key
        if got.status == 400:
            hint = (
                (
                    " — check pagerduty.routing_key (FLEETWATCH_PAGERDUTY_ROUTING_KEY): it is the 32-character "
                    "Integration Key of an Events API v2 integration"
                )
                if "routing_key" in detail
                else ""
            )
            raise SendError(
                f"PagerDuty refused the {action} event (400 {clean(body.get('status', 'invalid event'), 60)}): "
                f"{detail}{hint}",
                retry=False,
            )
        if got.status == 429:
            raise SendError(f"PagerDuty {action}: rate limited (429)", retry_after=got.retry_after())
        if got.status >= 500:
            raise SendError(f"PagerDuty {action}: HTTP {got.status} {detail}".rstrip())
        raise SendError(f"PagerDuty {action}: HTTP {got.status} {detail} — check pagerduty.url".rstrip(), retry=False)

    def _trigger(self, n: Notice) -> dict[str, Any]:
        inc = n.incident
        labels = inc.labels or {}
        since = inc.firing_at or inc.started_at
        details: dict[str, Any] = {"incident": inc.id, "state": inc.state, "severity": inc.severity}
        for field in ("symptom", "cause", "fix"):
            if getattr(inc, field):
                details[field] = clean(getattr(inc, field), 2000)
        lines = n.evidence_lines()
        if lines:
            details["evidence"] = lines
        for k in ("service", "account", "region", "kind", "detector"):
            if labels.get(k):
                details[k] = clean(labels[k], 200)
        payload: dict[str, Any] = {
            "summary": one_line(f"{inc.severity.upper()}: {inc.title}", SUMMARY_MAX),
            "source": clean(labels.get("resource") or labels.get("name") or "fleetwatch", 255),
            "severity": SEVERITY.get(inc.severity, "warning"),
            "component": clean(labels.get("name", ""), 255) or None,
            "group": clean(labels.get("service", ""), 255) or None,
            "class": clean(labels.get("detector", ""), 255) or None,
            "custom_details": details,
        }
        if since:
            payload["timestamp"] = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        links = [{"href": n.url, "text": f"fleetwatch incident #{inc.id}"}]
        return {
            "payload": {k: v for k, v in payload.items() if v is not None},
            "links": links,
            "client": "fleetwatch",
            "client_url": n.url,
        }

    def find(self, target: str, key: str, first: Delivered | None) -> Delivered | None:
        # The Events API cannot be asked; sending the same event again is harmless (same dedup_key).
        return None


# -- V3 webhooks in ------------------------------------------------------------------------------


def signature_valid(body: bytes, header: str, secret: str) -> bool:
    """Whether any `v1=` signature in X-PagerDuty-Signature is the HMAC-SHA256 of the raw body."""
    if not secret or not header:
        return False
    expected = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected.encode(), part.strip().encode()) for part in header.split(","))


def sign(body: bytes, secret: str) -> str:
    """The X-PagerDuty-Signature PagerDuty would send (for the stand-in and the tests)."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def acknowledgement(event: Any) -> tuple[str, str] | None:
    """(incident_key, who) from an `incident.acknowledged` V3 webhook body; None for any other."""
    ev = event.get("event") if isinstance(event, dict) else None
    if not isinstance(ev, dict) or ev.get("event_type") != "incident.acknowledged":
        return None
    data = ev["data"] if isinstance(ev.get("data"), dict) else {}
    agent = ev["agent"] if isinstance(ev.get("agent"), dict) else {}
    key = data.get("incident_key")
    if not isinstance(key, str):
        return None
    who = one_line(agent.get("summary") or "someone", 100)
    return key, who + FROM_PAGERDUTY
