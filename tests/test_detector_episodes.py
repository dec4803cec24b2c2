"""Table tests for findings that must last as long as their episode (issue 16): cold-start
spikes against a baseline from before their onset, queue leaks over the long window, bursts that
drain, and causes named by what the fleet says (SES, account concurrency, database callers)."""

from __future__ import annotations

from typing import Any

import pytest

from collector.probes import still_cold
from detectors.base import CRITICAL, WARNING, Inputs, Resource, Series
from detectors.coldstarts import coldstarts
from tests.test_detectors import NOW, M, flat, inputs, join, ramp, res, results, shift

# -- cold starts --------------------------------------------------------------------------------


def minutes(values: dict[int, float], start: int, end: int, default: float) -> Series:
    """One point a minute for minutes start..end-1 relative to NOW (negative = before)."""
    return Series(tuple((NOW + m * M, float(values.get(m, default))) for m in range(start, end)))


def until(s: Series, t: int) -> Series:
    return Series(tuple(p for p in s.points if p[0] <= t), s.period)


def cold_at(
    now: int,
    cold: Series,
    sampled: Series,
    facts: dict[str, Any] | None = None,
    held: dict[str, Any] | None = None,
    **extra: Series,
) -> Inputs:
    fn = res("lambda", "fn", facts or {})
    series = {(fn.id, "ColdStarts", "Sum"): until(cold, now), (fn.id, "SampledInvocations", "Sum"): until(sampled, now)}
    resources = [fn]
    if "api_latency" in extra:
        api = res("api", "api", {"functions": ["fn"]})
        resources.append(api)
        series[(api.id, "Latency", "p95")] = until(extra.pop("api_latency"), now)
    stats = {"ConcurrentExecutions": "Maximum", "Duration": "p99"}
    series.update({(fn.id, m, stats.get(m, "Sum")): until(s, now) for m, s in extra.items()})
    return Inputs(now, resources, series, held=held or {})


def test_a_deploy_blip_of_five_cold_starts_then_normal_is_not_a_finding() -> None:
    cold = minutes({-4: 5}, -60, 0, 0)  # five environments started cold right after the deploy
    sampled = minutes({}, -60, 0, 20)
    for now in range(NOW - 4 * M, NOW + 1, M):
        findings, _ = results(coldstarts, cold_at(now, cold, sampled, {"deployed_at": NOW - 5 * M}))
        assert findings == [], (now - NOW) // M


def test_a_deploy_blip_over_two_minutes_is_not_a_finding_either() -> None:
    cold = minutes({-4: 4, -3: 3}, -60, 0, 0)
    sampled = minutes({}, -60, 0, 20)
    findings, _ = results(coldstarts, cold_at(NOW - M, cold, sampled, {"deployed_at": NOW - 5 * M}))
    assert findings == []


def test_a_spike_of_40_percent_for_30_minutes_is_a_finding_on_every_pass_while_it_lasts() -> None:
    # An hour at 1 cold in 100 a minute, then 40 % for 30 minutes, then normal again.
    cold = minutes({m: 40 for m in range(-30, 0)}, -75, 15, 1)
    sampled = minutes({}, -75, 15, 100)
    found = {}
    for m in range(-30, 15):
        findings, _ = results(coldstarts, cold_at(NOW + m * M, cold, sampled))
        found[m] = findings
    spike = [m for m in range(-30, 0) if found[m]]
    assert spike == list(range(-28, 0))  # from its third elevated minute to the end
    for m in spike:
        (f,) = found[m]
        assert f.severity == (CRITICAL if m >= -27 else WARNING) and f.started_at == NOW - 30 * M
        assert "(usually 1.0%)" in f.title  # never learns from the spike itself
        assert m < -25 or "40% of sampled invocations started cold" in f.title
        assert f.evidence["baseline"] == pytest.approx(0.01) and f.evidence["baseline_since"] == NOW - 30 * M
    assert not any(found[m] for m in range(5, 15))  # over within the 5-minute window after it ended


def test_a_spike_an_hour_after_an_earlier_one_is_not_held_against_it() -> None:
    """The tour's burst on feed-fn: the traces read before it were mostly those of an idle spike
    an hour earlier (35 % cold), so the pooled 'usual' was ~20 % and a 15 % burst was nothing."""
    earlier = {m: 14 for m in range(-72, -60)}  # 35 % of 40 for 12 minutes
    burst = {m: 12 for m in range(-4, 0)}  # 15 % of 80
    cold = minutes({**earlier, **burst}, -72, 0, 0)
    sampled = minutes({**{m: 40 for m in range(-72, -52)}, **{m: 80 for m in range(-4, 0)}}, -72, 0, 4)
    findings, _ = results(coldstarts, cold_at(NOW - M, cold, sampled))
    (f,) = findings
    assert "(usually 0%)" in f.title and f.started_at == NOW - 4 * M


def test_a_share_that_doubles_while_the_api_slows_is_a_finding_and_without_the_slowdown_is_not() -> None:
    cold = minutes({m: 6 for m in range(-10, 0)}, -60, 0, 3)  # 3 % usually, 6 % for ten minutes
    sampled = minutes({}, -60, 0, 100)
    slow = minutes({m: 400 for m in range(-10, 0)}, -60, 0, 180)
    findings, _ = results(coldstarts, cold_at(NOW - M, cold, sampled, api_latency=slow))
    assert [(f.key, f.severity) for f in findings] == [("spike", WARNING)]
    assert "api p95 latency 180 → 400 ms" in findings[0].title
    findings, _ = results(coldstarts, cold_at(NOW - M, cold, sampled, api_latency=minutes({}, -60, 0, 180)))
    assert findings == []


def test_an_episode_longer_than_the_window_holds_the_baseline_of_its_open_alert() -> None:
    cold = minutes({}, -75, 0, 40)  # 40 % for as long as anything was read
    sampled = minutes({}, -75, 0, 100)
    findings, _ = results(coldstarts, cold_at(NOW - M, cold, sampled))
    assert findings == []  # nothing from before it: maybe this function is always this cold
    fn = res("lambda", "fn").id
    held = {f"coldstarts:{fn}:spike": {"baseline": 0.004, "since": NOW - 90 * M}}
    (finding,), _ = results(coldstarts, cold_at(NOW - M, cold, sampled, held=held))
    assert "(usually 0.4%)" in finding.title


def test_the_first_requests_after_an_idle_gap_are_held_against_the_floor_however_long_they_last() -> None:
    cold = minutes({}, -20, 0, 35)
    sampled = minutes({}, -20, 0, 100)
    invocations = minutes({}, -20, 0, 900)  # nothing before: an idle function publishes nothing
    for now in (NOW - 15 * M, NOW - M):
        (finding,), _ = results(coldstarts, cold_at(now, cold, sampled, Invocations=invocations))
        assert finding.cause.startswith("idle gap") and "(idle before; floor 1.0%)" in finding.title


@pytest.mark.parametrize(
    ("label", "cold", "sampled", "expected"),
    [
        (
            "40 % in the last minutes",
            [(NOW - 2 * M, 8.0), (NOW - M, 8.0)],
            [(NOW - 2 * M, 20.0), (NOW - M, 20.0)],
            True,
        ),
        ("usual 0.3 %", [(NOW - 2 * M, 1.0)], [(NOW - m * M, 30.0) for m in range(1, 11)], False),
        ("two cold of twenty: too few to keep reading", [(NOW - M, 2.0)], [(NOW - M, 20.0)], False),
        ("elevated, but more than ten minutes ago", [(NOW - 12 * M, 8.0)], [(NOW - 12 * M, 20.0)], False),
    ],
)
def test_traces_go_on_being_read_while_cold_starts_stay_elevated(
    label: str, cold: list[tuple[int, float]], sampled: list[tuple[int, float]], expected: bool
) -> None:
    assert still_cold(cold, sampled, NOW) is expected


# -- queues -------------------------------------------------------------------------------------

from detectors.queues import queues  # noqa: E402

QUEUE = {"retention": 345600, "consumers": ["worker-fn"]}


def wobble(i: int, spread: float) -> float:
    """A deterministic ±spread noise, like SQS's service-side counts."""
    return 1.0 + spread * (((i * 7919) % 101) / 50.0 - 1.0)


def queue_at(
    now: int,
    visible: dict[int, float],
    age: dict[int, float],
    sent: dict[int, float],
    deleted: dict[int, float],
    resources: list[Resource] | None = None,
    extra: dict[tuple[str, str, str], Series] | None = None,
) -> Inputs:
    """Series keyed by minute relative to NOW; sends and deletes summed per 5 minutes (the slow tier)."""

    def s(points: dict[int, float], every: int = 1) -> Series:
        return Series(
            tuple(
                (NOW + m * M, v) for m, v in sorted(points.items()) if NOW + m * M <= now and NOW + m * M > now - 75 * M
            ),
            every * M,
        )

    def five(points: dict[int, float]) -> dict[int, float]:
        return {
            m: sum(points.get(m + k, 0.0) for k in range(5)) for m in points if m % 5 == 0 and NOW + (m + 4) * M <= now
        }

    resources = resources or [res("sqs", "q", QUEUE), res("lambda", "worker-fn")]
    q = next(r for r in resources if r.kind == "sqs")
    series = {
        (q.id, "ApproximateNumberOfMessagesVisible", "Maximum"): s(visible),
        (q.id, "ApproximateAgeOfOldestMessage", "Maximum"): s(age),
        (q.id, "NumberOfMessagesSent", "Sum"): s(five(sent), 5),
        (q.id, "NumberOfMessagesDeleted", "Sum"): s(five(deleted), 5),
    }
    by_name = {r.name: r.id for r in resources}
    series.update({(by_name[n], m, st): v for (n, m, st), v in (extra or {}).items()})
    return Inputs(now, resources, series)


def burst(minute: int) -> tuple[float, float, float, float]:
    """100 a minute; from minute 0 five minutes at 400 a minute, drained eight minutes later."""
    surge = 0 <= minute < 5
    sent = (400.0 if surge else 100.0) * wobble(minute, 0.02)
    backlog = 60 * minute if surge else max(300 - 37.5 * (minute - 5), 0) if 5 <= minute < 13 else 0
    deleted = sent - (60 if surge else -37.5 if 5 <= minute < 13 else 0)
    return (
        5 + backlog,
        20 + (12 * minute if surge else max(60 - 7 * (minute - 5), 0) if 5 <= minute < 13 else 0),
        sent,
        deleted,
    )


def test_a_queue_that_bursts_and_drains_in_eight_minutes_is_not_a_finding() -> None:
    rows = {m: burst(m) for m in range(-70, 30)}
    vis, age, sent, deleted = ({m: r[i] for m, r in rows.items()} for i in range(4))
    for m in range(-5, 30):
        findings, _ = results(queues, queue_at(NOW + m * M, vis, age, sent, deleted))
        assert [f for f in findings if f.key == "growth"] == [], m


def leak(minute: int) -> tuple[float, float, float, float]:
    """From minute 0 the consumer deletes 3 a minute fewer than the 100 sent: the backlog and
    the oldest message's age creep up for hours, with ±2 % noise in the counts and ±4 in depth."""
    t = max(minute, 0)
    sent = 100.0 * wobble(minute, 0.02)
    deleted = (97.0 if minute >= 0 else 100.0) * wobble(minute + 3, 0.02)
    return 10 + 3 * t + 4 * (wobble(minute, 1.0) - 1), 30 + 2.0 * t, sent, deleted


def test_a_slow_leak_of_three_a_minute_for_three_hours_is_a_finding_on_every_pass_after_half_an_hour() -> None:
    rows = {m: leak(m) for m in range(-80, 180)}
    vis, age, sent, deleted = ({m: r[i] for m, r in rows.items()} for i in range(4))
    quiet = [
        m
        for m in range(30, 180, 3)
        if not [f for f in results(queues, queue_at(NOW + m * M, vis, age, sent, deleted))[0] if f.key == "growth"]
    ]
    assert quiet == []
    early = [f for f in results(queues, queue_at(NOW + 10 * M, vis, age, sent, deleted))[0] if f.key == "growth"]
    assert early == []  # ten minutes of +3 a minute is noise, not yet a leak
    (f,) = results(queues, queue_at(NOW + 120 * M, vis, age, sent, deleted))[0]
    assert (
        f.severity == WARNING
        and "rising 3.0/min for 60 min" in f.title
        and "time to drain never at this rate" in f.title
    )


def test_the_drain_estimate_follows_the_backlog_not_the_counts() -> None:
    # Grew for half an hour, now falling 40 a minute from 400 for five minutes, while sends may
    # still count above deletes (retries inflate NumberOfMessagesSent): it drains in ~5 min.
    vis = {m: (10 + 13 * (m + 30) if m < 0 else 400 - 40 * m) for m in range(-60, 6)}
    from detectors.queues import _drain

    s = Series(tuple((NOW + m * M, v) for m, v in sorted(vis.items())))
    assert _drain(s, NOW + 5 * M) == "~5 min"
    assert _drain(Series(tuple((NOW + m * M, 10.0 + m) for m in range(-10, 0))), NOW) == "never at this rate"


SES_FACTS = {
    "production_access": False,
    "max_24h_send": 200.0,
    "sent_last_24h": 150.0,
    "sending_enabled": True,
    "enforcement_status": "HEALTHY",
}


def mail_fleet(ses_facts: dict[str, Any], uses: list[str]) -> list[Resource]:
    return [
        res("sqs", "email-queue", {"retention": 345600, "consumers": ["email-fn"]}),
        res("lambda", "email-fn", {"uses": uses}),
        res("ses", "account", ses_facts),
    ]


def test_a_mail_queue_backed_up_behind_the_ses_sandbox_blames_ses_not_its_consumer() -> None:
    vis = {m: 2 + 0.4 * (m + 70) for m in range(-70, 1)}
    age = {m: 60.0 * (m + 70) for m in range(-70, 1)}
    sent = {m: 0.5 for m in range(-70, 1)}
    deleted = {m: 0.0 for m in range(-70, 1)}
    errors = Series(tuple((NOW - m * M, 1.0) for m in range(15, 0, -1)))
    inp = queue_at(
        NOW, vis, age, sent, deleted, mail_fleet(SES_FACTS, ["ses:account"]), {("email-fn", "Errors", "Sum"): errors}
    )
    (f,) = [f for f in results(queues, inp)[0] if f.key in ("stopped", "growth")]
    assert (
        "SES us-east-1 refuses email-fn's mail (15 failed invocations in 15 min): still in the SES sandbox" in f.cause
    )
    assert "stopped consuming" not in f.title and "re-enable" not in f.fix.lower().replace("do not re-enable", "")
    assert "production access" in f.fix
    # The same backlog with a consumer that does not send mail: the consumer is blamed.
    inp = queue_at(NOW, vis, age, sent, deleted, mail_fleet(SES_FACTS, []))
    (f,) = [f for f in results(queues, inp)[0] if f.key in ("stopped", "growth")]
    assert "email-fn" in f.title and "SES" not in f.cause
    # Production access just came (ses-sandbox in bench/pages.py): nothing deleted in the window
    # yet, but email-fn ran and failed in it; it did not stop consuming.
    granted = {**SES_FACTS, "production_access": True, "max_24h_send": 50000.0}
    inp = queue_at(
        NOW, vis, age, sent, deleted, mail_fleet(granted, ["ses:account"]), {("email-fn", "Errors", "Sum"): errors}
    )
    (f,) = [f for f in results(queues, inp)[0] if f.key in ("stopped", "growth")]
    assert "email-fn failing (15 errors in 15 min)" in f.title and "stopped consuming" not in f.title


# -- causes named by what the fleet says ----------------------------------------------------------

from alerts.topology import Topology  # noqa: E402
from detectors.connections import connections  # noqa: E402
from detectors.limits import lambda_account, ses_account  # noqa: E402


def test_the_account_concurrency_finding_names_the_top_three_consumers_with_their_reservations() -> None:
    fleet = [
        res("lambda_account", "account", {"concurrency_limit": 1000}),
        res("lambda", "thumbnail-fn"),
        res("lambda", "orders-fn"),
        res("lambda", "report-fn", {"reserved_concurrency": 5}),
        res("lambda", "feed-fn"),
        res("lambda", "other-account-fn", account="222222222222"),
    ]
    inp = inputs(
        fleet,
        {
            ("account", "ClaimedAccountConcurrency", "Maximum"): flat(880, 30),
            ("thumbnail-fn", "ConcurrentExecutions", "Maximum"): flat(860, 30),
            ("orders-fn", "ConcurrentExecutions", "Maximum"): flat(12, 30),
            ("report-fn", "ConcurrentExecutions", "Maximum"): flat(5, 30),
            ("feed-fn", "ConcurrentExecutions", "Maximum"): flat(3, 30),
        },
    )
    (finding,), _ = results(lambda_account, inp)
    assert finding.title == (
        "Lambda us-east-1 (111111111111): 880 of 1,000 account concurrency claimed (88%) — held by "
        "thumbnail-fn 860 (unreserved), orders-fn 12 (unreserved), report-fn 5 (reserved 5)"
    )
    assert "upstream" not in finding.title and "thumbnail-fn" in finding.cause


def test_a_database_names_the_caller_that_scaled_through_its_uses_not_its_service_tag() -> None:
    fleet = [
        res("rds", "orders-db", {"max_connections": 500}, {"service": "orders"}),
        res("lambda", "checkout-fn", {"uses": ["rds:orders-db"]}, {"service": "checkout"}),
        res("lambda", "orders-fn", {"uses": ["rds:orders-db"]}, {"service": "orders"}),
        res("lambda", "feed-fn", {}, {"service": "orders"}),
    ]
    conns = join(shift(flat(40, 60), 10), ramp(40, 490, 10))
    inp = inputs(
        fleet,
        {
            ("orders-db", "DatabaseConnections", "Maximum"): conns,
            ("checkout-fn", "ConcurrentExecutions", "Maximum"): join(
                shift(flat(4, 60, every=5), 10), ramp(4, 600, 10, every=5)
            ),
            ("orders-fn", "ConcurrentExecutions", "Maximum"): flat(3, 70, every=5),
            ("feed-fn", "ConcurrentExecutions", "Maximum"): join(
                shift(flat(2, 60, every=5), 10), ramp(2, 900, 10, every=5)
            ),
        },
    )
    (finding,), _ = results(connections, inp)
    assert (
        finding.title == "orders-db at 98% of max_connections (490 of 500) since checkout-fn scaled to 600 concurrent"
    )
    assert "feed-fn" not in finding.cause  # it scaled too, and shares the tag, but never names the database


def test_a_steady_database_at_60_percent_is_quiet() -> None:
    fleet = [res("rds", "orders-db", {"max_connections": 500}), res("lambda", "orders-fn", {"uses": ["rds:orders-db"]})]
    findings, _ = results(connections, inputs(fleet, {("orders-db", "DatabaseConnections", "Maximum"): flat(300, 70)}))
    assert findings == []


def test_a_sandboxed_account_at_three_quarters_of_its_quota_with_its_mail_failing_is_a_finding() -> None:
    fleet = mail_fleet({**SES_FACTS, "sent_last_24h": 150.0}, ["ses:account"])
    errors = Series(tuple((NOW - m * M, 1.0) for m in range(15, 0, -1)))
    (finding,), _ = results(ses_account, inputs(fleet, {("email-fn", "Errors", "Sum"): errors}))
    assert finding.severity == CRITICAL and finding.key == "sandbox-refusing"
    assert (
        "still in the SES sandbox (150 of 200 daily sends used) while email-fn (15 errors) fail to send"
        in finding.title
    )
    findings, _ = results(ses_account, inputs(mail_fleet({**SES_FACTS, "sent_last_24h": 150.0}, ["ses:account"]), {}))
    assert findings == []  # sandboxed, mail flowing to verified recipients: nothing refused yet


def topology_fleet(holders: list[dict[str, Any]] | None) -> list[Resource]:
    account_facts = (
        {"concurrency_limit": 1000} if holders is None else {"concurrency_limit": 1000, "concurrency_holders": holders}
    )
    return [
        res("lambda_account", "account", account_facts),
        res("ses", "account"),
        res("api", "checkout-api", {"functions": ["checkout-fn"]}),
        res("lambda", "checkout-fn", {"uses": ["rds:orders-db"]}),
        res("lambda", "thumbnail-fn"),
        res("lambda", "report-fn", {"reserved_concurrency": 5}),
        res("lambda", "email-fn", {"uses": ["ses:account"]}),
        res("schedule", "report-every-15m", {"target_functions": ["report-fn"]}),
        res("sqs", "images-queue", {"consumers": ["thumbnail-fn"], "dlq": "images-dlq"}),
        res("sqs", "images-dlq", {"is_dlq": True, "dlq_of": ["images-queue"]}),
        res("sqs", "email-queue", {"consumers": ["email-fn"]}),
        res("rds", "orders-db"),
    ]


def rid(kind: str, name: str) -> str:
    return res(kind, name).id


def test_topology_joins_ses_to_the_mail_queue_a_dlq_to_its_source_and_the_account_through_its_holders() -> None:
    topo = Topology(topology_fleet([{"name": "thumbnail-fn", "peak": 860, "reserved": None}]))
    assert rid("sqs", "email-queue") in topo.edges[rid("lambda", "email-fn")]
    assert rid("lambda", "email-fn") in topo.edges[rid("ses", "account")]
    assert rid("sqs", "images-dlq") in topo.edges[rid("sqs", "images-queue")]
    # The account reaches users through the function holding its concurrency, not checkout-api.
    assert topo.entries(rid("lambda_account", "account")) == (rid("sqs", "images-queue"), rid("sqs", "images-dlq"))
    assert topo.entries(rid("rds", "orders-db")) == (rid("api", "checkout-api"),)
    # Before the collector has named holders: every function on the unreserved pool, never the reserved one.
    topo = Topology(topology_fleet(None))
    assert rid("schedule", "report-every-15m") not in topo.entries(rid("lambda_account", "account"))
    assert rid("api", "checkout-api") in topo.entries(rid("lambda_account", "account"))


# -- SES's maximum send rate: throttled sends, the mail queue behind them ---------------------------

RATE_FACTS = {  # out of the sandbox long ago: 50,000 a day at 14 a second (sesv2 GetAccount SendQuota)
    "production_access": True,
    "max_24h_send": 50000.0,
    "max_send_rate": 14.0,
    "sent_last_24h": 12000.0,
    "sending_enabled": True,
    "enforcement_status": "HEALTHY",
}


def _rate_capped(sends_per_min: float, errors_per_min: float, growing: bool) -> Inputs:
    """A promotion from minute -12: 1,500 mails a minute arrive; SES accepts `sends_per_min`."""
    vis = {m: 2.0 + (660.0 * (m + 12) if growing and m >= -12 else 0.0) for m in range(-40, 1)}
    age = {m: 30.0 + (60.0 * (m + 12) if growing and m >= -12 else 0.0) for m in range(-40, 1)}
    sent = {m: 1500.0 if m >= -12 else 0.5 for m in range(-40, 1)}
    deleted = {m: sends_per_min if m >= -12 else 0.5 for m in range(-40, 1)}
    sends = Series(tuple((NOW + m * M, sends_per_min if m >= -12 else 0.5) for m in range(-40, 0)))
    errors = Series(tuple((NOW + m * M, errors_per_min if m >= -12 else 0.0) for m in range(-40, 0)))
    calls = Series(
        tuple((NOW + m * M, max(sends_per_min + errors_per_min, 1500.0) if m >= -12 else 0.5) for m in range(-40, 0))
    )
    inp = queue_at(
        NOW,
        vis,
        age,
        sent,
        deleted,
        mail_fleet(RATE_FACTS, ["ses:account"]),
        {
            ("email-fn", "Errors", "Sum"): errors,
            ("email-fn", "Invocations", "Sum"): calls,
            ("account", "Send", "Sum"): sends,
        },
    )
    return inp


def test_mail_throttled_at_the_ses_send_rate_pages_on_ses_and_the_queue_names_it() -> None:
    inp = _rate_capped(840.0, 660.0, growing=True)  # 14 a second accepted, the rest throttled and retried
    (f,) = [f for f in results(ses_account, inp)[0] if f.key == "send-rate"]
    assert f.severity == CRITICAL and f.limit
    assert "mail delayed at SES's maximum send rate (14.0 of 14 mails a second)" in f.title, f.title
    assert "email-queue's oldest mail waiting 12 min" in f.title and "email-fn failing" in f.title, f.title
    assert "Maximum sending rate exceeded" in f.cause
    (q,) = [q for q in results(queues, inp)[0] if q.key in ("growth", "stopped")]
    assert q.title.startswith("email-queue: mail delayed, oldest waiting 12 min: backlog"), q.title
    assert "sending at its maximum send rate (14.0 of 14 mails a second)" in q.cause, q.cause
    assert "pace email-fn" in q.fix and "re-enable" not in q.fix


@pytest.mark.parametrize(
    ("label", "sends", "errors", "growing"),
    [
        # A sender pacing itself at the cap: nothing refused, nothing waits (its queue keeps up).
        ("at the cap, nothing failing, nothing waiting", 840.0, 0.0, False),
        # lookalike-ses-campaign: a healthy sender's 0.1 % of errors at 750 a minute is not throttling.
        ("at 90 % of the rate, 0.1 % of sends failing", 750.0, 1.5, False),
        # Failing at 60 % of the rate is something else than the rate (the consumer's own errors).
        ("60 % of the rate while email-fn fails", 500.0, 660.0, True),
    ],
)
def test_the_ses_send_rate_is_quiet_unless_sends_are_capped_and_mail_waits_or_fails(
    label: str, sends: float, errors: float, growing: bool
) -> None:
    inp = _rate_capped(sends, errors, growing)
    assert [f for f in results(ses_account, inp)[0] if f.key == "send-rate"] == [], label
