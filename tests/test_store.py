"""The store: WAL, migrations, refusal of foreign files, idempotent samples, retention."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from fleetwatch.store import MIGRATIONS, SCHEMA_VERSION, StoreError, open_store
from fleetwatch.store.db import SeriesKey


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def new_series(store, name: str = "Errors") -> int:
    store.upsert_resource(
        id="lambda/123456789012/us-east-1/orders-fn",
        account="123456789012",
        region="us-east-1",
        kind="lambda",
        name="orders-fn",
        seen_at=1000,
    )
    return store.ensure_series(
        SeriesKey(
            "lambda/123456789012/us-east-1/orders-fn", "AWS/Lambda", name, (("FunctionName", "orders-fn"),), "Sum", 60
        )
    )


def test_new_store_has_all_migrations_recorded(store_target) -> None:
    with open_store(store_target) as store:
        if isinstance(store_target, Path):
            assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.schema_version == SCHEMA_VERSION
        assert store.applied_migrations() == [m.name for m in MIGRATIONS]
        for table in (
            "resources",
            "series",
            "samples",
            "findings",
            "incidents",
            "notifications",
            "silences",
            "poll_log",
            "rollups",
        ):
            assert table in store.db.table_names()


def test_samples_upsert_is_idempotent_and_keeps_gaps(store_target) -> None:
    with open_store(store_target) as store:
        sid = new_series(store)
        store.upsert_samples(sid, [(60, 1.0), (120, 2.0), (240, 4.0)])  # 180 is missing, not zero
        store.upsert_samples(sid, [(120, 2.5), (240, 4.0)])  # a re-read window with a correction
        assert store.samples(sid, 0, 1000) == [(60, 1.0), (120, 2.5), (240, 4.0)]
        assert new_series(store) == sid  # same key, same series


def test_old_store_migrates_forward_keeping_data(store_target) -> None:
    path = store_target
    with open_store(path, upto=1) as store:
        assert store.schema_version == 1 and "incidents" not in store.db.table_names()
        sid = new_series(store)
        store.upsert_samples(sid, [(60, 7.0)])
    with open_store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.samples(sid, 0, 100) == [(60, 7.0)]
        assert "incidents" in store.db.table_names()


def test_non_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("this is my shopping list\n")
    before = digest(path)
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_store(path)
    assert digest(path) == before


def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="not a fleetwatch store"):
        open_store(path)
    assert digest(path) == before
    assert not (tmp_path / "app.db-wal").exists()


def test_store_from_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match=f"newer fleetwatch \\(store schema {SCHEMA_VERSION + 1}"):
        open_store(path)
    assert digest(path) == before


def test_failed_migration_rolls_back_whole(store_target, monkeypatch: pytest.MonkeyPatch) -> None:
    from fleetwatch.store import migrations

    def broken(db) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    open_store(store_target, upto=1).close()
    patched = (*migrations.MIGRATIONS[:1], migrations.Migration("0002_broken", broken))
    monkeypatch.setattr("fleetwatch.store.db.MIGRATIONS", patched)
    with pytest.raises(StoreError, match="0002_broken failed and was rolled back"):
        open_store(store_target)
    monkeypatch.undo()
    with open_store(store_target, upto=1) as store:
        assert "half_done" not in store.db.table_names()
        assert store.schema_version == 1
        assert store.applied_migrations() == [MIGRATIONS[0].name]


def test_points_repeated_in_one_batch_apply_in_order(store_target) -> None:
    """PostgreSQL upserts a batch in one statement (through COPY), which cannot touch a row twice;
    a point repeated within a batch lands as SQLite's one-by-one upserts leave it."""
    with open_store(store_target) as store:
        sid = new_series(store)
        key = SeriesKey(
            "lambda/123456789012/us-east-1/orders-fn",
            "AWS/Lambda",
            "Errors",
            (("FunctionName", "orders-fn"),),
            "Sum",
            60,
        )
        store.write_samples([(key, [(60, 1.0), (60, 5.0), (120, 2.0)])])
        assert store.samples(sid, 0, 1000) == [(60, 5.0), (120, 2.0)]
        store.merge_samples([(key, [(60, 1.0), (60, 2.0), (180, 3.0), (180, 4.0)], "add")])
        assert store.samples(sid, 0, 1000) == [(60, 8.0), (120, 2.0), (180, 7.0)]
        store.merge_samples([(key, [(120, 9.0), (120, 1.0)], "max")])
        assert store.samples(sid, 0, 1000) == [(60, 8.0), (120, 9.0), (180, 7.0)]


def test_prune_rolls_up_then_deletes(store_target) -> None:
    day = 86400
    with open_store(store_target) as store:
        sid = new_series(store)
        base = 100 * day
        points = [(base + i * 60, float(i)) for i in range(120)]  # two hours of samples
        store.upsert_samples(sid, points)
        result = store.prune(now=base + 3 * day, raw_retention=2 * day, rollup_retention=30 * day)
        assert result["samples_deleted"] == 120
        assert store.samples(sid, 0, base + 10 * day) == []
        rolled = store.rollups(sid, 0, base + 10 * day)
        assert [(r["ts"], r["count"], r["sum"], r["min"], r["max"]) for r in rolled] == [
            (base, 60, float(sum(range(60))), 0.0, 59.0),
            (base + 3600, 60, float(sum(range(60, 120))), 60.0, 119.0),
        ]
        store.prune(now=base + 40 * day, raw_retention=2 * day, rollup_retention=30 * day)
        assert store.rollups(sid, 0, base + 50 * day) == []


def test_read_only_store_gives_clear_error_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with open_store(path) as store:
        sid = new_series(store)
        store.upsert_samples(sid, [(60, 1.0)])
    with open_store(path) as store:
        # A read-only handle is the portable way to reach SQLite's read-only error path here:
        # chmod is no obstacle for root, which the CI runs as.
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        store.db.conn = ro
        store.db.conn.row_factory = None
        with pytest.raises(StoreError, match="read-only"):
            store.upsert_samples(sid, [(120, 2.0)])
    with open_store(path) as store:
        assert store.samples(sid, 0, 1000) == [(60, 1.0)]


def test_same_hour_of_the_week_reads_raw_samples_and_rollups(store_target) -> None:
    from fleetwatch.agent.detection import WEEK, load_inputs

    fn = "lambda/111111111111/us-east-1/fn"
    now = 1_800_000_000 // 3600 * 3600 + 1500  # 25 minutes into an hour
    hour = now // 3600 * 3600
    with open_store(store_target) as store:
        store.upsert_resources(
            [
                {
                    "id": fn,
                    "account": "111111111111",
                    "region": "us-east-1",
                    "kind": "lambda",
                    "name": "fn",
                    "facts": {},
                    "tags": {},
                }
            ],
            now,
        )
        cold = SeriesKey(fn, "fleetwatch/XRay", "ColdStarts", (("FunctionName", "fn"),), "Sum", 60)
        sampled = SeriesKey(fn, "fleetwatch/XRay", "SampledInvocations", (("FunctionName", "fn"),), "Sum", 60)
        one_week = [(hour - WEEK + m * 60, 1.0) for m in range(60)]
        outside = [(hour - WEEK - 60, 99.0), (hour - WEEK + 3600, 99.0)]  # the minutes either side of that hour
        three_weeks = [(hour - 3 * WEEK + m * 60, 2.0) for m in range(60)]
        store.write_samples(
            [(cold, one_week + outside + three_weeks), (sampled, [(t, 10.0) for t, _ in one_week + three_weeks])]
        )
        store.prune(
            now=hour - 2 * WEEK, raw_retention=86400, rollup_retention=400 * 86400
        )  # three weeks ago: rollups only
        inp = load_inputs(store, now)
    assert inp.weekly[(fn, "ColdStarts", "Sum")] == (60.0 + 120.0, 2)
    assert inp.weekly[(fn, "SampledInvocations", "Sum")] == (1200.0, 2)
    assert inp.same_hour(fn, "ColdStarts", "Sum") == 180.0
