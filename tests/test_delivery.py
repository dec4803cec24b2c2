"""Delivery against real servers on loopback: slack_sdk to the Slack stand-in (Web API and
webhook, with 429 + Retry-After, 500s and timeouts), and smtplib to an aiosmtpd server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alerts.delivery import message_id
from alerts.state import Observation
from simulator.mail import SmtpSink
from simulator.slack import SlackStandIn
from tests.alerting_kit import World, api_errors, fire, queue_growth, rid, world_fixture  # noqa: F401 - the `world` fixture
from tests.certs import make_certs


def test_429_waits_retry_after_then_sends_once(world: World) -> None:
    world.slack.fail("chat.postMessage", status=429, retry_after=7, times=2)
    fire(world)
    assert [w for w in world.slept if w == 7.0] == [7.0, 7.0]
    assert len(world.slack.messages(top_level_only=True)) == 1


def test_server_errors_back_off_with_jitter_then_send(world: World) -> None:
    world.slack.fail("chat.postMessage", status=500, times=2)
    fire(world)
    posts = [m for _, m in world.slack.state.calls if m == "chat.postMessage"]
    assert len(posts) == 3, "two 500s, then the send that worked"
    assert all(0 <= w <= 2 for w in world.slept), "full jitter: under 1 s, then under 2 s"
    assert sum(world.slept) >= 2 - 1e-6, "and never faster than a message a second on the channel"
    assert len(world.slack.messages(top_level_only=True)) == 1


def test_a_timeout_is_retried_without_posting_twice(world: World) -> None:
    world.reconfigure(**{"alerts.timeout": 1})
    # Slack takes the post but its answer comes after the client's 1 s timeout (1.5 s of wall time).
    world.slack.fail("chat.postMessage", delay=1.5, times=1)
    fire(world)
    calls = [m for _, m in world.slack.state.calls]
    assert calls.count("chat.postMessage") == 1 and "conversations.history" in calls, (
        "the retry looked before posting again"
    )
    (msg,) = world.slack.messages()
    (sent,) = world.alerts.history(world.incidents()[0].id, "slack:C0ALERTS")
    assert sent.external_id == msg["ts"], "the message found is the one logged, so updates go to it"
    assert list(world.store.db.query("SELECT * FROM notification_failures")) == []


def test_gives_up_after_the_bound_records_it_and_delivers_when_back(world: World) -> None:
    world.slack.fail("chat.postMessage", status=503, times=4)  # max_attempts = 4
    fire(world)
    (failure,) = list(world.store.db.query("SELECT * FROM notification_failures"))
    assert failure["attempts"] == 4 and "HTTP 503" in failure["error"] and failure["target"] == "slack:C0ALERTS"
    assert world.slack.messages() == []
    for _ in range(2):  # the failure backoff (60 s) passes; the page is still owed and goes once
        world.tick(api_errors())
    assert len(world.slack.messages(top_level_only=True)) == 1


def test_a_permanent_error_is_not_retried(world: World) -> None:
    world.reconfigure(**{"slack.bot_token": "xoxb-wrong"})
    fire(world)
    (failure,) = list(world.store.db.query("SELECT * FROM notification_failures WHERE target LIKE 'slack:%'"))
    assert failure["attempts"] == 1 and "invalid_auth" in failure["error"]


def test_one_message_a_second_per_channel(world: World) -> None:
    fire(world, api_errors(), queue_growth())
    assert len(world.slack.messages(top_level_only=True)) == 2
    assert [w for w in world.slept if 0 < w <= 1.0] == [1.0], "the second post to C0ALERTS waited a second"


def test_webhook_sends_every_notification_as_a_new_message(world: World) -> None:
    world.reconfigure(**{"slack.bot_token": "", "slack.webhook_url": world.slack.webhook_url})
    fire(world)
    for _ in range(7):
        world.tick()
    texts = [m["text"] for m in world.slack.messages()]
    assert [t.split("]")[0] for t in texts] == ["[FIRING", "[RESOLVED"]
    assert all(m["via"] == "webhook" for m in world.slack.messages())


def test_webhook_429_honours_retry_after(world: World) -> None:
    world.reconfigure(**{"slack.bot_token": "", "slack.webhook_url": world.slack.webhook_url})
    world.slack.fail("webhook", status=429, retry_after=3, times=1)
    fire(world)
    assert 3.0 in world.slept and len(world.slack.messages()) == 1


HOSTILE = "<script>alert(1)</script> <!channel> *bold* `x` \x1b[31m\u202e" + "a" * 400


def test_hostile_names_are_escaped_and_cut_to_size(world: World) -> None:
    world.resources = [
        r
        if r.name != "checkout-api"
        else type(r)(r.id, r.kind, HOSTILE, r.account, r.region, r.facts, {"service": "<b>checkout</b>"})
        for r in world.resources
    ]
    obs = Observation(
        "outcomes",
        rid("api", "checkout-api"),
        "5xx",
        "finding",
        "critical",
        f"{HOSTILE}: 12% failing",
        cause="<@U123> did it & <https://evil.example|click>",
    )
    fire(world, obs)
    (msg,) = world.slack.messages(top_level_only=True)
    assert "<script>" not in msg["text"] and "&lt;script&gt;" in msg["text"]
    assert "<!channel>" not in msg["text"] and "<@U123>" not in msg["text"] and "<https://evil" not in msg["text"]
    assert "\x1b" not in msg["text"] and "\u202e" not in msg["text"]
    assert len(msg["text"]) <= 3000
    header = msg["blocks"][0]["text"]
    assert header["type"] == "plain_text" and len(header["text"]) <= 150
    assert all(b["text"]["type"] == "plain_text" for b in msg["blocks"] if b["type"] == "section")
    (to, mail), *_ = world.smtp.messages()
    html = mail.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_mail_is_multipart_threaded_and_stable(world: World) -> None:
    fire(world)
    for _ in range(7):
        world.tick()
    mails = [m for _, m in world.smtp.messages()]
    assert [m["Subject"].split("]")[1].strip() for m in mails] == ["[FIRING", "[RESOLVED"]
    first, resolved = mails
    assert first.get_body(("plain",)) is not None and first.get_body(("html",)) is not None
    assert "checkout-api: 12% of requests failing" in first.get_body(("plain",)).get_content()
    assert resolved["In-Reply-To"] == first["Message-ID"]
    inc = world.incidents()[0]
    assert first["Message-ID"] == message_id(f"{inc.id}/email:oncall@example.com/1/firing"), (
        "a resend would carry the same id"
    )


def test_smtp_transient_error_is_retried(world: World) -> None:
    world.smtp.fail(451, times=2)
    fire(world)
    assert len(world.smtp.messages()) == 1


def test_smtp_authentication(tmp_path: Path) -> None:
    with SlackStandIn() as slack, SmtpSink(username="fleet", password="s3cret") as smtp:
        w = World(tmp_path, slack, smtp, settings={"smtp.username": "fleet", "smtp.password": "wrong"})
        fire(w)
        (failure,) = list(w.store.db.query("SELECT * FROM notification_failures WHERE target LIKE 'email:%'"))
        assert "authentication failed" in failure["error"] and failure["attempts"] == 1
        assert "wrong" not in failure["error"]
        w.reconfigure(**{"smtp.password": "s3cret"})
        w.tick(api_errors(), step=60)
        w.tick(api_errors())
        assert len(smtp.messages()) == 1
        w.close()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_smtp_over_tls_with_authentication(tmp_path: Path, security: str) -> None:
    ca, cert, key = make_certs(tmp_path)
    with (
        SlackStandIn() as slack,
        SmtpSink(username="fleet", password="s3cret", security=security, cert=(str(cert), str(key))) as smtp,
    ):
        settings = {"smtp.security": security, "smtp.username": "fleet", "smtp.password": "s3cret"}
        w = World(tmp_path / "untrusted", slack, smtp, settings=settings)
        fire(w)
        (failure,) = list(w.store.db.query("SELECT * FROM notification_failures WHERE target LIKE 'email:%'"))
        assert "certificate is not trusted" in failure["error"] and "smtp.ca_file" in failure["error"]
        assert failure["attempts"] == 1, "a certificate that is not trusted is not retried"
        assert smtp.messages() == []
        w.close()

        w = World(tmp_path / "trusted", slack, smtp, settings={**settings, "smtp.ca_file": str(ca)})
        fire(w)
        ((rcpt, msg),) = smtp.messages()
        assert rcpt == ["oncall@example.com"] and msg["Subject"].startswith("[fleetwatch]")
        w.close()


def test_smtp_refuses_mail_without_the_starttls_it_requires(tmp_path: Path) -> None:
    ca, cert, key = make_certs(tmp_path)
    with SlackStandIn() as slack, SmtpSink(security="starttls", cert=(str(cert), str(key))) as smtp:
        w = World(tmp_path / "w", slack, smtp, settings={"smtp.security": "none"})
        fire(w)
        (failure,) = list(w.store.db.query("SELECT * FROM notification_failures WHERE target LIKE 'email:%'"))
        assert "530" in failure["error"] and smtp.messages() == []
        w.close()


class Killed(BaseException):
    """Stands in for the process dying: raised after the server took the message, before the log."""


def test_a_send_cut_short_after_slack_took_it_is_found_not_resent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alerts import delivery

    original = delivery.SlackBot.send

    def dies_after_sending(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        raise Killed

    monkeypatch.setattr(delivery.SlackBot, "send", dies_after_sending)
    with pytest.raises(Killed):
        fire(world)
    assert len(world.slack.messages()) == 1
    (row,) = world.alerts.unknown_sends()
    monkeypatch.undo()
    world.reconfigure()  # a restarted agent
    report = world.tick(api_errors())
    assert report.recovered == 1 and len(world.slack.messages()) == 1
    (sent,) = world.alerts.history(row["incident_id"], "slack:C0ALERTS")
    assert sent.kind == "firing" and sent.external_id == world.slack.messages()[0]["ts"]
    assert world.alerts.unknown_sends() == []


def test_mail_through_ses_on_the_emulated_aws(emulator: Any, tmp_path: Path) -> None:
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    from fleetwatch.agent.alerting import ses_client
    from tests.conftest import CREDS, client

    client(emulator, "sesv2").create_email_identity(
        EmailIdentity="fleetwatch@example.com"
    )  # SES sends only from verified senders
    with SlackStandIn() as slack:
        w = World(
            tmp_path,
            slack,
            settings={
                "email.transport": "ses",
                "email.from": "fleetwatch@example.com",
                "email.to": ["oncall@example.com"],
                "aws.endpoint_url": emulator.endpoint,
            },
        )
        w.ses = ses_client(
            w.cfg, session=boto3.session.Session(**CREDS)
        )  # the factory the agent uses, with test credentials
        w.reconfigure()
        before = len(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)
        fire(w)
        sent = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages[before:]
        (failure_count,) = w.store.db.execute("SELECT COUNT(*) FROM notification_failures").fetchone()
        w.close()
    assert failure_count == 0 and len(sent) == 1
    raw = sent[0].raw_data
    assert "checkout-api: 12% of requests failing" in raw and "multipart/alternative" in raw
