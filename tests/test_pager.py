"""PagerDuty (Events API v2 out, V3 webhooks in) and the generic Alertmanager-shaped webhook,
through the real pipeline on a fake clock, over real HTTP to stand-ins on loopback; and the
acknowledgement that reaches every target once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.incidents import Incident
from alerts.notify import ACKNOWLEDGED, Sent, Timers, owed
from alerts.pagerduty import dedup_key, incident_of, installation_id, sign, signature_valid
from alerts.state import FIRING, RECOVERING, RESOLVED
from fleetwatch.agent.alerting import alert_settings
from simulator.mail import SmtpSink
from simulator.pagerduty import ROUTING_KEY, WEBHOOK_SECRET, PagerDutyStandIn
from simulator.slack import SlackStandIn
from simulator.webhook import WebhookReceiver
from tests.alerting_kit import T0, World, api_errors, fire, queue_growth

HOOK_TOKEN = "hook-token-0123456789"


@pytest.fixture()
def pd() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn() as stand_in:
        yield stand_in


@pytest.fixture()
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(token=HOOK_TOKEN) as stand_in:
        yield stand_in


@pytest.fixture()
def world(tmp_path: Path, pd: PagerDutyStandIn, hook: WebhookReceiver) -> Iterator[World]:
    with SlackStandIn() as slack, SmtpSink() as smtp:
        w = World(
            tmp_path,
            slack,
            smtp,
            settings={
                "pagerduty.routing_key": ROUTING_KEY,
                "pagerduty.url": pd.url,
                "webhook.urls": [f"bot={hook.url('/alerts')}"],
                "webhook.token": HOOK_TOKEN,
            },
        )
        yield w
        w.close()


def end(world: World) -> None:
    for _ in range(8):  # keep_firing_for = 5 min, then resolved
        world.tick()


def key_of(world: World, incident_id: int) -> str:
    return dedup_key(installation_id(world.store, world.cfg["web.public_url"]), incident_id)


def failures(world: World, target_prefix: str) -> list[dict[str, Any]]:
    return list(world.store.db.query("SELECT * FROM notification_failures WHERE target LIKE ?", [target_prefix + "%"]))


# -- PagerDuty out -----------------------------------------------------------------------------


def test_trigger_acknowledge_resolve_share_one_dedup_key(world: World, pd: PagerDutyStandIn) -> None:
    fire(world)
    (inc,) = world.incidents()
    key = key_of(world, inc.id)
    (trigger,) = pd.snapshot()["events"]
    assert (
        trigger["event_action"] == "trigger" and trigger["dedup_key"] == key and trigger["routing_key"] == ROUTING_KEY
    )
    p = trigger["payload"]
    assert p["severity"] == "critical" and p["summary"].startswith("CRITICAL: checkout-api: 12% of requests failing")
    assert len(p["summary"]) <= 1024 and p["source"].endswith("/checkout-api") and p["class"] == "outcomes"
    assert p["custom_details"]["evidence"] == ["checkout-api: 12% of requests failing — 5xx rate 12%, limit 1%"]
    assert trigger["links"] == [
        {"href": f"http://127.0.0.1:8000/incidents/{inc.id}", "text": f"fleetwatch incident #{inc.id}"}
    ]
    assert pd.incident(key)["status"] == "triggered"

    assert world.alerts.acknowledge(inc.id, "alice", int(world.clock.now()))
    world.tick(api_errors())
    assert pd.incident(key)["status"] == "acknowledged"
    (first,) = world.slack.messages(top_level_only=True)
    replies = [m for m in world.slack.messages() if m.get("thread_ts") == first["ts"]]
    assert [m["text"] for m in replies] == [":eyes: Acknowledged by alice"], "the Slack thread says who acknowledged"
    for _ in range(5):
        world.tick(api_errors())
    assert [e["event_action"] for e in pd.snapshot()["events"]] == ["trigger", "acknowledge"], "told once, no repeats"

    end(world)
    assert world.incidents()[0].state == RESOLVED
    assert [e["event_action"] for e in pd.snapshot()["events"]] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in pd.snapshot()["events"]} == {key}
    (pd_incident,) = pd.snapshot()["incidents"]
    assert pd_incident["status"] == "resolved" and pd_incident["log"] == ["trigger", "acknowledge", "resolve"]
    sent = [h.kind for h in world.alerts.history(inc.id, "pagerduty:default")]
    assert sent == ["firing", ACKNOWLEDGED, "resolved"]


def test_429_and_5xx_are_retried_then_the_trigger_lands_once(world: World, pd: PagerDutyStandIn) -> None:
    pd.fail(429, retry_after=5, times=1)
    pd.fail(503, times=2)
    fire(world)
    assert [r.status for r in pd.requests()] == [429, 503, 503, 202]
    assert 5.0 in world.slept, "PagerDuty's Retry-After was honoured"
    assert len(pd.snapshot()["incidents"]) == 1 and failures(world, "pagerduty:") == []


def test_5xx_until_the_bound_is_recorded_and_sent_when_pagerduty_is_back(world: World, pd: PagerDutyStandIn) -> None:
    pd.fail(500, times=4)  # max_attempts = 4
    fire(world)
    (failure,) = failures(world, "pagerduty:")
    assert failure["attempts"] == 4 and "HTTP 500" in failure["error"] and pd.snapshot()["events"] == []
    for _ in range(2):  # the failure backoff passes; the trigger is still owed and goes once
        world.tick(api_errors())
    assert [e["event_action"] for e in pd.snapshot()["events"]] == ["trigger"]


def test_an_invalid_event_is_not_retried_and_the_error_names_the_fix(world: World, pd: PagerDutyStandIn) -> None:
    world.reconfigure(**{"pagerduty.routing_key": "not-32-characters"})
    fire(world)
    (failure,) = failures(world, "pagerduty:")
    assert failure["attempts"] == 1, "a 400 is not retried"
    assert "400 invalid event" in failure["error"] and "Length of 'routing_key' is incorrect" in failure["error"]
    assert "pagerduty.routing_key" in failure["error"] and "FLEETWATCH_PAGERDUTY_ROUTING_KEY" in failure["error"]
    assert "not-32-characters" not in failure["error"], "the key itself is never written down"
    assert [r.status for r in pd.requests()] == [400] and pd.snapshot()["incidents"] == []


def test_two_installations_never_share_a_dedup_key(tmp_path: Path) -> None:
    from fleetwatch.store import open_store

    with open_store(tmp_path / "a.db") as a, open_store(tmp_path / "b.db") as b:
        ia, ib = installation_id(a, "https://a.example"), installation_id(b, "https://b.example")
        assert ia != ib and installation_id(a, "https://a.example") == ia, "stable for one store, distinct between two"
    assert incident_of(dedup_key(ia, 42), ia) == 42 and incident_of(dedup_key(ia, 42), ib) is None
    assert incident_of("someone-elses-key", ia) is None


# -- routing -------------------------------------------------------------------------------------


def test_routes_send_each_incident_only_where_it_is_routed(
    world: World, pd: PagerDutyStandIn, hook: WebhookReceiver
) -> None:
    world.reconfigure(
        **{"alerts.routes": ["severity=critical -> pagerduty:default", "severity=warning -> webhook:bot"]}
    )
    fire(world, api_errors(), queue_growth())
    (trigger,) = pd.snapshot()["events"]
    assert "checkout-api" in trigger["payload"]["summary"]
    (payload,) = hook.payloads()
    assert payload["alerts"][0]["labels"]["name"] == "jobs"
    assert world.slack.messages() == [], "a route that matched replaces the defaults"


def test_a_routing_key_and_webhooks_join_the_default_targets(world: World) -> None:
    assert alert_settings(world.cfg).defaults == (
        "slack:C0ALERTS",
        "email:oncall@example.com",
        "pagerduty:default",
        "webhook:bot",
    )
    world.reconfigure(**{"pagerduty.routing_key": "", "webhook.urls": []})
    assert alert_settings(world.cfg).defaults == ("slack:C0ALERTS", "email:oncall@example.com")


def test_a_target_with_no_channel_says_what_to_set(world: World) -> None:
    world.reconfigure(
        **{"pagerduty.routing_key": "", "webhook.urls": [], "alerts.routes": ["* -> pagerduty:default webhook:ops"]}
    )
    fire(world)
    errors = {f["target"]: f["error"] for f in failures(world, "")}
    assert "FLEETWATCH_PAGERDUTY_ROUTING_KEY" in errors["pagerduty:default"]
    assert "webhook.urls" in errors["webhook:ops"]


def test_a_pagerduty_name_without_a_key_says_so(world: World, pd: PagerDutyStandIn) -> None:
    world.reconfigure(**{"alerts.routes": ["* -> pagerduty:payments"]})
    fire(world)
    (failure,) = failures(world, "pagerduty:")
    assert (
        failure["attempts"] == 1
        and "pagerduty:payments" in failure["error"]
        and "pagerduty.routing_key" in failure["error"]
    )
    assert pd.requests() == []


# -- the generic webhook -------------------------------------------------------------------------


def test_webhook_payload_is_alertmanagers_shape(world: World, hook: WebhookReceiver) -> None:
    fire(world)
    end(world)
    firing, resolved = hook.payloads()
    (inc,) = world.incidents()
    for p in (firing, resolved):
        assert set(p) == {
            "version",
            "groupKey",
            "truncatedAlerts",
            "receiver",
            "status",
            "alerts",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
        }
        assert p["version"] == "4" and p["receiver"] == "bot" and p["truncatedAlerts"] == 0
        assert p["groupKey"] == f'{{}}:{{fleetwatch_incident="{inc.id}"}}' and p["groupLabels"] == {
            "fleetwatch_incident": str(inc.id)
        }
        assert p["externalURL"] == "http://127.0.0.1:8000"
        (alert,) = p["alerts"]
        assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
        assert alert["labels"]["alertname"] == "outcomes" and alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["summary"] == "checkout-api: 12% of requests failing"
        assert alert["generatorURL"] == f"http://127.0.0.1:8000/incidents/{inc.id}"
        assert (
            p["commonLabels"]["fleetwatch_incident"] == str(inc.id)
            and p["commonAnnotations"]["incident_url"] == alert["generatorURL"]
        )
    assert firing["status"] == "firing" and firing["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert firing["alerts"][0]["startsAt"].endswith("Z")
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    assert all(r.headers["authorization"] == f"Bearer {HOOK_TOKEN}" for r in hook.requests())


def test_webhook_5xx_and_429_are_retried_a_401_is_not(world: World, hook: WebhookReceiver) -> None:
    hook.fail(502, times=1)
    hook.fail(429, retry_after=3, times=1)
    fire(world)
    assert [r.status for r in hook.requests()] == [502, 429, 200] and 3.0 in world.slept
    world.reconfigure(**{"webhook.token": "wrong-token-000"})
    hook.received.clear()
    fire(world, queue_growth())
    (failure,) = failures(world, "webhook:")
    assert failure["attempts"] == 1 and "HTTP 401" in failure["error"] and "webhook.token" in failure["error"]
    assert hook.url() not in failure["error"] and "127.0.0.1" not in failure["error"], "the URL may carry a token"


# -- acknowledgements ----------------------------------------------------------------------------


def _incident(**kw: Any) -> Incident:
    base = dict(
        fingerprint="f",
        group_key="g",
        state=FIRING,
        severity="critical",
        title="t",
        started_at=T0,
        updated_at=T0,
        id=1,
        version="v1",
        firing_at=T0,
    )
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def test_acknowledged_is_owed_once_per_target_after_a_page() -> None:
    timers = Timers(group_wait=30, group_interval=300, repeat_interval=3600)
    inc = _incident()
    page = Sent("firing", "v1", T0 + 30)
    assert owed(inc, [], T0 + 30, timers) == "firing"
    inc.acked_at, inc.acked_by = T0 + 120, "alice"
    assert owed(inc, [], T0 + 120, timers) == "firing", "nothing reached this target yet: the page goes first"
    assert owed(inc, [page], T0 + 120, timers) == ACKNOWLEDGED
    told = Sent(ACKNOWLEDGED, "v1", T0 + 180)
    for t in (T0 + 180, T0 + 3 * 3600):
        assert owed(inc, [page, told], t, timers) is None, "once, and no repeats after it"
    inc.state = RECOVERING
    assert owed(inc, [page], T0 + 200, timers) == ACKNOWLEDGED, "told even while recovering"
    assert owed(inc, [page], T0 + 200, timers, mute="silence #1") == ACKNOWLEDGED, "and while muted"
    inc.state = RESOLVED
    assert owed(inc, [page], T0 + 400, timers) == "resolved", "an incident that ended says so instead"
    early = Sent(ACKNOWLEDGED, "v1", T0 + 60)  # an earlier acknowledgement does not cover a later one
    inc.state = FIRING
    assert owed(inc, [page, early], T0 + 200, timers) == ACKNOWLEDGED


def _client(world: World, secret: str = WEBHOOK_SECRET) -> TestClient:
    from web.app import create_app

    world.reconfigure(**{"pagerduty.webhook_secret": secret})
    return TestClient(create_app(world.cfg, world.tmp / "alerts.db", world.clock), base_url="http://127.0.0.1:8000")


def test_an_acknowledge_in_pagerduty_reaches_fleetwatch_and_the_slack_thread(
    world: World, pd: PagerDutyStandIn
) -> None:
    fire(world)
    (inc,) = world.incidents()
    key = key_of(world, inc.id)
    client = _client(world)
    body, headers = pd.webhook(key, "Bob Oncall")
    got = client.post("/hooks/pagerduty", content=body, headers=headers)
    assert got.status_code == 200 and got.json() == {
        "acknowledged": True,
        "incident_id": inc.id,
        "by": "Bob Oncall (PagerDuty)",
    }
    acked = world.alerts.incident(inc.id)
    assert acked.acked_by == "Bob Oncall (PagerDuty)" and acked.acked_at == int(world.clock.now())
    world.tick(api_errors())
    (first,) = world.slack.messages(top_level_only=True)
    replies = [m["text"] for m in world.slack.messages() if m.get("thread_ts") == first["ts"]]
    assert replies == [":eyes: Acknowledged by Bob Oncall (PagerDuty)"]
    assert [e["event_action"] for e in pd.snapshot()["events"]] == ["trigger"], "PagerDuty is not told what it said"
    assert [h.kind for h in world.alerts.history(inc.id, "pagerduty:default")] == ["firing", ACKNOWLEDGED]
    again = client.post("/hooks/pagerduty", content=body, headers=headers)
    assert again.json()["acknowledged"] is False, "a redelivery changes nothing"


def test_the_pagerduty_webhook_is_authenticated_by_its_signature(world: World, pd: PagerDutyStandIn) -> None:
    fire(world)
    (inc,) = world.incidents()
    key = key_of(world, inc.id)
    client = _client(world)
    body, headers = pd.webhook(key, "Mallory")
    forged = {**headers, "X-PagerDuty-Signature": sign(body, "not-the-secret")}
    assert client.post("/hooks/pagerduty", content=body, headers=forged).status_code == 403
    unsigned = {k: v for k, v in headers.items() if k != "X-PagerDuty-Signature"}
    assert client.post("/hooks/pagerduty", content=body, headers=unsigned).status_code == 400
    tampered = body.replace(b"Mallory", b"Mallorz")
    assert client.post("/hooks/pagerduty", content=tampered, headers=headers).status_code == 403
    # The dashboard's own credentials do not stand in for a signature.
    assert (
        client.post("/hooks/pagerduty", content=body, headers={**unsigned, "Authorization": "Bearer x"}).status_code
        == 400
    )
    assert world.alerts.incident(inc.id).acked_at is None
    # A rotation: two signatures, the second one ours.
    rotating = {**headers, "X-PagerDuty-Signature": sign(body, "old-secret") + "," + sign(body, WEBHOOK_SECRET)}
    assert client.post("/hooks/pagerduty", content=body, headers=rotating).json()["acknowledged"] is True
    assert signature_valid(body, rotating["X-PagerDuty-Signature"], WEBHOOK_SECRET)


def test_the_pagerduty_webhook_ignores_what_is_not_ours_and_is_off_without_a_secret(
    world: World, pd: PagerDutyStandIn
) -> None:
    fire(world)
    (inc,) = world.incidents()
    client = _client(world)
    other = dedup_key("0badc0de", inc.id)  # another installation's incident with the same number
    body, headers = pd.webhook(other, "Bob")
    got = client.post("/hooks/pagerduty", content=body, headers=headers)
    assert got.status_code == 202 and got.json()["acknowledged"] is False
    body, headers = pd.webhook(key_of(world, inc.id), "Bob", event_type="incident.resolved")
    assert client.post("/hooks/pagerduty", content=body, headers=headers).status_code == 202
    assert world.alerts.incident(inc.id).acked_at is None
    off = _client(world, secret="")
    body, headers = pd.webhook(key_of(world, inc.id), "Bob")
    got = off.post("/hooks/pagerduty", content=body, headers=headers)
    assert got.status_code == 404 and "pagerduty.webhook_secret" in got.json()["detail"]


def test_the_pagerduty_stand_in_runs_as_a_process_and_prints_what_it_gets() -> None:
    import queue
    import signal
    import subprocess
    import sys
    import threading

    from alerts.http import post_json

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator.standins", "pagerduty", "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
    try:
        url = lines.get(timeout=30).split(" on ", 1)[1].split()[0]
        event = {
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "fleetwatch-0123abcd-1",
            "payload": {
                "summary": "orders-db at 98% of max_connections",
                "source": "rds/orders-db",
                "severity": "critical",
            },
        }
        got = post_json(url, event, 10)
        assert got.status == 202 and got.json() == {
            "status": "success",
            "message": "Event processed",
            "dedup_key": "fleetwatch-0123abcd-1",
        }
        assert (
            lines.get(timeout=10).strip()
            == "pagerduty trigger fleetwatch-0123abcd-1: orders-db at 98% of max_connections"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_an_acknowledge_on_the_dashboard_reaches_pagerduty_slack_mail_and_webhooks(
    world: World, pd: PagerDutyStandIn, hook: WebhookReceiver
) -> None:
    fire(world)
    (inc,) = world.incidents()
    world.reconfigure(**{"web.token": "dash-token-0123456789"})
    client = _client(world)
    got = client.post(f"/api/incidents/{inc.id}/ack", headers={"Authorization": "Bearer dash-token-0123456789"})
    assert got.status_code == 200 and got.json()["acknowledged"] is True
    world.tick(api_errors())
    assert pd.incident(key_of(world, inc.id))["status"] == "acknowledged"
    (first,) = world.slack.messages(top_level_only=True)
    assert [m["text"] for m in world.slack.messages() if m.get("thread_ts") == first["ts"]] == [
        ":eyes: Acknowledged by api-token"
    ]
    assert "[ACKNOWLEDGED]" in first["updates"][-1]["text"], "the top message shows it too"
    mails = [m for _, m in world.smtp.messages()]
    assert (
        str(mails[-1]["Subject"]).strip().startswith("[fleetwatch] [ACKNOWLEDGED]")
        and mails[-1]["In-Reply-To"] == mails[0]["Message-ID"]
    )
    last = hook.payloads()[-1]
    assert last["status"] == "firing" and last["commonAnnotations"]["notification"] == "acknowledged"
    assert last["commonAnnotations"]["acknowledged_by"] == "api-token"
    for _ in range(3):
        world.tick(api_errors())
    assert len(hook.payloads()) == 2 and len(world.smtp.messages()) == 2, "told once per target"
