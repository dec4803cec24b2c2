"""A second `make demo` on the store the first one left: its emulated clock starts 4 h before the
hour again, so the old store holds samples from the new run's future. Seen on a new user's
second run: the overview's "last 30 min" beside a critical checkout-api incident read "5xx rate 0%"
(the previous run's value from four hours later) while the incident said 12%."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from fleetwatch.cli.demo import set_aside


def test_a_new_demo_sets_the_last_demos_store_aside_with_its_wal(tmp_path: Path) -> None:
    store = tmp_path / "demo" / "fleetwatch.db"
    assert set_aside(str(store)) is None  # the first demo: nothing to keep
    store.parent.mkdir()
    for suffix, text in (("", "db one"), ("-wal", "wal one")):
        Path(f"{store}{suffix}").write_text(text)
    kept = set_aside(str(store))
    assert kept == tmp_path / "demo" / "fleetwatch.db.previous"
    assert not store.exists() and not Path(f"{store}-wal").exists()
    assert kept.read_text() == "db one" and Path(f"{kept}-wal").read_text() == "wal one"
    # The next demo replaces the older copy (one is kept, not one a run), a stale -wal included:
    # a -wal beside the wrong database file would be replayed into it.
    store.write_text("db two")
    assert set_aside(str(store)) == kept
    assert kept.read_text() == "db two" and not Path(f"{kept}-wal").exists()


def test_a_postgresql_store_is_never_moved(tmp_path: Path) -> None:
    assert set_aside("postgresql://fleetwatch@127.0.0.1/fleetwatch") is None


def test_the_overviews_latest_values_are_read_as_of_the_pages_now(web_copy: dict[str, Any]) -> None:
    from web import data

    now = web_copy["now"]
    conn = data.Reader(web_copy["path"]).conn()

    def rate(at: int) -> float | None:
        row = next(r for r in data.entries(conn, at, []) if r["name"] == "checkout-api")
        return next(s["value"] for s in row["signals"] if s["label"] == "5xx rate")

    before = rate(now)
    assert before is not None
    with sqlite3.connect(web_copy["path"]) as db:  # a sample ten minutes after the page's now
        sid = db.execute(
            "SELECT s.id FROM series s JOIN resources r ON r.id = s.resource_id "
            "WHERE r.name = 'checkout-api' AND s.metric = '5XXError' AND s.stat = 'Average'"
        ).fetchone()[0]
        db.execute("INSERT OR REPLACE INTO samples (series_id, ts, value) VALUES (?, ?, ?)", [sid, now + 600, 0.5])
    assert rate(now) == before
    assert rate(now + 600) == 0.5
