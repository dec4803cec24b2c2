"""Table tests for the detectors: each case is a fleet of a few resources with hand-made series,
and what the detector must (or must not) say about it, quiet cases included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from detectors.base import CRITICAL, INFO, WARNING, Finding, Inputs, NoData, Resource, Series
from detectors.connections import connections
from detectors.limits import lambda_account, ses_account
from detectors.queues import queues
from fleetwatch.agent.detection import run

NOW = 1_800_000_000 // 60 * 60
M = 60


def ramp(start: float, end: float, minutes: int, every: int = 1) -> Series:
    """A series ending at NOW - 1 min, linear from start to end over `minutes`."""
    n = minutes // every
    return Series(
        tuple((NOW - (n - i) * every * M, start + (end - start) * i / max(n - 1, 1)) for i in range(n)), every * M
    )


def flat(value: float, minutes: int, every: int = 1) -> Series:
    return ramp(value, value, minutes, every)


def join(*parts: Series) -> Series:
    points: dict[int, float] = {}
    for part in parts:
        points.update(dict(part.points))
    return Series(tuple(sorted(points.items())), parts[0].period if parts else 60)


def shift(s: Series, minutes: int) -> Series:
    return Series(tuple((t - minutes * M, v) for t, v in s.points), s.period)


def res(
    kind: str,
    name: str,
    facts: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    account: str = "111111111111",
) -> Resource:
    return Resource(f"{kind}/{account}/us-east-1/{name}", kind, name, account, "us-east-1", facts or {}, tags or {})


def inputs(resources: list[Resource], series: dict[tuple[str, str, str], Series]) -> Inputs:
    by_name = {r.name: r.id for r in resources}
    return Inputs(NOW, resources, {(by_name[n], m, s): v for (n, m, s), v in series.items()})


def results(detect: Callable[[Inputs], Any], inp: Inputs) -> tuple[list[Finding], list[NoData]]:
    out = list(detect(inp))
    return [f for f in out if isinstance(f, Finding)], [n for n in out if isinstance(n, NoData)]


def keys(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.key, f.severity) for f in findings}


# -- queues -----------------------------------------------------------------------------------------

QUEUE = {"retention": 3600, "consumers": ["worker-fn"]}
WORKER = res("lambda", "worker-fn")

QUEUE_CASES = [
    (
        "backlog rising, inflow above outflow, age rising",
        {
            ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): ramp(10, 400, 20),
            ("q", "ApproximateAgeOfOldestMessage", "Maximum"): ramp(10, 600, 20),
            ("q", "NumberOfMessagesSent", "Sum"): flat(100, 20, every=5),
            ("q", "NumberOfMessagesDeleted", "Sum"): flat(60, 20, every=5),
        },
        {("growth", WARNING)},
    ),
    (
        "a bursty queue that drains: quiet",
        {
            ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): join(
                shift(ramp(0, 300, 10), 10), ramp(300, 100, 10)
            ),
            ("q", "ApproximateAgeOfOldestMessage", "Maximum"): join(shift(ramp(5, 120, 10), 10), ramp(120, 30, 10)),
            ("q", "NumberOfMessagesSent", "Sum"): flat(500, 20, every=5),
            ("q", "NumberOfMessagesDeleted", "Sum"): flat(520, 20, every=5),
        },
        set(),
    ),
    (
        "backlog and age rising while deletes keep up with sends (metrics lag a burst): quiet",
        {
            ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): ramp(0, 300, 15),
            ("q", "ApproximateAgeOfOldestMessage", "Maximum"): ramp(5, 60, 15),
            ("q", "NumberOfMessagesSent", "Sum"): flat(500, 15, every=5),
            ("q", "NumberOfMessagesDeleted", "Sum"): flat(520, 15, every=5),
        },
        set(),
    ),
    (
        "a busy queue at a steady depth: quiet",
        {
            ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): flat(5000, 30),
            ("q", "ApproximateAgeOfOldestMessage", "Maximum"): flat(40, 30),
            ("q", "NumberOfMessagesSent", "Sum"): flat(90000, 30, every=5),
            ("q", "NumberOfMessagesDeleted", "Sum"): flat(90000, 30, every=5),
        },
        set(),
    ),
    (
        "consumer stopped: sends, no deletes",
        {
            ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): ramp(0, 900, 15),
            ("q", "ApproximateAgeOfOldestMessage", "Maximum"): ramp(0, 900, 15),
            ("q", "NumberOfMessagesSent", "Sum"): flat(300, 15, every=5),
            ("q", "NumberOfMessagesDeleted", "Sum"): flat(0, 15, every=5),
        },
        {("stopped", CRITICAL)},
    ),
    (
        "oldest message at 85% of retention",
        {
            ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): flat(30, 15),
            ("q", "ApproximateAgeOfOldestMessage", "Maximum"): ramp(2800, 3060, 15),
        },
        {("loss-risk", CRITICAL)},
    ),
    (
        "oldest message at 55% of retention",
        {
            ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): flat(30, 15),
            ("q", "ApproximateAgeOfOldestMessage", "Maximum"): flat(2000, 15),
        },
        {("loss-risk", WARNING)},
    ),
]


@pytest.mark.parametrize(("label", "series", "expected"), QUEUE_CASES, ids=[c[0] for c in QUEUE_CASES])
def test_queue_cases(label: str, series: dict[tuple[str, str, str], Series], expected: set[tuple[str, str]]) -> None:
    findings, _ = results(queues, inputs([res("sqs", "q", QUEUE), WORKER], series))
    assert keys(findings) == expected


def test_queue_growth_names_the_erroring_consumer_and_time_to_drain() -> None:
    series = {
        ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): ramp(10, 400, 20),
        ("q", "ApproximateAgeOfOldestMessage", "Maximum"): ramp(10, 600, 20),
        ("q", "NumberOfMessagesSent", "Sum"): flat(100, 20, every=5),
        ("q", "NumberOfMessagesDeleted", "Sum"): flat(60, 20, every=5),
        ("worker-fn", "Errors", "Sum"): flat(3, 15),
    }
    (finding,), _ = results(queues, inputs([res("sqs", "q", QUEUE), WORKER], series))
    assert "worker-fn erroring" in finding.cause and "time to drain never" in finding.title
    assert finding.evidence["series"]["visible"][-1][1] == 400


def test_counts_in_titles_have_thousands_separators() -> None:
    # make demo: "orders-queue: 1965 messages sent and none deleted in 15 min — orders-fn stopped
    # consuming; 2222 waiting" beside "(39 of 1,498)" in the same thread.
    stopped = {
        ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): ramp(0, 6015, 15),
        ("q", "ApproximateAgeOfOldestMessage", "Maximum"): ramp(0, 900, 15),
        ("q", "NumberOfMessagesSent", "Sum"): flat(700, 15, every=5),
        ("q", "NumberOfMessagesDeleted", "Sum"): flat(0, 15, every=5),
    }
    (finding,), _ = results(queues, inputs([res("sqs", "q", QUEUE), WORKER], stopped))
    assert finding.key == "stopped" and finding.title.startswith("q: 2,100 messages sent and none deleted"), (
        finding.title
    )
    assert finding.title.endswith("; 6,015 waiting"), finding.title
    growing = {**QUEUE_CASES[0][1], ("q", "ApproximateNumberOfMessagesVisible", "Maximum"): ramp(1000, 4000, 20)}
    (finding,), _ = results(queues, inputs([res("sqs", "q", QUEUE), WORKER], growing))
    assert "backlog 4,000 and rising" in finding.title, finding.title


def test_an_inactive_queue_is_nodata_not_an_empty_queue() -> None:
    findings, nodata = results(queues, inputs([res("sqs", "q", QUEUE)], {}))
    assert findings == [] and [n.resource_id for n in nodata] == ["sqs/111111111111/us-east-1/q"]


DLQ = {"retention": 1209600, "is_dlq": True, "dlq_of": ["q"]}


@pytest.mark.parametrize(
    ("label", "visible", "expected"),
    [
        ("inactive, then 40 messages", shift(ramp(10, 40, 4), 0), {("dlq", WARNING)}),
        ("had 5, now 45", join(shift(flat(5, 30), 20), ramp(5, 45, 10)), {("dlq", WARNING)}),
        ("steady at 5 for an hour: already known, quiet", flat(5, 60), set()),
        ("10,000 and growing", join(shift(flat(9000, 30), 15), ramp(9000, 12000, 10)), {("dlq", CRITICAL)}),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_dlq_cases(label: str, visible: Series, expected: set[tuple[str, str]]) -> None:
    findings, _ = results(
        queues, inputs([res("sqs", "dlq", DLQ)], {("dlq", "ApproximateNumberOfMessagesVisible", "Maximum"): visible})
    )
    assert keys(findings) == expected


def test_dlq_retention_shorter_than_its_source_is_info() -> None:
    findings, _ = results(
        queues, inputs([res("sqs", "dlq", {**DLQ, "retention": 3600, "retention_shorter_than_source": True})], {})
    )
    assert keys(findings) == {("dlq-retention", INFO)}


# A DLQ's ApproximateAgeOfOldestMessage counts from when the message moved in; a standard queue
# expires it from its original enqueue time, a FIFO queue from the move (SQS developer guide,
# "Setting-up dead-letter queue retention").
SOURCE = {"retention": 4 * 86400, "max_receive_count": 5, "visibility_timeout": 12 * 3600, "dlq": "dlq"}


def dlq_age_inputs(age_days: float, fifo: bool = False, **facts: Any) -> Inputs:
    age = flat(age_days * 86400, 15)
    return inputs(
        [res("sqs", "q", SOURCE), res("sqs", "dlq", {**DLQ, "fifo": fifo, **facts})],
        {
            ("dlq", "ApproximateAgeOfOldestMessage", "Maximum"): age,
            ("dlq", "ApproximateNumberOfMessagesVisible", "Maximum"): flat(7, 60),
        },
    )


def test_a_standard_dlq_counts_the_time_its_messages_spent_in_the_source() -> None:
    # 6.5 days in the DLQ is 46% of its 14 days; with the 2.5 days they spent in q at least
    # (5 receives × 12 h visibility) it is 64%, and q's 4-day retention may have used more.
    (finding,), _ = results(queues, dlq_age_inputs(6.5))
    assert (finding.key, finding.severity) == ("loss-risk", WARNING)
    assert "plus at least 2.5 d in q before, 64% of the 14.0 d retention" in finding.title
    assert finding.title.endswith("deleted in 3.5 d to 5.0 d")
    assert finding.evidence["spent_in_source_s"] == {"at_least": 216000.0, "at_most": 345600.0}


def test_a_fifo_dlq_counts_from_the_move_and_may_keep_its_source_retention() -> None:
    assert results(queues, dlq_age_inputs(6.5, fifo=True))[0] == []
    (finding,), _ = results(queues, dlq_age_inputs(10.0, fifo=True))
    assert finding.key == "loss-risk" and "deleted in ~4.0 d" in finding.title
    same = dlq_age_inputs(0.1, fifo=True, retention=4 * 86400, retention_shorter_than_source=True)
    assert results(queues, same)[0] == [], "a FIFO DLQ restarts the clock: its source's retention is enough"
    assert keys(results(queues, dlq_age_inputs(0.1, retention=4 * 86400, retention_shorter_than_source=True))[0]) >= {
        ("dlq-retention", INFO)
    }


# -- connections ------------------------------------------------------------------------------------

DB = {"max_connections": 500, "max_connections_estimated": False}


def db_inputs(conns: Series, caller: Series | None = None, facts: dict[str, Any] | None = None) -> Inputs:
    resources = [
        res("rds", "orders-db", facts or DB, {"service": "orders"}),
        res("lambda", "orders-fn", tags={"service": "orders"}),
        res("lambda", "other-fn", tags={"service": "web"}),
    ]
    series = {
        ("orders-db", "DatabaseConnections", "Maximum"): conns,
        ("other-fn", "ConcurrentExecutions", "Maximum"): join(flat(2, 90), ramp(2, 900, 10)),
    }
    if caller is not None:
        series[("orders-fn", "ConcurrentExecutions", "Maximum")] = caller
    return inputs(resources, series)


def test_connection_storm_names_the_caller_that_scaled() -> None:
    conns = join(shift(flat(40, 60), 10), ramp(40, 490, 10))
    caller = join(shift(flat(3, 60, every=5), 10), ramp(3, 600, 10, every=5))
    (finding,), _ = results(connections, db_inputs(conns, caller))
    assert finding.severity == CRITICAL and finding.key == "utilisation"
    assert "orders-db at 98% of max_connections (490 of 500) since orders-fn scaled to 600 concurrent" == finding.title
    assert "other-fn" not in finding.cause  # another service's function scaled too, but does not use this database
    assert finding.evidence["limit"] == 500


@pytest.mark.parametrize(
    ("label", "conns", "expected"),
    [
        ("steady at half: quiet", flat(250, 60), set()),
        ("85%, flat", flat(425, 30), {("utilisation", WARNING)}),
        (
            "65% and climbing 20 a minute: forecast",
            join(shift(flat(200, 30), 10), ramp(200, 330, 10)),
            {("forecast", WARNING)},
        ),
        ("65% but falling: quiet", ramp(400, 330, 10), set()),
        (
            "62% after climbing 10 a minute: full far off, quiet",
            join(shift(flat(210, 30), 10), ramp(210, 310, 10)),
            set(),
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_connection_cases(label: str, conns: Series, expected: set[tuple[str, str]]) -> None:
    findings, _ = results(connections, db_inputs(conns))
    assert keys(findings) == expected


def test_estimated_max_connections_says_so_and_unknown_is_nodata() -> None:
    (finding,), _ = results(
        connections, db_inputs(flat(290, 10), facts={"max_connections": 307, "max_connections_estimated": True})
    )
    assert "(290 of 307 (estimated))" in finding.title
    findings, nodata = results(connections, db_inputs(flat(290, 10), facts={"max_connections": None}))
    assert findings == [] and "max_connections unknown" in nodata[0].why


def proxy_inputs(**series: Series) -> Inputs:
    names = {
        "used": "DatabaseConnections",
        "allowed": "MaxDatabaseConnectionsAllowed",
        "failed": "DatabaseConnectionsSetupFailed",
        "borrow": "DatabaseConnectionsBorrowLatency",
    }
    stat = {"borrow": "Average"}  # the statistic AWS names for it (rds-proxy.monitoring.html)
    return inputs([res("rds_proxy", "p")], {("p", names[k], stat.get(k, "Sum")): v for k, v in series.items()})


@pytest.mark.parametrize(
    ("label", "series", "expected"),
    [
        ("pool at 50%: quiet", {"used": flat(75, 30), "allowed": flat(150, 30)}, set()),
        (
            "pool at 75%: below AWS's 30% headroom",
            {"used": flat(112, 30), "allowed": flat(150, 30)},
            {("pool", WARNING)},
        ),
        ("pool full", {"used": flat(148, 30), "allowed": flat(150, 30)}, {("pool", CRITICAL)}),
        (
            "setup failures",
            {"used": flat(75, 30), "allowed": flat(150, 30), "failed": flat(2, 3)},
            {("setup-failed", CRITICAL)},
        ),
        (
            "borrow latency 20× its usual",
            {"used": flat(75, 30), "allowed": flat(150, 30), "borrow": join(shift(flat(300, 60), 10), flat(6000, 10))},
            {("borrow-latency", WARNING)},
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_proxy_cases(label: str, series: dict[str, Series], expected: set[tuple[str, str]]) -> None:
    findings, _ = results(connections, proxy_inputs(**series))
    assert keys(findings) == expected


# -- account limits -------------------------------------------------------------------------------


def account_inputs(
    limit: int, claimed: Series, throttles: Series | None = None, reserved_throttles: Series | None = None
) -> Inputs:
    resources = [
        res("lambda_account", "account", {"concurrency_limit": limit}),
        res("lambda", "report-fn", {"reserved_concurrency": 5}),
    ]
    series = {("account", "ClaimedAccountConcurrency", "Maximum"): claimed}
    if throttles is not None:
        series[("account", "Throttles", "Sum")] = throttles
    if reserved_throttles is not None:
        series[("report-fn", "Throttles", "Sum")] = reserved_throttles
    return inputs(resources, series)


@pytest.mark.parametrize(
    ("label", "inp", "expected"),
    [
        ("half the limit: quiet", account_inputs(1000, flat(500, 30)), set()),
        ("85% claimed", account_inputs(1000, flat(850, 30)), {("headroom", WARNING)}),
        ("92% claimed", account_inputs(1000, flat(920, 30)), {("headroom", CRITICAL)}),
        (
            "throttles only inside a reserved function: quiet",
            account_inputs(1000, flat(300, 30), throttles=flat(4, 10), reserved_throttles=flat(4, 10)),
            set(),
        ),
        (
            "throttles outside reservations",
            account_inputs(1000, flat(300, 30), throttles=flat(30, 10), reserved_throttles=flat(4, 10)),
            {("throttles", CRITICAL)},
        ),
        ("a limit of 10 is a risk to show, not to page", account_inputs(10, flat(1, 30)), {("low-limit", INFO)}),
        # A storm (detectors/limits.py STORM_LEVEL, STORM_RISE): 2 % → 53 % in three minutes is
        # paged at 53 %, before the shared 60 % / 150 s rule would see it.
        (
            "storm: 53% after +16% of the limit a minute for 3 min",
            account_inputs(1000, join(shift(flat(20, 30), 3), ramp(195, 528, 3))),
            {("headroom", CRITICAL)},
        ),
        (
            "traffic x3 from 20% to 60% at +13% a minute: quiet",
            account_inputs(1000, join(shift(flat(200, 30), 3), ramp(333, 600, 3))),
            set(),
        ),
        (
            "fan-out burst that stops at 45%: quiet",
            account_inputs(1000, join(shift(flat(20, 30), 3), ramp(180, 450, 3))),
            set(),
        ),
        (
            "busy climb to 55% at +3% a minute: quiet",
            account_inputs(1000, join(shift(flat(250, 30), 10), ramp(280, 550, 10))),
            set(),
        ),
        (
            "steep climb to 55% that levels off in its last minute: quiet",
            account_inputs(1000, join(shift(flat(20, 30), 3), shift(ramp(200, 500, 2), 1), flat(550, 1))),
            set(),
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_lambda_account_cases(label: str, inp: Inputs, expected: set[tuple[str, str]]) -> None:
    findings, _ = results(lambda_account, inp)
    assert keys(findings) == expected


def test_storm_title_says_how_soon_the_limit_is_used_up() -> None:
    (finding,), _ = results(lambda_account, account_inputs(1000, join(shift(flat(20, 30), 3), ramp(195, 528, 3))))
    assert finding.title.startswith("Lambda us-east-1 (111111111111): 528 of 1,000 account concurrency claimed (53")
    assert "and rising 166/min: used up in ~3 min" in finding.title, finding.title


def ses_inputs(facts: dict[str, Any], **series: Series) -> Inputs:
    base = {
        "max_24h_send": 200.0,
        "max_send_rate": 1.0,
        "sent_last_24h": 50.0,
        "production_access": False,
        "sending_enabled": True,
        "enforcement_status": "HEALTHY",
    }
    names = {
        "bounce": ("Reputation.BounceRate", "Maximum"),
        "complaint": ("Reputation.ComplaintRate", "Maximum"),
        "reject": ("Reject", "Sum"),
    }
    return inputs([res("ses", "account", {**base, **facts})], {("account", *names[k]): v for k, v in series.items()})


@pytest.mark.parametrize(
    ("label", "inp", "expected"),
    [
        ("sandbox, a quarter of the quota used: quiet", ses_inputs({}), set()),
        ("sandbox, 97% of the daily quota", ses_inputs({"sent_last_24h": 194.0}), {("quota", CRITICAL)}),
        (
            "production, 85% of the quota",
            ses_inputs({"production_access": True, "max_24h_send": 50000.0, "sent_last_24h": 42500.0}),
            {("quota", WARNING)},
        ),
        # SES's Reject is mail with a virus, not a sandbox refusal (SES API v2 EventDestination:
        # "REJECT - SES accepted the email, but determined that it contained a virus"): a warning of
        # its own, in or out of the sandbox, never the sandbox page.
        (
            "Reject in the sandbox: a virus, not the sandbox",
            ses_inputs({}, reject=flat(3, 10)),
            {("rejects-virus", WARNING)},
        ),
        (
            "Reject in production: a virus",
            ses_inputs({"production_access": True}, reject=flat(3, 10)),
            {("rejects-virus", WARNING)},
        ),
        ("bounce rate 3%", ses_inputs({"production_access": True}, bounce=flat(0.03, 30)), {("bounce", WARNING)}),
        (
            "bounce rate 6%: under review",
            ses_inputs({"production_access": True}, bounce=flat(0.06, 30)),
            {("bounce", CRITICAL)},
        ),
        (
            "complaints 0.2%",
            ses_inputs({"production_access": True}, complaint=flat(0.002, 30)),
            {("complaint", CRITICAL)},
        ),
        (
            "on probation",
            ses_inputs({"production_access": True, "enforcement_status": "PROBATION"}),
            {("enforcement", CRITICAL)},
        ),
        (
            "sending disabled",
            ses_inputs({"production_access": True, "sending_enabled": False}),
            {("disabled", CRITICAL)},
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_ses_cases(label: str, inp: Inputs, expected: set[tuple[str, str]]) -> None:
    findings, _ = results(ses_account, inp)
    assert keys(findings) == expected


def test_sandbox_quota_title_and_fix() -> None:
    (finding,), _ = results(ses_account, ses_inputs({"sent_last_24h": 194.0}))
    assert finding.title == "SES us-east-1 (111111111111): 194 of 200 daily sends used (97%) — still in the SES sandbox"
    assert "production access" in finding.fix


def test_virus_rejects_say_so_and_do_not_hide_the_sandbox_refusing_mail() -> None:
    resources = [
        res(
            "ses",
            "account",
            {
                "max_24h_send": 200.0,
                "sent_last_24h": 50.0,
                "production_access": False,
                "sending_enabled": True,
                "enforcement_status": "HEALTHY",
            },
        ),
        res("lambda", "email-fn", {"uses": ["ses:account"]}),
    ]
    found, _ = results(
        ses_account,
        inputs(resources, {("account", "Reject", "Sum"): flat(2, 10), ("email-fn", "Errors", "Sum"): flat(3, 10)}),
    )
    by_key = {f.key: f for f in found}
    assert set(by_key) == {"rejects-virus", "sandbox-refusing"}
    assert by_key["rejects-virus"].title.endswith("20 mails rejected in the last hour: virus detected")
    assert by_key["sandbox-refusing"].severity == CRITICAL


def test_an_unprobed_account_is_nodata() -> None:
    findings, nodata = results(ses_account, inputs([res("ses", "account")], {}))
    assert findings == [] and nodata
    findings, nodata = results(lambda_account, inputs([res("lambda_account", "account")], {}))
    assert findings == [] and nodata


# -- the pass ------------------------------------------------------------------------------------


def test_a_detector_that_throws_is_errored_and_the_others_still_run() -> None:
    def broken(inp: Inputs) -> list[Finding]:
        raise ZeroDivisionError("division by zero")

    def fine(inp: Inputs) -> list[Finding]:
        return [Finding("fine", "r", WARNING, "something", inp.now, {})]

    detection = run(inputs([], {}), detectors={"broken": broken, "fine": fine})
    by_name = {r.name: r for r in detection.runs}
    assert by_name["broken"].status == "error" and "ZeroDivisionError: division by zero" in by_name["broken"].error
    assert by_name["fine"].status == "ok" and [f.title for f in detection.findings] == ["something"]


# -- hot partitions ---------------------------------------------------------------------------------

from detectors.tables import tables  # noqa: E402

TABLE = {
    "billing": "PROVISIONED",
    "read_capacity": 400,
    "write_capacity": 1000,
    "hot_keys": {"window": [NOW - 900, NOW], "top": [{"key": "post#1#likes", "value": 900.0}]},
}


def table_inputs(facts: dict[str, Any] | None = None, **series: Series) -> Inputs:
    stat = {"ProvisionedWriteCapacityUnits": "Maximum"}
    return inputs(
        [res("dynamodb", "posts", TABLE if facts is None else facts)],
        {("posts", metric, stat.get(metric, "Sum")): s for metric, s in series.items()},
    )


@pytest.mark.parametrize(
    ("label", "inp", "expected"),
    [
        (
            "busy but under capacity, no throttles: quiet",
            table_inputs(ConsumedWriteCapacityUnits=flat(500 * 60, 10)),
            set(),
        ),
        (
            "key-range throttles at 30% of capacity: hot partition",
            table_inputs(
                WriteKeyRangeThroughputThrottleEvents=flat(300, 5), ConsumedWriteCapacityUnits=flat(300 * 60, 10)
            ),
            {("hot-write", CRITICAL)},
        ),
        (
            "one minute of key-range throttles: not yet",
            table_inputs(WriteKeyRangeThroughputThrottleEvents=flat(300, 1)),
            set(),
        ),
        # Two minutes make a finding; its alert fires after alerts.for_limits, on a third. Judged by
        # its pace: 300 a minute is 1,500 in 5 min (critical), 100 a minute 500 (a warning).
        (
            "two minutes of key-range throttles: a hot partition",
            table_inputs(WriteKeyRangeThroughputThrottleEvents=flat(300, 2)),
            {("hot-write", CRITICAL)},
        ),
        (
            "two minutes of 100 key-range throttles: a warning",
            table_inputs(WriteKeyRangeThroughputThrottleEvents=flat(100, 2)),
            {("hot-write", WARNING)},
        ),
        (
            "key-range throttles while the table is at capacity: capacity, not a hot key",
            table_inputs(
                WriteKeyRangeThroughputThrottleEvents=flat(50, 5),
                WriteProvisionedThroughputThrottleEvents=flat(50, 5),
                ConsumedWriteCapacityUnits=flat(1000 * 60, 10),
            ),
            {("capacity-write", WARNING)},
        ),
        (
            "a throttle during an auto-scaling step: quiet",
            table_inputs(
                WriteProvisionedThroughputThrottleEvents=flat(20, 3),
                ProvisionedWriteCapacityUnits=join(shift(flat(1000, 10), 5), flat(1500, 5)),
                ConsumedWriteCapacityUnits=flat(1100 * 60, 10),
            ),
            set(),
        ),
        (
            "sustained provisioned throttling",
            table_inputs(
                WriteProvisionedThroughputThrottleEvents=flat(400, 5), ConsumedWriteCapacityUnits=flat(1000 * 60, 10)
            ),
            {("capacity-write", CRITICAL)},
        ),
        (
            "account limit",
            table_inputs(WriteAccountLimitThrottleEvents=flat(10, 5)),
            {("account-limit-write", WARNING)},
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_table_cases(label: str, inp: Inputs, expected: set[tuple[str, str]]) -> None:
    findings, _ = results(tables, inp)
    assert keys(findings) == expected


def test_capacity_throttles_hold_consumed_capacity_against_the_limit_not_the_throttle_count() -> None:
    # The limit lands on the chart and in the messages beside the first series: that must be the
    # consumption in WCU a second (ConsumedWriteCapacityUnits is a Sum over the period), never the
    # throttle count ("throttles peaked at 615 (limit 1,000)" compared a count with WCU).
    (finding,), _ = results(
        tables,
        table_inputs(
            WriteProvisionedThroughputThrottleEvents=flat(400, 5), ConsumedWriteCapacityUnits=flat(1000 * 60, 10)
        ),
    )
    ev = finding.evidence
    assert list(ev["series"]) == ["consumed_wcu", "throttles"] and ev["limit"] == 1000
    assert {v for _, v in ev["series"]["consumed_wcu"]} == {1000.0}
    # In production consumed capacity is a slow-tier series of 5-minute Sums: 300,000 in five
    # minutes is 1,000 WCU a second.
    five = Series(tuple((NOW - 300 * k, 1000.0 * 300) for k in (1, 0)), 300)
    (finding,), _ = results(
        tables, table_inputs(WriteProvisionedThroughputThrottleEvents=flat(400, 5), ConsumedWriteCapacityUnits=five)
    )
    assert {v for _, v in finding.evidence["series"]["consumed_wcu"]} == {1000.0}
    # No consumption read in the last ten minutes (a slow poll, a gap): no limit at all, rather
    # than the limit beside the throttle count.
    (finding,), _ = results(tables, table_inputs(WriteProvisionedThroughputThrottleEvents=flat(400, 5)))
    assert "limit" not in finding.evidence and list(finding.evidence["series"])[0] == "throttles"


def test_hot_partition_names_the_key_and_suggests_sharding() -> None:
    (finding,), _ = results(
        tables,
        table_inputs(WriteKeyRangeThroughputThrottleEvents=flat(300, 5), ConsumedWriteCapacityUnits=flat(300 * 60, 10)),
    )
    assert "hottest key post#1#likes" in finding.title and "30% of its 1,000 WCU" in finding.title
    assert "hot partition — 1,500 write throttles in 5 min" in finding.title, finding.title
    assert "sharded counter" in finding.fix
    # The per-partition 1,000 WCU is told in the cause, not held against a series: CloudWatch
    # has no per-partition consumption, and a throttle count is not in WCU.
    assert "limit" not in finding.evidence and "1,000 WCU" in (finding.cause or "")
    assert list(finding.evidence["series"]) == ["key_range_throttles", "consumed_wcu"]
    assert {v for _, v in finding.evidence["series"]["consumed_wcu"]} == {300.0}, "Sum a minute → WCU a second"
    stale = {**TABLE, "hot_keys": {"window": [NOW - 7200, NOW - 3600], "top": [{"key": "old#key", "value": 1.0}]}}
    (finding,), _ = results(tables, table_inputs(stale, WriteKeyRangeThroughputThrottleEvents=flat(300, 5)))
    assert "old#key" not in finding.title


# -- outcomes ---------------------------------------------------------------------------------------

from detectors.outcomes import expected_interval, outcomes  # noqa: E402

REST = {"type": "REST", "stages": ["prod"], "functions": ["checkout-fn"]}


def api_inputs(rate: Series, count: Series, latency: Series | None = None, **settings: Any) -> Inputs:
    series = {("api", "5XXError", "Average"): rate, ("api", "Count", "Sum"): count}
    if latency is not None:
        series[("api", "Latency", "p95")] = latency
    inp = inputs([res("api", "api", REST)], series)
    inp.settings.update(settings)
    return inp


@pytest.mark.parametrize(
    ("label", "inp", "expected"),
    [
        ("0.1% errors: quiet", api_inputs(flat(0.001, 60), flat(120, 60)), set()),
        (
            "12% errors for 5 min",
            api_inputs(join(shift(flat(0.001, 55), 5), flat(0.12, 5)), flat(120, 60)),
            {("errors", CRITICAL)},
        ),
        (
            "2% errors against a 1% objective",
            api_inputs(join(shift(flat(0.001, 55), 5), flat(0.02, 5)), flat(120, 60)),
            {("errors", WARNING)},
        ),
        (
            "50% errors on 4 requests: too few to page",
            api_inputs(join(shift(flat(0.0, 55), 5), flat(0.5, 5)), flat(0.8, 60)),
            set(),
        ),
        (
            "1.5% of 130 requests, usually none: two failures are noise",
            api_inputs(join(shift(flat(0.0, 55), 5), flat(0.015, 5)), flat(26, 60)),
            set(),
        ),
        (
            "a noisy API at 2.5%, usually 2%: quiet under a 5% objective",
            api_inputs(
                join(shift(flat(0.02, 55), 5), flat(0.025, 5)), flat(120, 60), **{"objectives.api_error_rate": 0.05}
            ),
            set(),
        ),
        (
            "latency doubled",
            api_inputs(flat(0.001, 60), flat(120, 60), join(shift(flat(80, 55), 5), flat(200, 5))),
            {("latency", WARNING)},
        ),
        (
            "latency doubled but within a 500 ms objective: quiet",
            api_inputs(
                flat(0.001, 60),
                flat(120, 60),
                join(shift(flat(80, 55), 5), flat(200, 5)),
                **{"objectives.api_latency_ms": 500},
            ),
            set(),
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_api_cases(label: str, inp: Inputs, expected: set[tuple[str, str]]) -> None:
    findings, _ = results(outcomes, inp)
    assert keys(findings) == expected


@pytest.mark.parametrize(
    ("label", "errors", "invocations", "expected"),
    [
        ("usual 0.1%", flat(1, 60), flat(1000, 60), set()),
        ("8% failing", join(shift(flat(1, 50), 10), flat(80, 10)), flat(1000, 60), {("errors", WARNING)}),
        ("30% failing", join(shift(flat(1, 50), 10), flat(300, 10)), flat(1000, 60), {("errors", CRITICAL)}),
        ("half of 10 invocations: too few", join(shift(flat(0, 50), 10), flat(1, 10)), flat(2, 60), set()),
        (
            "2 of 30 invocations: noise, not an outage",
            join(shift(flat(0, 50), 10), shift(flat(1, 2), 3)),
            flat(3, 60),
            set(),
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_function_error_cases(label: str, errors: Series, invocations: Series, expected: set[tuple[str, str]]) -> None:
    findings, _ = results(
        outcomes,
        inputs([res("lambda", "fn")], {("fn", "Errors", "Sum"): errors, ("fn", "Invocations", "Sum"): invocations}),
    )
    assert keys(findings) == expected


def every(minutes: int, until: int, span: int = 120) -> Series:
    """A run every `minutes`, the last one `until` minutes before now, over `span` minutes."""
    return Series(tuple((NOW - m * M, 1.0) for m in range(span, until - 1, -1) if (m - until) % minutes == 0))


@pytest.mark.parametrize(
    ("label", "facts", "series", "expected"),
    [
        ("ran 3 min ago: quiet", {"expression": "rate(5 minutes)"}, {"TriggeredRules": every(5, 3)}, set()),
        (
            "no run for 12 min on a 5-minute rate",
            {"expression": "rate(5 minutes)"},
            {"TriggeredRules": every(5, 12)},
            {("missed", CRITICAL)},
        ),
        ("a new rule with no run yet: quiet", {"expression": "rate(5 minutes)"}, {}, set()),
        (
            "hourly cron, last run 40 min ago: quiet",
            {"expression": "cron(15 * * * ? *)"},
            {"TriggeredRules": every(60, 40)},
            set(),
        ),
        # One missed run with nothing to corroborate it: EventBridge metrics are best-effort, so a
        # lost TriggeredRules point must not page CRITICAL (tests/test_async_jobs.py corroborates).
        (
            "hourly cron, last run 100 min ago",
            {"expression": "cron(15 * * * ? *)"},
            {"TriggeredRules": every(60, 100)},
            {("missed", WARNING)},
        ),
        (
            "hourly cron, two runs missed",
            {"expression": "cron(15 * * * ? *)"},
            {"TriggeredRules": every(60, 160, span=240)},
            {("missed", CRITICAL)},
        ),
        (
            "target failing",
            {"expression": "rate(15 minutes)"},
            {"TriggeredRules": every(15, 4), "FailedInvocations": every(15, 4)},
            {("failed", CRITICAL)},
        ),
        (
            "a disabled rule: quiet",
            {"expression": "rate(5 minutes)", "state": "DISABLED"},
            {"TriggeredRules": every(5, 60)},
            set(),
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_schedule_cases(
    label: str, facts: dict[str, Any], series: dict[str, Series], expected: set[tuple[str, str]]
) -> None:
    findings, _ = results(
        outcomes, inputs([res("schedule", "job", facts)], {("job", m, "Sum"): s for m, s in series.items()})
    )
    assert keys(findings) == expected


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("cron(0 * * * ? *)", 3600),
        ("cron(30 4 * * ? *)", 86400),
        ("cron(0/5 * * * ? *)", 300),
        ("at(2026-01-01T00:00:00)", None),
        ("rate(1 minutes)", None),
        ("rate(5 minute)", None),
        ("cron(0 * * * *)", None),
        ("cron(0 * * * * *)", None),
    ],
)
def test_expected_interval(expression: str, seconds: int | None) -> None:
    assert expected_interval(expression) == seconds


# -- cold starts ------------------------------------------------------------------------------------

from detectors.coldstarts import coldstarts  # noqa: E402


def cold_inputs(
    cold: Series, sampled: Series, init: Series | None = None, facts: dict[str, Any] | None = None, **extra: Series
) -> Inputs:
    series = {("fn", "ColdStarts", "Sum"): cold, ("fn", "SampledInvocations", "Sum"): sampled}
    if init is not None:
        series[("fn", "InitDuration", "Maximum")] = init
    stats = {"ConcurrentExecutions": "Maximum"}
    series.update({("fn", m, stats.get(m, "Sum")): s for m, s in extra.items()})
    return inputs([res("lambda", "fn", facts or {})], series)


SPIKE = join(shift(flat(0, 30), 5), flat(4, 5))  # 4 of 20 sampled a minute, for 5 minutes


@pytest.mark.parametrize(
    ("label", "inp", "expected_cause"),
    [
        (
            "burst",
            cold_inputs(
                SPIKE,
                flat(20, 35),
                flat(900, 5),
                ConcurrentExecutions=join(shift(flat(10, 60), 6), flat(60, 6)),
                Invocations=flat(400, 60),
            ),
            "burst",
        ),
        (
            "deploy",
            cold_inputs(SPIKE, flat(20, 35), flat(1200, 5), {"deployed_at": NOW - 6 * M}, Invocations=flat(400, 60)),
            "deploy",
        ),
        (
            "spillover",
            cold_inputs(
                SPIKE,
                flat(20, 35),
                flat(900, 5),
                ProvisionedConcurrencySpilloverInvocations=flat(30, 5),
                Invocations=flat(400, 60),
            ),
            "provisioned concurrency spillover",
        ),
        ("idle", cold_inputs(SPIKE, flat(20, 35), flat(2800, 5), Invocations=flat(400, 5)), "idle gap"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_cold_start_causes(label: str, inp: Inputs, expected_cause: str) -> None:
    (finding,), _ = results(coldstarts, inp)
    assert finding.cause.startswith(expected_cause) and finding.severity == WARNING
    assert "20% of sampled invocations started cold" in finding.title


@pytest.mark.parametrize(
    ("label", "inp", "expected"),
    [
        ("a busy, healthy function: 1 cold in 100 a minute", cold_inputs(flat(1, 30), flat(100, 30)), set()),
        ("a handful of invocations, all cold: too few to page", cold_inputs(flat(1, 5), flat(1, 5)), set()),
        ("a function that is always 30% cold: its own baseline", cold_inputs(flat(6, 60), flat(20, 60)), set()),
        ("init near the 10 s limit", cold_inputs(SPIKE, flat(20, 35), flat(8500, 5)), {("spike", CRITICAL)}),
        ("no traces read at all", cold_inputs(Series(), Series()), set()),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_cold_start_cases(label: str, inp: Inputs, expected: set[tuple[str, str]]) -> None:
    findings, _ = results(coldstarts, inp)
    assert keys(findings) == expected


def weekly(inp: Inputs, cold: float, sampled: float) -> Inputs:
    fn = inp.resources[0].id
    inp.weekly = {(fn, "ColdStarts", "Sum"): (cold, 4), (fn, "SampledInvocations", "Sum"): (sampled, 4)}
    return inp


@pytest.mark.parametrize(
    ("label", "inp", "expected"),
    [
        # 20% cold now; 10% cold for the last 40 minutes, which alone would hide it (20% < 3 x 10%).
        (
            "usually 1% at this hour, elevated for 40 minutes: still a spike",
            weekly(cold_inputs(join(shift(flat(2, 30), 5), flat(4, 5)), flat(20, 35)), cold=48, sampled=4800),
            {("spike", WARNING)},
        ),
        (
            "a Monday-morning wake-up that is 30% cold every week at this hour",
            weekly(cold_inputs(SPIKE, flat(20, 35)), cold=1200, sampled=4000),
            set(),
        ),
        (
            "too few sampled at this hour in earlier weeks: the recent share and the floor decide",
            weekly(cold_inputs(SPIKE, flat(20, 35)), cold=20, sampled=40),
            {("spike", WARNING)},
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_cold_start_same_hour_of_the_week(label: str, inp: Inputs, expected: set[tuple[str, str]]) -> None:
    findings, _ = results(coldstarts, inp)
    assert keys(findings) == expected
    if findings and inp.weekly[(inp.resources[0].id, "SampledInvocations", "Sum")][0] >= 50:
        assert "(this hour of the week usually 1.0%)" in findings[0].title
