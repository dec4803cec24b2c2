"""Incident titles that name where users feel a problem and what caused it, on a fake clock through
the real pipeline (store on disk, Slack stand-in over HTTP): each sequence is one that read
wrong in `bench/pages.py`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.state import Observation
from detectors.base import CRITICAL, WARNING, Finding, Inputs, Resource, Series
from fleetwatch.agent.alerting import observation
from simulator.slack import SlackStandIn
from tests.alerting_kit import ACCOUNT, REGION, T0, World, api_errors, rid

M = 60


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    with SlackStandIn() as slack:
        w = World(tmp_path, slack)
        w.reconfigure(**{"alerts.for_limits": 60, "alerts.group_wait": 30, "alerts.cause_wait": 120})
        yield w
        w.close()


DB_ID = rid("rds", "orders-db")
DB_FULL = Observation(
    "connections",
    DB_ID,
    "utilisation",
    "finding",
    CRITICAL,
    "orders-db at 100% of max_connections (500 of 500)",
    limit=True,
)


def test_the_title_moves_from_a_forecast_that_ended_to_the_limit_on_the_same_database(world: World) -> None:
    # The storm in bench/pages.py: orders-db's 15-minute forecast ("64% and rising: full in ~8
    # min") opened the incident, ended as orders-db reached 100 %, and the head kept saying 64 %
    # beside "Cause: orders-db at 100%" to the end.
    forecast = Observation(
        "connections", DB_ID, "forecast", "finding", WARNING, "orders-db at 64% of max_connections and rising"
    )
    full = DB_FULL
    world.tick(forecast)
    world.tick(forecast)
    for _ in range(4):
        world.tick(full, api_errors())
    (inc,) = world.incidents()
    assert inc.title == "checkout-api: 12% of requests failing — orders-db at 100% of max_connections (500 of 500)"


def r(kind: str, name: str, facts: dict | None = None, tags: dict | None = None) -> Resource:
    return Resource(rid(kind, name), kind, name, ACCOUNT, REGION, facts or {}, tags or {})


MAIL_AND_ORDERS = [
    r("ses", "account"),
    r("lambda", "email-fn", {"uses": ["ses:account"]}),
    r("sqs", "email-queue", {"consumers": ["email-fn"]}),
    r("lambda", "orders-fn"),
    r("sqs", "orders-queue", {"consumers": ["orders-fn"], "dlq": "orders-dlq"}),
    r("sqs", "orders-dlq"),
    r("lambda", "feed-fn"),
    r("api", "storefront-api", {"functions": ["feed-fn"]}),
]


DETECTOR = {"ses": "ses_account", "sqs": "queues", "lambda": "coldstarts"}


def finding(kind: str, name: str, key: str, severity: str, title: str, **kw: object) -> Observation:
    return Observation(DETECTOR[kind], rid(kind, name), key, "finding", severity, title, **kw)  # type: ignore[arg-type]


def test_the_ses_sandbox_and_the_mail_queue_behind_it_lead_with_the_queue(world: World) -> None:
    # ses-sandbox in bench/pages.py: the SES quota paged first, the queue joined, and the head
    # stayed "SES us-east-1 ...: 200 of 200 daily sends used" to the end, never naming email-queue.
    world.resources = MAIL_AND_ORDERS
    ses = finding(
        "ses",
        "account",
        "quota",
        CRITICAL,
        "SES us-east-1: 200 of 200 daily sends used (100%) — still in the SES sandbox",
        limit=True,
    )
    queue = finding("sqs", "email-queue", "stopped", CRITICAL, "email-queue: 96 waiting, none deleted in 15 min")
    for _ in range(3):
        world.tick(ses)
    (head,) = world.slack.messages(top_level_only=True)
    assert head["text"].startswith("[FIRING] CRITICAL: SES us-east-1"), "alone, the quota is what it says"
    for _ in range(8):
        world.tick(ses, queue)
    (inc,) = world.incidents()
    assert inc.title == (
        "email-queue: 96 waiting, none deleted in 15 min — SES us-east-1: 200 of 200 daily sends used (100%) — "
        "still in the SES sandbox"
    )
    for _ in range(10):
        world.tick()
    (inc,) = world.incidents()
    (head,) = world.slack.messages(top_level_only=True)
    assert inc.state == "resolved", [(m.get("at"), m["text"][:60]) for m in world.slack.messages()]
    assert head["updates"][-1]["text"].startswith("[RESOLVED] email-queue: 96 waiting")


def test_a_head_that_moved_to_a_worse_symptom_still_names_the_first(world: World) -> None:
    # overlap-consumer-and-dlq: orders-dlq filling paged; orders-queue's stopped consumer
    # (critical) took the head, and orders-dlq was no longer named in it.
    world.resources = MAIL_AND_ORDERS
    dlq = finding("sqs", "orders-dlq", "dlq", WARNING, "orders-dlq: 600 messages dead-lettered in 15 min")
    stopped = finding("sqs", "orders-queue", "stopped", CRITICAL, "orders-queue: 2157 sent and none deleted in 15 min")
    for _ in range(4):
        world.tick(dlq)
    for _ in range(4):
        world.tick(dlq, stopped)
    for _ in range(8):
        world.tick(stopped)  # the DLQ's alert ended; the consumer is still stopped
    (inc,) = world.incidents()
    assert inc.title == "orders-queue: 2157 sent and none deleted in 15 min (and orders-dlq)"


def test_a_function_alone_is_titled_with_the_api_it_serves(world: World) -> None:
    # cold-start-burst-subtle: feed-fn's cold starts paged alone ("feed-fn: 9.4% of sampled
    # invocations started cold"), not saying the storefront's GET /feed is what they slow.
    world.resources = MAIL_AND_ORDERS
    cold = finding("lambda", "feed-fn", "spike", WARNING, "feed-fn: 9.4% of sampled invocations started cold in 5 min")
    for _ in range(3):
        world.tick(cold)
    (inc,) = world.incidents()
    assert inc.title == "feed-fn: 9.4% of sampled invocations started cold in 5 min — behind storefront-api"
    felt = finding("lambda", "feed-fn", "spike", WARNING, "feed-fn: 9% cold; storefront-api p95 latency 137 → 236 ms")
    world.tick(felt)
    assert world.incidents()[0].title == felt.title, "named once is enough"


def test_the_cause_line_keeps_the_named_cause_after_it_ended(world: World) -> None:
    # The storm in `make demo`: orders-db recovered while checkout-api still failed; the head went
    # on naming orders-db, but the RESOLVED message's "Cause:" named only checkout-fn's errors.
    full = DB_FULL
    fn_errors = Observation(
        "outcomes",
        rid("lambda", "checkout-fn"),
        "errors",
        "finding",
        WARNING,
        "checkout-fn: 12% of invocations failed in 10 min",
    )
    for _ in range(4):
        world.tick(full, api_errors(), fn_errors)
    for _ in range(8):  # the database is back; users still fail for a while, then recover
        world.tick(api_errors(), fn_errors)
    for _ in range(10):
        world.tick()
    (inc,) = world.incidents()
    assert inc.state == "resolved"
    assert "checkout-fn: 12% of invocations failed" in inc.cause
    assert inc.title.endswith("— orders-db at 100% of max_connections (500 of 500)")
    assert inc.cause.startswith("orders-db at 100% of max_connections (500 of 500)"), inc.cause


def test_the_incident_page_shows_what_users_feel_first_then_the_named_cause(world: World) -> None:
    # In `make demo`, the storm's page opened its evidence on checkout-fn's errors (a warning),
    # with checkout-api's 12% of failing requests and orders-db below it, in fingerprint order.
    import sqlite3

    from web import data

    full = Observation(
        "connections", DB_ID, "utilisation", "finding", CRITICAL, "orders-db at 100% of max_connections", limit=True
    )
    fn_errors = Observation(
        "outcomes", rid("lambda", "checkout-fn"), "errors", "finding", WARNING, "checkout-fn: 12% failed"
    )
    for _ in range(4):
        world.tick(fn_errors, full, api_errors())
    (inc,) = world.incidents()
    conn = sqlite3.connect(world.tmp / "alerts.db")
    conn.row_factory = sqlite3.Row
    shown = data.incident(conn, inc.id)
    assert shown is not None
    assert [a["fingerprint"] for a in shown["alerts"][:2]] == [inc.symptom_alert, inc.cause_alert]
    assert shown["alerts"][0]["resource"] == rid("api", "checkout-api")
    assert shown["alerts"][1]["resource"] == DB_ID


# -- the mail queue behind the SES sandbox, told as SES's doing to the end ---------------------------

ACCESS_AT = 30  # the minute AWS grants production access (ses-sandbox: the incident's end)


def _mail_inputs(minute: int) -> tuple[list[Resource], dict[tuple[str, str, str], Series]]:
    """ses-sandbox as the emulator publishes it, minute by minute from T0: SES in the sandbox with
    195 of its 200 daily sends used until ACCESS_AT, then production access (50,000 a day);
    email-queue backs up (sends 3 per 5 min, none deleted) and drains once mail is accepted. Sends and
    deletes are slow-tier 5-minute buckets, stored a bucket late; the SES probe's quota gauges and
    the queue's depth and age come every minute."""
    granted = minute >= ACCESS_AT
    ses = r(
        "ses",
        "account",
        {
            "production_access": granted,
            "max_24h_send": 50000.0 if granted else 200.0,
            "sent_last_24h": 195.0,
            "sending_enabled": True,
        },
    )
    email_fn = r("lambda", "email-fn", {"uses": ["ses:account"]})
    queue = r("sqs", "email-queue", {"consumers": ["email-fn"]})
    minutes = range(minute)  # a minute's point is visible once the minute is over
    depth = [5 + m if m < ACCESS_AT else max(0, 5 + ACCESS_AT - 10 * (m - ACCESS_AT)) for m in minutes]
    buckets = [b for b in range(0, minute, 5) if b + 10 <= minute]  # a 5-minute bucket lands 5 min after it ends

    def s(points: list[tuple[int, float]], period: int) -> Series:
        return Series(tuple(points), period)

    series = {
        (ses.id, "SES.Max24HourSend", "Value"): s(
            [(T0 + m * M, 50000.0 if m >= ACCESS_AT else 200.0) for m in minutes], M
        ),
        (ses.id, "SES.SentLast24Hours", "Value"): s([(T0 + m * M, 195.0) for m in minutes], M),
        (queue.id, "ApproximateNumberOfMessagesVisible", "Maximum"): s(
            [(T0 + m * M, float(v)) for m, v in zip(minutes, depth, strict=True)], M
        ),
        (queue.id, "ApproximateAgeOfOldestMessage", "Maximum"): s(
            [(T0 + m * M, 60.0 * (m + 5) if v else 0.0) for m, v in zip(minutes, depth, strict=True)], M
        ),
        (queue.id, "NumberOfMessagesSent", "Sum"): s([(T0 + b * M, 3.0) for b in buckets], 300),
        (queue.id, "NumberOfMessagesDeleted", "Sum"): s(
            [(T0 + b * M, 40.0 if b >= ACCESS_AT else 0.0) for b in buckets], 300
        ),
    }
    return [ses, email_fn, queue], series


def test_the_mail_queue_behind_the_ses_sandbox_never_blames_its_consumer(world: World) -> None:
    # ses-sandbox in bench/pages.py: the thread ended "[RESOLVED] email-queue: 9 messages sent and
    # none deleted in 15 min — email-fn stopped consuming": once production access came, the SES
    # facts no longer refused mail while the queue's deletes, a slow-tier series, still read none.
    from detectors.limits import ses_account
    from detectors.queues import queues

    texts = []
    for minute in range(1, 70):
        resources, series = _mail_inputs(minute)
        world.resources = resources
        inp = Inputs(T0 + minute * M, resources, series)
        found = [f for f in (*queues(inp), *ses_account(inp)) if isinstance(f, Finding)]
        texts += [(minute, f.title, f.fix) for f in found if f.key == "stopped"]
        world.tick(*[observation(f) for f in found])
    assert any(m < ACCESS_AT for m, _, _ in texts) and any(m >= ACCESS_AT for m, _, _ in texts), (
        "the queue reads none deleted on both sides of production access"
    )
    for minute, title, fix in texts:
        assert "SES us-east-1 refuse" in title and "stopped consuming" not in title, (minute, title)
        assert "re-enable or fix" not in fix and "event source mapping" not in fix, (minute, fix)
    after = [title for m, title, _ in texts if m >= ACCESS_AT]
    assert "refused email-fn's mail until" in after[0] and "it accepts mail now" in after[0], after[0]
    (head,) = world.slack.messages(top_level_only=True)
    thread = [head["text"], *(u["text"] for u in head["updates"])]
    assert thread[-1].startswith("[RESOLVED]"), thread
    for text in thread:
        assert "stopped consuming" not in text and "re-enable or fix" not in text, text
        assert "SES us-east-1" in text, text
