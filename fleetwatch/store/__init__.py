"""The SQLite store: migrations, tables and the typed operations the rest of fleetwatch uses."""

from fleetwatch.store.db import Store, StoreError, open_store
from fleetwatch.store.migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Store", "StoreError", "open_store"]
