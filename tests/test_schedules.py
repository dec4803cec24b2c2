"""Schedules: when AWS's rate() and cron() expressions are due, missed runs that stay missed
until a run is seen (through the real detection pass and the alert pipeline, on a fake clock),
and baselines held at an incident's onset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from detectors import schedule_times
from detectors.base import Finding, Inputs, Resource, Series
from detectors.outcomes import outcomes
from fleetwatch.agent.alerting import alert
from fleetwatch.agent.detection import detect, held_baselines, last_seen
from fleetwatch.store import SeriesKey
from tests.alerting_kit import ACCOUNT, REGION, World, world_fixture  # noqa: F401 - the `world` fixture

M, H, D = 60, 3600, 86400


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


# -- when an expression is due ----------------------------------------------------------------
# AWS's cron: six fields, UTC, `?` in one of day-of-month / day-of-week, L W # in their fields —
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html
# (rate(): singular unit for 1, plural above — .../eb-rate-expressions.html). Expected times
# worked out by hand from a calendar of November-December 2026 (Nov 1 is a Sunday).


@pytest.mark.parametrize(
    ("expression", "after", "due"),
    [
        ("cron(0 * * * ? *)", "2026-11-18 15:07", ["2026-11-18 16:00", "2026-11-18 17:00"]),
        ("cron(30 3 * * ? *)", "2026-11-18 15:07", ["2026-11-19 03:30", "2026-11-20 03:30"]),
        ("cron(0/15 * * * ? *)", "2026-11-18 15:07", ["2026-11-18 15:15", "2026-11-18 15:30"]),
        ("cron(1/10 * * * ? *)", "2026-11-18 15:07", ["2026-11-18 15:11", "2026-11-18 15:21"]),  # AWS's own example
        ("cron(5,35 14 * * ? *)", "2026-11-18 14:10", ["2026-11-18 14:35", "2026-11-19 14:05"]),
        ("cron(0 18 ? * MON-FRI *)", "2026-11-20 18:00", ["2026-11-23 18:00", "2026-11-24 18:00"]),  # Friday -> Monday
        ("cron(0 8 1 * ? *)", "2026-11-18 00:00", ["2026-12-01 08:00", "2027-01-01 08:00"]),
        ("cron(0 12 L * ? *)", "2026-11-18 00:00", ["2026-11-30 12:00", "2026-12-31 12:00"]),  # last day of the month
        ("cron(0 12 ? * 6L *)", "2026-11-18 00:00", ["2026-11-27 12:00", "2026-12-25 12:00"]),  # last Friday
        (
            "cron(0 12 ? * L *)",
            "2026-11-18 00:00",
            ["2026-11-21 12:00", "2026-11-28 12:00"],
        ),  # last day of the week: Saturday
        ("cron(0 9 ? * 3#2 *)", "2026-11-18 00:00", ["2026-12-08 09:00", "2027-01-12 09:00"]),  # second Tuesday
        ("cron(0 9 15W * ? *)", "2026-11-01 00:00", ["2026-11-16 09:00", "2026-12-15 09:00"]),  # Sun 15th -> Mon 16th
        ("cron(0 9 1W * ? *)", "2026-10-31 00:00", ["2026-11-02 09:00", "2026-12-01 09:00"]),  # Sun 1st -> Mon 2nd
        ("cron(15 10 ? * FRI-MON *)", "2026-11-16 11:00", ["2026-11-20 10:15", "2026-11-21 10:15"]),
        ("cron(0 0 1 1 ? 2027-2028)", "2026-11-18 00:00", ["2027-01-01 00:00", "2028-01-01 00:00"]),
        ("rate(5 minutes)", "2026-11-18 15:07", ["2026-11-18 15:12", "2026-11-18 15:17"]),  # counted from the last run
        ("rate(1 day)", "2026-11-18 15:07", ["2026-11-19 15:07", "2026-11-20 15:07"]),
    ],
)
def test_due_times(expression: str, after: str, due: list[str]) -> None:
    schedule = schedule_times.parse(expression)
    assert schedule is not None
    first = schedule.next_after(utc(after))
    assert first is not None
    assert [first, schedule.next_after(first)] == [utc(d) for d in due]


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 * * * *)",  # five fields: Unix cron, not AWS
        "cron(0 * * * * *)",  # `*` in both day fields
        "cron(61 * * * ? *)",
        "cron(0 0 ? * 3#1,6#3 *)",
        "cron(0 9 LW * ? *)",
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "at(2026-01-01T00:00:00)",
        "",
    ],
)
def test_expressions_that_cannot_be_evaluated(expression: str) -> None:
    assert schedule_times.parse(expression) is None


def test_last_due_and_interval() -> None:
    daily = schedule_times.parse("cron(30 3 * * ? *)")
    assert daily is not None
    assert daily.last_due(utc("2026-11-18 03:30"), 2) == [utc("2026-11-18 03:30"), utc("2026-11-17 03:30")]
    assert daily.interval(utc("2026-11-18 12:00")) == D
    assert daily.count_due(utc("2026-11-18 03:30"), utc("2026-11-21 03:29")) == 3


# -- the detector on hand-made inputs ---------------------------------------------------------

NOW = utc("2026-11-18 15:07")


def rule(expression: str, **facts: Any) -> Resource:
    return Resource(
        f"schedule/{ACCOUNT}/{REGION}/job",
        "schedule",
        "job",
        ACCOUNT,
        REGION,
        {"expression": expression, "target_functions": ["job-fn"], **facts},
    )


def schedule_inputs(res: Resource, runs: list[int], now: int = NOW, first_seen: int | None = None) -> Inputs:
    """Runs older than the 75-minute window are known only through last_seen, as in the pass."""
    window = tuple((t, 1.0) for t in runs if t >= now - 75 * M)
    return Inputs(
        now,
        [res],
        {(res.id, "TriggeredRules", "Sum"): Series(window)},
        last_seen={(res.id, "TriggeredRules", "Sum"): max(runs)} if runs else {},
        first_seen={res.id: first_seen} if first_seen is not None else {},
    )


def missed(inp: Inputs) -> list[Finding]:
    return [f for f in outcomes(inp) if isinstance(f, Finding) and f.key == "missed"]


def test_a_dead_hourly_schedule_is_missed_for_hours_with_a_stable_start() -> None:
    res = rule("cron(0 * * * ? *)")
    last_run = utc("2026-11-18 09:00")
    for now in range(utc("2026-11-18 10:05"), utc("2026-11-18 16:00"), 10 * M):
        (f,) = missed(schedule_inputs(res, [last_run - k * H for k in range(3)], now))
        assert f.started_at == utc("2026-11-18 10:00"), "the first missed due time, every pass"
        hours = (now - last_run) // H
        assert f"{hours} scheduled run{'s' if hours != 1 else ''} missed since 10:00 UTC" in f.title
        assert f.evidence["schedule"]["missed_runs"] == hours and f.evidence["schedule"]["last_run"] == last_run
    assert not missed(schedule_inputs(res, [last_run], utc("2026-11-18 10:04"))), "within the grace"


def test_a_daily_schedule_is_missed_a_day_after_its_last_run() -> None:
    res = rule("cron(30 3 * * ? *)")
    runs = [utc("2026-11-16 03:30"), utc("2026-11-17 03:30")]
    assert not missed(schedule_inputs(res, runs, utc("2026-11-18 03:34")))
    (f,) = missed(schedule_inputs(res, runs, utc("2026-11-18 03:36")))
    assert f.started_at == utc("2026-11-18 03:30") and "no run for 24 h 6 min" in f.title
    (f,) = missed(schedule_inputs(res, runs, utc("2026-11-19 12:00")))
    assert f.started_at == utc("2026-11-18 03:30") and "2 scheduled runs missed since Nov 18 03:30 UTC" in f.title
    assert not missed(schedule_inputs(res, [*runs, utc("2026-11-19 03:31")], utc("2026-11-19 12:00"))), (
        "a run is seen: over"
    )


def test_a_new_schedule_is_not_missed_before_its_first_due_run() -> None:
    res = rule("cron(30 3 * * ? *)")
    found = utc("2026-11-18 09:00")  # discovered after today's 03:30, with no run ever seen
    assert not missed(schedule_inputs(res, [], utc("2026-11-19 03:00"), first_seen=found))
    (f,) = missed(schedule_inputs(res, [], utc("2026-11-19 03:40"), first_seen=found))
    assert f.started_at == utc("2026-11-19 03:30") and "none seen since it was found" in f.title
    created = rule("cron(30 3 * * ? *)", created_at=utc("2026-11-19 03:35"))  # Scheduler's CreationDate wins
    assert not missed(schedule_inputs(created, [], utc("2026-11-19 03:40"), first_seen=found))


def test_one_lost_datapoint_of_a_minutely_schedule_does_not_page() -> None:
    res = rule("rate(1 minute)")
    every_minute = [NOW - k * M for k in range(1, 60)]
    gap = [t for t in every_minute if t != NOW - 5 * M]
    assert not missed(schedule_inputs(res, gap))
    stopped = [t for t in every_minute if t <= NOW - 7 * M]  # seven minutes of nothing
    (f,) = missed(schedule_inputs(res, stopped))
    assert f.started_at == NOW - 6 * M and f.severity == "critical"


def test_a_five_minute_schedule_needs_two_missed_runs() -> None:
    res = rule("rate(5 minutes)")
    assert not missed(schedule_inputs(res, [NOW - k * M for k in range(11, 60, 5)]))  # one run missed
    assert missed(schedule_inputs(res, [NOW - k * M for k in range(12, 60, 5)]))  # two


def test_a_disabled_schedule_is_not_an_incident() -> None:
    assert not list(outcomes(schedule_inputs(rule("cron(0 * * * ? *)", state="DISABLED"), [NOW - 20 * H])))


# -- the pass's inputs from the store ---------------------------------------------------------


def write_runs(store: Any, res: Resource, runs: list[int]) -> None:
    key = SeriesKey(res.id, "AWS/Events", "TriggeredRules", (("RuleName", res.name),), "Sum", 60)
    store.write_samples([(key, [(t, 1.0) for t in runs])])


def add_rule(store: Any, res: Resource, at: int) -> None:
    store.upsert_resources(
        [
            {
                "id": res.id,
                "account": res.account,
                "region": res.region,
                "kind": res.kind,
                "name": res.name,
                "facts": res.facts,
                "tags": {"service": "reports"},
            }
        ],
        at,
    )


def test_last_seen_reads_samples_and_rollups_and_not_the_future(world: World) -> None:
    store = world.store
    res = rule("cron(0 * * * ? *)")
    add_rule(store, res, NOW - D)
    write_runs(store, res, [NOW - 5 * H, NOW - 4 * H, NOW + H])
    assert last_seen(store, {("TriggeredRules", "Sum")}, NOW) == {(res.id, "TriggeredRules", "Sum"): NOW - 4 * H}
    store.db.execute("DELETE FROM samples")
    sid = store.db.execute("SELECT id FROM series").fetchone()[0]
    store.db.execute(
        "INSERT INTO rollups (series_id, ts, count, sum, min, max) VALUES (?, ?, 1, 1, 1, 1)", [sid, NOW - 30 * H]
    )
    assert last_seen(store, {("TriggeredRules", "Sum")}, NOW) == {(res.id, "TriggeredRules", "Sum"): NOW - 30 * H}


# -- a dead schedule through the detection pass and the alert pipeline ------------------------


def test_a_dead_hourly_job_stays_one_open_incident_for_hours_and_resolves_when_it_runs(world: World) -> None:
    store = world.store
    start = int(world.clock.now())  # on the hour
    res = rule("cron(0 * * * ? *)")
    add_rule(store, res, start - 2 * D)
    write_runs(store, res, [start - k * H for k in range(0, 24)])  # ran every hour until `start`
    states, opened = [], None
    for minute in range(0, 6 * 60, 5):  # six hours of passes every five minutes, the job dead
        now = start + minute * M
        world.clock.set(now)
        detection = detect(store, now)
        alert(world.pipeline, store, detection)
        found = [f for f in detection.findings if f.key == "missed"]
        if minute >= 65:  # due at +60 min, reported after the 5-minute grace
            assert len(found) == 1 and found[0].started_at == start + H, f"minute {minute}: {detection.summary()}"
            opened = opened or world.incidents()[0].id
            assert [i.id for i in world.incidents()] == [opened], "one incident, the same one, all along"
            assert world.incidents()[0].resolved_at is None
        else:
            assert not found
        states.append(minute)
    pages = world.slack.messages(top_level_only=True)
    assert len(pages) == 1 and "job" in pages[0]["text"]
    assert not any("RESOLVED" in m["text"] for m in world.slack.messages()), "never resolved while the job is dead"
    # The job runs again: the incident ends, in its own thread.
    now = start + 6 * H
    write_runs(store, res, [now])
    for minute in range(1, 15):
        t = now + minute * M
        world.clock.set(t)
        alert(world.pipeline, store, detect(store, t))
    assert world.incidents()[0].resolved_at is not None
    replies = [m for m in world.slack.messages() if m.get("thread_ts") == pages[0]["ts"]]
    assert any("RESOLVED" in m["text"] for m in replies)


# -- baselines held at onset ------------------------------------------------------------------

API = Resource(
    f"api/{ACCOUNT}/{REGION}/shop-api", "api", "shop-api", ACCOUNT, REGION, {"type": "REST", "functions": ["fn"]}
)


def api_at(
    now: int,
    onset: int,
    failing: float,
    usual: float = 0.001,
    until: int | None = None,
    held: dict[str, dict[str, Any]] | None = None,
) -> Inputs:
    """Per-minute 5XX rates: `usual` before the onset, `failing` from it (until `until`, then usual)."""
    rates = tuple((t, failing if onset <= t < (until or 2**62) else usual) for t in range(now - 75 * M, now, M))
    counts = tuple((t, 300.0) for t, _ in rates)
    return Inputs(
        now,
        [API],
        {(API.id, "5XXError", "Average"): Series(rates), (API.id, "Count", "Sum"): Series(counts)},
        held=held or {},
    )


def test_a_steady_failure_stays_a_finding_for_hours_against_the_pre_incident_baseline() -> None:
    onset = NOW
    held: dict[str, dict[str, Any]] = {}
    for minutes in range(5, 3 * 60, 5):
        now = onset + minutes * M
        got = [f for f in outcomes(api_at(now, onset, 0.15, held=held)) if isinstance(f, Finding) and f.key == "errors"]
        assert len(got) == 1, f"{minutes} min into a steady 15 % failure: gone"
        f = got[0]
        assert f.title.endswith("usually 0.1%") and "15% of requests failing" in f.title
        assert f.evidence["baseline"] == pytest.approx(0.001) and f.evidence["units"]["baseline"] == "ratio"
        assert f.started_at == onset
        # What the alert store hands back next pass: the evidence's baseline and its onset.
        held = {f.fingerprint: {"baseline": f.evidence["baseline"], "since": f.evidence["baseline_since"]}}
    # Without the held baseline the last hour is the failure itself, and the finding would end.
    assert not [f for f in outcomes(api_at(onset + 90 * M, onset, 0.15)) if isinstance(f, Finding)]
    # Back to the usual rate: it ends.
    back = onset + 3 * H
    assert not [f for f in outcomes(api_at(back + 5 * M, onset, 0.15, until=back, held=held)) if isinstance(f, Finding)]


def test_held_baselines_come_from_open_alerts_only(world: World) -> None:
    """Through the real pipeline: what a detector said last pass comes back under the name the
    detector gives its finding (detector:resource:key), and only while its alert is open."""
    from alerts.state import Observation
    from tests.alerting_kit import rid

    api, queue = rid("api", "checkout-api"), rid("sqs", "jobs")

    def observed(rate_alert: bool = True) -> list[Observation]:
        out = [
            Observation("queues", queue, "growth", "finding", "warning", "jobs: backlog rising", evidence={"limit": 5})
        ]
        if rate_alert:
            out.append(
                Observation(
                    "outcomes",
                    api,
                    "errors",
                    "finding",
                    "critical",
                    "checkout-api: 15% failing",
                    evidence={"baseline": 0.002, "baseline_since": 100},
                )
            )
        return out

    world.tick(*observed())
    assert held_baselines(world.store) == {f"outcomes:{api}:errors": {"baseline": 0.002, "since": 100}}
    for _ in range(12):  # the rate alert stops, recovers for keep_firing_for, and resolves
        world.tick(*observed(rate_alert=False))
    assert held_baselines(world.store) == {}


# -- the emulator publishes a cron schedule's TriggeredRules only at its due minutes ----------


@pytest.mark.parametrize(
    ("rule_name", "hours", "minute_of_day"),
    [
        ("export-hourly", 6, lambda t: t % H == 0),
        ("backup-daily", 50, lambda t: t % D == 3 * H + 30 * M),
    ],
)
def test_the_emulator_triggers_cron_rules_only_when_due(
    fleet: Any, rule_name: str, hours: int, minute_of_day: Any
) -> None:
    # EventBridge sends TriggeredRules for the minutes a rule fired; nothing in between (SIGNALS.md §6).
    from tests.conftest import ANCHOR, client

    cw = client(fleet, "cloudwatch", "us-east-1")
    got = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Events",
                        "MetricName": "TriggeredRules",
                        "Dimensions": [{"Name": "RuleName", "Value": rule_name}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=ANCHOR - hours * H,
        EndTime=ANCHOR,
    )["MetricDataResults"][0]
    stamps = [int(t.timestamp()) for t in got["Timestamps"]]
    assert stamps and all(minute_of_day(t) for t in stamps), stamps
    assert len(stamps) == (hours if rule_name == "export-hourly" else 2)


def test_an_hourly_job_dead_for_hours_is_found_through_the_collector(fleet: Any, tmp_path: Any) -> None:
    # The last run is hours older than the detection window: the pass still knows when it was.
    from fleetwatch.store import open_store
    from tests.conftest import control, make_collector, set_clock

    control(fleet, "/__fleet__/scenario", {"name": "schedule-missed-hourly"})
    (label,) = fleet.model.incident_labels()
    now = int(label["start"] + 3 * H + 10 * M)
    with open_store(tmp_path / "fw.db") as store:
        set_clock(fleet, now)
        make_collector(fleet, store, backfill=6 * H).poll()
        found = [f for f in detect(store, now).findings if f.key == "missed"]
        assert [f.resource_id for f in found] == ["schedule/123456789012/us-east-1/export-hourly"]
        first_missed = (int(label["start"]) + H - 1) // H * H
        assert found[0].started_at == first_missed and "no run for" in found[0].title


# -- EventBridge Scheduler schedules ------------------------------------------------------------


def test_a_scheduler_cron_runs_in_its_time_zone_across_daylight_saving() -> None:
    # ScheduleExpressionTimezone (botocore scheduler 2021-06-30, GetScheduleOutput): the cron fields
    # are that zone's wall-clock time. Berlin moves to CEST on 2026-03-29: 03:30 local is 02:30 UTC
    # the day before and 01:30 UTC from then on.
    schedule = schedule_times.parse("cron(30 3 * * ? *)", "Europe/Berlin")
    assert schedule is not None
    first = schedule.next_after(utc("2026-03-27 12:00"))
    assert [first, schedule.next_after(first), schedule.next_after(schedule.next_after(first))] == [
        utc("2026-03-28 02:30"),
        utc("2026-03-29 01:30"),
        utc("2026-03-30 01:30"),
    ]
    assert schedule_times.parse("cron(30 3 * * ? *)", "Mars/Olympus_Mons") is None


def scheduler(expression: str, **facts: Any) -> Resource:
    return Resource(
        f"schedule/{ACCOUNT}/{REGION}/invoices",
        "schedule",
        "invoices",
        ACCOUNT,
        REGION,
        {
            "scheduler": True,
            "group": "billing",
            "expression": expression,
            "state": "ENABLED",
            "target_functions": ["invoice-fn"],
            **facts,
        },
        {},
    )


def test_a_scheduler_schedule_alone_in_its_group_is_read_from_the_group() -> None:
    res = scheduler("rate(30 minutes)", group_alone=True)
    series = {(res.id, "InvocationAttemptCount", "Sum"): Series(((NOW - 3 * H, 1.0),), 60)}
    inp = Inputs(NOW, [res], series, last_seen={(res.id, "InvocationAttemptCount", "Sum"): NOW - 3 * H})
    (found,) = missed(inp)
    assert found.severity == "critical" and found.started_at == NOW - 3 * H + 30 * M and "no run for 3 h" in found.title
    ran = Inputs(NOW, [res], {(res.id, "InvocationAttemptCount", "Sum"): Series(((NOW - 20 * M, 1.0),), 60)})
    assert missed(ran) == []


def test_a_scheduler_schedule_in_a_shared_group_is_read_from_its_own_target_or_not_judged() -> None:
    res = scheduler("rate(30 minutes)", group_alone=False)
    fn = Resource(f"lambda/{ACCOUNT}/{REGION}/invoice-fn", "lambda", "invoice-fn", ACCOUNT, REGION, {}, {})
    key = (fn.id, "Invocations", "Sum")
    dead = Inputs(NOW, [res, fn], {key: Series(((NOW - 3 * H, 1.0),), 300)}, last_seen={key: NOW - 3 * H})
    (found,) = missed(dead)
    assert "no run for 3 h" in found.title
    # The target also serves an API: its invocations cannot speak for the schedule. Nothing is
    # guessed; the resource says why.
    api = Resource(f"api/{ACCOUNT}/{REGION}/shop", "api", "shop", ACCOUNT, REGION, {"functions": ["invoice-fn"]}, {})
    shared = Inputs(NOW, [res, fn, api], {key: Series(((NOW - 3 * H, 1.0),), 300)}, last_seen={key: NOW - 3 * H})
    out = list(outcomes(shared))
    assert not [f for f in out if isinstance(f, Finding) and f.resource_id == res.id]
    assert any(getattr(n, "resource_id", "") == res.id and "per schedule group" in n.why for n in out)


def test_a_flexible_window_and_an_end_date_are_honoured() -> None:
    last = NOW - 40 * M
    key = (f"schedule/{ACCOUNT}/{REGION}/invoices", "InvocationAttemptCount", "Sum")
    # Due 10 min ago, but a 15-minute flexible window lets it start as late as 5 min from now.
    flexible = scheduler("rate(30 minutes)", group_alone=True, flexible_window_minutes=15)
    assert missed(Inputs(NOW, [flexible], {key: Series(((last, 1.0),), 60)}, last_seen={key: last})) == []
    ended = scheduler("rate(30 minutes)", group_alone=True, end_date=NOW - 2 * H)
    assert missed(Inputs(NOW, [ended], {}, last_seen={key: NOW - 3 * H})) == []


def test_a_stopped_scheduler_schedule_is_found_through_the_collector(fleet: Any, tmp_path: Any) -> None:
    # Discovery (scheduler:ListSchedules / GetSchedule), the group's AWS/Scheduler metrics and the
    # detection pass, against the emulator.
    from fleetwatch.store import open_store
    from tests.conftest import control, make_collector, set_clock

    control(fleet, "/__fleet__/scenario", {"name": "schedule-missed-scheduler"})
    (label,) = fleet.model.incident_labels()
    now = int(label["start"] + 2 * H)
    with open_store(tmp_path / "fw.db") as store:
        set_clock(fleet, now)
        make_collector(fleet, store, backfill=4 * H).poll()
        (res,) = [r for r in store.resources() if r["kind"] == "schedule" and r["facts"].get("scheduler")]
        assert (
            res["name"] == "billing:invoices-every-30m"
            and res["facts"]["group_alone"]
            and res["tags"] == {"service": "billing"}
        )
        found = [f for f in detect(store, now).findings if f.key == "missed"]
        assert [f.resource_id for f in found] == [res["id"]] and "no run for" in found[0].title
