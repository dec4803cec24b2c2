"""A generic webhook in Prometheus Alertmanager's webhook format, so any receiver written for
Alertmanager takes fleetwatch's notifications.

The shape (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config, and
`Message` in prometheus/alertmanager notify/webhook/webhook.go): version "4", groupKey,
truncatedAlerts, and the template data — receiver, status (firing / resolved), alerts[] (status,
labels, annotations, startsAt, endsAt, generatorURL, fingerprint), groupLabels, commonLabels,
commonAnnotations, externalURL. An alert still firing has endsAt "0001-01-01T00:00:00Z", Go's zero
time, as Alertmanager sends it. Alertmanager treats a 2xx answer as delivered and a 5xx as worth
retrying; we also retry a 429 (after its Retry-After) and nothing else.

One notification is one group: the incident, grouped by `fleetwatch_incident`. Each alert's
annotations also carry the incident's title and URL, what this notification is (firing, changed,
repeat, acknowledged, resolved, absorbed) and who acknowledged it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alerts.delivery import Delivered, SendError
from alerts.http import post_json
from alerts.messages import Notice, clean, one_line

ZERO_TIME = "0001-01-01T00:00:00Z"
MAX_ALERTS = 100  # the rest is counted in truncatedAlerts, as Alertmanager's max_alerts does


def _iso(ts: int | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else ZERO_TIME


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def payload(n: Notice, receiver: str, external_url: str) -> dict[str, Any]:
    inc = n.incident
    ended = n.kind in ("resolved", "absorbed")
    shared = {"incident_title": one_line(inc.title, 500), "incident_url": n.url, "notification": n.kind}
    if inc.acked_by:
        shared["acknowledged_by"] = one_line(inc.acked_by, 200)
    if n.kind == "absorbed" and n.extra.get("into_url"):
        shared["merged_into_url"] = str(n.extra["into_url"])
    alerts: list[dict[str, Any]] = []
    for a in n.alerts or []:
        done = ended or a.state == "resolved"
        labels = {str(k): clean(v, 500) for k, v in (a.labels or {}).items() if v not in (None, "")}
        labels.update(alertname=a.detector or "fleetwatch", severity=a.severity, fleetwatch_incident=str(inc.id))
        annotations = {"summary": clean(a.title, 1000), **shared}
        if a.cause:
            annotations["description"] = clean(a.cause, 2000)
        if a.fix:
            annotations["fix"] = clean(a.fix, 2000)
        alerts.append(
            {
                "status": "resolved" if done else "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": _iso(a.started_at or a.active_since or inc.started_at),
                "endsAt": _iso(a.resolved_at or (inc.resolved_at if done else None)) if done else ZERO_TIME,
                "generatorURL": n.url,
                "fingerprint": a.fingerprint,
            }
        )
    if not alerts:  # an incident told without its alerts (they were pruned): the incident itself
        labels = {str(k): clean(v, 500) for k, v in (inc.labels or {}).items() if v not in (None, "")}
        labels.update(
            alertname=labels.get("detector") or "fleetwatch", severity=inc.severity, fleetwatch_incident=str(inc.id)
        )
        alerts.append(
            {
                "status": "resolved" if ended else "firing",
                "labels": labels,
                "annotations": {"summary": one_line(inc.title, 1000), **shared},
                "startsAt": _iso(inc.started_at),
                "endsAt": _iso(inc.resolved_at) if ended else ZERO_TIME,
                "generatorURL": n.url,
                "fingerprint": inc.fingerprint,
            }
        )
    kept, truncated = alerts[:MAX_ALERTS], max(0, len(alerts) - MAX_ALERTS)
    group = {"fleetwatch_incident": str(inc.id)}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{fleetwatch_incident="{inc.id}"}}',
        "truncatedAlerts": truncated,
        "receiver": receiver,
        "status": "resolved" if ended else "firing",
        "alerts": kept,
        "groupLabels": group,
        "commonLabels": _common([a["labels"] for a in kept]),
        "commonAnnotations": _common([a["annotations"] for a in kept]),
        "externalURL": external_url,
    }


class Webhook:
    """Target `webhook:NAME`, for each NAME=URL of webhook.urls."""

    def __init__(self, urls: dict[str, str], token: str, timeout: float, external_url: str) -> None:
        self.urls, self.token, self.timeout, self.external_url = urls, token, timeout, external_url

    def send(self, target: str, notice: Notice, key: str, first: Delivered | None) -> Delivered:
        name = target.partition(":")[2]
        url = self.urls.get(name)
        if not url:
            known = ", ".join(f"webhook:{n}" for n in sorted(self.urls)) or "none"
            raise SendError(
                f"no webhook named {name!r} for {target}: add '{name}=URL' to webhook.urls (configured: {known})",
                retry=False,
            )
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        # The URL is never put in an error: it may carry a token.
        got = post_json(url, payload(notice, name, self.external_url), self.timeout, headers, what=f"webhook {target}")
        if 200 <= got.status < 300:
            return Delivered()
        if got.status == 429:
            raise SendError(f"webhook {target}: rate limited (429)", retry_after=got.retry_after())
        if got.status >= 500:
            raise SendError(f"webhook {target}: HTTP {got.status}")
        hint = "; check webhook.token" if got.status in (401, 403) else "; check webhook.urls"
        raise SendError(
            f"webhook {target}: HTTP {got.status} {clean(got.body[:200].decode(errors='replace'), 200)}".rstrip()
            + hint,
            retry=False,
        )

    def find(self, target: str, key: str, first: Delivered | None) -> Delivered | None:
        return None  # a receiver cannot be asked; the notification is sent again
