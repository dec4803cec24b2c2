"""The store (SQLite, or PostgreSQL through store.url): migrations, tables and the typed
operations the rest of fleetwatch uses."""

from pathlib import Path

from fleetwatch.store.db import SeriesKey, Store, StoreError, index_resource_id, open_sqlite_store, store_location
from fleetwatch.store.dialect import is_url
from fleetwatch.store.migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SeriesKey",
    "Store",
    "StoreError",
    "index_resource_id",
    "open_store",
    "store_location",
]


def open_store(path: str | Path, *, upto: int | None = None) -> Store:
    """Open (creating if needed) and migrate a fleetwatch store: a SQLite file at `path`, or the
    PostgreSQL database a `postgresql://` URL names (fleetwatch.store.pg).

    `upto` stops after that many migrations; it exists so tests can build an old store."""
    if is_url(path):
        try:
            from fleetwatch.store.pg import open_pg_store
        except ImportError as exc:
            raise StoreError(
                f"store.url names a PostgreSQL database, but its driver cannot be loaded ({exc}). Install it "
                "with pip install 'fleetwatch[postgres]', or leave store.url empty to use the SQLite store.path."
            ) from exc
        return open_pg_store(str(path), upto=upto)
    return open_sqlite_store(path, upto=upto)
