"""The weekly digest: what it gathers from a store with a week of history, how it renders
(escaped), when it is due (day, hour, zone), and that a restart neither repeats nor skips it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.digest import WEEK, due_at, gather, owed_digest, render_html, render_text
from fleetwatch.agent.alerting import send_due_digest as send_due
from fleetwatch.store import SeriesKey
from simulator.mail import SmtpSink
from simulator.slack import SlackStandIn
from tests.alerting_kit import T0, World, api_errors, rid, storm


@pytest.fixture()
def world(tmp_path: Path, store_target: Any) -> Iterator[World]:
    with SlackStandIn() as slack, SmtpSink() as smtp:
        w = World(
            tmp_path,
            slack,
            smtp,
            settings={"digest.targets": ["email:team@example.com", "slack:C0DIGEST"]},
            where=store_target,
        )
        yield w
        w.close()


def seed(world: World) -> None:
    s = world.store
    rows = [
        {
            "id": r.id,
            "account": r.account,
            "region": r.region,
            "kind": r.kind,
            "name": r.name,
            "facts": r.facts,
            "tags": r.tags,
        }
        for r in world.resources
    ]
    rows[2]["facts"] = {"max_connections": 500}
    rows[1]["facts"] = {"uses": ["rds:orders-db"], "reserved_concurrency": None}
    rows.append(
        {
            "id": rid("sqs", "jobs-dlq"),
            "account": "111111111111",
            "region": "us-east-1",
            "kind": "sqs",
            "name": "jobs-dlq<b>",
            "facts": {"retention": 345600, "retention_shorter_than_source": True, "dlq_of": ["jobs"]},
            "tags": {},
        }
    )
    s.upsert_resources(rows, T0)
    api = rid("api", "checkout-api")
    dim = (("ApiName", "checkout-api"),)
    count = SeriesKey(api, "AWS/ApiGateway", "Count", dim, "Sum", 3600)
    err = SeriesKey(api, "AWS/ApiGateway", "5XXError", dim, "Average", 3600)
    conns = SeriesKey(
        rid("rds", "orders-db"),
        "AWS/RDS",
        "DatabaseConnections",
        (("DBInstanceIdentifier", "orders-db"),),
        "Maximum",
        3600,
    )
    now = T0 + 3600  # the week gathered below ends here
    this = [(now - WEEK + h * 3600, 100.0) for h in range(168)]
    last = [(now - 2 * WEEK + h * 3600, 50.0) for h in range(168)]
    s.write_samples(
        [
            (count, last + this),
            (err, [(t, 0.02) for t, _ in this] + [(t, 0.01) for t, _ in last]),
            (conns, [(T0 - 3600, 490.0)]),
        ]
    )


def test_gather_compares_weeks_and_reports_headroom_hygiene(world: World) -> None:
    seed(world)
    for _ in range(4):
        world.tick(api_errors(), storm())  # an incident this week (the clock is at T0 + 4 min after)
    world.alerts.acknowledge(world.incidents()[0].id, "dana", int(world.clock.now()))
    d = gather(world.store, T0 + 3600)
    req = next(o for o in d.outcomes if o["measure"] == "requests")
    assert (req["this"], req["last"]) == (16800.0, 8400.0) and req["change"] == pytest.approx(1.0)
    assert req["avg8"] is None, "one whole week before this one is not a baseline"
    rate = next(o for o in d.outcomes if o["measure"] == "5xx rate")
    assert rate["this"] == pytest.approx(0.02) and rate["last"] == pytest.approx(0.01)
    db = next(h for h in d.headroom if h["limit"] == "connections")
    assert db["peak"] == 490.0 and db["used"] == pytest.approx(0.98)
    assert any("jobs-dlq<b> keeps messages no longer than its source" in h for h in d.hygiene)
    assert any("checkout-fn calls a database and has no reserved concurrency" in h for h in d.hygiene)
    (inc,) = d.incidents
    assert inc["detector"] == "outcomes" and inc["paged"] == 1 and inc["median_minutes_to_ack"] == 2.0
    assert d.noise["notifications"] >= 2 and d.noise["incidents"] == 1
    html = render_html(d)
    assert "jobs-dlq&lt;b&gt;" in html and "jobs-dlq<b>" not in html
    assert "16,800" in render_text(d)


def test_due_at_follows_day_hour_and_zone() -> None:
    # T0 is Friday 08:00 UTC. Monday 09:00 Europe/London is 09:00 UTC in winter (T0 is in January).
    period, when = due_at(T0, "mon", 9, "Europe/London")
    assert when == T0 - 4 * 86400 + 3600 and period == "2027-W02"
    period2, when2 = due_at(T0, "fri", 9, "Asia/Tokyo")  # 09:00 JST Friday = 00:00 UTC Friday
    assert when2 == T0 - 8 * 3600
    assert due_at(T0 - 1, "fri", 8, "UTC")[1] == T0 - WEEK, "not yet due this week: last week's"


def test_a_restart_neither_repeats_nor_skips_the_digest(world: World) -> None:
    world.reconfigure(**{"digest.day": "fri", "digest.hour": 8, "digest.timezone": "UTC"})
    assert owed_digest(world.store, T0, world.cfg) is not None
    period, errors = send_due(world.cfg, world.store, world.clock, world.sleep)
    assert errors == [] and len(world.smtp.messages()) == 1
    assert [m["channel"] for m in world.slack.messages()] == ["C0DIGEST"]
    assert send_due(world.cfg, world.store, world.clock, world.sleep) is None, "sent: a restart does not repeat it"
    world.clock.advance(2 * WEEK)  # the agent was down over the next digest: it goes on start
    period2, errors2 = send_due(world.cfg, world.store, world.clock, world.sleep)
    assert period2 != period and errors2 == [] and len(world.smtp.messages()) == 2


def test_digest_that_fails_is_owed_again_only_where_it_failed(world: World) -> None:
    world.reconfigure(**{"digest.day": "fri", "digest.hour": 8, "digest.timezone": "UTC", "alerts.max_attempts": 1})
    world.smtp.fail(554)
    _, errors = send_due(world.cfg, world.store, world.clock, world.sleep)
    assert errors and "554" in errors[0]
    assert len(world.slack.messages()) == 1, "Slack took it"
    _, errors = send_due(world.cfg, world.store, world.clock, world.sleep)
    assert errors == [] and len(world.smtp.messages()) == 1
    assert len(world.slack.messages()) == 1, "the retry went only to the target that failed"
    assert send_due(world.cfg, world.store, world.clock, world.sleep) is None


def test_digest_in_slack_is_block_kit_with_names_escaped(world: World) -> None:
    seed(world)
    world.reconfigure(
        **{
            "digest.day": "fri",
            "digest.hour": 8,
            "digest.timezone": "UTC",
            "web.public_url": "https://fleetwatch.example.com",
        }
    )
    world.clock.advance(3600)
    send_due(world.cfg, world.store, world.clock, world.sleep)
    (msg,) = world.slack.messages()
    blocks = msg["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"].startswith("Weekly health digest")
    sections = [b["text"] for b in blocks if b["type"] == "section"]
    assert all(s["type"] == "plain_text" and len(s["text"]) <= 3000 for s in sections)
    assert any(s["text"].startswith("WHAT USERS FELT") for s in sections)
    assert any("jobs-dlq<b>" in s["text"] for s in sections), "plain_text: shown as written, never parsed"
    assert blocks[-1]["elements"][0]["url"] == "https://fleetwatch.example.com/digest"
    assert msg["text"].startswith("fleetwatch weekly health digest 2027-W02") and "hygiene" in msg["text"]


def test_cli_preview_writes_html_and_text(world: World, tmp_path: Path) -> None:
    from fleetwatch.cli import main

    seed(world)
    out = tmp_path / "digest.html"
    assert main(["digest", "--preview", str(out)], environ=world.store_env) == 0
    assert (
        re.search(r"<h1 style=[^>]*>Weekly health digest", out.read_text())
        and "WHAT USERS FELT" in out.with_suffix(".txt").read_text()
    )


def test_an_incident_that_fired_but_told_nobody_is_not_counted_as_paged(world: World) -> None:
    # make demo's digest: "20 incidents this week, 20 paged", "lambda_account 3 paged", while the
    # three info incidents (a staging account's low concurrency limit, a short DLQ retention)
    # fired and notified nobody: 17 had been sent.
    seed(world)
    for _ in range(4):
        world.tick(api_errors(), storm())  # one incident, paged
    labels = json.dumps({"detector": "lambda_account", "severity": "info", "state": "firing"})
    world.store.db.execute(
        "INSERT INTO incidents (fingerprint, group_key, state, severity, title, labels, members, started_at, "
        "firing_at, updated_at, cause_title, symptom_alert, cause_alert) "
        "VALUES ('fp-info', 'lambda_account/x', 'firing', 'info', 'account concurrency limit is 10', ?, '[]', ?, ?, ?, "
        "'', '', '')",
        [labels, T0, T0 + 60, T0 + 60],
    )
    d = gather(world.store, T0 + 3600)
    by = {i["detector"]: i for i in d.incidents}
    assert by["lambda_account"]["paged"] == 0 and by["outcomes"]["paged"] == 1, by
    assert "2 incident(s) this week, 1 paged;" in render_text(d)
    assert "<b>2</b> incidents this week, <b>1</b> paged;" in render_html(d)
