"""One agent at scale (issue 20, stage 0): what each cycle really took and where, a warning
before the agent falls behind, unchanged samples not rewritten, live SQS depth only where a
backlog grows, short re-reads with the full window now and then, and GetMetricData batches
fetched concurrently."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from fleetwatch.clock import FakeClock
from fleetwatch.logs import setup, teardown
from fleetwatch.store import open_store
from tests.agent_kit import agent_config, make_agent, session

# -- each cycle's real duration and stage times ----------------------------------------------------


def test_a_cycle_records_its_real_duration_and_stage_times_and_warns_before_it_falls_behind(
    fleet: Any, tmp_path: Path
) -> None:
    # The emulated clock does not move during a cycle (as under --emulated-clock), but real time
    # does: on an injected timer, the first poll's GetMetricData takes 5 s, the second's 50 s of
    # the 60 s interval.
    real, cpu = FakeClock(0), FakeClock(0)
    took = [5, 50]
    # GetMetricData calls of each poll: the second also reads a slice of the slow tier over its
    # own window (collector.plan.slow_slice), a second call; the poll's first call takes the time.
    calls: list[int] = []

    def slow_call(**_: Any) -> None:
        if calls[-1] == 0:
            real.advance(took[len(calls) - 1])
        calls[-1] += 1
        cpu.advance(1)

    stream = io.StringIO()
    handler = setup("json", "INFO", stream)
    try:
        cfg = agent_config(fleet, tmp_path / "fw.db")
        with open_store(cfg["store.path"]) as store:
            agent = make_agent(
                fleet,
                cfg,
                store=store,
                boto_session=session(**{"before-send.cloudwatch.GetMetricData": slow_call}),
                polls=2,
                timer=real.now,
                cpu_timer=cpu.now,
            )
            poll = agent.collector.poll

            def counted(**kw: Any) -> Any:
                calls.append(0)
                return poll(**kw)

            agent.collector.poll = counted  # type: ignore[method-assign]
            assert agent.run() == 0
            rows = list(store.db.query("SELECT seconds, stages, started_at, finished_at FROM agent_cycles ORDER BY id"))
    finally:
        teardown(handler)
    assert len(rows) == 2
    stages = [json.loads(r["stages"]) for r in rows]
    for row, st in zip(rows, stages, strict=True):
        assert {"poll", "detect", "alerts", "deliver"} <= set(st), st
        assert row["seconds"] == sum(s["seconds"] for s in st.values()) > 0
    for st, n in zip(stages, calls, strict=True):
        assert st["poll"]["cpu_seconds"] == n >= 1  # an injected CPU second a GetMetricData call
    assert [st["poll"]["seconds"] for st in stages] == [5, 50]
    warnings = [json.loads(line) for line in stream.getvalue().splitlines() if "close to falling behind" in line]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning" and warnings[0]["poll_id"], warnings
    assert "poll" in warnings[0]["message"] and "of its 60s interval" in warnings[0]["message"]


# -- discovery and the emulator at scale -------------------------------------------------------------


def test_the_plan_is_verified_against_list_metrics_at_most_daily_not_at_each_discovery(
    fleet: Any, tmp_path: Path
) -> None:
    from collector.poll import VERIFY_INTERVAL
    from tests.conftest import make_collector, set_clock

    start = fleet.model.clock.now()
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[])
        collector.sleep, collector.monotonic = (lambda s: None), (lambda: 0.0)

        def listed() -> int:
            return sum(
                r.tally.calls["cloudwatch:ListMetrics"] for r in collector.discover() if r.source == "listmetrics"
            )

        assert listed() > 0, "the first discovery verifies the plan"
        set_clock(fleet, start + 3600)
        assert listed() == 0, "an hourly discovery does not list every series again"
        set_clock(fleet, start + VERIFY_INTERVAL)
        assert listed() > 0, "a day later it does"


def test_list_functions_and_list_metrics_pages_do_not_rescan_the_whole_place(fleet: Any, monkeypatch: Any) -> None:
    """Each later page is cut from its listing (the first page's), as AWS pages: moto is asked
    for the functions once per listing, and ListMetrics matches the place's series once."""
    from simulator import cloudwatch
    from tests.conftest import client

    monkeypatch.setattr(cloudwatch, "LIST_PAGE", 7)  # the session fleet is small: pages of 7, not 500
    moto_calls, scans = [], []
    moto_app, place = fleet.moto_app, fleet.registry.place
    fleet.moto_app = lambda environ, start_response: (
        moto_calls.append(environ.get("PATH_INFO")),
        moto_app(environ, start_response),
    )[1]
    fleet.registry.place = lambda *a: (scans.append(a), place(*a))[1]
    try:
        lam = client(fleet, "lambda")
        names = [
            f["FunctionName"]
            for page in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
            for f in page["Functions"]
        ]
        cw = client(fleet, "cloudwatch")
        pages = list(cw.get_paginator("list_metrics").paginate(Namespace="AWS/Lambda"))
    finally:
        fleet.moto_app, fleet.registry.place = moto_app, place
    assert len(names) == len(set(names)) > 4
    assert moto_calls.count("/2015-03-31/functions/") + moto_calls.count("/2015-03-31/functions") == 1, moto_calls
    assert len(pages) > 1 and len(scans) == 1, (len(pages), scans)


# -- live SQS depth only where a backlog grows ----------------------------------------------------------


def test_live_queue_depth_is_read_only_for_queues_whose_backlog_or_age_is_rising(fleet: Any, tmp_path: Path) -> None:
    from tests.conftest import control, make_collector, set_clock

    control(fleet, "/__fleet__/scenario", {"name": "queue-growth"})
    (label,) = fleet.model.incident_labels()
    set_clock(fleet, int(label["start"]) + 20 * 60)
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[], backfill=1800)
        first = collector.poll(force_discovery=True, tiers=("fast", "slow"))
        queues = [r for r in store.resources() if r["kind"] == "sqs" and r["account"] == "123456789012"]
        asked = next(s for s in first.sources if s.source == "probe:sqs").tally.calls["sqs:GetQueueAttributes"]
        assert asked == len(queues) >= 6, "the first slow poll reads every queue once"
        read_at = {r["name"]: r["facts"]["live_at"] for r in queues}

        set_clock(fleet, fleet.model.clock.now() + 300)
        second = collector.poll(tiers=("fast", "slow"))
        probe = next(s for s in second.sources if s.source == "probe:sqs")
        now = {
            r["name"]: r["facts"]["live_at"]
            for r in store.resources()
            if r["kind"] == "sqs" and r["account"] == "123456789012"
        }
    assert now["images-queue"] > read_at["images-queue"], "the growing backlog is read live again"
    steady = [name for name in now if now[name] == read_at[name]]
    assert probe.tally.calls["sqs:GetQueueAttributes"] == len(queues) - len(steady) < len(queues)
    assert len(steady) >= len(queues) // 2, (steady, now)
    assert f"of {len(queues)} queues" in probe.note


# -- samples that did not change are not rewritten --------------------------------------------------------


def test_a_re_read_sample_that_did_not_change_is_not_rewritten(tmp_path: Path) -> None:
    from fleetwatch.store import SeriesKey

    key = SeriesKey(
        "lambda/123456789012/us-east-1/orders-fn",
        "AWS/Lambda",
        "Invocations",
        (("FunctionName", "orders-fn"),),
        "Sum",
        60,
    )
    points = [(1_800_000_000 + 60 * i, float(i)) for i in range(15)]
    with open_store(tmp_path / "fw.db") as store:
        store.upsert_resource(
            id=key.resource_id,
            account="123456789012",
            region="us-east-1",
            kind="lambda",
            name="orders-fn",
            seen_at=points[0][0],
        )
        store.write_samples([(key, points)])
        before = store.db.conn.total_changes
        store.write_samples([(key, points[:-1] + [(points[-1][0], 99.0)])])  # re-read: one point moved
        assert store.db.conn.total_changes - before == 1, "only the point whose value changed was written"
        sid = store.ensure_series(key)
        assert store.samples(sid, 0, 2**40)[-1] == (points[-1][0], 99.0) and len(store.samples(sid, 0, 2**40)) == 15


# -- a short re-read on most polls, the full window when the slow tier is due ------------------------------


def test_fast_polls_re_read_a_short_window_and_slow_polls_the_full_one(fleet: Any, tmp_path: Path) -> None:
    from collector.catalog import ALIGN
    from tests.conftest import make_collector, set_clock

    start = int(fleet.model.clock.now()) // 60 * 60
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(
            fleet, store, regions=["us-east-1"], roles=[], backfill=900, lookback=900, short_lookback=180
        )
        collector.discover()
        place = collector.aws.places()[0]
        windows: list[tuple[int, int]] = []

        def seen(params: dict[str, Any], **_: Any) -> None:
            windows.append((int(params["StartTime"]), int(params["EndTime"])))

        collector.aws.client(place, "cloudwatch").meta.events.register(
            "provide-client-params.cloudwatch.GetMetricData", seen
        )
        spans = []
        for minute in range(1, 7):  # the slow tier falls due again five minutes after the first poll
            set_clock(fleet, start + 60 * minute)
            windows.clear()
            report = collector.poll()
            tiers = report.tiers[str(place)]
            spans.append((tiers, max(end - begin for begin, end in windows)))
    assert spans[0][0] == ["fast", "slow"]
    for tiers, span in spans[1:5]:
        # Windows start on a five-minute boundary (collector.catalog.ALIGN): 180 s back, aligned.
        assert tiers == ["fast"] and 180 <= span < 180 + ALIGN, spans
    tiers, span = spans[5]
    assert "slow" in tiers and span >= 15 * 60 + 60, spans  # the full window (SQS's: 15 minutes late and one period)


# -- the slow tier spread over the minutes of its interval ---------------------------------------------


def test_the_slow_tier_is_spread_over_its_interval_and_every_slow_series_is_still_read_once_an_interval(
    fleet: Any, tmp_path: Path
) -> None:
    from collector import plan
    from collector.catalog import SLOW
    from tests.conftest import make_collector, set_clock

    start = int(fleet.model.clock.now()) // 60 * 60
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(
            fleet,
            store,
            regions=["us-east-1"],
            roles=[],
            backfill=900,
            lookback=900,
            short_lookback=180,
            slow_interval=300,
            fast_interval=60,
            spread_slow=True,
        )
        assert collector.slow_slices == 5
        collector.discover()
        place = collector.aws.places()[0]
        every_slow = {
            q.key for q in plan.build(place, collector._resources(place), ["fast", SLOW]).queries if q.tier == SLOW
        }
        asked: list[set[tuple[str, str]]] = []

        def seen(params: dict[str, Any], **_: Any) -> None:
            for q in params["MetricDataQueries"]:
                m = q["MetricStat"]
                dims = tuple(sorted((d["Name"], d["Value"]) for d in m["Metric"]["Dimensions"]))
                if m["Period"] == 300:  # the slow tier's period (collector.catalog.PERIODS)
                    asked[-1].add((m["Metric"]["MetricName"], repr(dims) + m["Stat"]))

        collector.aws.client(place, "cloudwatch").meta.events.register(
            "provide-client-params.cloudwatch.GetMetricData", seen
        )
        labels = []
        for minute in range(16):
            set_clock(fleet, start + 60 * minute)
            asked.append(set())
            report = collector.poll()
            assert not report.errors, report.summary()
            labels.append(report.tiers[str(place)])
    slow_series = {(k.metric, repr(tuple(sorted(k.dimensions))) + k.stat) for k in every_slow if k.period == 300}
    assert len(slow_series) >= 50, len(slow_series)
    # The first poll of a new place reads the whole slow tier (every slice's cursor is empty)...
    assert labels[0] == ["fast", SLOW] and asked[0] == slow_series
    # ...then each poll reads the slice whose turn it is: one fifth, by a stable hash of the resource.
    for polled in labels[1:]:
        assert len(polled) == 2 and polled[1].startswith(f"{SLOW} ") and polled[1].endswith("/5"), labels
    for i in range(1, 12):
        five = asked[i : i + 5]
        # Every slow series read in every five consecutive minutes, and once only.
        assert set().union(*five) == slow_series, i
        assert sum(len(a) for a in five) == len(slow_series), i
    # No poll carries the whole tier: the largest slice is near a fifth of it.
    assert max(len(a) for a in asked[1:]) < len(slow_series) / 2, [len(a) for a in asked]
    assert min(len(a) for a in asked[1:]) > 0, [len(a) for a in asked]


def test_a_slice_whose_turn_was_missed_is_read_at_the_next_poll(fleet: Any, tmp_path: Path) -> None:
    from collector import plan
    from tests.conftest import make_collector, set_clock

    start = int(fleet.model.clock.now()) // 60 * 60
    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(
            fleet, store, regions=["us-east-1"], roles=[], backfill=900, slow_interval=300, spread_slow=True
        )
        collector.discover()
        place = collector.aws.places()[0]
        got = {}
        # Minutes 0 to 7 polled (the first reads every slice, the rest one each), minute 8 skipped
        # (an overrun), then 9 and 10.
        for minute in (0, 1, 2, 3, 4, 5, 6, 7, 9, 10):
            set_clock(fleet, start + 60 * minute)
            got[minute] = collector.poll().tiers[str(place)]
        cursors = {j: store.cursor(place.account, place.region, plan.slice_cursor(j, 5)) for j in range(5)}

    def read(minute: int) -> set[int]:
        label = got[minute][1]  # "slow 1,3/5"
        return {int(j) for j in label.split()[1].split("/")[0].split(",")}

    missed, turn = (start + 8 * 60) // 60 % 5, (start + 9 * 60) // 60 % 5
    assert read(9) == {missed, turn}, got  # caught up at the next poll, with the slice whose turn it is
    assert read(10) == {(start + 10 * 60) // 60 % 5}, got  # and back to one a poll
    # Every slice was read within the last slow interval.
    assert all(start + 10 * 60 - c < 300 for c in cursors.values() if c is not None), cursors
    assert all(c is not None for c in cursors.values())


# -- GetMetricData batches of a place fetched concurrently, bounded ----------------------------------------


def test_a_places_get_metric_data_batches_are_fetched_concurrently_at_most_metric_threads_at_once(
    fleet: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import threading

    from collector import plan, poll
    from tests.conftest import make_collector

    monkeypatch.setattr(plan, "MAX_QUERIES", 20)  # the session fleet is small: batches of 20 queries, not 500
    lock, all_started = threading.Lock(), threading.Event()
    state = {"in_flight": 0, "most": 0, "calls": 0}

    def before(**_: Any) -> None:
        with lock:
            state["in_flight"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["in_flight"])
            first = state["calls"] == 1
            if state["in_flight"] == poll.METRIC_THREADS:
                all_started.set()
        if first:  # the first call waits for the others to start: only concurrent fetching lets them
            all_started.wait(timeout=20)

    def after(**_: Any) -> None:
        with lock:
            state["in_flight"] -= 1

    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, regions=["us-east-1"], roles=[], backfill=900)
        collector.discover()
        cw = collector.aws.client(collector.aws.places()[0], "cloudwatch")
        cw.meta.events.register("before-send.cloudwatch.GetMetricData", before)
        cw.meta.events.register("after-call.cloudwatch.GetMetricData", after)
        report = collector.poll(tiers=("fast", "slow"))
    assert not report.errors, report.summary()
    assert report.calls["cloudwatch:GetMetricData"] > poll.METRIC_THREADS
    assert state["most"] == poll.METRIC_THREADS, state
    assert report.samples > 0


def test_a_few_messages_moving_up_and_down_is_not_a_rising_backlog() -> None:
    from collector.probes import queues_to_probe

    queues = [("sqs/a", "url-a"), ("sqs/b", "url-b"), ("sqs/c", "url-c")]
    facts = {rid: {"live_at": 1, "live_messages": 0} for rid, _ in queues}
    recent = {
        ("sqs/a", "ApproximateNumberOfMessagesVisible", "Maximum"): [(0, 1.0), (60, 3.0)],  # a busy queue's noise
        ("sqs/b", "ApproximateNumberOfMessagesVisible", "Maximum"): [(0, 10.0), (60, 40.0)],  # a backlog
        ("sqs/c", "ApproximateAgeOfOldestMessage", "Maximum"): [(0, 100.0), (60, 160.0)],
    }  # an ageing message
    assert queues_to_probe(queues, facts, recent) == [("sqs/b", "url-b"), ("sqs/c", "url-c")]


# -- the place pool sized to the fleet, each place within its GetMetricData quota ------------------------


def test_the_place_pool_grows_with_the_places_up_to_its_bound() -> None:
    from collector import poll

    assert [poll.place_threads(n) for n in (0, 1, 3, 16, 1000)] == [1, 1, 3, 16, poll.PLACE_THREADS]
    assert poll.PLACE_THREADS == 16


def test_every_place_is_polled_at_once_and_none_has_more_than_metric_threads_calls_in_flight(
    fleet: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """CloudWatch's GetMetricData quota is per account and Region (50 TPS, CloudWatch service
    quotas, https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html):
    a larger pool polls more places at once, never one place faster."""
    import threading

    from collector import plan, poll
    from tests.conftest import make_collector

    monkeypatch.setattr(plan, "MAX_QUERIES", 10)  # many batches a place on the small session fleet
    lock = threading.Lock()
    in_flight: dict[Any, int] = {}
    most: dict[Any, int] = {}
    places_at_once = {"now": set(), "most": 0}  # type: dict[str, Any]

    with open_store(tmp_path / "fw.db") as store:
        collector = make_collector(fleet, store, backfill=900)  # two accounts x two Regions
        collector.discover()
        places = collector.aws.places()
        assert len(places) == 4 and poll.place_threads(len(places)) == 4

        for place in places:

            def before(place: Any = place, **_: Any) -> None:
                with lock:
                    in_flight[place] = in_flight.get(place, 0) + 1
                    most[place] = max(most.get(place, 0), in_flight[place])
                    places_at_once["now"].add(place)
                    places_at_once["most"] = max(places_at_once["most"], len(places_at_once["now"]))

            def after(place: Any = place, **_: Any) -> None:
                with lock:
                    in_flight[place] -= 1
                    if not in_flight[place]:
                        places_at_once["now"].discard(place)

            cw = collector.aws.client(place, "cloudwatch")
            cw.meta.events.register("before-send.cloudwatch.GetMetricData", before)
            cw.meta.events.register("after-call.cloudwatch.GetMetricData", after)
        report = collector.poll(tiers=("fast", "slow"))
    assert not report.errors, report.summary()
    assert set(most) == set(places)
    assert max(most.values()) <= poll.METRIC_THREADS, most
    assert places_at_once["most"] >= 2, places_at_once  # places are polled concurrently
