"""Opening the store safely, and the typed writes and reads the rest of fleetwatch uses.

Before anything is written, the file is inspected read-only: a file that is not SQLite, a SQLite
database that is not a fleetwatch store, and a store from a newer fleetwatch are all refused with
a message saying what to do, and left byte-for-byte untouched.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from fleetwatch.store import watch
from fleetwatch.store.dialect import SQLITE
from fleetwatch.store.errors import StoreError
from fleetwatch.store.migrations import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from fleetwatch.store.sqlite import MIGRATIONS_TABLE, _check_writable, _connect, _explain, _inspect

__all__ = [
    "MIGRATIONS_TABLE",
    "SeriesKey",
    "Store",
    "StoreError",
    "check_recorded",
    "index_resource_id",
    "migrate",
    "open_sqlite_store",
    "store_location",
]


def index_resource_id(table_id: str, index: str) -> str:
    """The resource id a DynamoDB global secondary index's series are stored under: its table's
    id and the index name (table names cannot hold '/'). AWS publishes an index's throttles only
    under TableName + GlobalSecondaryIndexName, apart from the table's."""
    return f"{table_id}/index/{index}"


@dataclass(frozen=True)
class SeriesKey:
    resource_id: str | None
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    period: int
    unit: str = ""

    @property
    def key(self) -> str:
        # The resource id carries account and region: the same function name in two accounts
        # is two series.
        dims = ",".join(f"{k}={v}" for k, v in sorted(self.dimensions))
        return f"{self.resource_id or ''}|{self.namespace}|{self.metric}|{dims}|{self.stat}|{self.period}"


# Which source of a (resource, metric, statistic) detectors read when several have samples:
# AWS's own metrics, then OpenTelemetry spans sent to the agent (every invocation they report),
# then X-Ray's sampled traces and the probes.
OTEL_NAMESPACE = "fleetwatch/OTel"


# Sources that see every invocation rank with the spans: REPORT lines through Logs Insights, and
# Lambda Insights (collector.coldstart_sources); X-Ray's are sampled.
COMPLETE_NAMESPACES = (OTEL_NAMESPACE, "fleetwatch/Logs", "fleetwatch/LambdaInsights")
HOUR = 3600  # poll_hours sums the poll log per UTC hour


def source_rank(namespace: str) -> int:
    return 0 if namespace.startswith("AWS/") else 1 if namespace in COMPLETE_NAMESPACES else 2


class Store:
    """A fleetwatch store. Writes go through `transaction()`, so a failure never leaves half.

    This class is the SQLite store, and its SQL is shared: the PostgreSQL store
    (fleetwatch.store.pg.PgStore) overrides only what differs (transactions, samples' partitions
    and COPY); names that SQL spells differently come from `self.dialect`."""

    dialect = SQLITE

    def __init__(self, path: Path | str, db: Any) -> None:
        self.path = path
        self.db = db
        self._series_ids: dict[str, int] = {}

    def close(self) -> None:
        self.db.close()

    def watch_writes(self) -> watch.Watch:
        """What every later write to this store by this process touches (fleetwatch.store.watch)."""
        return watch.watch(str(self.path))

    def unwatch_writes(self, seen: watch.Watch) -> None:
        watch.unwatch(str(self.path), seen)

    @property
    def prunes(self) -> int:
        """How many times this process pruned this store's samples."""
        return watch.prunes(str(self.path))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def applied_migrations(self) -> list[str]:
        return [r[0] for r in self.db.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY id")]

    def prepare_migrations(self) -> None:
        db = self.db
        if MIGRATIONS_TABLE not in db.table_names():
            with self.transaction():
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (id "
                    "INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                    "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')))"
                )
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")

    def record_migration(self, number: int, name: str) -> None:
        """Inside the migration's transaction: the row that records it, and the schema version."""
        self.db.execute(f"INSERT INTO {MIGRATIONS_TABLE} (id, name) VALUES (?, ?)", [number, name])
        self.db.execute(f"PRAGMA user_version={number}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error; disk-full and read-only errors
        are turned into a StoreError that says what to do. Nothing already stored is lost."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _explain(self.path, exc) from exc
        try:
            yield self.db
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise _explain(self.path, exc) from exc
            raise

    # -- resources -----------------------------------------------------------------------------

    def upsert_resource(
        self,
        *,
        id: str,
        account: str,
        region: str,
        kind: str,
        name: str,
        arn: str = "",
        facts: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        seen_at: int,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO resources (id, account, region, kind, name, arn, facts, tags, first_seen, last_seen, "
                "gone_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT(id) DO UPDATE SET arn=excluded.arn, facts=excluded.facts, tags=excluded.tags, "
                "last_seen=excluded.last_seen, gone_at=NULL",
                [
                    id,
                    account,
                    region,
                    kind,
                    name,
                    arn,
                    json.dumps(facts or {}, sort_keys=True),
                    json.dumps(tags or {}, sort_keys=True),
                    seen_at,
                    seen_at,
                ],
            )
        watch.note_resources(str(self.path), [id])

    def upsert_resources(self, rows: Sequence[dict[str, Any]], seen_at: int) -> None:
        """Insert or refresh many discovered resources in one transaction; a resource seen again
        after being marked gone comes back (gone_at cleared)."""
        with self.transaction() as db:
            db.conn.executemany(
                "INSERT INTO resources (id, account, region, kind, name, arn, facts, tags, first_seen, last_seen, "
                "gone_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT(id) DO UPDATE SET arn=excluded.arn, facts=excluded.facts, tags=excluded.tags, "
                "last_seen=excluded.last_seen, gone_at=NULL",
                [
                    (
                        r["id"],
                        r["account"],
                        r["region"],
                        r["kind"],
                        r["name"],
                        r.get("arn", ""),
                        json.dumps(r.get("facts") or {}, sort_keys=True, default=str),
                        json.dumps(r.get("tags") or {}, sort_keys=True),
                        seen_at,
                        seen_at,
                    )
                    for r in rows
                ],
            )
        watch.note_resources(str(self.path), [r["id"] for r in rows])

    def resources(
        self,
        *,
        account: str | None = None,
        region: str | None = None,
        kinds: Iterable[str] | None = None,
        include_gone: bool = False,
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM resources WHERE 1=1"
        args: list[Any] = []
        if account is not None:
            sql, args = sql + " AND account = ?", [*args, account]
        if region is not None:
            sql, args = sql + " AND region = ?", [*args, region]
        if kinds is not None:
            kinds = list(kinds)
            if not kinds:  # `IN ()`: SQLite reads it as false, PostgreSQL refuses it
                return []
            sql, args = sql + f" AND kind IN ({','.join('?' * len(kinds))})", [*args, *kinds]
        if not include_gone:
            sql += " AND gone_at IS NULL"
        rows = list(self.db.query(sql + " ORDER BY id", args))
        for row in rows:
            row["facts"] = json.loads(row["facts"])
            row["tags"] = json.loads(row["tags"])
        return rows

    def update_facts(self, id: str, patch: dict[str, Any], seen_at: int) -> None:
        """Merge `patch` into a resource's facts (probes refresh facts between discoveries)."""
        with self.transaction() as db:
            row = db.execute("SELECT facts FROM resources WHERE id = ?", [id]).fetchone()
            if row is None:
                return
            facts = {**json.loads(row[0]), **patch}
            db.execute(
                f"UPDATE resources SET facts = ?, last_seen = {self.dialect.greatest}(last_seen, ?) WHERE id = ?",
                [json.dumps(facts, sort_keys=True, default=str), seen_at, id],
            )
        watch.note_resources(str(self.path), [id])

    def recent_values(
        self, resource_ids: Sequence[str], metrics: Sequence[str], since: int, until: int | None = None
    ) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
        """Samples in [since, until) of the named metrics of these resources, by (resource, metric, stat).

        The join is written series first (CROSS JOIN: SQLite keeps that order; PostgreSQL plans
        it as an inner join): each chunk's series are found by resource id, then each series'
        window read on the (series_id, ts) primary key. Left to itself SQLite walked the
        samples_ts index over every series' samples in the window, once per chunk of 500 ids,
        which made this O(fleet²): 16 s of CPU for 5,000 functions (bench/scale.py, issue 20)."""
        until = 2**62 if until is None else until
        if not resource_ids or not metrics:
            return {}
        out: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        ids = list(resource_ids)
        for i in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = ids[i : i + 500]
            rows = self.db.execute(
                "SELECT s.resource_id, s.metric, s.stat, m.ts, m.value "
                "FROM series s CROSS JOIN samples m "
                f"WHERE m.series_id = s.id AND s.resource_id IN ({','.join('?' * len(chunk))}) "
                f"AND s.metric IN ({','.join('?' * len(metrics))}) "
                f"AND m.ts >= ? AND m.ts < ? ORDER BY m.ts",
                [*chunk, *metrics, since, until],
            ).fetchall()
            for rid, metric, stat, ts, value in rows:
                out.setdefault((rid, metric, stat), []).append((int(ts), float(value)))
        return out

    def series_catalog(self, starts: Iterable[tuple[str, str]]) -> list[tuple[int, str, str, str, str, int]]:
        """(series id, resource id, namespace, metric, stat, period) of every series whose
        (metric, stat) is in `starts`."""
        wanted = set(starts)
        metrics = sorted({m for m, _ in wanted})
        if not metrics:
            return []
        return [
            (int(sid), rid, namespace, metric, stat, int(period))
            for sid, rid, namespace, metric, stat, period in self.db.execute(
                "SELECT id, resource_id, namespace, metric, stat, period "
                f"FROM series WHERE metric IN ({','.join('?' * len(metrics))})",
                metrics,
            )
            if (metric, stat) in wanted
        ]

    def window(
        self,
        end: int,
        starts: dict[tuple[str, str], int],
        catalog: Iterable[tuple[int, str, str, str, str, int]] | None = None,
    ) -> tuple[dict[tuple[str, str, str], tuple[tuple[int, float], ...]], dict[tuple[str, str, str], int]]:
        """Samples up to `end` of the series whose (metric, stat) is in `starts`, each from its
        own start, keyed by (resource id, metric, stat), ascending in time; and each series' period.

        Two sources can feed the same key: a function's cold starts come from X-Ray traces or
        from its OpenTelemetry spans (fleetwatch/OTel), its errors from CloudWatch or from spans.
        The first source by SOURCE_RANK with samples in the window wins; they are not added up,
        since both count the same invocations. `catalog` (rows of series_catalog) reads only
        those series: every source of a key must be in it for the choice to be the same."""
        by_start: dict[int, list[int]] = {}
        keys, periods, ranks = {}, {}, {}
        for sid, rid, namespace, metric, stat, period in (
            catalog if catalog is not None else self.series_catalog(starts)
        ):
            start = starts.get((metric, stat))
            if start is not None:
                keys[sid] = (rid, metric, stat)
                ranks[sid] = source_rank(namespace)
                periods[(rid, metric, stat)] = int(period)
                by_start.setdefault(start, []).append(sid)
        out: dict[tuple[str, str, str], tuple[tuple[int, float], ...]] = {}
        chosen: dict[tuple[str, str, str], int] = {}
        for start, ids in by_start.items():
            ids.sort()
            for i in range(0, len(ids), 500):  # each chunk reads its series' primary-key ranges
                chunk = ids[i : i + 500]
                where = f"WHERE series_id IN ({','.join('?' * len(chunk))}) AND ts >= ? AND ts < ?"
                # Counts first, then bare (ts, value) rows sliced per series: no per-row Python work.
                counts = self.db.execute(
                    f"SELECT series_id, COUNT(*) FROM samples {where} GROUP BY series_id ORDER BY series_id",
                    [*chunk, start, end],
                ).fetchall()
                rows = self.db.execute(
                    f"SELECT ts, value FROM samples {where} ORDER BY series_id, ts", [*chunk, start, end]
                ).fetchall()
                at = 0
                for sid, n in counts:
                    key = keys[sid]
                    if key not in chosen or ranks[sid] < chosen[key]:
                        out[key], chosen[key] = tuple(rows[at : at + n]), ranks[sid]
                    at += n
        return out, periods

    def hour_sums(
        self, reads: Iterable[tuple[str, str]], hours: Iterable[int]
    ) -> dict[tuple[str, str, str], tuple[float, int]]:
        """For each series whose (metric, stat) is in `reads`: the sum of its values over the clock
        hours starting at `hours`, from raw samples or, once those are pruned, the hourly
        rollups; and how many of those hours had any data. Keyed by (resource id, metric, stat)."""
        wanted = set(reads)
        metrics = sorted({m for m, _ in wanted})
        keys = {
            sid: (rid, metric, stat)
            for sid, rid, metric, stat in self.db.execute(
                f"SELECT id, resource_id, metric, stat FROM series WHERE metric IN ({','.join('?' * len(metrics))})",
                metrics,
            )
            if (metric, stat) in wanted
        }
        ids = sorted(keys)
        out: dict[tuple[str, str, str], tuple[float, int]] = {}
        for hour in sorted(set(hours)):
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self.db.execute(
                    "SELECT series_id, SUM(value) FROM samples WHERE series_id "
                    f"IN ({marks}) AND ts >= ? AND ts < ? GROUP BY series_id "
                    f"UNION ALL SELECT series_id, sum FROM rollups WHERE series_id IN ({marks}) AND ts = ?",
                    [*chunk, hour, hour + 3600, *chunk, hour],
                ).fetchall()
                seen: dict[int, float] = {}
                for sid, value in rows:
                    seen[sid] = seen.get(sid, 0.0) + float(value)
                for sid, value in seen.items():
                    total, hours_seen = out.get(keys[sid], (0.0, 0))
                    out[keys[sid]] = (total + value, hours_seen + 1)
        return out

    def mark_gone(self, ids: Iterable[str], at: int) -> int:
        ids = list(ids)
        if not ids:
            return 0
        with self.transaction() as db:
            cur = db.execute(
                f"UPDATE resources SET gone_at=? WHERE gone_at IS NULL AND id IN ({','.join('?' * len(ids))})",
                [at, *ids],
            )
        watch.note_resources(str(self.path), ids)
        return int(cur.rowcount)

    def resource(self, id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM resources WHERE id = ?", [id]))
        if not rows:
            return None
        row = rows[0]
        row["facts"] = json.loads(row["facts"])
        row["tags"] = json.loads(row["tags"])
        return row

    # -- series and samples --------------------------------------------------------------------

    def ensure_series(self, key: SeriesKey) -> int:
        existing = self.db.execute("SELECT id FROM series WHERE key = ?", [key.key]).fetchone()
        if existing:
            return int(existing[0])
        with self.transaction() as db:
            made = db.execute(
                "INSERT INTO series (key, resource_id, namespace, metric, dimensions, stat, period, unit) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING RETURNING id",
                [
                    key.key,
                    key.resource_id,
                    key.namespace,
                    key.metric,
                    json.dumps(dict(sorted(key.dimensions))),
                    key.stat,
                    key.period,
                    key.unit,
                ],
            ).fetchone()
            if made:
                return int(made[0])
        return int(self.db.execute("SELECT id FROM series WHERE key = ?", [key.key]).fetchone()[0])

    def write_samples(self, batch: Sequence[tuple[SeriesKey, Sequence[tuple[int, float]]]]) -> int:
        """Upsert the points of many series in one transaction (a poll's worth); series rows are
        created as needed. Returns the number of points written."""
        rows: list[tuple[int, int, float]] = []
        try:
            with self.transaction() as db:
                for key, points in batch:
                    if not points:
                        continue
                    sid = self._series_ids.get(key.key)
                    if sid is None:
                        sid = self._series_id_in(db, key)
                    # A value that is not a finite number is no measurement (SQLite would store NaN as NULL).
                    rows.extend((sid, int(ts), float(v)) for ts, v in points if math.isfinite(v))
                self._put_samples(db, rows, "replace")
        except BaseException:
            self._series_ids.clear()  # ids created in the rolled-back transaction do not exist
            raise
        watch.note_samples(str(self.path), rows)
        return len(rows)

    MERGES = ("replace", "add", "max")

    def _merge_sql(self, how: str) -> str:
        """How a point meets the one stored at its timestamp, as the upsert's new value. A point
        re-read unchanged (most of each poll's re-read window) is not rewritten: valid SQL for
        SQLite and PostgreSQL both."""
        return {
            "replace": "excluded.value WHERE samples.value <> excluded.value",
            "add": "samples.value + excluded.value",
            "max": f"{self.dialect.greatest}(samples.value, excluded.value)",
        }[how]

    def _put_samples(self, db: Any, rows: list[tuple[int, int, float]], how: str) -> None:
        """Upsert (series id, ts, value) rows inside the caller's transaction."""
        db.conn.executemany(
            "INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?) "
            f"ON CONFLICT(series_id, ts) DO UPDATE SET value = {self._merge_sql(how)}",
            rows,
        )

    def merge_samples(self, batch: Sequence[tuple[SeriesKey, Sequence[tuple[int, float]], str]]) -> int:
        """Like write_samples, but each series says how a point meets one already stored at its
        timestamp: 'replace' it, 'add' to it (counts arriving in pieces, as OTLP exports do) or
        keep the 'max'. One transaction for the whole batch."""
        by_merge: dict[str, list[tuple[int, int, float]]] = {}
        try:
            with self.transaction() as db:
                for key, points, how in batch:
                    if points:
                        sid = self._series_ids.get(key.key) or self._series_id_in(db, key)
                        by_merge.setdefault(how, []).extend((sid, int(ts), float(v)) for ts, v in points)
                for how, rows in by_merge.items():
                    if how not in self.MERGES:
                        raise ValueError(f"merge {how!r} is not one of {', '.join(self.MERGES)}")
                    self._put_samples(db, rows, how)
        except BaseException:
            self._series_ids.clear()
            raise
        for rows in by_merge.values():
            watch.note_samples(str(self.path), rows)
        return sum(len(r) for r in by_merge.values())

    def _series_id_in(self, db: sqlite_utils.Database, key: SeriesKey) -> int:
        found = db.execute("SELECT id FROM series WHERE key = ?", [key.key]).fetchone()
        if found is None:
            sid = int(
                db.execute(
                    "INSERT INTO series (key, resource_id, namespace, metric, dimensions, stat, period, unit) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [
                        key.key,
                        key.resource_id,
                        key.namespace,
                        key.metric,
                        json.dumps(dict(sorted(key.dimensions))),
                        key.stat,
                        key.period,
                        key.unit,
                    ],
                ).fetchone()[0]
            )
        else:
            sid = int(found[0])
        self._series_ids[key.key] = sid
        return sid

    def series_samples(self, key: SeriesKey, start: int, end: int) -> list[tuple[int, float]]:
        row = self.db.execute("SELECT id FROM series WHERE key = ?", [key.key]).fetchone()
        return self.samples(int(row[0]), start, end) if row else []

    def upsert_samples(self, series_id: int, points: Sequence[tuple[int, float]]) -> int:
        """Insert or replace (ts, value) points; re-reading a window is idempotent. A missing
        datapoint is simply absent: never pass a zero for it."""
        if not points:
            return 0
        rows = [(series_id, int(ts), float(v)) for ts, v in points]
        with self.transaction() as db:
            self._put_samples(db, rows, "replace")
        watch.note_samples(str(self.path), rows)
        return len(points)

    def samples(self, series_id: int, start: int, end: int) -> list[tuple[int, float]]:
        rows = self.db.execute(
            "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
            [series_id, start, end],
        ).fetchall()
        return [(int(ts), float(v)) for ts, v in rows]

    def rollups(self, series_id: int, start: int, end: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT ts, count, sum, min, max FROM rollups WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                [series_id, start, end],
            )
        )

    # -- retention -----------------------------------------------------------------------------

    def prune(self, now: int, raw_retention: int, rollup_retention: int) -> dict[str, int]:
        """Roll raw samples older than raw_retention into hourly rollups, delete them, and delete
        rollups older than rollup_retention; one transaction, so a crash loses nothing."""
        raw_cutoff = (now - raw_retention) // 3600 * 3600
        rollup_cutoff = now - rollup_retention
        watch.note_prune(str(self.path))
        with self.transaction() as db:
            rolled = db.execute(
                "INSERT INTO rollups (series_id, ts, count, sum, min, max) "
                "SELECT series_id, (ts / 3600) * 3600, COUNT(*), SUM(value), MIN(value), MAX(value) "
                "FROM samples WHERE ts < ? GROUP BY series_id, ts / 3600 "
                "ON CONFLICT(series_id, ts) DO UPDATE SET count = rollups.count + excluded.count, "
                f"sum = rollups.sum + excluded.sum, min = {self.dialect.least}(rollups.min, excluded.min), "
                f"max = {self.dialect.greatest}(rollups.max, excluded.max)",
                [raw_cutoff],
            ).rowcount
            deleted = self._drop_samples_before(db, raw_cutoff)
            expired = db.execute("DELETE FROM rollups WHERE ts < ?", [rollup_cutoff]).rowcount
        return {"rollup_rows_written": rolled, "samples_deleted": deleted, "rollups_deleted": expired}

    def _drop_samples_before(self, db: Any, cutoff: int) -> int:
        return int(db.execute("DELETE FROM samples WHERE ts < ?", [cutoff]).rowcount)

    def prune_history(
        self, now: int, history_retention: int, incident_retention: int, gone_retention: int
    ) -> dict[str, int]:
        """Delete the agent's own records older than history_retention, resolved incidents (with
        their timeline and notification log) older than incident_retention, and series and
        resources gone for longer than gone_retention once no sample or rollup is left. One
        transaction: a crash deletes all of it or none."""
        cut, inc_cut, gone_cut = now - history_retention, now - incident_retention, now - gone_retention
        out: dict[str, int] = {}
        with self.transaction() as db:
            for table, column in (
                ("poll_log", "started_at"),
                ("findings", "ts"),
                ("detector_runs", "ts"),
                ("notification_failures", "failed_at"),
                ("agent_cycles", "scheduled_at"),
            ):
                out[table] = db.execute(f"DELETE FROM {table} WHERE {column} < ?", [cut]).rowcount
            # The poll log's hourly sums go with it: hours wholly before the cut, and the hour it
            # falls in summed again from what is left of that hour.
            db.execute("DELETE FROM poll_hours WHERE hour < ?", [cut // HOUR * HOUR])
            self._sum_poll_hour(db, cut // HOUR * HOUR)
            old = "SELECT id FROM incidents WHERE resolved_at IS NOT NULL AND resolved_at < ?"
            out["notifications"] = db.execute(
                f"DELETE FROM notifications WHERE incident_id IN ({old})", [inc_cut]
            ).rowcount
            out["incident_events"] = db.execute(
                f"DELETE FROM incident_events WHERE incident_id IN ({old})", [inc_cut]
            ).rowcount
            out["incidents"] = db.execute(old.replace("SELECT id FROM", "DELETE FROM"), [inc_cut]).rowcount
            out["digests"] = db.execute("DELETE FROM digests WHERE due_at < ?", [inc_cut]).rowcount
            out["series"] = db.execute(
                "DELETE FROM series WHERE resource_id IN (SELECT id FROM "
                "resources WHERE gone_at IS NOT NULL AND gone_at < ?) "
                "AND NOT EXISTS (SELECT 1 FROM samples WHERE series_id = series.id) "
                "AND NOT EXISTS (SELECT 1 FROM rollups WHERE series_id = series.id)",
                [gone_cut],
            ).rowcount
            # The unusual detector's tracks of resources long gone (derived state: nothing is lost).
            out["anomaly_state"] = db.execute(
                "DELETE FROM anomaly_state WHERE resource_id IN (SELECT id FROM resources "
                "WHERE gone_at IS NOT NULL AND gone_at < ?)",
                [gone_cut],
            ).rowcount
            out["resources"] = db.execute(
                "DELETE FROM resources WHERE gone_at IS NOT NULL AND gone_at < ? "
                "AND NOT EXISTS (SELECT 1 FROM series WHERE resource_id = resources.id)",
                [gone_cut],
            ).rowcount
        if out["series"]:
            self._series_ids.clear()
        return {k: v for k, v in out.items() if v}

    # -- poll log ------------------------------------------------------------------------------

    def last_poll(self, source: str, account: str, region: str, status: str = "ok") -> int | None:
        row = self.db.execute(
            "SELECT MAX(started_at) FROM poll_log WHERE source = ? AND account = ? AND region = ? AND status = ?",
            [source, account, region, status],
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def record_polls(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append to the poll log, and sum again the hours of poll_hours the rows fall in."""
        if rows:
            with self.transaction() as db:
                db.table("poll_log").insert_all(rows, alter=False)
                for hour in sorted({int(r["started_at"]) // HOUR * HOUR for r in rows}):
                    self._sum_poll_hour(db, hour)

    @staticmethod
    def _sum_poll_hour(db: Any, hour: int) -> None:
        """poll_hours' row for [hour, hour + 1 h), summed again from the poll log (none if empty)."""
        db.execute("DELETE FROM poll_hours WHERE hour = ?", [hour])
        db.execute(
            "INSERT INTO poll_hours (hour, cost_usd, api_calls, polls, first_at) "
            "SELECT started_at / 3600 * 3600, COALESCE(SUM(cost_usd), 0), COALESCE(SUM(api_calls), 0), "
            "COUNT(DISTINCT COALESCE(poll_id, 'row' || id)), MIN(started_at) FROM poll_log "
            "WHERE started_at >= ? AND started_at < ? GROUP BY started_at / 3600 * 3600",
            [hour, hour + HOUR],
        )

    def record_detection(
        self,
        findings: Sequence[dict[str, Any]],
        runs: Sequence[dict[str, Any]],
        states: Sequence[tuple[str, str, str, int, bool, str]] = (),
    ) -> None:
        """A pass's findings, its detector runs and the detectors' state, in one transaction."""
        with self.transaction() as db:
            if states:
                db.conn.executemany(
                    "INSERT INTO anomaly_state (resource_id, metric, stat, "
                    "last_t, episode_open, state) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (resource_id, metric, stat) DO UPDATE SET last_t = excluded.last_t, "
                    "episode_open = excluded.episode_open, state = excluded.state",
                    [(r, m, st, t, int(o), text) for r, m, st, t, o, text in states],
                )
            if findings:
                db.table("findings").insert_all(findings, alter=False)
            if runs:
                db.table("detector_runs").insert_all(runs, alter=False)

    # -- collector cursors ---------------------------------------------------------------------

    def cursor(self, account: str, region: str, tier: str) -> int | None:
        row = self.db.execute(
            "SELECT covered_until FROM cursors WHERE account = ? AND region = ? AND tier = ?", [account, region, tier]
        ).fetchone()
        return int(row[0]) if row else None

    def rereads(self, account: str, region: str) -> dict[str, int]:
        """A place's series still to be read again (SeriesKey.key -> from when): see note_rereads."""
        return {
            str(k): int(since)
            for k, since in self.db.execute(
                "SELECT series_key, since FROM reread_pending WHERE account = ? AND region = ?", [account, region]
            )
        }

    def note_rereads(
        self, pending: Sequence[tuple[str, str, str, int]], done: Sequence[tuple[str, str, str, int]]
    ) -> None:
        """Series whose answer was not Complete, (account, region, SeriesKey.key, start): read
        again from the earliest such start; and series answered Complete from `start`, whose
        pending re-read starting at or after it is settled. Kept in the store so that whichever
        agent polls the place next reads them (fleetwatch.cluster)."""
        if not pending and not done:
            return
        with self.transaction() as db:
            if pending:
                db.conn.executemany(
                    "INSERT INTO reread_pending (account, region, series_key, since) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(account, region, series_key) DO UPDATE SET "
                    f"since = {self.dialect.least}(reread_pending.since, excluded.since)",
                    list(pending),
                )
            if done:
                # Every series answered Complete is in `done`, a poll's whole plan; the table is
                # nearly always empty, so one read a place spares a DELETE a series a poll.
                owed = {
                    (a, r, str(k))
                    for a, r in {(a, r) for a, r, _, _ in done}
                    for (k,) in db.execute(
                        "SELECT series_key FROM reread_pending WHERE account = ? AND region = ?", [a, r]
                    ).fetchall()
                }
                settled = [d for d in done if (d[0], d[1], d[2]) in owed]
                if settled:
                    db.conn.executemany(
                        "DELETE FROM reread_pending WHERE account = ? AND region = ? AND series_key = ? AND since >= ?",
                        settled,
                    )

    def advance_cursors(self, cursors: Sequence[tuple[str, str, str, int]], at: int) -> None:
        """Move (account, region, tier) cursors forward to `covered_until` (never back). Call it
        only after the samples it covers are committed: after a crash a cursor may lag (and the
        window is fetched again, harmlessly upserted) but never claims data that is not there."""
        if not cursors:
            return
        with self.transaction() as db:
            db.conn.executemany(
                "INSERT INTO cursors (account, region, tier, covered_until, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(account, region, tier) DO UPDATE SET "
                f"covered_until = {self.dialect.greatest}(cursors.covered_until, "
                "excluded.covered_until), "
                "updated_at = excluded.updated_at",
                [(a, r, t, until, at) for a, r, t, until in cursors],
            )


def store_location(cfg: Any) -> str | Path:
    """Where the configured store is: store.url (PostgreSQL) when set, else the SQLite store.path."""
    return cfg["store.url"] or cfg["store.path"]


def open_sqlite_store(path: str | Path, *, upto: int | None = None) -> Store:
    """Open (creating if needed) and migrate the SQLite store at `path` (fleetwatch.store.open_store
    chooses between this and PostgreSQL). `upto`: see open_store."""
    path = Path(path)
    target = SCHEMA_VERSION if upto is None else upto
    if path.parent.exists():
        _check_writable(path)  # before anything opens it: a read-only open would leave a read-only -shm behind
    if path.exists() and path.stat().st_size > 0:
        app_id, version, recorded = _inspect(path)
        check_recorded(str(path), version, recorded, "store.path to a different file")
    elif not path.parent.exists():
        raise StoreError(
            f"cannot create the store {path}: the folder {path.parent} does not exist. Create it, or change store.path."
        )
    try:
        db = _connect(path)
    except sqlite3.OperationalError as exc:
        raise _explain(path, exc) from exc
    store = Store(path, db)
    try:
        migrate(store, target)
    except BaseException:
        store.close()
        raise
    return store


def check_recorded(where: str, version: int, recorded: list[str], elsewhere: str) -> None:
    """Refuse a store from a newer fleetwatch, or one whose migrations this one does not know."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where} was written by a newer fleetwatch (store schema {version}; this version "
            f"knows up to {SCHEMA_VERSION}). It has not been touched. Upgrade fleetwatch, or set "
            f"{elsewhere}."
        )
    known = [m.name for m in MIGRATIONS]
    if recorded != known[: len(recorded)]:
        raise StoreError(
            f"{where} records migrations {recorded} that this fleetwatch does not know in that "
            "order. It has not been touched. Use the fleetwatch version that wrote it."
        )


def migrate(store: Store, target: int) -> None:
    """Apply the migrations not yet recorded, up to `target`, each in its own transaction with
    the row that records it. Both backends run the same migrations."""
    store.prepare_migrations()
    done = store.applied_migrations()
    for index, migration in enumerate(MIGRATIONS[:target]):
        if index < len(done):
            continue
        try:
            with store.transaction() as db:
                migration.apply(db)
                store.record_migration(index + 1, migration.name)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"migration {migration.name} failed and was rolled back: {exc}") from exc
