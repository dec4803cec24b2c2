"""The store (SQLite, or PostgreSQL through store.url): migrations, tables and the typed operations the rest of fleetwatch uses."""

from fleetwatch.store.db import SeriesKey, Store, StoreError, index_resource_id, open_store, store_location
from fleetwatch.store.migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SeriesKey", "Store", "StoreError", "index_resource_id", "open_store", "store_location"]
