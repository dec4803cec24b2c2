"""The dashboard's reads (web/data.py) on a small store built by hand: what they return, and that
the resource list and the overview's headroom read through indexes rather than scanning
(bench/dashboard.py measures the speed; these keep the shape of the reads from regressing)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.store import SeriesKey, open_store
from web import data

NOW = 1_800_000_000
ACCOUNT, REGION = "123456789012", "us-east-1"


def _queue(name: str, retention: int = 3600) -> dict[str, Any]:
    return {
        "id": f"sqs/{ACCOUNT}/{REGION}/{name}",
        "account": ACCOUNT,
        "region": REGION,
        "kind": "sqs",
        "name": name,
        "facts": {"retention": retention},
        "tags": {},
    }


def _age(name: str, dims: tuple[tuple[str, str], ...] = ()) -> SeriesKey:
    return SeriesKey(
        f"sqs/{ACCOUNT}/{REGION}/{name}",
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        dims or (("QueueName", name),),
        "Maximum",
        60,
    )


@pytest.fixture
def conn(tmp_path: Path) -> Any:
    path = tmp_path / "web.db"
    with open_store(path) as store:
        store.upsert_resources(
            [_queue("rising"), _queue("peaked"), _queue("twice"), _queue("quiet"), _queue("gone")], NOW - 7200
        )
        store.mark_gone([f"sqs/{ACCOUNT}/{REGION}/gone"], NOW - 60)
        store.write_samples(
            [
                # Samples before the hour do not count: 3000 s two hours ago is not this hour's peak.
                (_age("rising"), [(NOW - 7200, 3000.0), (NOW - 3600, 600.0), (NOW - 1800, 900.0), (NOW - 60, 1800.0)]),
                (_age("peaked"), [(NOW - 3000, 1000.0), (NOW - 1200, 3400.0), (NOW - 120, 1000.0)]),
                # Two series of one metric on one queue: the peak of both, the first sample of
                # both (the second series') and the latest of both (the first series').
                (_age("twice"), [(NOW - 3000, 400.0), (NOW - 60, 2000.0)]),
                (_age("twice", (("QueueName", "twice"), ("Other", "x"))), [(NOW - 3300, 100.0), (NOW - 600, 3500.0)]),
                (_age("gone"), [(NOW - 60, 3599.0)]),
            ]
        )
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    c.row_factory = sqlite3.Row
    yield c
    c.close()


def test_headroom_is_latest_peak_and_trend_of_the_last_hour(conn: Any) -> None:
    rows = {h["name"]: h for h in data.headroom(conn, NOW)}
    assert set(rows) == {"rising", "peaked", "twice", "quiet"}, "a gone queue is not checked"
    rising = rows["rising"]
    assert (rising["value"], rising["peak"], rising["trend"]) == (1800.0, 1800.0, "rising")
    assert rising["used"] == pytest.approx(0.5) and rising["unit"] == "s" and rising["of"] == 3600
    peaked = rows["peaked"]
    assert (peaked["value"], peaked["peak"], peaked["trend"]) == (1000.0, 3400.0, "steady")
    twice = rows["twice"]
    assert (twice["value"], twice["peak"], twice["trend"]) == (2000.0, 3500.0, "rising")
    assert rows["quiet"]["value"] is None and rows["quiet"]["used"] is None, "no sample this hour"
    assert [h["name"] for h in data.headroom(conn, NOW)] == ["twice", "peaked", "rising", "quiet"], "fullest first"
    near = data.near_limits(data.headroom(conn, NOW))
    assert [h["name"] for h in near["near"]] == ["twice", "peaked", "rising"] and near["checked"] == 4


def test_headroom_reads_one_row_per_series_not_the_hours_samples(conn: Any) -> None:
    """Each series' peak, first and latest sample are taken in SQL through samples' (series_id,
    ts) key: the reads hand Python one row per series, never every sample of the hour (on
    10,000 functions and 200 queues at one sample a minute, tens of thousands of rows)."""
    fetched: list[int] = []
    real = conn.execute

    class Counting:
        def execute(self, sql: str, args: Any = ()) -> Any:
            rows = real(sql, args).fetchall()
            if "samples" in sql:
                fetched.append(len(rows))
                plan = " | ".join(r[3] for r in real("EXPLAIN QUERY PLAN " + sql, args))
                assert "samples_ts" not in plan and "PRIMARY KEY (series_id=? AND ts>?)" in plan, plan
            return iter(rows)

    assert data.headroom(Counting(), NOW) == data.headroom(conn, NOW)  # type: ignore[arg-type]
    assert sum(fetched) == 4, f"rows per read: {fetched} (three live queues' four series, holding 10 samples this hour)"


def test_resource_list_pages_in_order_from_the_live_index(conn: Any) -> None:
    rows, total = data.resources(conn, "sqs")
    assert [r["name"] for r in rows] == ["peaked", "quiet", "rising", "twice"] and total == 4
    assert data.resource_kinds(conn) == {"sqs": 4}
    for sql, args in (
        ("SELECT * FROM resources WHERE gone_at IS NULL ORDER BY kind, name, id LIMIT ? OFFSET ?", [100, 0]),
        (
            "SELECT * FROM resources WHERE gone_at IS NULL AND kind = ? ORDER BY kind, name, id LIMIT ? OFFSET ?",
            ["sqs", 100, 0],
        ),
    ):
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "resources_live" in plan and "TEMP B-TREE" not in plan, plan


# -- the overview's entry points and agent health, on both store backends ------------------------


def _poll(source: str, at: int, status: str = "ok", account: str = ACCOUNT, region: str = REGION) -> dict[str, Any]:
    return {
        "poll_id": f"poll-{at}",
        "started_at": at,
        "finished_at": at + 5,
        "source": source,
        "account": account,
        "region": region,
        "status": status,
        "error": None if status == "ok" else f"{source} failed at {at}",
    }


def test_errored_sources_are_the_places_whose_latest_poll_of_the_day_failed(store_target: Any) -> None:
    """One row per source and place whose latest poll in the last 24 h failed, with that poll's
    error; a place that failed and then succeeded, or failed only before the day, is not one."""
    with open_store(store_target) as store:
        store.record_polls(
            [
                _poll("cloudwatch", NOW - 600),
                _poll("cloudwatch", NOW - 60, "error"),  # failing now
                _poll("sqs", NOW - 600, "error"),
                _poll("sqs", NOW - 60),  # failed, then recovered
                _poll("sqs", NOW - 600, "error", region="eu-west-1"),
                _poll("sqs", NOW - 60, "error", region="eu-west-1"),  # failing twice: its latest, once
                _poll("rds", NOW - 90000, "error"),  # failed, but more than a day ago
                _poll("poll", NOW - 120, "abandoned", account="", region=""),
            ]
        )
    conn = data.Reader(store_target).conn()
    errored = data.agent_health(conn, NOW)["errored_sources"]
    assert [(e["source"], e["region"], e["status"], e["started_at"]) for e in errored] == [
        ("cloudwatch", REGION, "error", NOW - 60),
        ("poll", "", "abandoned", NOW - 120),
        ("sqs", "eu-west-1", "error", NOW - 60),
    ]
    assert errored[0]["error"] == f"cloudwatch failed at {NOW - 60}"
    conn.close()


def test_errored_sources_read_the_failed_polls_not_the_days_log(tmp_path: Path) -> None:
    """The read starts from the failed polls (the poll_log_failed partial index, migration 0016)
    and checks each for a later poll of its place by id: on a day of successful polls it reads
    no row of the log (it once grouped the whole day's log, most of the overview's read time)."""
    path = tmp_path / "polls.db"
    with open_store(path) as store:
        store.record_polls([_poll(s, t) for t in range(NOW - 3600, NOW, 60) for s in ("cloudwatch", "sqs")])
        store.record_polls([_poll("sqs", NOW - 30, "error")])
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    plans = []
    real = conn.execute

    class Planned:
        def execute(self, sql: str, args: Any = ()) -> Any:
            if "FROM poll_log p" in sql:
                plans.append(" | ".join(r[3] for r in real("EXPLAIN QUERY PLAN " + sql, args)))
            return real(sql, args)

    assert [e["source"] for e in data.agent_health(Planned(), NOW)["errored_sources"]] == ["sqs"]  # type: ignore[arg-type]
    (plan,) = plans
    assert "USING INDEX poll_log_failed" in plan and "INTEGER PRIMARY KEY (rowid>?)" in plan, plan
    assert "GROUP BY" not in plan, plan
    conn.close()


def _entry(kind: str, name: str, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{kind}/{ACCOUNT}/{REGION}/{name}",
        "account": ACCOUNT,
        "region": REGION,
        "kind": kind,
        "name": name,
        "facts": facts,
        "tags": {},
    }


def test_entry_points_read_their_api_type_and_skip_dead_letter_queues(store_target: Any) -> None:
    """The facts entries() needs are read in SQL on both backends: an HTTP API's error rate is
    its 5xx metric and a REST API's its 5XXError (collector.catalog.api_metric); a dead-letter
    queue (dlq_of not empty) is no entry point, a queue with an empty dlq_of is."""
    rows = [
        _entry("api", "http-api", {"type": "HTTP", "api_id": "h1", "stages": ["$default"]}),
        _entry("api", "rest-api", {"type": "REST", "api_id": "r1"}),
        _entry("sqs", "jobs", {"retention": 3600, "dlq_of": [], "consumers": ["worker"]}),
        _entry("sqs", "jobs-dlq", {"retention": 1209600, "dlq_of": ["jobs"]}),
    ]

    def rate(r: dict[str, Any], metric: str, value: float) -> tuple[SeriesKey, list[tuple[int, float]]]:
        return SeriesKey(r["id"], "AWS/ApiGateway", metric, (("ApiId", r["name"]),), "Average", 60), [(NOW - 60, value)]

    with open_store(store_target) as store:
        store.upsert_resources(rows, NOW - 600)
        # Each API has both names stored here: only the one its type names is read.
        store.write_samples(
            [
                rate(rows[0], "5xx", 0.25),
                rate(rows[0], "5XXError", 0.125),
                rate(rows[1], "5XXError", 0.5),
                rate(rows[1], "5xx", 0.75),
            ]
        )
    conn = data.Reader(store_target).conn()
    hurt = {"id": 7, "resource": rows[1]["id"], "title": "rest-api failing", "severity": "critical"}
    got = data.entries(conn, NOW, [hurt])
    assert [e["name"] for e in got] == ["rest-api", "http-api", "jobs"], "hurting first, no dead-letter queue"
    assert got[0]["incident"] == {"id": 7, "title": "rest-api failing", "severity": "critical"}
    assert [s["value"] for s in got[0]["signals"]] == [0.5, None], "a REST API's 5xx rate is its 5XXError"
    assert [s["value"] for s in got[1]["signals"]] == [0.25, None], "an HTTP API's is its 5xx"
    assert set(got[2]) == {"id", "kind", "name", "account", "region", "incident", "signals"}
    conn.close()
