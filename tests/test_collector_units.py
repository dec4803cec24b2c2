"""Table-driven checks of the collector's pure parts: max_connections formulas, scope filters,
the plan's call arithmetic and trigger rules, and the cost projection."""

from __future__ import annotations

import math

import pytest

from collector import limits, plan
from collector.catalog import CATALOG, DETAIL, FAST, SLOW
from collector.report import project
from collector.scope import Scope

GIB = 1 << 30


@pytest.mark.parametrize(
    ("engine", "klass", "parameter", "expected", "estimated"),
    [
        ("postgres", "db.r6g.large", "500", 500, False),
        ("postgres", "db.r6g.large", None, min(int(16 * GIB * 0.9) // 9531392, 5000), True),
        ("postgres", "db.r6g.4xlarge", None, min(int(128 * GIB * 0.9) // 9531392, 5000), True),
        ("mysql", "db.t3.medium", None, int(4 * GIB * 0.9) // 12582880, True),
        ("mariadb", "db.m6g.large", None, min(int(8 * GIB * 0.9) // 25165760, 12000), True),
        ("postgres", "db.t3.large", "LEAST({DBInstanceClassMemory/9531392},5000)", int(8 * GIB * 0.9) // 9531392, True),
        (
            "mysql",
            "db.t3.large",
            "GREATEST({DBInstanceClassMemory/12582880},100)",
            int(8 * GIB * 0.9) // 12582880,
            True,
        ),
        ("postgres", "db.x99.huge", None, None, True),
        ("oracle-ee", "db.r6g.large", None, None, True),
    ],
)
def test_max_connections(engine: str, klass: str, parameter: str | None, expected: int | None, estimated: bool) -> None:
    value, is_estimate, how = limits.max_connections(engine, klass, parameter)
    assert (value, is_estimate) == (expected, estimated)
    assert how


@pytest.mark.parametrize(
    ("scope", "kind", "name", "tags", "admitted"),
    [
        (Scope(), "lambda", "anything", {}, True),
        (Scope(include_tags=(("team", "web"),)), "lambda", "feed-fn", {"team": "web"}, True),
        (Scope(include_tags=(("team", "web"),)), "lambda", "orders-fn", {"team": "payments"}, False),
        (Scope(include_tags=(("team", None),)), "lambda", "orders-fn", {"team": "payments"}, True),
        (Scope(exclude_tags=(("env", "staging"),)), "sqs", "q", {"env": "staging"}, False),
        (Scope(include_names=("checkout-*",)), "lambda", "checkout-fn", {}, True),
        (Scope(include_names=("checkout-*",)), "lambda", "orders-fn", {}, False),
        (Scope(include_names=("*",), exclude_names=("*-dlq",)), "sqs", "orders-dlq", {}, False),
        (Scope(include_tags=(("team", "web"),)), "ses", "account", {}, True),  # account-level: always watched
        (Scope(exclude_names=("*",)), "lambda_account", "account", {}, True),
    ],
)
def test_scope(scope: Scope, kind: str, name: str, tags: dict[str, str], admitted: bool) -> None:
    assert scope.admits(kind, name, tags) is admitted


@pytest.mark.parametrize(
    ("queries", "minutes", "calls"),
    [
        (0, 15, 0),
        (1, 15, 1),
        (500, 15, 1),
        (501, 15, 2),
        (9000, 15, 18),
        (500, 201, 1),
        (500, 202, 2),
        (500, 1440, math.ceil(1440 / 201)),
        (100, 1008, 1),
        (100, 1009, 2),
    ],
)
def test_calls_for(queries: int, minutes: int, calls: int) -> None:
    assert plan.calls_for(queries, minutes) == calls


@pytest.mark.parametrize(
    ("points", "fires"),
    [
        ([(i, 10.0) for i in range(10)], False),
        ([(i, 10.0) for i in range(9)] + [(9, 25.0)], True),
        ([(i, 10.0) for i in range(9)] + [(9, 14.0)], False),  # 1.4× is not a jump
        ([(i, 1.0) for i in range(9)] + [(9, 3.0)], False),  # 3× but only +2: too small to matter
        ([(0, 1.0), (1, 50.0)], False),  # too little history to judge
    ],
)
def test_latest_jump(points: list[tuple[int, float]], fires: bool) -> None:
    assert plan._latest_jump(points, 1.5, 5.0) is fires


def _res(kind: str, name: str, **facts: object) -> dict[str, object]:
    return {"id": f"{kind}/1/r/{name}", "kind": kind, "name": name, "facts": facts}


def test_projection_costs_a_third_of_the_naive_plan_or_less() -> None:
    resources = (
        [_res("lambda", f"fn{i}") for i in range(100)]
        + [_res("sqs", f"q{i}") for i in range(20)]
        + [_res("dynamodb", f"t{i}", read_capacity=5, write_capacity=5) for i in range(15)]
        + [_res("rds", "db"), _res("lambda_account", "account"), _res("ses", "account")]
    )
    p = project({"1/r": resources}, 60, 300)
    fast = 20 * 2 + 15 * 2 + 1 + 3 + 3  # SES: Bounce, Reject, Send (against MaxSendRate)
    slow = 100 * 6 + 20 * 3 + 15 * 4 + 1 + 3 + 4
    assert (p.fast_queries, p.slow_queries, p.detail_queries) == (fast, slow, 15 * 8)
    assert p.monthly_cost_usd == pytest.approx((fast * 43200 + slow * 8640) * 1e-5)
    assert p.naive_monthly_cost_usd == pytest.approx((fast + slow + 15 * 8) * 43200 * 1e-5)
    assert p.monthly_cost_usd <= p.naive_monthly_cost_usd / 3
    assert p.fast_poll_calls == 1 and p.slow_poll_calls == math.ceil((fast + slow) / 500)


def test_every_tier_of_the_catalog_is_known_and_api_metrics_follow_the_api_type() -> None:
    assert {s.tier for specs in CATALOG.values() for s in specs} == {FAST, SLOW, DETAIL}
    rest = plan.resource_queries(
        {"id": "api/1/r/a", "kind": "api", "name": "a", "facts": {"type": "REST", "stages": ["prod"]}}, [FAST]
    )
    http = plan.resource_queries(
        {
            "id": "api/1/r/b",
            "kind": "api",
            "name": "b",
            "facts": {"type": "HTTP", "api_id": "abc123", "stages": ["$default"]},
        },
        [FAST],
    )
    assert {q.key.metric for q in rest} == {"5XXError", "Count", "Latency"}
    assert {q.key.metric for q in http} == {"5xx", "Count", "Latency"}
    assert dict(rest[0].key.dimensions) == {"ApiName": "a", "Stage": "prod"}
    assert dict(http[0].key.dimensions) == {"ApiId": "abc123", "Stage": "$default"}
