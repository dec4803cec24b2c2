"""Issue 17: places where real AWS answers differently from what the collector assumed. Each
test names the AWS page or botocore model shape that decides it."""

from __future__ import annotations

from typing import Any

import pytest

from collector import limits

# -- Aurora MySQL max_connections (item 7) ---------------------------------------------------------
# "Maximum connections to an Aurora MySQL DB instance": a fixed default per instance class,
# https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraMySQL.Managing.Performance.html
# Aurora PostgreSQL: LEAST({DBInstanceClassMemory/9531392},5000),
# https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraPostgreSQL.Managing.html

GIB = 1 << 30
AURORA_MYSQL_FORMULA = (
    "GREATEST({log(DBInstanceClassMemory/805306368)*45},{log(DBInstanceClassMemory/8187281408)*1000})"
)


@pytest.mark.parametrize(
    ("engine", "klass", "parameter", "expected", "estimated"),
    [
        ("aurora-mysql", "db.t3.medium", None, 90, False),
        ("aurora-mysql", "db.t4g.medium", None, 90, False),
        ("aurora-mysql", "db.t4g.large", None, 135, False),
        ("aurora-mysql", "db.r6g.large", None, 1000, False),
        ("aurora-mysql", "db.r5.24xlarge", None, 7000, False),
        ("aurora", "db.r4.16xlarge", None, 6000, False),  # Aurora MySQL 5.6-compatible's engine name
        # The default parameter group's own formula (log) is not evaluated: the table stands.
        ("aurora-mysql", "db.t3.medium", AURORA_MYSQL_FORMULA, 90, False),
        ("aurora-mysql", "db.r6g.large", "2500", 2500, False),
        # Not in AWS's table: unknown, never the RDS for MySQL formula.
        ("aurora-mysql", "db.m5.large", None, None, True),
        ("aurora-postgresql", "db.r6g.large", None, min(int(16 * GIB * 0.9) // 9531392, 5000), True),
        ("mysql", "db.t3.medium", None, int(4 * GIB * 0.9) // 12582880, True),  # RDS for MySQL keeps its formula
    ],
)
def test_aurora_mysql_max_connections(
    engine: str, klass: str, parameter: str | None, expected: int | None, estimated: bool
) -> None:
    value, is_estimate, how = limits.max_connections(engine, klass, parameter)
    assert (value, is_estimate) == (expected, estimated)
    if value is None:
        assert klass in how and "parameter group" in how


# -- RDS Proxy metrics at their documented period and statistic (item 10) -------------------------
# "Monitoring RDS Proxy metrics with Amazon CloudWatch",
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy.monitoring.html: ClientConnections
# and DatabaseConnectionsCurrentlySessionPinned are "reported every minute", valid period
# "1 minute", most useful statistic Sum; DatabaseConnectionsBorrowLatency's is Average.

PROD = "123456789012"


@pytest.fixture()
def store(tmp_path: Any) -> Any:
    from fleetwatch.store import open_store

    with open_store(tmp_path / "fw.db") as s:
        yield s


def test_proxy_gauges_are_read_per_minute_and_borrow_latency_as_average(fleet: Any, store: Any) -> None:
    from collector.catalog import CATALOG, SLOW
    from fleetwatch.store import SeriesKey
    from tests.conftest import ANCHOR, client, make_collector

    specs = {s.metric: s for s in CATALOG["rds_proxy"]}
    assert specs["DatabaseConnectionsBorrowLatency"].stat == "Average"
    collector = make_collector(fleet, store, regions=["us-east-1"], roles=[])
    collector.poll(force_discovery=True, tiers=("fast", SLOW))
    rid = f"rds_proxy/{PROD}/us-east-1/catalog-proxy"
    cw = client(fleet, "cloudwatch")
    start, end = ANCHOR - 1800, ANCHOR - 300
    for metric in ("ClientConnections", "DatabaseConnectionsCurrentlySessionPinned"):
        stored = store.series_samples(
            SeriesKey(rid, "AWS/RDS", metric, (("ProxyName", "catalog-proxy"),), "Sum", 60), start, end
        )
        assert stored, f"{metric} is read at its one-minute period"
        got = cw.get_metric_data(
            StartTime=start,
            EndTime=end,
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/RDS",
                            "MetricName": metric,
                            "Dimensions": [{"Name": "ProxyName", "Value": "catalog-proxy"}],
                        },
                        "Period": 60,
                        "Stat": "Sum",
                    },
                }
            ],
        )["MetricDataResults"][0]
        published = dict(zip((int(t.timestamp()) for t in got["Timestamps"]), got["Values"], strict=True))
        assert all(published[ts] == v for ts, v in stored), f"{metric}: the gauge as published, not five minutes summed"
    borrow = store.series_samples(
        SeriesKey(
            rid, "AWS/RDS", "DatabaseConnectionsBorrowLatency", (("ProxyName", "catalog-proxy"),), "Average", 300
        ),
        start,
        end,
    )
    assert borrow


# -- linking functions to databases and queues (item 13c) ------------------------------------------
# Aurora endpoints ("Types of Aurora endpoints", https://docs.aws.amazon.com/AmazonRDS/latest/
# AuroraUserGuide/Aurora.Overview.Endpoints.html): `mydbcluster.cluster-c7tj4example.us-east-1.
# rds.amazonaws.com` (writer), `mydbcluster.cluster-ro-c7tj4example...` (reader); the China
# regions' endpoints end in `.amazonaws.com.cn`.


@pytest.mark.parametrize(
    ("env", "uses"),
    [
        ({"DB_HOST": "orders.cluster-c7tj4example.us-east-1.rds.amazonaws.com"}, ["rds_cluster:orders"]),
        (
            {"READER": "postgres://app:pw@orders.cluster-ro-c7tj4example.us-east-1.rds.amazonaws.com:5432/shop"},
            ["rds_cluster:orders"],
        ),
        ({"DB_HOST": "orders-db.c7tj4example.cn-north-1.rds.amazonaws.com.cn"}, ["rds:orders-db"]),
        ({"DB_HOST": "orders.cluster-c7tj4example.cn-north-1.rds.amazonaws.com.cn"}, ["rds_cluster:orders"]),
        ({"PROXY": "catalog-proxy.proxy-c7tj4example.us-east-1.rds.amazonaws.com"}, ["rds_proxy:catalog-proxy"]),
        (
            {"ANALYTICS": "reports.cluster-custom-c7tj4example.us-east-1.rds.amazonaws.com"},
            [],
        ),  # named after the endpoint
        ({"JOBS": "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/jobs-queue"}, ["sqs:jobs-queue"]),
        ({"JOBS": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo"}, ["sqs:jobs.fifo"]),
        ({"JOBS": "https://queue.amazonaws.com/123456789012/legacy-queue"}, ["sqs:legacy-queue"]),
        ({"JOBS": "arn:aws-cn:sqs:cn-north-1:123456789012:jobs-queue"}, ["sqs:jobs-queue"]),
    ],
)
def test_uses_from_environment_reads_aurora_clusters_and_china_endpoints(env: dict[str, str], uses: list[str]) -> None:
    from collector.discovery import uses_from_environment

    assert uses_from_environment(env) == uses


def test_a_cluster_endpoint_links_the_function_to_the_cluster_instances() -> None:
    from collector.discovery import Found, link_clusters

    fn = Found("lambda", "orders-fn", facts={"uses": ["rds_cluster:orders", "sqs:jobs"]})
    found = [
        fn,
        Found("rds", "orders-1", facts={"cluster": "orders"}),
        Found("rds", "orders-2", facts={"cluster": "orders"}),
        Found("rds", "billing-1", facts={"cluster": "billing"}),
        Found("rds", "solo-db", facts={"cluster": None}),
    ]
    link_clusters(found)
    assert fn.facts["uses"] == ["rds:orders-1", "rds:orders-2", "rds_cluster:orders", "sqs:jobs"]


# -- HTTP APIs publish 5xx, not 5XXError (item 13a) ---------------------------------------------------
# "Monitor CloudWatch metrics for HTTP APIs in API Gateway" (https://docs.aws.amazon.com/apigateway/
# latest/developerguide/http-api-metrics.html) names 4xx / 5xx; REST APIs publish 4XXError /
# 5XXError ("Amazon API Gateway dimensions and metrics", api-gateway-metrics-and-dimensions.html).


def test_the_overview_shows_the_error_rate_of_http_apis_too(web_copy: dict[str, Any]) -> None:
    from web import data

    conn = data.Reader(web_copy["path"]).conn()
    rows = {r["name"]: r for r in data.entries(conn, web_copy["now"], [])}
    for name in ("storefront-api", "checkout-api"):  # HTTP and REST in the emulated fleet
        rate = next(s for s in rows[name]["signals"] if s["label"] == "5xx rate")
        assert rate["value"] is not None, f"{name}: its 5xx rate is read under the metric its API type publishes"


# -- a second, small emulated fleet in an account of its own ----------------------------------------
# moto's backends are process-wide: this fleet lives in an account and region the session's fleet
# does not use, so neither sees the other.

MINI_ACCOUNT, MINI_REGION = "444455556666", "ap-southeast-2"
MINI_ROLE = f"arn:aws:iam::{MINI_ACCOUNT}:role/fleetwatch-reader"
MINI_TABLES = 105  # more than one ListContributorInsights page


def _mini_fleet() -> str:
    lines = [
        'name = "mini"',
        'description = "non-ASCII API names and more than 100 tables"',
        "",
        "[[accounts]]",
        f'id = "{MINI_ACCOUNT}"',
        'name = "mini"',
        f'regions = ["{MINI_REGION}"]',
        "",
        "[[resources]]",
        'kind = "lambda"',
        'name = "hello-fn"',
        "",
        "[[resources]]",
        'kind = "api"',
        'name = "Café API"',
        'type = "REST"',
        'routes = { "GET /menu" = "hello-fn" }',
        "",
        "[[resources]]",
        'kind = "api"',
        'name = "目录"',
        'type = "REST"',
        'routes = { "GET /list" = "hello-fn" }',
        "",
    ]
    for i in range(MINI_TABLES):
        insights = "THROTTLED_KEYS" if i >= MINI_TABLES - 3 else "off"  # the last ones are on the second page
        lines += [
            "[[resources]]",
            'kind = "dynamodb"',
            f'name = "t-{i:03d}"',
            f'contributor_insights = "{insights}"',
            "",
        ]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fleetwatch.clock import FakeClock
    from simulator.cli import start_emulator
    from tests.conftest import ANCHOR

    folder = tmp_path_factory.mktemp("mini")
    (folder / "mini.toml").write_text(_mini_fleet(), encoding="utf-8")
    (folder / "mini-healthy.toml").write_text(
        'name = "mini-healthy"\ndescription = "quiet"\nfleet = "mini"\nseed = 1\n', encoding="utf-8"
    )
    emu = start_emulator(
        str(folder / "mini-healthy.toml"), clock=FakeClock(ANCHOR), anchor=ANCHOR, fleet_dirs=(folder,)
    )
    yield emu
    emu.stop()


def _mini_collector(mini: Any, store: Any) -> Any:
    from tests.conftest import make_collector

    return make_collector(mini, store, regions=[MINI_REGION], roles=[MINI_ROLE])


# -- non-ASCII REST API names (item 2) -------------------------------------------------------------
# "API Gateway removes non-ASCII characters from the ApiName dimension before sending metrics to
# CloudWatch. If the APIName doesn't contain any ASCII characters, the API ID is used as the
# ApiName." ("Amazon API Gateway dimensions and metrics", https://docs.aws.amazon.com/apigateway/
# latest/developerguide/api-gateway-metrics-and-dimensions.html)


def test_a_non_ascii_rest_api_gets_its_metrics(mini: Any, store: Any) -> None:
    from collector.catalog import dimension_sets

    assert dimension_sets("api", "Café API", {"type": "REST", "api_id": "a1b2c3", "stages": ["prod"]}) == [
        (("ApiName", "Caf API"), ("Stage", "prod"))
    ]
    assert dimension_sets("api", "目录", {"type": "REST", "api_id": "a1b2c3", "stages": ["prod"]}) == [
        (("ApiName", "a1b2c3"), ("Stage", "prod"))
    ]
    report = _mini_collector(mini, store).poll(force_discovery=True)
    assert not report.errors, [e.error for e in report.errors]
    for name in ("Café API", "目录"):
        rid = f"api/{MINI_ACCOUNT}/{MINI_REGION}/{name}"
        got = store.recent_values([rid], ["Count"], 0, 10**10)
        assert got.get((rid, "Count", "Sum")), f"{name}: requests read under the ApiName AWS publishes"


# -- Contributor Insights beyond the first 100 tables (item 3) ---------------------------------------


def test_contributor_insights_of_tables_past_the_first_page(mini: Any, store: Any) -> None:
    report = _mini_collector(mini, store).discover()
    assert all(r.status == "ok" for r in report), [r.error for r in report]
    tables = {r["name"]: r["facts"] for r in store.resources(kinds=["dynamodb"], account=MINI_ACCOUNT)}
    assert len(tables) == MINI_TABLES
    last = f"t-{MINI_TABLES - 1:03d}"
    assert (
        tables[last]["contributor_insights"] == "ENABLED"
        and tables[last]["contributor_insights_mode"] == "THROTTLED_KEYS"
    )
    assert tables[last]["contributor_insights_rules"], "its rules were described, so its hot keys can be named"
    assert tables["t-000"]["contributor_insights"] == "DISABLED"


# -- a GetMetricData result that is not Complete does not move its series on (item 13b) ------------
# botocore cloudwatch 2010-08-01 service-2.json, MetricDataResult.StatusCode: "InternalError
# indicates that an error occurred. Retry your request"; "PartialData means that an incomplete set
# of data points were returned".


@pytest.mark.parametrize("code", ["InternalError", "PartialData"])
def test_a_series_answered_with_an_error_is_read_again_next_poll(fleet: Any, store: Any, code: str) -> None:
    from fleetwatch.store import SeriesKey
    from simulator.faultproxy import FaultProxy, Rule, json_rewrite
    from tests.conftest import ANCHOR, make_collector, set_clock

    def spoil(call: Any, body: dict[str, Any]) -> None:
        for r in body.get("MetricDataResults", []):
            if r.get("Label") == "ClaimedAccountConcurrency":
                r.update(StatusCode=code, Timestamps=[], Values=[], Messages=[{"Code": code, "Value": "injected"}])

    rid = f"lambda_account/{PROD}/us-east-1/account"
    spoilt = SeriesKey(rid, "AWS/Lambda", "ClaimedAccountConcurrency", (), "Maximum", 60)
    healthy = SeriesKey(rid, "AWS/Lambda", "Throttles", (), "Sum", 60)
    with FaultProxy(fleet.endpoint) as proxy:
        proxy.set_rules(
            [Rule(mode="rewrite", service="monitoring", operation="GetMetricData", rewrite=json_rewrite(spoil))]
        )
        collector = make_collector(
            fleet, store, regions=["us-east-1"], roles=[], endpoint=proxy.endpoint, backfill=3600
        )
        first = collector.poll()
        assert proxy.stats().get("injected", 0) >= 1
        proxy.set_rules([])
        cw = next(s for s in first.sources if s.source == "cloudwatch")
        assert code in cw.note or code == "PartialData"
        assert store.series_samples(spoilt, ANCHOR - 3600, ANCHOR) == []
        assert store.cursor(PROD, "us-east-1", "fast") == ANCHOR  # the healthy series moved on

        # Two hours later, far past the trailing re-read (poll.lookback): the spoilt hour is asked
        # again for that series alone, and no minute of it is missing.
        set_clock(fleet, ANCHOR + 7200)
        collector.poll()
    stamps = [ts for ts, _ in store.series_samples(spoilt, ANCHOR - 3600, ANCHOR + 7200 - 300)]
    assert stamps == list(range(ANCHOR - 3600, ANCHOR + 7200 - 300, 60))
    assert store.series_samples(healthy, ANCHOR - 3600, ANCHOR)


# -- throttled global secondary indexes (item 6) ----------------------------------------------------
# "The TableName dimension returns the ReadThrottleEvents for the table, but not for any global
# secondary indexes. To view ReadThrottleEvents for a global secondary index, you must specify
# both TableName and GlobalSecondaryIndexName" (likewise WriteThrottleEvents), "DynamoDB Metrics
# and dimensions", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/metrics-dimensions.html


def test_index_throttles_are_read_under_the_index_and_reported_naming_it() -> None:
    from collector import plan
    from detectors.base import Inputs
    from detectors.tables import tables
    from fleetwatch.store import index_resource_id
    from tests.test_detectors import NOW, flat, res, results

    table = res("dynamodb", "orders", {"indexes": ["by-customer"], "billing": "PROVISIONED", "write_capacity": 100})
    queries = plan.resource_queries(
        {"id": table.id, "kind": "dynamodb", "name": "orders", "facts": table.facts}, ["fast"]
    )
    index_keys = [q.key for q in queries if ("GlobalSecondaryIndexName", "by-customer") in q.key.dimensions]
    assert {(k.metric, k.dimensions, k.resource_id) for k in index_keys} == {
        (
            m,
            (("GlobalSecondaryIndexName", "by-customer"), ("TableName", "orders")),
            index_resource_id(table.id, "by-customer"),
        )
        for m in ("ReadThrottleEvents", "WriteThrottleEvents")
    }

    inp = Inputs(
        NOW, [table], {(index_resource_id(table.id, "by-customer"), "WriteThrottleEvents", "Sum"): flat(40, 6)}
    )
    (finding,), _ = results(tables, inp)
    assert (
        finding.resource_id == table.id
        and "index by-customer" in finding.title
        and finding.key == "index-by-customer-write"
    )
    quiet = Inputs(NOW, [table], {(table.id, "WriteThrottleEvents", "Sum"): flat(0, 6)})
    assert results(tables, quiet)[0] == []
