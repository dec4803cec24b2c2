"""Moving a SQLite store into PostgreSQL: `fleetwatch store copy --to postgresql://…`.

Every table is copied row for row (ids included) into a new, empty PostgreSQL store of the same
schema, each table in one transaction through COPY; then the id sequences are moved past the
copied ids, and the migrations' dates are carried over, so PagerDuty dedup keys (which hash the
store's first migration date) stay the same and no incident is opened twice. The source is only
read. A destination that already holds data is refused untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetwatch.store.db import MIGRATIONS_TABLE, Store, StoreError

# Parents before children (foreign keys); tables a later migration adds are copied after these.
ORDER = (
    "resources",
    "series",
    "samples",
    "rollups",
    "poll_log",
    "cursors",
    "findings",
    "detector_runs",
    "alerts",
    "incidents",
    "incident_events",
    "notifications",
    "notification_failures",
    "silences",
    "digests",
    "agent_cycles",
)
DAY = 86400


def copy_store(src: Store, dst: Any, progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy the SQLite store `src` into the empty PostgreSQL store `dst`; rows copied by table."""
    if src.dialect.name != "sqlite" or dst.dialect.name != "postgresql":
        raise StoreError(
            "fleetwatch store copy moves a SQLite store (store.path) into PostgreSQL (--to postgresql://…)"
        )
    if src.applied_migrations() != dst.applied_migrations():
        raise StoreError(
            f"the stores' schemas differ ({src.schema_version} and {dst.schema_version} migrations): open "
            "both with this fleetwatch first (fleetwatch store info migrates one)"
        )
    tables = [t for t in src.db.table_names() if t != MIGRATIONS_TABLE]
    held = [t for t in tables if t in dst.db.table_names() and dst.db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if held:
        raise StoreError(
            f"the {dst.path} already holds data (in {', '.join(held[:5])}); nothing was copied. "
            "Copy into a new, empty database (createdb fleetwatch_new)."
        )
    order = [t for t in ORDER if t in tables] + sorted(t for t in tables if t not in ORDER)
    copied: dict[str, int] = {}
    for table in order:
        columns = [c.name for c in src.db[table].columns]
        if table == "samples":
            lo, hi = src.db.execute("SELECT MIN(ts), MAX(ts) FROM samples").fetchone()
            if lo is not None:
                dst._ensure_days(range(int(lo) // DAY * DAY, int(hi) + 1, DAY))
        n = 0
        with dst.transaction() as db, db.raw.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as out:
                for row in src.db.execute(f"SELECT {', '.join(columns)} FROM {table}"):
                    out.write_row(row)
                    n += 1
            if "id" in columns and cur.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')").fetchone()[0]:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', "
                    "'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) "
                    f"FROM {table}"
                )
        copied[table] = n
        if progress:
            progress(table, n)
    with dst.transaction() as db:
        for number, applied_at in src.db.execute(f"SELECT id, applied_at FROM {MIGRATIONS_TABLE}"):
            db.execute(f"UPDATE {MIGRATIONS_TABLE} SET applied_at = ? WHERE id = ?", [applied_at, number])
    return copied
