"""The live `unusual` detector (detectors/unusual.py): its state kept in the store between passes,
an episode reported once, off by setting, and beside a rule on the same resource one incident."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.state import Observation
from detectors.unusual import SIGNALS, STEP, Track
from fleetwatch.agent.detection import detect
from fleetwatch.store import open_store
from fleetwatch.store.db import SeriesKey
from simulator.slack import SlackStandIn
from tests.alerting_kit import T0, World, api_errors, rid

DAY = 86400
START = T0 - 2 * DAY
FN = "lambda/111111111111/us-east-1/pay-fn"
ON = {"unusual.enabled": True}
ERRORS = next(s for s in SIGNALS if s.metric == "Errors")


def errors_key() -> SeriesKey:
    return SeriesKey(FN, "AWS/Lambda", "Errors", (("FunctionName", "pay-fn"),), "Sum", 300)


def invocations_key() -> SeriesKey:
    return SeriesKey(FN, "AWS/Lambda", "Invocations", (("FunctionName", "pay-fn"),), "Sum", 300)


def errors(burst_at: int | None, burst_minutes: int = 60, until: int = T0 + 4 * 3600) -> list[tuple[int, float]]:
    """Five-minute error counts of a function that fails now and then (0-3 a bucket), with an
    hour of 40 a bucket at `burst_at`."""
    rng = random.Random(7)
    out = []
    for t in range(START, until, STEP):
        v = float(rng.choice([0, 0, 0, 1, 1, 2, 3]))
        if burst_at is not None and burst_at <= t < burst_at + burst_minutes * 60:
            v = 40.0
        out.append((t, v))
    return out


def store_with(tmp: Path, series: list[tuple[SeriesKey, list[tuple[int, float]]]]) -> Any:
    store = open_store(tmp / "fw.db")
    store.upsert_resource(
        id=FN, account="111111111111", region="us-east-1", kind="lambda", name="pay-fn", seen_at=START
    )
    store.write_samples(series)
    return store


def passes(store: Any, start: int, end: int, step: int = STEP, settings: dict[str, Any] | None = None) -> Iterator[Any]:
    for now in range(start, end, step):
        yield detect(store, now, names=["unusual"], settings=settings if settings is not None else ON)


def test_the_track_kept_in_the_store_is_the_one_fed_every_bucket_at_once(tmp_path: Path) -> None:
    points = errors(None)
    with store_with(tmp_path, [(errors_key(), points)]) as store:
        end = START + DAY + 6 * 3600
        for _ in passes(store, START + DAY, end, step=7 * 60):  # passes that do not fall on bucket edges
            pass
        last_t, stored = store.db.execute(
            "SELECT last_t, state FROM anomaly_state WHERE resource_id = ? AND metric = 'Errors'", [FN]
        ).fetchone()
    # The same buckets fed to one track in one go: the first pass learnt a day of stored history.
    first = START + DAY - DAY
    whole = Track()
    for t, v in points:
        if first <= t <= last_t:
            whole.feed(t, v, ERRORS)
    assert whole.last_t == last_t
    assert stored == whole.dumps(), "fed across passes and stored between them, the track is the same to the last bit"
    assert whole.model.n > 150, "warm: it scores"


def test_an_hour_long_burst_is_one_episode_reported_once(tmp_path: Path) -> None:
    burst = T0 + 3600
    with store_with(tmp_path, [(errors_key(), errors(burst))]) as store:
        seen = [
            (f.fingerprint, f.started_at, f.evidence["episode"])
            for d in passes(store, START + DAY, T0 + 4 * 3600)
            for f in d.findings
        ]
    assert {(fp, at) for fp, at, _ in seen} == {(f"unusual:{FN}:Errors:Sum", burst)}, (
        "one episode, from the burst's first bucket"
    )
    last = seen[-1][2]
    assert last["peak"] >= burst and last["end"] == burst + 3600, "its end: the last elevated bucket's"
    # Reported while it lasts (so its alert stands) and not long after: QUIET buckets plus settling.
    assert len(seen) <= 60 // 5 + 3 + 2


def test_the_title_states_the_episodes_worst_bucket_while_it_calms_down(tmp_path: Path) -> None:
    # In `make demo`, the RESOLVED message carried "checkout-fn: unusual errors — rose to 2 per 5
    # min (usually 2)": the episode stays open for QUIET calm buckets, and the title said the last.
    burst = T0 + 3600
    with store_with(tmp_path, [(errors_key(), errors(burst, burst_minutes=20))]) as store:
        titles = [f.title for d in passes(store, START + DAY, T0 + 4 * 3600) for f in d.findings]
    assert titles, "the burst is an episode"
    assert all(" 40 per 5 min" in t for t in titles), titles
    assert "rose to 40 per 5 min (usually" in titles[0], "while it lasts, as it is now"
    assert "peaked at 40 per 5 min at " in titles[-1], "once calmer, the worst and when it was"


def test_one_elevated_bucket_alone_is_no_finding(tmp_path: Path) -> None:
    with store_with(tmp_path, [(errors_key(), errors(T0 + 3600, burst_minutes=5))]) as store:
        found = [f for d in passes(store, START + DAY, T0 + 3 * 3600) for f in d.findings]
    assert found == []


def test_invocations_falling_to_nothing_are_unusual_missing_points_counting_as_zero(tmp_path: Path) -> None:
    rng = random.Random(3)
    stop = T0 + 3600
    calls = [(t, float(rng.randint(80, 120))) for t in range(START, stop, STEP)]  # then no datapoints at all
    errs = [(t, 0.0) for t in range(START, T0 + 3 * 3600, STEP)]  # the tier is still collected
    with store_with(tmp_path, [(invocations_key(), calls), (errors_key(), errs)]) as store:
        found = [f for d in passes(store, START + DAY, T0 + 2 * 3600) for f in d.findings]
    assert found and {f.key for f in found} == {"Invocations:Sum"}
    assert found[0].started_at == stop and "fell to 0" in found[0].title and found[0].severity == "warning"


def test_off_by_setting_it_neither_finds_nor_stores(tmp_path: Path) -> None:
    with store_with(tmp_path, [(errors_key(), errors(T0 + 3600))]) as store:
        found = [f for d in passes(store, T0, T0 + 3 * 3600, settings={"unusual.enabled": False}) for f in d.findings]
        rows = store.db.execute("SELECT COUNT(*) FROM anomaly_state").fetchone()[0]
    assert found == [] and rows == 0


def test_an_unreadable_stored_track_is_learnt_afresh_not_an_error(tmp_path: Path) -> None:
    with store_with(tmp_path, [(errors_key(), errors(None))]) as store:
        list(passes(store, START + DAY, START + DAY + 600))
        store.db.execute("UPDATE anomaly_state SET state = 'AAAA', last_t = 0")
        store.db.conn.commit()
        (d,) = passes(store, START + DAY + 3600, START + DAY + 3601)
        assert [r.status for r in d.runs] == ["ok"]
        (text,) = store.db.execute("SELECT state FROM anomaly_state").fetchone()
        assert Track.loads(text, 0, 3.0).model.step == STEP


# -- beside a rule on the same resource: one incident -----------------------------------------------


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    with SlackStandIn() as slack:
        w = World(tmp_path, slack)
        yield w
        w.close()


def unusual_api() -> Observation:
    return Observation(
        "unusual",
        rid("api", "checkout-api"),
        "5xx:Average",
        "finding",
        "warning",
        "checkout-api: unusual 5XX error rate — 3.0% (usually 0.1%) since 08:00 UTC",
    )


def tops(world: World) -> list[dict[str, Any]]:
    return [m for m in world.slack.messages() if not m.get("thread_ts")]


def test_unusual_joining_a_rule_is_supporting_evidence_not_a_second_page(world: World) -> None:
    for _ in range(4):
        world.tick(api_errors())
    for _ in range(12):  # past group_interval: a change would have been sent by now
        world.tick(api_errors(), unusual_api())
    (msg,) = tops(world)
    (inc,) = world.incidents()
    assert inc.title.startswith("checkout-api: 12% of requests failing")
    assert "supporting: checkout-api: unusual 5XX error rate" in inc.cause
    assert not [m for m in world.slack.messages() if "UPDATED" in m["text"]], "the unusual finding pages nobody again"


def test_a_rule_arriving_after_unusual_takes_over_its_incident(world: World) -> None:
    for _ in range(4):
        world.tick(unusual_api())
    for _ in range(4):
        world.tick(unusual_api(), api_errors())
    assert len(tops(world)) == 1
    (inc,) = world.incidents()
    assert inc.title.startswith("checkout-api: 12% of requests failing"), inc.title
    assert "supporting: checkout-api: unusual" in inc.cause


def test_a_series_that_starts_with_missing_buckets_is_learnt_not_an_error() -> None:
    """An API with no requests for its first half hour has no latency buckets: skipped, and the
    model starts with the first real one (it used to index a context it did not have)."""
    latency = next(s for s in SIGNALS if s.metric == "Latency")
    track = Track()
    for i in range(6):
        track.feed(START + i * STEP, None, latency)
    for i in range(6, 30):
        track.feed(START + i * STEP, 120.0 + i % 3, latency)
    assert track.model.n == 30 and len(track.model.recent) == 12


def test_a_5xx_rate_needs_five_failed_requests_weighted_by_requests() -> None:
    """Two failed requests a bucket (a minute of 2 requests all failing beside four of 8 that
    succeed) is no finding; fifty of a hundred is. The bucket's rate is weighted by its minutes'
    requests (Count): 2 of 34, not the mean of the minutes' rates (20 %)."""
    from detectors.base import Series
    from detectors.unusual import weighted

    signal = next(s for s in SIGNALS if s.metric == "5xx")
    minutes = range(START, START + 2 * DAY, 60)
    noise_at, burst_at = START + 2 * DAY - 3600, START + 2 * DAY - 1800
    rate, count = [], []
    for t in minutes:
        r, c = 0.0, 8.0
        if noise_at <= t < noise_at + 900 and t % 300 == 0:
            r, c = 1.0, 2.0
        elif t >= burst_at:
            r, c = 0.5, 20.0
        rate.append((t, r))
        count.append((t, c))
    got = list(weighted(Series(tuple(rate)), Series(tuple(count)), START, START + 2 * DAY))
    assert next(v for b, v, _ in got if b == noise_at) == pytest.approx(2 / 34)
    assert got[-1][1] == pytest.approx(0.5) and got[-1][2] == pytest.approx(50.0)
    track = Track()
    for b, value, failed in got:
        track.feed(b, value, signal, failed)
        if b < burst_at:
            assert track.episodes.current is None, "two failed requests a bucket are noise"
    assert track.episodes.current is not None and track.episodes.current.onset == burst_at


def test_the_tracks_of_resources_long_gone_are_pruned_the_others_kept(tmp_path: Path) -> None:
    other = "lambda/111111111111/us-east-1/other-fn"
    with store_with(tmp_path, [(errors_key(), errors(None))]) as store:
        store.upsert_resource(
            id=other, account="111111111111", region="us-east-1", kind="lambda", name="other-fn", seen_at=START
        )
        store.record_detection(
            [], [], [(FN, "Errors", "Sum", T0, False, "x"), (other, "Errors", "Sum", T0, False, "y")]
        )
        store.mark_gone([FN], START)
        store.prune_history(T0, history_retention=30 * DAY, incident_retention=30 * DAY, gone_retention=DAY)
        assert store.db.execute("SELECT resource_id FROM anomaly_state").fetchall() == [(other,)]


def test_a_new_series_is_learnt_from_its_first_stored_point_not_from_zeros_before_it(tmp_path: Path) -> None:
    """Two hours of backfill: the buckets of the day before are unknown, not quiet (fed as zeros
    they warmed the model on nothing, and the first real errors were 'unusual')."""
    points = [(t, v) for t, v in errors(None) if t >= T0 - 2 * 3600]
    with store_with(tmp_path, [(errors_key(), points)]) as store:
        found = [f for d in passes(store, T0, T0 + 3600, step=180) for f in d.findings]
        (text, last_t) = store.db.execute("SELECT state, last_t FROM anomaly_state").fetchone()
    assert found == []
    assert Track.loads(text, last_t, 3.0).model.n == (last_t - (T0 - 2 * 3600)) // STEP + 1


def test_unusual_outliving_the_rule_does_not_hold_the_incident_open_nor_page_again(world: World) -> None:
    for _ in range(4):
        world.tick(api_errors(), unusual_api())
    for _ in range(8):  # the rule's finding is gone; the unusual episode lingers (it closes buckets later)
        world.tick(unusual_api())
    for _ in range(8):
        world.tick()
    (msg,) = tops(world)
    incidents = world.incidents()
    assert len(incidents) == 1 and incidents[0].resolved_at is not None
    texts = [m["text"][:60] for m in world.slack.messages()]
    assert not [t for t in texts if "UPDATED" in t], texts
    assert len([t for t in texts if t.startswith("[FIRING]")]) == 1, texts
    assert incidents[0].resolved_at <= T0 + 4 * 60 + 8 * 60, (
        "resolved with the rule, not when the unusual episode closed"
    )


def test_a_fall_told_after_traffic_returns_never_names_a_usual_value_as_the_low(tmp_path: Path) -> None:
    # In `make demo`, feed-fn idle for 2 h then busy again: "unusual invocations — fell as low as
    # 4,888 per 5 min at 17:10 (usually 4,446)". The idle buckets have no datapoints and the
    # loaded window no longer reaches them, so the lowest bucket left was one after the return.
    rng = random.Random(5)
    stop, back = T0 + 3600, T0 + 3 * 3600
    calls = [(t, float(rng.randint(80, 120))) for t in range(START, T0 + 5 * 3600, STEP) if not stop <= t < back]
    errs = [(t, 0.0) for t in range(START, T0 + 5 * 3600, STEP)]  # the tier is still collected
    with store_with(tmp_path, [(invocations_key(), calls), (errors_key(), errs)]) as store:
        told = [(d, f.title) for d in passes(store, START + DAY, T0 + 5 * 3600) for f in d.findings]
    assert told, "the fall is an episode"
    titles = [t for _, t in told]
    assert any("fell to 0" in t for t in titles), "while it lasts, as it is now"
    lows = [int(m.group(1).replace(",", "")) for t in titles if (m := re.search(r"as low as ([\d,]+)", t))]
    assert all(low < 80 for low in lows), titles
    after = [t for t in titles if "fell" not in t]
    assert after and all("below its usual 100 per 5 min since" in t for t in after), titles
