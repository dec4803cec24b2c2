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
AURORA_MYSQL_FORMULA = "GREATEST({log(DBInstanceClassMemory/805306368)*45},{log(DBInstanceClassMemory/8187281408)*1000})"


@pytest.mark.parametrize(("engine", "klass", "parameter", "expected", "estimated"), [
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
])
def test_aurora_mysql_max_connections(engine: str, klass: str, parameter: str | None, expected: int | None,
                                      estimated: bool) -> None:
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
        stored = store.series_samples(SeriesKey(rid, "AWS/RDS", metric, (("ProxyName", "catalog-proxy"),), "Sum", 60), start, end)
        assert stored, f"{metric} is read at its one-minute period"
        got = cw.get_metric_data(StartTime=start, EndTime=end, MetricDataQueries=[{"Id": "m", "MetricStat": {
            "Metric": {"Namespace": "AWS/RDS", "MetricName": metric, "Dimensions": [{"Name": "ProxyName", "Value": "catalog-proxy"}]},
            "Period": 60, "Stat": "Sum"}}])["MetricDataResults"][0]
        published = dict(zip((int(t.timestamp()) for t in got["Timestamps"]), got["Values"]))
        assert all(published[ts] == v for ts, v in stored), f"{metric}: the gauge as published, not five minutes summed"
    borrow = store.series_samples(SeriesKey(rid, "AWS/RDS", "DatabaseConnectionsBorrowLatency", (("ProxyName", "catalog-proxy"),),
                                            "Average", 300), start, end)
    assert borrow


# -- linking functions to databases and queues (item 13c) ------------------------------------------
# Aurora endpoints ("Types of Aurora endpoints", https://docs.aws.amazon.com/AmazonRDS/latest/
# AuroraUserGuide/Aurora.Overview.Endpoints.html): `mydbcluster.cluster-c7tj4example.us-east-1.
# rds.amazonaws.com` (writer), `mydbcluster.cluster-ro-c7tj4example...` (reader); the China
# regions' endpoints end in `.amazonaws.com.cn`.

@pytest.mark.parametrize(("env", "uses"), [
    ({"DB_HOST": "orders.cluster-c7tj4example.us-east-1.rds.amazonaws.com"}, ["rds_cluster:orders"]),
    ({"READER": "postgres://app:pw@orders.cluster-ro-c7tj4example.us-east-1.rds.amazonaws.com:5432/shop"}, ["rds_cluster:orders"]),
    ({"DB_HOST": "orders-db.c7tj4example.cn-north-1.rds.amazonaws.com.cn"}, ["rds:orders-db"]),
    ({"DB_HOST": "orders.cluster-c7tj4example.cn-north-1.rds.amazonaws.com.cn"}, ["rds_cluster:orders"]),
    ({"PROXY": "catalog-proxy.proxy-c7tj4example.us-east-1.rds.amazonaws.com"}, ["rds_proxy:catalog-proxy"]),
    ({"ANALYTICS": "reports.cluster-custom-c7tj4example.us-east-1.rds.amazonaws.com"}, []),  # named after the endpoint
    ({"JOBS": "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/jobs-queue"}, ["sqs:jobs-queue"]),
    ({"JOBS": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo"}, ["sqs:jobs.fifo"]),
    ({"JOBS": "https://queue.amazonaws.com/123456789012/legacy-queue"}, ["sqs:legacy-queue"]),
    ({"JOBS": "arn:aws-cn:sqs:cn-north-1:123456789012:jobs-queue"}, ["sqs:jobs-queue"]),
])
def test_uses_from_environment_reads_aurora_clusters_and_china_endpoints(env: dict[str, str], uses: list[str]) -> None:
    from collector.discovery import uses_from_environment

    assert uses_from_environment(env) == uses


def test_a_cluster_endpoint_links_the_function_to_the_cluster_instances() -> None:
    from collector.discovery import Found, link_clusters

    fn = Found("lambda", "orders-fn", facts={"uses": ["rds_cluster:orders", "sqs:jobs"]})
    found = [fn, Found("rds", "orders-1", facts={"cluster": "orders"}), Found("rds", "orders-2", facts={"cluster": "orders"}),
             Found("rds", "billing-1", facts={"cluster": "billing"}), Found("rds", "solo-db", facts={"cluster": None})]
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
