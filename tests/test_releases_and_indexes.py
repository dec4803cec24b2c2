"""Issue 17's last parts: alias-based releases seen as deploys (item 13), and the rest of what
the emulator must show end to end.

An alias release moves no LastModified: the code was published as a version earlier, then the
alias callers invoke is pointed at it (botocore lambda 2015-03-31, AliasConfiguration.
FunctionVersion), or weighted towards it (AliasRoutingConfiguration.AdditionalVersionWeights, a
canary)."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

from collector import probes
from collector.aws import Place
from collector.pacing import Pacer
from fleetwatch.agent.detection import detect
from fleetwatch.clock import FakeClock
from fleetwatch.store import index_resource_id, open_store
from tests.conftest import ANCHOR, control, make_collector, set_clock

PROD = "123456789012"
CHECKOUT = f"lambda/{PROD}/us-east-1/checkout-fn"


def _one_place(fleet: Any, store: Any, **kw: Any) -> Any:
    return make_collector(
        fleet, store, regions=["us-east-1"], roles=[f"arn:aws:iam::{PROD}:role/fleetwatch-reader"], **kw
    )


def test_an_alias_release_is_a_deploy_canary_first(fleet: Any, tmp_path: Path, aws_calls: Counter[str]) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "cold-start-alias-release"})
    (label,) = fleet.model.incident_labels()
    start = int(label["start"])
    with open_store(tmp_path / "fw.db") as store:
        collector = _one_place(fleet, store, backfill=2 * 3600)
        set_clock(fleet, start - 30 * 60)  # discovery: alias live invokes version 1
        collector.poll()
        fn = store.resource(CHECKOUT)
        assert fn["facts"]["aliases"] == {"live": {"version": "1", "weights": {}}}
        assert "release" not in fn["facts"]  # the first reading is no release
        modified = fn["facts"]["last_modified"]

        set_clock(fleet, start - 10 * 60)  # the canary: 10 % of live's traffic to version 2
        report = collector.poll()
        fn = store.resource(CHECKOUT)
        release = fn["facts"]["release"]
        assert (release["alias"], release["from"], release["to"], release["weight"]) == ("live", "1", "2", 0.1)
        assert fn["facts"]["deployed_at"] == release["at"] == start - 10 * 60
        assert "canary on alias live: 10 % of its traffic to version 2" in release["text"]
        assert any("released: checkout-fn" in s.note for s in report.sources if s.source == "probe:deploys")

        for m in (1, 2, 3):  # the alias moves to version 2 at the incident's start
            set_clock(fleet, start + m * 60)
            collector.poll()
        fn = store.resource(CHECKOUT)
        assert fn["facts"]["last_modified"] == modified  # no code update: LastModified stayed
        assert fn["facts"]["release"]["to"] == "2" and fn["facts"]["release"]["weight"] == 1.0
        detection = detect(store, start + 3 * 60)
    found = [f for f in detection.findings if f.detector == "coldstarts" and f.resource_id == CHECKOUT]
    assert found, detection.summary()
    assert found[0].cause.startswith("deploy: alias live moved from version 1 to 2"), found[0].cause
    assert "alias weights" in found[0].fix
    # ListAliases: once per function at discovery, then only for the aliased function per slow poll.
    functions = len([r for r in fleet.model.fleet.of_kind("lambda", PROD, "us-east-1")])
    slow_polls = 2  # start-10m and start+1m (start-30m's discovery had just read them: not asked again)
    assert aws_calls["lambda:ListAliases"] == functions + slow_polls


def test_the_probe_checks_canaries_and_just_deployed_functions_first_within_its_budget_paced(
    fleet: Any, tmp_path: Path
) -> None:
    with open_store(tmp_path / "fw.db") as store:
        collector = _one_place(fleet, store)
        collector.discover()
        rows = {r["name"]: r for r in store.resources(kinds=["lambda"], account=PROD, region="us-east-1")}
    known = {n: (r["id"], str(r["facts"]["last_modified"])) for n, r in rows.items()}
    one = {"live": {"version": "1", "weights": {}}}
    aliased = {  # stored facts as discovery would leave them
        "orders-fn": (rows["orders-fn"]["id"], {"aliases": one, "aliases_at": ANCHOR - 600, "deployed_at": 0}),
        "feed-fn": (rows["feed-fn"]["id"], {"aliases": one, "aliases_at": ANCHOR - 120, "deployed_at": ANCHOR - 300}),
        "checkout-fn": (
            CHECKOUT,
            {"aliases": {"live": {"version": "1", "weights": {"2": 0.5}}}, "aliases_at": ANCHOR - 120},
        ),
        "catalog-fn": (rows["catalog-fn"]["id"], {"aliases": one, "aliases_at": ANCHOR - 3600, "deployed_at": 0}),
        "search-fn": (rows["search-fn"]["id"], {"aliases": one, "aliases_at": ANCHOR - 30}),  # read a moment ago
    }
    asked: list[str] = []
    own = FakeClock(ANCHOR)
    released: list[float] = []
    pacer = Pacer(own.now, own.sleep, probes.ALIAS_FRACTION, on_release=lambda key, t: released.append(t))
    lam = collector.aws.client(Place(PROD, "us-east-1"), "lambda")
    hook = lambda params, **_: asked.append(params["FunctionName"])  # noqa: E731
    lam.meta.events.register("provide-client-params.lambda.ListAliases", hook)
    try:
        got = probes.deploys(
            lambda svc: collector.aws.client(Place(PROD, "us-east-1"), svc),
            known,
            aliased,
            ANCHOR,
            3,
            lambda: pacer.acquire(PROD, "us-east-1", "lambda", "ListAliases"),
        )
    finally:
        lam.meta.events.unregister("provide-client-params.lambda.ListAliases", hook)
    # A canary in progress first, then the most recently deployed, then the longest unchecked.
    assert asked == ["checkout-fn", "feed-fn", "catalog-fn"]
    # Paced: at most 1.5 a second (a tenth of Lambda's 15/s), on the injected clock.
    assert len(released) == 3 and all(b - a >= 1 / 1.5 - 1e-9 for a, b in pairwise(released))
    # checkout-fn's canary ended (the healthy fleet's alias invokes 1, unweighted): called off, no release.
    assert "release" not in got.facts[CHECKOUT] and got.facts[CHECKOUT]["aliases"] == one
    # feed-fn has no alias in the emulated fleet: its stored one is gone, which is no release either.
    assert got.facts[rows["feed-fn"]["id"]]["aliases"] == {}


def test_alias_readings_make_releases_as_aws_routes_traffic() -> None:
    one, two = {"version": "1", "weights": {}}, {"version": "2", "weights": {}}
    canary = {"version": "1", "weights": {"2": 0.1}}
    assert probes.release_facts(None, {"live": two}, 100) == {"aliases": {"live": two}, "aliases_at": 100}
    moved = probes.release_facts({"live": one}, {"live": two}, 100)
    assert moved["deployed_at"] == 100 and moved["release"]["text"] == "alias live moved from version 1 to 2"
    assert probes.release_facts({"live": one}, {"live": canary}, 50)["release"]["weight"] == 0.1
    assert "release" not in probes.release_facts({"live": canary}, {"live": one}, 50)  # canary called off
    assert "release" not in probes.release_facts({"live": one}, {"live": one, "beta": two}, 50)  # a new alias
    # A discovery that read the aliases before a probe did keeps the probe's newer reading.
    stored = {
        "aliases": {"live": two},
        "aliases_at": 200,
        "release": moved["release"] | {"at": 200},
        "last_modified": "",
    }
    facts = probes.deploy_facts(
        {"aliases": {"live": one}, "aliases_at": 150, "last_modified": "1970-01-01T00:02:00.000+0000"}, stored, 260
    )
    assert facts["aliases"] == {"live": two} and facts["release"]["at"] == 200 and facts["deployed_at"] == 200


# -- global secondary indexes (issue 17, item 6, end to end) -----------------------------------------

POSTS = f"dynamodb/{PROD}/us-east-1/posts"


def test_a_throttled_global_secondary_index_is_reported_by_name(fleet: Any, tmp_path: Path) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "gsi-throttled"})
    (label,) = fleet.model.incident_labels()
    start = int(label["start"])
    with open_store(tmp_path / "fw.db") as store:
        collector = _one_place(fleet, store, backfill=3600)
        for m in (5, 6, 7):
            set_clock(fleet, start + m * 60)
            collector.poll()
        posts = store.resource(POSTS)
        # Discovery read the indexes from DescribeTable (botocore dynamodb TableDescription.GlobalSecondaryIndexes).
        assert posts["facts"]["indexes"] == ["by-author", "by-date"]
        detection = detect(store, start + 7 * 60)
        ids = [index_resource_id(POSTS, "by-author"), index_resource_id(POSTS, "by-date"), POSTS]
        got = store.recent_values(ids, ["WriteThrottleEvents"], start - 600, start + 7 * 60)
    by_author, by_date, table = (got.get((rid, "WriteThrottleEvents", "Sum"), []) for rid in ids)
    assert sum(v for _, v in by_author) > 0 and not any(v for _, v in by_date) and not any(v for _, v in table)
    found = [f for f in detection.findings if f.detector == "tables" and f.resource_id == POSTS]
    assert [f.key for f in found] == ["index-by-author-write"], detection.summary()
    assert "index by-author" in found[0].title and "write throttles" in found[0].title
    assert "by-date" not in " ".join(f.title for f in detection.findings)


# -- fleetwatch plan: the Logs Insights budget priced (issue 17, "priced in the cost figures") ----------


def test_plan_prices_the_logs_insights_budget_as_a_monthly_ceiling() -> None:
    from collector.report import project, render

    queues = [{"id": f"sqs/1/r/q{i}", "kind": "sqs", "name": f"q{i}", "facts": {"url": "u"}} for i in range(20)]
    p = project({"1/r": queues}, 60, 300, logs_gb_per_day=2.0)
    # $0.005 per GB scanned (Amazon CloudWatch pricing, Logs Insights queries; collector/coldstart_sources.py)
    assert p.logs_insights_max_monthly_cost_usd == 2.0 * 30 * 0.005
    assert p.max_monthly_cost_usd == p.total_monthly_cost_usd + 0.30
    text = render({"1/r": queues}, 60, 300, 2.0)
    assert "Logs Insights cold starts: at most $0.30 a month" in text
    assert f"at most ${p.total_monthly_cost_usd + 0.30:,.2f} a month" in text


# -- Lambda Insights end to end (issue 17, cold starts "best first") -----------------------------------


def test_cold_starts_come_from_lambda_insights_where_the_extension_is_installed(fleet: Any, tmp_path: Path) -> None:
    from collector import coldstart_sources

    control(fleet, "/__fleet__/scenario", {"name": "cold-start-deploy"})
    (label,) = fleet.model.incident_labels()
    start = int(label["start"])
    control(fleet, "/__fleet__/modes", {"lambda_insights": ["checkout-fn"]})
    with open_store(tmp_path / "fw.db") as store:
        collector = _one_place(fleet, store, backfill=2 * 3600)
        reports = []
        for m in (1, 2, 3):
            set_clock(fleet, start + m * 60)
            reports.append(collector.poll())
        assert store.resource(CHECKOUT)["facts"]["lambda_insights"] is True
        detection = detect(store, start + 3 * 60)
        namespaces = {
            ns
            for (ns,) in store.db.execute(
                "SELECT DISTINCT namespace FROM series WHERE resource_id = ? AND metric = 'ColdStarts'", [CHECKOUT]
            ).fetchall()
        }
        got = store.recent_values([CHECKOUT], ["ColdStarts", "SampledInvocations"], start, start + 3 * 60)
    found = [f for f in detection.findings if f.detector == "coldstarts" and f.resource_id == CHECKOUT]
    assert found and "deploy" in found[0].cause, detection.summary()
    assert namespaces == {coldstart_sources.INSIGHTS_NS}  # not X-Ray, not Logs Insights
    assert any("from Lambda Insights init_duration" in s.note for r in reports for s in r.sources)
    # Every invocation counted: about half of them cold during the deploy (the scenario's cold_share 0.5).
    cold = sum(v for _, v in got[(CHECKOUT, "ColdStarts", "Sum")])
    total = sum(v for _, v in got[(CHECKOUT, "SampledInvocations", "Sum")])
    assert total > 500 and 0.35 < cold / total < 0.65
