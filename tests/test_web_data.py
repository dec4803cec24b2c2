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
