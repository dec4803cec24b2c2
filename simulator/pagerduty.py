"""A local stand-in for PagerDuty's Events API v2, for the demo and the tests: POST /v2/enqueue
answered as PagerDuty documents it (developer.pagerduty.com Events API v2 "Send an Alert Event",
and the OpenAPI document in PagerDuty/api-schema reference/events-v2/openapiv3.json):

- 202 `{"status": "success", "message": "Event processed", "dedup_key": KEY}` for a valid event;
- 400 `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}` for an
  invalid one (routing_key not 32 characters, an unknown event_action, a trigger without
  payload.summary / source / a known severity, a summary over 1,024 or a dedup_key over 255
  characters), and `{"status": "Unrecognized object", ...}` for a body that is not JSON;
- 429 and 5xx when a fault is queued (`fail(...)`), as PagerDuty throttles and fails.

It keeps PagerDuty's incidents by dedup_key with their state: a trigger opens one (or adds to the
open one), acknowledge and resolve move it, and once resolved, events for that key are dropped
except a trigger, which opens a new one — the documented de-duplication rules. Routing keys it
does not know are refused with a 400 naming the key, which is stricter than PagerDuty (it accepts
the event and routes it nowhere), so a wrong key shows in tests.

`webhook(...)` makes the signed V3 webhook PagerDuty would send when someone acknowledges there.
"""

from __future__ import annotations

import json
from typing import Any

from alerts.pagerduty import sign
from simulator.webhook import JsonStandIn, Received

ROUTING_KEY = "fleetwatchstandin000000000000000"  # 32 characters, like an Integration Key
WEBHOOK_SECRET = "fleetwatch-standin-webhook-secret"
SEVERITIES = ("critical", "error", "warning", "info")


class PagerDutyStandIn(JsonStandIn):
    name = "pagerduty-standin"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, routing_keys: tuple[str, ...] = (ROUTING_KEY,)) -> None:
        super().__init__(host, port)
        self.routing_keys = set(routing_keys)
        self.incidents: list[dict[str, Any]] = []  # every incident, in the order they opened
        self.events: list[dict[str, Any]] = []  # every accepted event

    @property
    def url(self) -> str:
        return self.base_url + "/v2/enqueue"

    def fault_body(self, status: int) -> Any:
        if status == 429:
            return {
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly. Please retry later.",
            }
        return {"status": "Internal Server Error", "message": "An error occurred processing the event", "errors": []}

    def answer(self, got: Received) -> tuple[int, Any, dict[str, str]]:
        if got.path.split("?")[0] != "/v2/enqueue":
            return 404, {"status": "Not Found", "message": "Not Found"}, {}
        try:
            event = json.loads(got.body)
        except ValueError:
            return (
                400,
                {
                    "status": "Unrecognized object",
                    "message": "Event object format is unrecognized",
                    "errors": ["JSON parse error"],
                },
                {},
            )
        errors = self._invalid(event) if isinstance(event, dict) else ["Event object is not a JSON object"]
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, {}
        key = event.get("dedup_key") or f"standin-{len(self.events) + 1}"
        with self.lock:
            self.events.append(event)
            self._apply(event, key)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}, {}

    def _invalid(self, e: dict[str, Any]) -> list[str]:
        errors = []
        key = e.get("routing_key")
        if not isinstance(key, str) or len(key) != 32:
            errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        elif key not in self.routing_keys:
            errors.append("Unknown routing_key: no Events API v2 integration has it")
        action = e.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append(
                "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')"
            )
        dedup = e.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
            errors.append("'dedup_key' must be a string of at most 255 characters")
        if action in ("acknowledge", "resolve") and not dedup:
            errors.append("'dedup_key' is required for acknowledge and resolve events")
        if action == "trigger":
            p = e.get("payload")
            if not isinstance(p, dict):
                errors.append("'payload' is missing or not an object")
            else:
                if not isinstance(p.get("summary"), str) or not p["summary"]:
                    errors.append("'payload.summary' is missing or blank")
                elif len(p["summary"]) > 1024:
                    errors.append("'payload.summary' is too long (at most 1024 characters)")
                if not isinstance(p.get("source"), str) or not p["source"]:
                    errors.append("'payload.source' is missing or blank")
                if p.get("severity") not in SEVERITIES:
                    errors.append(
                        "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', "
                        "'error' or 'info')"
                    )
            for link in e.get("links") or []:
                if not isinstance(link, dict) or not link.get("href"):
                    errors.append("each of 'links' needs an 'href'")
        return errors

    def _apply(self, e: dict[str, Any], key: str) -> None:
        action = e["event_action"]
        open_one = next((i for i in self.incidents if i["dedup_key"] == key and i["status"] != "resolved"), None)
        if action == "trigger":
            if open_one is None:
                open_one = {
                    "dedup_key": key,
                    "status": "triggered",
                    "summary": e["payload"]["summary"],
                    "severity": e["payload"]["severity"],
                    "links": e.get("links") or [],
                    "log": [],
                }
                self.incidents.append(open_one)
            else:
                open_one["summary"], open_one["severity"] = e["payload"]["summary"], e["payload"]["severity"]
        elif open_one is None:
            return  # acknowledge / resolve with no open alert: dropped, as PagerDuty does
        elif action == "acknowledge":
            open_one["status"] = "acknowledged"
        else:
            open_one["status"] = "resolved"
        open_one["log"].append(action)

    def incident(self, dedup_key: str) -> dict[str, Any] | None:
        """The newest incident with this key."""
        with self.lock:
            found = [i for i in self.incidents if i["dedup_key"] == dedup_key]
            return dict(found[-1]) if found else None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"incidents": [dict(i) for i in self.incidents], "events": list(self.events)}

    @staticmethod
    def webhook(
        incident_key: str, who: str, secret: str = WEBHOOK_SECRET, event_type: str = "incident.acknowledged"
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the V3 webhook PagerDuty sends when `who` acknowledges the
        incident whose incident_key is `incident_key` (shape from PagerDuty's webhooks overview)."""
        body = json.dumps(
            {
                "event": {
                    "id": "01STANDIN0000000000000000",
                    "event_type": event_type,
                    "resource_type": "incident",
                    "occurred_at": "2026-01-01T00:00:00.000Z",
                    "agent": {
                        "id": "PSTAND1",
                        "type": "user_reference",
                        "summary": who,
                        "html_url": "https://standin.pagerduty.com/users/PSTAND1",
                    },
                    "client": {"name": "PagerDuty"},
                    "data": {
                        "id": "QSTAND1",
                        "type": "incident",
                        "number": 1,
                        "status": "acknowledged",
                        "incident_key": incident_key,
                        "title": "stand-in incident",
                        "html_url": "https://standin.pagerduty.com/incidents/QSTAND1",
                    },
                }
            }
        ).encode()
        return body, {
            "Content-Type": "application/json",
            "User-Agent": "PagerDuty-Webhook/V3.0",
            "X-PagerDuty-Signature": sign(body, secret),
        }
