"""A hard limit about to be reached pages before it is reached: timelines on a fake clock, the
real detectors reading minute-by-minute series, their findings through the real pipeline (store
on disk, Slack stand-in over HTTP).

The figures are what the emulated connection storm and account-concurrency flood published in
`bench/pages.py` (a five-minute ramp to 98 % of max_connections, to 86 % of the account's
concurrency), and the look-alikes beside them that must not page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.state import FIRING, PENDING, Observation
from detectors.base import CRITICAL, WARNING, Finding, Inputs, Resource, Series, imminent
from detectors.connections import connections
from detectors.limits import lambda_account
from fleetwatch.agent.alerting import observation
from simulator.slack import SlackStandIn
from tests.alerting_kit import ACCOUNT, REGION, T0, World, rid

M = 60
DB = Resource(
    rid("rds", "orders-db"), "rds", "orders-db", ACCOUNT, REGION, {"max_connections": 500}, {"service": "orders"}
)
PROXY = Resource(rid("rds_proxy", "catalog-proxy"), "rds_proxy", "catalog-proxy", ACCOUNT, REGION, {}, {})
ACCT = Resource(
    rid("lambda_account", "account"), "lambda_account", "account", ACCOUNT, REGION, {"concurrency_limit": 1000}, {}
)
# The connection storm as the emulator published it: flat near 65, then a five-minute ramp.
STORM = [62, 65, 66, 61, 70, 65, 62, 147, 238, 320, 406, 500, 498, 500, 487, 482]
RAMP_STARTS = 7  # STORM[7] is the first minute of the ramp


def series(values: list[float], upto: int, start: int = T0) -> Series:
    """The points visible at minute `upto`: a minute's point exists once the minute is over."""
    return Series(tuple((start + i * M, float(v)) for i, v in enumerate(values[:upto])), M)


def db_findings(values: list[float], minute: int) -> list[Finding]:
    now = T0 + minute * M
    inp = Inputs(now, [DB], {(DB.id, "DatabaseConnections", "Maximum"): series(values, minute)})
    return [f for f in connections(inp) if isinstance(f, Finding)]


def observed(findings: list[Finding]) -> list[Observation]:
    return [observation(f) for f in findings]


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    with SlackStandIn() as slack:
        w = World(tmp_path, slack)
        w.reconfigure(**{"alerts.for_limits": 60, "alerts.group_wait": 30, "alerts.cause_wait": 120})
        w.resources = [*w.resources, DB]
        yield w
        w.close()


def test_the_climb_helper_reads_the_slowest_of_three_consecutive_rises() -> None:
    climb = series([65, 147, 238, 320], 4).rising_to(500)
    assert climb is not None and climb.per_minute == 82 and climb.since == T0
    assert round(climb.eta) == round((500 - 320) / 82 * 60)
    assert series([65, 65, 238, 320], 4).rising_to(500) is None, "one jump is not a climb"
    assert Series(((T0, 65), (T0 + M, 147), (T0 + 3 * M, 238), (T0 + 4 * M, 320)), M).rising_to(500) is None, "a gap"
    assert imminent(series([65, 147, 238, 320], 4), 500, T0 + 4 * M) is not None
    assert imminent(series([65, 147, 238, 320], 4), 500, T0 + 9 * M) is None, "four minutes old: not now"


@pytest.mark.parametrize(
    ("label", "values", "pages_by"),
    [
        # The storm: 64 % and climbing ~82 a minute three minutes into the ramp -> full in ~2 min.
        ("a storm to 98%", STORM, RAMP_STARTS + 3),
        # A storm that stops at 85 %: never reaches 90 % (critical) and is warning at 80 % after `for`;
        # its climb pages a minute before it reaches 80 %.
        ("a storm to 85%", [65] * 7 + [137, 209, 281, 353, 425, 423, 426, 421, 425, 424], RAMP_STARTS + 4),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_a_climb_to_max_connections_pages_before_the_limit(
    world: World, label: str, values: list[float], pages_by: int
) -> None:
    pages, states = [], []
    for minute in range(1, len(values) + 1):
        world.tick(*observed(db_findings(values, minute)))
        incidents = world.incidents()
        states.append(incidents[0].state if incidents else None)
        pages += [minute] * (len(world.slack.messages(top_level_only=True)) - len(pages))
    assert pages and pages[0] == pages_by, f"first page at minute {pages[0] if pages else None} (states {states})"
    (head,) = world.slack.messages(top_level_only=True)
    assert "orders-db at" in head["text"] and "max_connections" in head["text"]
    assert len(world.incidents()) == 1, "the climb and the limit are one alert, one incident"


@pytest.mark.parametrize(
    ("label", "values"),
    [
        # lookalike-db-steady: a ten-minute ramp to a busy but steady 60 %.
        ("a ten-minute ramp to 60%", [65] * 7 + [round(65 + (300 - 65) * k / 10) for k in range(1, 11)] + [300] * 10),
        # The same level reached in five minutes: at 60 % its slowest rise (47 a minute) needs over
        # four minutes for the last 200: not about to be full.
        ("a five-minute ramp to 60%", [65] * 7 + [112, 159, 206, 253, 300] + [300] * 12),
        # A jump to 60 % in two minutes and flat: one rise is not a climb.
        ("a jump to 60%", [65] * 7 + [182, 300] + [302, 298, 301, 300, 299, 300, 303, 300, 298, 301]),
        ("steady at 60%", [300] * 20),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_a_database_that_levels_off_below_its_limit_never_pages(world: World, label: str, values: list[float]) -> None:
    for minute in range(1, len(values) + 1):
        findings = db_findings(values, minute)
        assert all(f.key != "utilisation" for f in findings), (minute, [f.title for f in findings])
        world.tick(*observed(findings))
    assert world.slack.messages() == []


def test_a_sustained_finding_fires_on_its_first_pass_and_is_not_held_by_group_wait(world: World) -> None:
    # The detector's data shows the climb over three minutes: `for_limits` (1 min) counts from its
    # onset, and so does group_wait (30 s): the page goes in the pass that first saw it.
    climb = Observation(
        "connections",
        DB.id,
        "utilisation",
        "finding",
        CRITICAL,
        "orders-db at 64% of max_connections and rising",
        started_at=T0 - 3 * M,
        limit=True,
        sustained=True,
    )
    world.tick(climb)
    (inc,) = world.incidents()
    assert inc.state == FIRING and inc.started_at == T0 - 3 * M
    assert len(world.slack.messages(top_level_only=True)) == 1
    # Not sustained, the same finding is pending for `for_limits` and pages a pass later.
    world.tick()
    for _ in range(10):
        world.tick()
    late = Observation(**{**climb.__dict__, "sustained": False, "started_at": int(world.clock.now()) - 3 * M})
    world.tick(late)
    assert [i.state for i in world.incidents()][-1] == PENDING
    world.tick(late)
    assert [i.state for i in world.incidents()][-1] == FIRING


def test_a_sustained_onset_never_lies_in_the_future_nor_makes_a_pending_alert_younger(world: World) -> None:
    ahead = Observation(
        "connections",
        DB.id,
        "utilisation",
        "finding",
        WARNING,
        "orders-db at 81% of max_connections",
        started_at=T0 + 10 * M,
        limit=True,
        sustained=True,
    )
    world.tick(ahead)
    (inc,) = world.incidents()
    assert inc.state == PENDING and inc.started_at == T0, "an onset after `now` counts from now"


# -- the same rule on the account's concurrency and a proxy's pool ---------------------------------


def account_findings(values: list[float], minute: int) -> list[Finding]:
    now = T0 + minute * M
    inp = Inputs(now, [ACCT], {(ACCT.id, "ClaimedAccountConcurrency", "Maximum"): series(values, minute)})
    return [f for f in lambda_account(inp) if isinstance(f, Finding)]


def test_account_concurrency_climbing_to_its_limit_is_critical_before_80_percent() -> None:
    # lambda-concurrency: thumbnail-fn's flood, claimed concurrency 20 -> 195 -> 364 -> 529 -> 689 -> 858.
    flood = [20, 21, 19, 20, 195, 364, 529, 689, 858, 895, 873]
    got = {
        minute: [(f.key, f.severity, f.sustained) for f in account_findings(flood, minute)] for minute in range(6, 10)
    }
    assert got[6] == []  # 36 %: not near yet
    # 53 %, +16 % of the limit a minute for three minutes, x26: a storm (limits.py STORM_*), paged
    # a minute before the shared 60 % / 150 s rule sees it
    assert got[7] == [("headroom", CRITICAL, True)]
    assert got[8] == [("headroom", CRITICAL, True)]  # 69 % and rising 160 a minute: used up in ~2 min
    assert got[9] == [("headroom", WARNING, False)] or got[9][0][1] == CRITICAL
    (finding,) = account_findings(flood, 8)
    assert "689 of 1,000 account concurrency claimed (69%) and rising 160/min: used up in ~2 min" in finding.title
    assert finding.started_at == T0 + 4 * M
    # A 3x surge scaling cleanly from 20 % to 60 % over three minutes: ~3 minutes to the limit at
    # its pace, not about to be used up, and not a storm (x3, not STORM_FACTOR x5).
    surge = [200] * 5 + [333, 466, 600, 600, 600]
    assert all(account_findings(surge, minute) == [] for minute in range(1, len(surge) + 1))


def test_a_proxy_pool_climbing_to_its_limit_is_critical() -> None:
    used = [20, 20, 21, 60, 80, 100]  # 67 % and rising 20 a minute: full in ~2 min; 70 % is its warning
    now = T0 + 6 * M
    inp = Inputs(
        now,
        [PROXY],
        {
            (PROXY.id, "DatabaseConnections", "Sum"): series(used, 6),
            (PROXY.id, "MaxDatabaseConnectionsAllowed", "Sum"): series([150] * 6, 6),
        },
    )
    (finding,) = [f for f in connections(inp) if isinstance(f, Finding)]
    assert (finding.key, finding.severity, finding.sustained) == ("pool", CRITICAL, True)
    assert finding.title.endswith("and rising 20/min: full in ~2 min")


# -- a hot partition judged by its pace, not by a five-minute window it has yet to fill ------------

POSTS = Resource(
    rid("dynamodb", "posts"), "dynamodb", "posts", ACCOUNT, REGION, {"write_capacity": 4000}, {"service": "storefront"}
)


def test_a_hot_partition_two_minutes_in_is_critical_and_pages_without_cause_wait(world: World) -> None:
    # overlap-storm-and-hot-key: 196 and 403 throttles in its first two minutes, then its third
    # minute's point came a few minutes late: "599 write throttles in 5 min" read as a warning
    # twice, so the page waited on cause_wait for a critical reading (4 min after the onset; the
    # same partition in hot-partition, whose points came on time, paged at 3).
    from detectors.tables import tables

    world.resources = [*world.resources, POSTS]
    arrived = {1: [196], 2: [196, 403], 3: [196, 403], 4: [196, 403, 588, 594], 5: [196, 403, 588, 594, 589]}
    pages = []
    for minute in range(1, 6):
        inp = Inputs(
            T0 + minute * M,
            [POSTS],
            {(POSTS.id, "WriteKeyRangeThroughputThrottleEvents", "Sum"): series(arrived[minute], minute)},
        )
        found = [f for f in tables(inp) if isinstance(f, Finding)]
        if minute == 2:
            assert [(f.key, f.severity) for f in found] == [("hot-write", CRITICAL)], (
                "300 a minute: 1,500 in 5 min at this pace"
            )
        world.tick(*observed(found))
        pages.append(len(world.slack.messages(top_level_only=True)))
    assert pages.index(1) == 2, f"paged at minute {pages.index(1) + 1} of throttling: {pages}"


def test_a_flood_is_not_said_to_be_held_by_the_functions_whose_points_have_not_caught_up() -> None:
    # lambda-concurrency's first page: "689 of 1000 claimed … — held by checkout-fn 2, feed-fn 2,
    # thumbnail-fn 2": thumbnail-fn's five-minute point covering its flood had not landed yet.
    fns = [Resource(rid("lambda", n), "lambda", n, ACCOUNT, REGION, {}, {}) for n in ("checkout-fn", "thumbnail-fn")]
    flood = [20, 21, 19, 20, 195, 364, 529, 689]
    now = T0 + 8 * M
    five = {"checkout-fn": [2.0], "thumbnail-fn": [2.0]}

    def title(thumbnail: float) -> str:
        five["thumbnail-fn"] = [thumbnail]
        series_ = {(ACCT.id, "ClaimedAccountConcurrency", "Maximum"): series(flood, 8)}
        series_.update(
            {
                (rid("lambda", n), "ConcurrentExecutions", "Maximum"): Series(((now - 5 * M, v[0]),), 300)
                for n, v in five.items()
            }
        )
        (f,) = [f for f in lambda_account(Inputs(now, [ACCT, *fns], series_)) if isinstance(f, Finding)]
        return f.title

    assert "held by" not in title(2.0)
    assert "held by thumbnail-fn 640 (unreserved), checkout-fn 2 (unreserved)" in title(640.0)


# -- who holds the account's concurrency, named in the first page -----------------------------------

# lambda-concurrency as the emulator published it, one point a minute from T0: thumbnail-fn floods
# the account from minute 4 (claimed 195 -> 364 -> 529 -> 689 -> 858), the others idle at 2.
FLOOD_CLAIMED = [20, 21, 19, 20, 195, 364, 529, 689, 858, 895, 873, 880]
FLOOD_FNS = {
    "thumbnail-fn": [2, 2, 2, 2, 190, 360, 520, 680, 850, 880, 860, 870],
    "checkout-fn": [2] * 12,
    "feed-fn": [2] * 12,
}
SLOW_AT = 4  # the slow tier's poll falls on minutes 4, 9, ... (every 5th): the unlucky phase


class _Stored:
    """What the collector has stored, as `plan.triggers` reads it."""

    def __init__(self) -> None:
        self.points: dict[tuple[str, str, str], dict[int, float]] = {}

    @classmethod
    def of(cls, series: dict[tuple[str, str, str], list[tuple[int, float]]]) -> _Stored:
        out = cls()
        for key, points in series.items():
            for ts, value in points:
                out.put(key, ts, value)
        return out

    def put(self, key: tuple[str, str, str], ts: int, value: float) -> None:
        self.points.setdefault(key, {})[ts] = value

    def series(self, key: tuple[str, str, str], period: int) -> Series:
        return Series(tuple(sorted(self.points.get(key, {}).items())), period)

    def recent_values(
        self, ids: list[str], metrics: list[str], since: int, until: int | None = None
    ) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
        until = 2**62 if until is None else until
        return {
            k: [(t, v) for t, v in sorted(pts.items()) if since <= t < until]
            for k, pts in self.points.items()
            if k[0] in ids and k[1] in metrics
        }


def _flood_pages(world: World, promote: bool, flood_fns: dict[str, list[float]] = FLOOD_FNS) -> list[tuple[int, str]]:
    """Poll and detect minute by minute on the fake clock: the account's claimed concurrency every
    poll (fast tier), each function's ConcurrentExecutions as 5-minute buckets on the slow poll and,
    with `promote`, on every poll for the functions `plan.triggers` names (the newest bucket holding
    the minutes so far, as CloudWatch answers a period that has not ended)."""
    from collector import plan
    from collector.catalog import DETAIL, FAST, SLOW

    fns = [Resource(rid("lambda", n), "lambda", n, ACCOUNT, REGION, {}, {}) for n in flood_fns]
    world.resources = [*world.resources, ACCT, *fns]
    as_dicts = [
        {"id": r.id, "kind": r.kind, "name": r.name, "account": r.account, "region": r.region, "facts": r.facts}
        for r in (ACCT, *fns)
    ]
    stored, pages = _Stored(), []
    for minute in range(1, len(FLOOD_CLAIMED) + 1):
        now = T0 + minute * M
        tiers = [FAST, SLOW] if minute % 5 == SLOW_AT else [FAST]
        triggered = plan.triggers(stored, as_dicts, now, 900) if promote else plan.Triggered()
        built = plan.build(None, as_dicts, tiers, triggered)  # type: ignore[arg-type]
        per_fn = [q for q in built.queries if q.key.metric == "ConcurrentExecutions" and q.key.resource_id != ACCT.id]
        read = {q.key.resource_id for q in per_fn}
        assert all(q.tier == (SLOW if SLOW in tiers else DETAIL) for q in per_fn), "read once a poll, never twice"
        for m in range(minute):  # a minute's point is visible once the minute is over
            stored.put((ACCT.id, "ClaimedAccountConcurrency", "Maximum"), T0 + m * M, FLOOD_CLAIMED[m])
        for fn in fns:
            if fn.id in read:
                for bucket in range(0, minute, 5):
                    ran = [v for v in flood_fns[fn.name][bucket:minute] if v is not None]
                    if ran:  # an idle function publishes no datapoints at all
                        stored.put((fn.id, "ConcurrentExecutions", "Maximum"), T0 + bucket * M, max(ran))
        inp = Inputs(
            now,
            [ACCT, *fns],
            {
                (ACCT.id, "ClaimedAccountConcurrency", "Maximum"): stored.series(
                    (ACCT.id, "ClaimedAccountConcurrency", "Maximum"), M
                ),
                **{
                    (fn.id, "ConcurrentExecutions", "Maximum"): stored.series(
                        (fn.id, "ConcurrentExecutions", "Maximum"), 300
                    )
                    for fn in fns
                },
            },
        )
        world.tick(*observed([f for f in lambda_account(inp) if isinstance(f, Finding)]))
        sent = world.slack.messages()
        pages += [(minute, m["text"]) for m in sent[len(pages) :]]
    return pages


def test_the_first_concurrency_page_names_the_function_holding_it(world: World) -> None:
    # lambda-concurrency paged 4 minutes into the flood naming nobody and named thumbnail-fn 5
    # minutes later (9 min): its own ConcurrentExecutions, a slow-tier series, had not been read.
    # While the account climbs, the top functions' series are read every fast poll.
    world.reconfigure(**{"alerts.for_limits": 60})
    pages = _flood_pages(world, promote=True)
    first_minute, first = pages[0]
    # the storm is seen at 53 %, three minutes after the flood began (limits.py STORM_*)
    assert first_minute == 7, pages
    assert "held by thumbnail-fn 520 (unreserved)" in first, first
    assert "by thumbnail-fn" in first, "the cause names it too"


def test_without_reading_the_holders_every_poll_the_first_page_names_nobody(tmp_path: Path) -> None:
    # The same flood with the per-function series read on the slow tier only: what the bench saw.
    with SlackStandIn() as slack:
        w = World(tmp_path, slack)
        w.reconfigure(**{"alerts.for_limits": 60})
        try:
            pages = _flood_pages(w, promote=False)
        finally:
            w.close()
    assert pages[0][0] == 7
    assert "thumbnail-fn" not in pages[0][1], pages[0][1]


def test_a_function_idle_before_its_flood_is_named_in_the_first_page(world: World) -> None:
    # Twelve functions busier than thumbnail-fn before the flood, thumbnail-fn idle (no datapoints):
    # the top ten read every fast poll were the wrong ones, and thumbnail-fn's own series came at
    # the slow poll of minute 9. The holders read explain 24 of the 195 claimed at minute 5, so
    # that poll reads every function (collector/plan.py HOLDERS_EXPLAINED).
    world.reconfigure(**{"alerts.for_limits": 60})
    busy = {f"busy-{i:02d}-fn": [2.0] * 12 for i in range(12)}
    idle: list[float | None] = [None] * 4 + FLOOD_FNS["thumbnail-fn"][4:]
    pages = _flood_pages(world, promote=True, flood_fns={**busy, "thumbnail-fn": idle})
    first_minute, first = pages[0]
    assert first_minute == 7, pages
    assert "held by thumbnail-fn 520 (unreserved)" in first, first


def test_holders_are_read_every_fast_poll_only_while_the_account_is_pressed_and_at_most_ten() -> None:
    from collector import plan
    from collector.catalog import DETAIL, FAST

    now = T0 + 60 * M
    acct = {"id": ACCT.id, "kind": "lambda_account", "name": "account", "facts": {"concurrency_limit": 1000}}
    fns = [
        {"id": rid("lambda", f"fn-{i:02d}"), "kind": "lambda", "name": f"fn-{i:02d}", "facts": {}} for i in range(30)
    ]
    busy = {  # fn-07 held the most in the last hour, and holds most of the account now; fn-23's invocations just jumped
        (fns[7]["id"], "ConcurrentExecutions", "Maximum"): [(now - 1800, 40.0), (now - 300, 280.0)],
        (fns[23]["id"], "Invocations", "Sum"): [(now - 1500 + 300 * k, 100.0) for k in range(4)] + [(now - 60, 900.0)],
    }

    def claimed(values: list[float]) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
        return {
            (ACCT.id, "ClaimedAccountConcurrency", "Maximum"): [
                (now - (len(values) - i) * M, v) for i, v in enumerate(values)
            ]
        }

    calm = plan.triggers(_Stored.of({**busy, **claimed([300.0] * 10)}), [acct, *fns], now, 900)
    assert calm.concurrency == set(), "30 % and flat: the slow tier is enough"
    for label, values in [("at half the limit", [300.0] * 9 + [520.0]), ("jumped", [100.0] * 9 + [260.0])]:
        got = plan.triggers(_Stored.of({**busy, **claimed(values)}), [acct, *fns], now, 900)
        assert len(got.concurrency) == plan.HOLDERS_READ == 10, label
        assert {fns[7]["id"], fns[23]["id"]} <= got.concurrency, label
        built = plan.build(None, [acct, *fns], [FAST], got)  # type: ignore[arg-type]
        extra = [q for q in built.queries if q.tier == DETAIL]
        assert len(extra) == 10 and {(q.key.metric, q.key.period) for q in extra} == {("ConcurrentExecutions", 300)}
    # The same account with nobody among the ranked ones holding it (fn-07's last point is an hour
    # old; fn-29 idle until now has none): every function is read on this poll.
    unexplained = {(fns[7]["id"], "ConcurrentExecutions", "Maximum"): [(now - 1800, 40.0)]}
    got = plan.triggers(_Stored.of({**unexplained, **claimed([100.0] * 9 + [520.0])}), [acct, *fns], now, 900)
    assert got.concurrency == {fn["id"] for fn in fns}
    assert "0 of it held by the 10 busiest: reading every function" in got.reasons[fns[29]["id"]]
    many = [{**fns[0], "id": rid("lambda", f"x-{i:03d}"), "name": f"x-{i:03d}"} for i in range(600)]
    got = plan.triggers(_Stored.of(claimed([100.0] * 9 + [520.0])), [acct, *many], now, 900)
    assert len(got.concurrency) == plan.HOLDERS_SWEEP == 490, "one GetMetricData call's worth at most"
    stale = {(ACCT.id, "ClaimedAccountConcurrency", "Maximum"): [(now - 20 * M, 900.0)]}
    assert plan.triggers(_Stored.of(stale), [acct, *fns], now, 900).concurrency == set(), "an old point: not now"


def test_mail_senders_errors_are_read_every_fast_poll_while_ses_sends_at_its_maximum_rate() -> None:
    # ses-send-rate: SES accepts 14 mails a second (840 a minute, AWS/SES Send, fast tier); whether
    # email-fn fails is in its Errors, a slow-tier series up to five minutes stale.
    from collector import plan
    from collector.catalog import DETAIL, FAST

    now = T0 + 60 * M
    ses = {"id": rid("ses", "account"), "kind": "ses", "name": "account", "facts": {"max_send_rate": 14.0}}
    email = {"id": rid("lambda", "email-fn"), "kind": "lambda", "name": "email-fn", "facts": {"uses": ["ses:account"]}}
    other = {"id": rid("lambda", "feed-fn"), "kind": "lambda", "name": "feed-fn", "facts": {}}

    def sends(per_minute: float) -> _Stored:
        return _Stored.of({(ses["id"], "Send", "Sum"): [(now - k * M, per_minute) for k in range(3, 0, -1)]})

    got = plan.triggers(sends(840.0), [ses, email, other], now, 900)
    assert got.mail == {email["id"]} and "SES sending 14.0 of its 14 mails a second" in got.reasons[email["id"]]
    built = plan.build(None, [ses, email, other], [FAST], got)  # type: ignore[arg-type]
    extra = {(q.key.resource_id, q.key.metric, q.key.period) for q in built.queries if q.tier == DETAIL}
    assert extra == {(email["id"], "Errors", 300), (email["id"], "Invocations", 300)}
    assert plan.triggers(sends(300.0), [ses, email, other], now, 900).mail == set(), "5 a second of 14: slow tier"
