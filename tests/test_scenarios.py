"""Every scenario's labelled incidents are visible in the signals they should move, through plain
boto3; and the same checks do not hold on the healthy fleet, so they cannot pass vacuously."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.scenario import INCIDENT_KINDS, load_scenario, scenario_names
from tests.conftest import control
from tests.scenario_checks import run_check

# Scenarios made of others: `tour` (each once, over the last day), `soak-week` (daily, over the
# week after its anchor, for the soak) and the `overlap-*` pairs of the pages benchmark; their parts
# are checked one by one.
COMPOSITE = {"tour", "soak-week", *(n for n in scenario_names() if n.startswith("overlap-"))}
SCENARIOS = [n for n in scenario_names() if load_scenario(n).incidents and n not in COMPOSITE]


def test_every_failure_mode_has_a_scenario() -> None:
    kinds = {inc.kind for n in SCENARIOS for inc in load_scenario(n).incidents}
    assert kinds == {
        "cold_start",
        "hot_partition",
        "table_capacity",
        "connection_exhaustion",
        "queue_growth",
        "queue_consumer_stopped",
        "dlq",
        "ses_sandbox",
        "ses_reputation",
        "ses_send_rate",
        "lambda_concurrency",
        "schedule_missed",
        "schedule_failed",
    }
    causes = {inc.id: inc.summary for n in SCENARIOS for inc in load_scenario(n).incidents if inc.kind == "cold_start"}
    assert {"feed-cold-after-idle", "checkout-cold-after-deploy", "feed-cold-on-burst"} <= set(causes)


@pytest.mark.parametrize("name", SCENARIOS)
def test_labelled_incidents_are_visible(fleet: Any, name: str) -> None:
    info = control(fleet, "/__fleet__/scenario", {"name": name})
    assert info["scenario"] == name and info["incidents"]
    scenario = load_scenario(name)
    for label, inc in zip(info["incidents"], scenario.incidents, strict=True):
        assert label["id"] == inc.id and label["start"] == fleet.model.anchor + inc.start
        assert inc.visible, f"{inc.id} has no visible checks"
        for check in inc.visible:
            ok, detail = run_check(fleet, label, check)
            assert ok, f"{name}/{inc.id}: {detail}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_checks_fail_on_the_healthy_fleet(fleet: Any, name: str) -> None:
    scenario = load_scenario(name)
    labels = [inc.label(fleet.model.anchor) for inc in scenario.incidents]
    control(fleet, "/__fleet__/scenario", {"name": "healthy"})
    for label, inc in zip(labels, scenario.incidents, strict=True):
        results = [run_check(fleet, label, check) for check in inc.visible]
        assert not all(ok for ok, _ in results), (
            f"{name}/{inc.id}: every check also holds on a healthy fleet: {results}"
        )


def test_the_soak_week_repeats_the_orders_failures_daily() -> None:
    week = load_scenario("soak-week")
    storm = load_scenario("connection-storm").incidents[0]
    storms = sorted(i.start for i in week.incidents if i.id.startswith(storm.id))
    assert storms == [storm.start + d * 86400 + 3 * 3600 for d in range(7)]
    assert len({i.id for i in week.incidents}) == len(week.incidents) == 21


def test_lookalikes_play_their_effects_but_are_not_incidents(fleet: Any) -> None:
    surge = load_scenario("lookalike-queue-burst")
    assert surge.incidents == [] and [i.id for i in surge.lookalikes] == ["orders-queue-burst"]
    info = control(fleet, "/__fleet__/scenario", {"name": "lookalike-queue-burst"})
    assert info["incidents"] == []
    (burst,) = surge.lookalikes
    label = burst.label(fleet.model.anchor)
    ok, detail = run_check(
        fleet,
        label,
        {
            "type": "metric",
            "resource": "sqs:orders-queue",
            "metric": "ApproximateNumberOfMessagesVisible",
            "stat": "Maximum",
            "rise": 3,
        },
    )
    assert ok, detail
    control(fleet, "/__fleet__/scenario", {"name": "healthy"})


def test_a_lookalike_with_a_kind_is_refused(tmp_path: Any) -> None:
    from simulator.fleet import FleetError

    bad = tmp_path / "bad.toml"
    bad.write_text(
        'fleet = "shop"\n[[lookalikes]]\nid = "x"\nkind = "hot_partition"\nresource = "dynamodb:posts"\n'
        'start = "-10m"\nend = "-5m"\n'
    )
    with pytest.raises(FleetError, match="a look-alike is not an incident"):
        load_scenario(str(bad))


def test_tour_stages_every_failure_mode_inside_the_demo() -> None:
    """The demo polls from 4 h before the tour's anchor to 30 min after it: every failure mode
    starts and ends inside that, with time for its RESOLVED; parts on one path do not overlap."""
    tour = load_scenario("tour")
    # A daily job's miss cannot be seen to run again within the demo; it has a scenario of its own.
    # Subtler variants (-subtle) are for the pages benchmark; the tour has each failure mode once.
    # Variants of a mode the tour has, for the collector's paths end to end (tests/test_releases_and_indexes.py).
    variants = {"cold-start-alias-release", "gsi-throttled"}
    # Not in the tour yet: SES's send rate needs an account out of the sandbox, and the tour's SES
    # is in it until ses-sandbox's grant, 30 min before the anchor (no room for 30 min after it).
    later = {"ses-send-rate"}
    assert {inc.id for inc in tour.incidents} == {
        inc.id
        for n in SCENARIOS
        if n != "schedule-missed-daily" and not n.endswith("-subtle") and n not in variants | later
        for inc in load_scenario(n).incidents
    }
    assert {i.kind for i in tour.incidents} == set(INCIDENT_KINDS) - {"ses_send_rate"}
    from simulator.cli import DEMO_LEAD

    for inc in tour.incidents:
        assert -DEMO_LEAD < inc.start and inc.end <= -20 * 60, inc.id
        assert all(e.end <= -20 * 60 for e in inc.effects if e.driver), inc.id
    storm = next(i for i in tour.incidents if i.id == "orders-db-connection-storm")
    assert storm.start == load_scenario("connection-storm").incidents[0].start - 175 * 60
    cut = next(i for i in tour.incidents if i.id == "ses-sandbox-quota")
    assert cut.end - cut.start == 40 * 60, "cut to its duration"


def test_a_cut_incident_ends_with_what_ended_it() -> None:
    """ses-sandbox ends when AWS grants production access; cut short in the tour, the grant comes
    at the cut end, and what lasted to the end ends there too."""
    whole = next(i for i in load_scenario("ses-sandbox").incidents)
    cut = next(i for i in load_scenario("tour").incidents if i.id == whole.id)
    grant = [e for e in cut.effects if e.fact == "production_access"]
    assert grant and grant[0].start == cut.end and grant[0].value is True
    assert all(e.end <= cut.end for e in cut.effects if e.driver)
    assert next(e for e in whole.effects if e.fact == "production_access").start == whole.end
