"""The plan checked against ListMetrics: the emulator's ListMetrics behaves as AWS documents it
(API_ListMetrics.html; botocore cloudwatch 2010-08-01 ListMetricsInput/Output), and a planned
series AWS does not publish is stored and shown as "not published — here is why"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collector import plan, published
from fleetwatch.clock import FakeClock
from fleetwatch.store import open_store
from simulator import cloudwatch
from simulator.errors import ApiError
from simulator.fleet import load_fleet
from simulator.model import FleetModel
from simulator.scenario import load_scenario
from tests.conftest import ANCHOR, client, control, make_collector

PROD, EAST = "123456789012", "us-east-1"


@pytest.fixture(scope="module")
def registry() -> cloudwatch.Registry:
    """The shop fleet plus 100 generated functions (over 500 AWS/Lambda series), in process."""
    fleet = load_fleet("shop", extra={"lambda": 100})
    return cloudwatch.Registry(FleetModel(fleet, load_scenario("healthy", fleet), ANCHOR, FakeClock(ANCHOR)))


def _all(registry: cloudwatch.Registry, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[int]]:
    out, sizes, token = [], [], None
    while True:
        page = cloudwatch.list_metrics(registry, PROD, EAST, {**body, **({"NextToken": token} if token else {})})
        out += page["Metrics"]
        sizes.append(len(page["Metrics"]))
        token = page.get("NextToken")
        if not token:
            return out, sizes


def _key(m: dict[str, Any]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    return m["Namespace"], m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))


def test_list_metrics_pages_of_500_and_only_series_with_data_in_two_weeks(registry: cloudwatch.Registry) -> None:
    got, sizes = _all(registry, {"Namespace": "AWS/Lambda", "Dimensions": [{"Name": "FunctionName"}]})
    assert sizes[0] == 500 and len(sizes) == 2 and sum(sizes) == len(got) == len({_key(m) for m in got})
    ordered, _ = registry.place(PROD, EAST)
    defined = {(s.namespace, s.name, s.dims) for s in ordered}
    listed = {_key(m) for m in _all(registry, {})[0]}
    # DynamoDB throttle events are sent only when non-zero: a healthy fortnight lists none.
    never = defined - listed
    assert ("AWS/DynamoDB", "ReadThrottleEvents", (("TableName", "posts"),)) in never
    assert ("AWS/Lambda", "Invocations", (("FunctionName", "checkout-fn"),)) in listed
    assert listed <= defined


def test_list_metrics_dimension_filters_recently_active_and_validation(registry: cloudwatch.Registry) -> None:
    # A filter by name returns metrics with that dimension and others too (ApiName + Stage).
    by_name = {
        _key(m)[2] for m in _all(registry, {"Namespace": "AWS/ApiGateway", "Dimensions": [{"Name": "ApiName"}]})[0]
    }
    assert (("ApiName", "checkout-api"),) in by_name
    assert any(len(d) == 2 and ("ApiName", "checkout-api") in d for d in by_name)
    assert all(any(k == "ApiName" for k, _ in d) for d in by_name)
    one = _all(registry, {"Namespace": "AWS/Lambda", "Dimensions": [{"Name": "FunctionName", "Value": "backup-fn"}]})[0]
    assert {dict((d["Name"], d["Value"]) for d in m["Dimensions"])["FunctionName"] for m in one} == {"backup-fn"}
    # A daily job ran within two weeks but not within three hours of the anchor.
    recent = {_key(m) for m in _all(registry, {"RecentlyActive": "PT3H"})[0]}
    fortnight = {_key(m) for m in _all(registry, {})[0]}
    assert ("AWS/Lambda", "Invocations", (("FunctionName", "backup-fn"),)) in fortnight - recent
    assert ("AWS/Lambda", "Invocations", (("FunctionName", "checkout-fn"),)) in recent
    with pytest.raises(ApiError) as bad:
        cloudwatch.list_metrics(registry, PROD, EAST, {"RecentlyActive": "PT1H"})
    assert bad.value.code == "InvalidParameterValue"
    with pytest.raises(ApiError):
        cloudwatch.list_metrics(registry, PROD, EAST, {"Dimensions": [{"Name": f"d{i}"} for i in range(11)]})


def _pacer() -> published.Pacer:
    clock = [0.0]
    return published.Pacer(
        published.RATE, sleep=lambda s: clock.__setitem__(0, clock[0] + s), monotonic=lambda: clock[0]
    )


def test_reasons_for_a_wrong_error_metric_and_a_non_ascii_api_name(fleet: Any) -> None:
    cw = client(fleet, "cloudwatch")
    api_id = next(r["facts"]["api_id"] for r in control(fleet, "/__fleet__/resources") if r["name"] == "storefront-api")
    seen, complete, _ = published.listed(cw, "AWS/ApiGateway", "ApiId", _pacer())
    assert complete
    # A plan asking an HTTP API for REST's 5XXError: AWS lists 5xx under the same dimensions.
    dims = (("ApiId", api_id), ("Stage", "$default"))
    storefront = {"kind": "api", "name": "storefront-api", "facts": {"type": "HTTP"}}
    assert ("5xx", dims) in seen and ("5XXError", dims) not in seen
    assert (
        published.reason(storefront, "5XXError", dims, seen, {d for _, d in seen})
        == "HTTP APIs publish 5xx, not 5XXError"
    )
    # A REST API whose name AWS cannot carry in ApiName: nothing is listed under it.
    cafe = {"id": "api/x/café", "kind": "api", "name": "café-api", "facts": {"type": "REST", "stages": ["prod"]}}
    got = published.verify(cw, [cafe], _pacer())
    assert got.facts["api/x/café"] and all("non-ASCII" in r["reason"] for r in got.facts["api/x/café"])


def test_discovery_stores_what_is_not_published_and_why_and_polling_goes_on(fleet: Any, tmp_path: Path) -> None:
    waited: list[float] = []
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=[EAST], roles=[])
        now = [0.0]
        collector.sleep = lambda s: (waited.append(s), now.__setitem__(0, now[0] + s))
        collector.monotonic = lambda: now[0]
        results = collector.discover()
        verified = [r for r in results if r.source == "listmetrics"]
        assert len(verified) == 1 and verified[0].status == "ok", verified
        calls = verified[0].tally.calls["cloudwatch:ListMetrics"]
        assert calls >= 6
        # Paced at RATE a second: the waits add up to the gaps between calls.
        assert sum(waited) == pytest.approx((calls - 1) / published.RATE, abs=1e-6)

        posts = store.resource(f"dynamodb/{PROD}/{EAST}/posts")
        rows = {r["metric"]: r for r in posts["facts"][published.FACT]}
        assert rows["ReadThrottleEvents"]["reason"].startswith(published.NONZERO_ONLY)
        assert "ConsumedReadCapacityUnits" not in rows
        checkout = store.resource(f"lambda/{PROD}/{EAST}/checkout-fn")
        assert checkout["facts"][published.FACT] == []

        # Not published is shown, not acted on: the next poll still asks for every planned
        # fast-tier series, the unpublished ones included.
        report = collector.poll(tiers=("fast",), poll_id="p1")
        expected = sum(len(plan.resource_queries(r, ["fast"])) for r in store.resources())
        assert report.queries == expected == report.metrics
        assert any(
            q.key.metric == "ReadThrottleEvents" for q in plan.resource_queries(store.resource(posts["id"]), ["fast"])
        )
        # A second discovery keeps the fact (it is replaced only by a new verification).
        collector.discover()
        assert store.resource(posts["id"])["facts"][published.FACT] == posts["facts"][published.FACT]


def test_the_resource_page_says_not_published_and_why(fleet: Any, tmp_path: Path) -> None:
    from tests.test_web_api import HTML, make_client

    path = tmp_path / "fw.db"
    with open_store(path) as store:
        collector = make_collector(fleet, store, regions=[EAST], roles=[])
        collector.sleep, collector.monotonic = (lambda s: None), (lambda: 0.0)
        collector.discover()
    with make_client({"path": path, "now": ANCHOR}) as web:
        page = web.get(f"/resources/dynamodb/{PROD}/{EAST}/posts", headers=HTML)
        fn = web.get(f"/resources/lambda/{PROD}/{EAST}/checkout-fn", headers=HTML)
    assert page.status_code == 200, page.text[:300]
    assert "Not published" in page.text and "ReadThrottleEvents" in page.text
    assert "not published — " + published.NONZERO_ONLY in page.text.replace("&#39;", "'")
    assert "Not published" not in fn.text


def test_a_series_stored_since_listmetrics_was_read_is_not_called_unpublished(fleet: Any, tmp_path: Path) -> None:
    # make demo's posts page: "WriteThrottleEvents … not published — AWS sends it only when it is
    # not zero" above its own chart of 613 throttles, ListMetrics having been read before the hot
    # partition (it is read at most daily).
    from fleetwatch.store import SeriesKey
    from tests.test_web_api import HTML, make_client

    path = tmp_path / "fw.db"
    table = f"dynamodb/{PROD}/{EAST}/posts"
    with open_store(path) as store:
        collector = make_collector(fleet, store, regions=[EAST], roles=[])
        collector.sleep, collector.monotonic = (lambda s: None), (lambda: 0.0)
        collector.discover()
        rows = (store.resource(table) or {})["facts"]["unpublished"]
        assert any(r["metric"] == "WriteThrottleEvents" and r["dimensions"] == "TableName=posts" for r in rows)
        key = SeriesKey(table, "AWS/DynamoDB", "WriteThrottleEvents", (("TableName", "posts"),), "Sum", 60)
        store.write_samples([(key, [(ANCHOR - 120, 613.0)])])
    with make_client({"path": path, "now": ANCHOR}) as web:
        page = web.get(f"/resources/{table}", headers=HTML).text
    unpublished = page.split("<h2>Not published</h2>", 1)[1].split("</table>", 1)[0]
    assert "ReadThrottleEvents" in unpublished, "what AWS still has not sent stays listed"
    table_level = [row for row in unpublished.split("<tr>") if "WriteThrottleEvents" in row and "Index" not in row]
    assert table_level == [], table_level
