"""Slack and the mail server down for an hour (their ports refuse connections) while an incident
opens, changes and ends: nothing is lost and nothing is sent twice. While they are down each
failure is recorded; when they come back every notification still owed arrives, once."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.agent.loop import FakeWaiter
from fleetwatch.store import open_store
from simulator.mail import SmtpSink
from simulator.slack import TOKEN as SLACK_TOKEN
from simulator.slack import SlackStandIn
from tests import chaos_kit
from tests.agent_kit import agent_config, make_agent
from tests.conftest import control, set_clock

HOUR = 3600


class Outage:
    """Slack and SMTP stand-ins that go away at `down` and come back, on the same ports, at `up`
    (emulated time); the agent's waiter calls `at(now)` before every cycle."""

    def __init__(self, down: float, up: float) -> None:
        self.down, self.up = down, up
        self.slack = [SlackStandIn().__enter__()]
        self.smtp = [SmtpSink().__enter__()]
        self.state = "up"

    @property
    def ports(self) -> tuple[int, int]:
        return self.slack[0].server.server_address[1], self.smtp[0].port

    def at(self, now: float) -> None:
        if self.state == "up" and self.down <= now < self.up:
            self.slack[-1].__exit__()
            self.smtp[-1].__exit__()
            self.state = "down"
        elif self.state == "down" and now >= self.up:
            slack_port, smtp_port = self.ports
            self.slack.append(SlackStandIn(port=slack_port).__enter__())
            self.smtp.append(SmtpSink(port=smtp_port).__enter__())
            self.state = "back"

    def close(self) -> None:
        if self.state != "down":
            self.slack[-1].__exit__()
            self.smtp[-1].__exit__()


class OutageWaiter(FakeWaiter):
    def __init__(self, clock: Any, stop: threading.Event, outage: Outage) -> None:
        super().__init__(clock, stop)
        self.outage = outage

    def wait_until(self, due: float) -> bool:
        self.outage.at(max(due, self.clock.now()))
        return super().wait_until(due)


@pytest.mark.slow
def test_slack_and_smtp_down_for_an_hour_everything_owed_arrives_once(fleet: Any, tmp_path: Path) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "connection-storm"})
    (label,) = fleet.model.incident_labels()
    start = int(label["start"]) // 60 * 60 - 10 * 60
    down, up = start + 5 * 60, start + 5 * 60 + HOUR  # from before the storm until well after it ends
    set_clock(fleet, start)
    outage = Outage(down, up)
    slack_port, smtp_port = outage.ports
    try:
        cfg = agent_config(
            fleet,
            tmp_path / "fw.db",
            FLEETWATCH_SCOPE_INCLUDE_TAGS="service=orders,service=checkout",
            FLEETWATCH_SLACK_BOT_TOKEN=SLACK_TOKEN,
            FLEETWATCH_SLACK_API_URL=outage.slack[0].api_url,
            FLEETWATCH_SLACK_CHANNEL="C0OUT",
            FLEETWATCH_EMAIL_TO="oncall@example.com",
            FLEETWATCH_SMTP_HOST="127.0.0.1",
            FLEETWATCH_SMTP_PORT=str(smtp_port),
            FLEETWATCH_SMTP_SECURITY="none",
            FLEETWATCH_ALERTS_TIMEOUT="2s",
        )
        with open_store(cfg["store.path"]) as store:
            stop = threading.Event()
            agent = make_agent(
                fleet,
                cfg,
                store=store,
                waiter=OutageWaiter(fleet.model.clock, stop, outage),
                stop=stop,
                polls=(up - start) // 60 + 30,
            )
            assert agent.run() == 0
            assert outage.state == "back"
            failures = store.db.execute(
                "SELECT target, COUNT(*) FROM notification_failures WHERE failed_at BETWEEN ? AND ? GROUP BY target",
                [down, up],
            ).fetchall()
            sent = list(store.db.query("SELECT key, target, sent_at FROM notifications WHERE status = 'sent'"))
            leftover = agent.pipeline.deliver().outcomes  # anything still owed would go now
    finally:
        outage.close()
    during = [s for s in outage.slack[0].messages() if s.get("metadata")]
    slack_keys = Counter(
        m["metadata"]["event_payload"]["key"] for s in outage.slack for m in s.messages() if m.get("metadata")
    )
    mail_ids = Counter(m["Message-ID"] for s in outage.smtp for _, m in s.messages())
    # Down for the whole storm: nothing could be sent, and every failed attempt was recorded.
    assert not during and not outage.smtp[0].messages()
    assert {t.partition(":")[0] for t, _ in failures} == {"slack", "email"}, failures
    # Back: everything owed arrived, once; the store's record matches what the servers received.
    assert sent and all(s["sent_at"] >= up for s in sent)
    assert set(slack_keys) == {s["key"] for s in sent if s["target"].startswith("slack")}
    assert len(mail_ids) == sum(1 for s in sent if s["target"].startswith("email"))
    assert max(slack_keys.values()) == 1 and max(mail_ids.values()) == 1
    assert leftover == []
    (found,) = chaos_kit.outcomes(tmp_path / "fw.db", fleet, [label], set(slack_keys), notify_within=2 * HOUR)
    assert found["detected_at"] and found["notified"]
    chaos_kit.record(
        "Slack and SMTP down for an hour",
        faults_injected=sum(n for _, n in failures),
        incidents_expected=1,
        detected=int(bool(found["detected_at"])),
        notified=int(found["notified"]),
        notifications_duplicated=0,
        slack_messages_after=sum(slack_keys.values()),
        mails_after=sum(mail_ids.values()),
    )
