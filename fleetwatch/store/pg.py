"""The PostgreSQL store (store.url = "postgresql://…"): the same Store, migrations and SQL as the
SQLite one, with what PostgreSQL does better in its place.

- Samples are partitioned by UTC day (samples_YYYYMMDD, made as the first sample of a day
  arrives); retention rolls them up and then drops whole partitions.
- Samples are upserted in bulk: COPY into a session's temporary table, then one INSERT … ON
  CONFLICT from it.
- A database that cannot be reached, is full or is read-only is a StoreError naming the fix; the
  transaction it interrupted was rolled back by the server, so nothing stored is lost, and the
  next write reconnects.
- Before anything is written, the database is inspected: one that holds other tables and no
  fleetwatch store, or a store from a newer fleetwatch, is refused untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from fleetwatch.store.db import MIGRATIONS_TABLE, SeriesKey, Store, StoreError, check_recorded, migrate
from fleetwatch.store.dialect import POSTGRESQL
from fleetwatch.store.migrations import SCHEMA_VERSION
from fleetwatch.store.pgdb import PgDatabase, connect, explain, where

DAY = 86400
# pg_advisory_lock key held while migrating, so agents starting together migrate once ("FWAT").
MIGRATION_LOCK = 0x46574154


def _day_name(day: int) -> str:
    return "samples_" + dt.datetime.fromtimestamp(day * DAY, dt.UTC).strftime("%Y%m%d")


class PgStore(Store):
    dialect = POSTGRESQL

    def __init__(self, url: str, db: PgDatabase) -> None:
        super().__init__(where(url), db)
        self.url = url
        self._lock = threading.RLock()  # one transaction at a time on the shared connection
        self._days: dict[int, str] | None = None  # the samples partitions, by UTC day number

    @property
    def schema_version(self) -> int:
        return len(self.applied_migrations())

    def applied_migrations(self) -> list[str]:
        if MIGRATIONS_TABLE not in self.db.table_names():
            return []
        return super().applied_migrations()

    def prepare_migrations(self) -> None:
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
            "applied_at TEXT NOT NULL)"
        )

    def record_migration(self, number: int, name: str) -> None:
        self.db.execute(
            f"INSERT INTO {MIGRATIONS_TABLE} (id, name, applied_at) VALUES (?, ?, ?)",
            [number, name, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")],
        )

    def _reconnect_if_lost(self) -> None:
        if self.db.reconnect_if_lost():
            self._days = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """BEGIN … COMMIT on the store's connection, rolled back on any error; a database error
        becomes a StoreError that says what to do."""
        with self._lock:
            self._reconnect_if_lost()
            try:
                self.db.in_store_transaction = True
                with self.db.raw.transaction():
                    yield self.db
            except psycopg.Error as exc:
                self._days = None  # partitions made or dropped in the rolled-back transaction
                raise explain(self.url, exc) from exc
            except BaseException:
                self._days = None
                raise
            finally:
                self.db.in_store_transaction = False

    # -- samples: a partition per day, written through COPY --------------------------------------

    def _partitions(self) -> dict[int, str]:
        if self._days is None:
            rows = self.db.execute(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'samples'::regclass"
            ).fetchall()
            self._days = {}
            for name, bound in rows:  # FOR VALUES FROM ('1800000000') TO ('1800086400')
                start = int(bound.split("(")[1].split(")")[0].strip("'"))
                self._days[start // DAY] = name
        return self._days

    def _ensure_days(self, stamps: Iterable[int]) -> None:
        """Make the day partitions these timestamps fall in, each in its own statement before the
        write's transaction (another agent making the same one at once is no error)."""
        self._reconnect_if_lost()
        missing = {int(ts) // DAY for ts in stamps} - set(self._partitions())
        for day in sorted(missing):
            name = _day_name(day)
            with self._lock:
                self._reconnect_if_lost()
                try:
                    self.db.execute(
                        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF samples "
                        f"FOR VALUES FROM ({day * DAY}) TO ({(day + 1) * DAY})"
                    )
                except (pgerrors.DuplicateTable, pgerrors.UniqueViolation):
                    pass
                except psycopg.Error as exc:
                    raise explain(self.url, exc) from exc
            self._partitions()[day] = name

    def _with_days(self, stamps: Iterable[int], write: Callable[[], int]) -> int:
        """Make the partitions, then write. Another store on this database (the OTLP receiver's,
        another agent's) may have dropped a partition this one still remembers: then the write
        fails whole, the list is read again and the write is made once more."""
        stamps = list(stamps)
        self._ensure_days(stamps)
        try:
            return write()
        except StoreError as exc:
            if not isinstance(exc.__cause__, pgerrors.CheckViolation) or "no partition" not in str(exc.__cause__):
                raise
        self._days = None
        self._ensure_days(stamps)
        return write()

    def write_samples(self, batch: Sequence[tuple[SeriesKey, Sequence[tuple[int, float]]]]) -> int:
        return self._with_days(
            (ts for _, points in batch for ts, _ in points), lambda: super(PgStore, self).write_samples(batch)
        )

    def merge_samples(self, batch: Sequence[tuple[SeriesKey, Sequence[tuple[int, float]], str]]) -> int:
        return self._with_days(
            (ts for _, points, _ in batch for ts, _ in points), lambda: super(PgStore, self).merge_samples(batch)
        )

    def upsert_samples(self, series_id: int, points: Sequence[tuple[int, float]]) -> int:
        return self._with_days((ts for ts, _ in points), lambda: super(PgStore, self).upsert_samples(series_id, points))

    def _put_samples(self, db: Any, rows: list[tuple[int, int, float]], how: str) -> None:
        """COPY the rows into a temporary table, then upsert them in one statement. One INSERT
        cannot touch a row twice, so points repeated within the batch are folded first the way
        the SQLite store applies them one after another (the last replaces; adds sum; max)."""
        if not rows:
            return
        folded: dict[tuple[int, int], float] = {}
        for sid, ts, value in rows:
            old = folded.get((sid, ts))
            folded[(sid, ts)] = (
                value if old is None or how == "replace" else old + value if how == "add" else max(old, value)
            )
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS samples_in (series_id BIGINT, ts BIGINT, value DOUBLE PRECISION) "
            "ON COMMIT DELETE ROWS"
        )
        with db.raw.cursor() as cur:
            with cur.copy("COPY samples_in (series_id, ts, value) FROM STDIN") as copy:
                for (sid, ts), value in folded.items():
                    copy.write_row((sid, ts, value))
            cur.execute(
                "INSERT INTO samples (series_id, ts, value) SELECT series_id, ts, value FROM samples_in "
                f"ON CONFLICT (series_id, ts) DO UPDATE SET value = {self._merge_sql(how)}"
            )
            cur.execute("DELETE FROM samples_in")

    def _drop_samples_before(self, db: Any, cutoff: int) -> int:
        """Drop the day partitions wholly before `cutoff` (their rows were just rolled up), then
        delete the older rows of the day the cutoff falls in."""
        deleted = 0
        for day, name in sorted(self._partitions().items()):
            if (day + 1) * DAY <= cutoff:
                deleted += int(db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])
                db.execute(f"DROP TABLE {name}")
                del self._partitions()[day]
        return deleted + int(db.execute("DELETE FROM samples WHERE ts < ?", [cutoff]).rowcount)


def _inspect(db: PgDatabase, url: str) -> list[str]:
    """The migrations a database records, read without writing; a database that holds other
    tables and no fleetwatch store is refused."""
    tables = db.table_names()
    if MIGRATIONS_TABLE not in tables:
        if tables:
            raise StoreError(
                f"the {where(url)} is not a fleetwatch store (its schema holds tables {', '.join(tables[:5])}"
                f"{'…' if len(tables) > 5 else ''}). fleetwatch has not touched it. Point store.url at an empty "
                "database (createdb fleetwatch) or at an existing fleetwatch store."
            )
        return []
    return [r[0] for r in db.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY id")]


def open_pg_store(url: str, *, upto: int | None = None) -> PgStore:
    target = SCHEMA_VERSION if upto is None else upto
    try:
        raw = connect(url)
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot connect to the {where(url)}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}. "
            "Nothing was written. Start PostgreSQL and check store.url (postgresql://user:password@host:5432/dbname; "
            "the database must exist: createdb fleetwatch)."
        ) from exc
    db = PgDatabase(url, raw)
    store = PgStore(url, db)
    try:
        db.execute("SELECT pg_advisory_lock(?)", [MIGRATION_LOCK])
        try:
            recorded = _inspect(db, url)
            check_recorded(f"the {where(url)}", len(recorded), recorded, "store.url to a different database")
            migrate(store, target)
        finally:
            if not raw.broken:
                db.execute("SELECT pg_advisory_unlock(?)", [MIGRATION_LOCK])
    except psycopg.Error as exc:
        store.close()
        raise explain(url, exc) from exc
    except BaseException:
        store.close()
        raise
    return store


# pg_advisory_lock key of `fleetwatch run` / `collect` on a store: one agent per database ("FWRN").
RUN_LOCK = 0x4657524E


class PgStoreLock:
    """The PostgreSQL store's counterpart of fleetwatch.lock.StoreLock: a session advisory lock
    on a connection of its own, which the server releases when that session ends, the holder's
    death by SIGKILL included. The holder is named from pg_stat_activity.

    `shared`: `fleetwatch run` takes it shared, so several agents run together on one store
    (fleetwatch.cluster shares the work) while a command that needs the store to itself
    (`fleetwatch collect`, `store copy`) takes it exclusive and is refused while any runs."""

    def __init__(self, url: str, command: str, shared: bool = False) -> None:
        self.url, self.command, self.shared = url, command, shared
        self._conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> PgStoreLock:
        from fleetwatch.store.errors import LockHeld
        from fleetwatch.store.pgdb import session_name

        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=10,
                application_name=session_name(),
            )
        except psycopg.Error as exc:
            raise explain(self.url, exc) from exc
        take = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
        locked = conn.execute(f"SELECT {take}(%s)", [RUN_LOCK]).fetchone()
        assert locked is not None  # a SELECT of a function answers one row
        if not locked[0]:
            row = conn.execute(
                "SELECT a.application_name, a.client_addr::text, "
                "EXTRACT(EPOCH FROM a.backend_start)::bigint FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                [RUN_LOCK & 0xFFFFFFFF],
            ).fetchone()
            conn.close()
            name = (row[0] if row else "") or "another fleetwatch"
            pid, _, host = name.removeprefix("fleetwatch pid ").partition(" on ")
            raise LockHeld(
                where(self.url),
                {
                    "pid": pid if host else "?",
                    "host": host or (row[1] if row else "?"),
                    "since": row[2] if row else None,
                    "command": "",
                },
                setting="store.url",
            )
        self._conn = conn
        return self

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session, and with it the lock
            self._conn = None
