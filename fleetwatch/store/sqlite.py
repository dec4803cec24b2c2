"""The SQLite side of opening a store: inspecting a file read-only before anything writes to
it, connecting in WAL mode, and saying what SQLite's errors mean for the operator."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import sqlite_utils

from fleetwatch.store.errors import StoreError
from fleetwatch.store.migrations import APPLICATION_ID

SQLITE_HEADER = b"SQLite format 3\x00"
MIGRATIONS_TABLE = "fleetwatch_migrations"


def _inspect(path: Path) -> tuple[int, int, list[str]]:
    """Read (application_id, user_version, recorded migrations) without writing anything."""
    with path.open("rb") as fh:
        header = fh.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise StoreError(
            f"{path} is not a SQLite database, so it is not a fleetwatch store. fleetwatch has not "
            "touched it. Set store.path to a new file name, or to an existing fleetwatch store."
        )
    uri = f"file:{path.resolve()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path} cannot be opened read-only to check it: {exc}") from exc
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        recorded: list[str] = []
        if MIGRATIONS_TABLE in tables:
            recorded = [r[0] for r in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY id")]
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} looks like SQLite but cannot be read ({exc}). It may be damaged; fleetwatch "
            "has not touched it. Restore it from a backup or set store.path to a new file."
        ) from exc
    finally:
        conn.close()
    if app_id != APPLICATION_ID and tables:
        raise StoreError(
            f"{path} is a SQLite database but not a fleetwatch store (it has tables "
            f"{', '.join(sorted(tables)[:5])}{'…' if len(tables) > 5 else ''}). fleetwatch has not "
            "touched it. Set store.path to a new file name, or to an existing fleetwatch store."
        )
    return app_id, version, recorded


def _explain(path: Path | str, exc: sqlite3.OperationalError) -> StoreError:
    text = str(exc)
    if "disk is full" in text or "disk I/O" in text:
        return StoreError(
            f"cannot write to the store {path}: the disk is full. Nothing already stored was lost "
            "and this write was rolled back; free some space (or lower store.raw_retention) and "
            "fleetwatch will carry on."
        )
    if "readonly" in text or "read-only" in text:
        return StoreError(
            f"cannot write to the store {path}: the file or its folder is read-only. Nothing was "
            "changed; make the file and its folder writable by this user."
        )
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the store {path} is locked by another process (another fleetwatch agent?). Stop the "
            "other process or give this one its own store.path."
        )
    return StoreError(f"store {path}: {text}")


def _check_writable(path: Path) -> None:
    """SQLite would open a read-only file read-only, silently, and fail at the first write; the
    agent says so before it starts instead. The folder must be writable too: the write-ahead log,
    its index and the lock file live beside the store."""
    for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if part.exists() and not os.access(part, os.W_OK):
            raise StoreError(
                f"cannot write to the store {path}: {part.name} is read-only for this user. Nothing was changed; "
                f"make it writable (chmod u+w {part}) or run fleetwatch as the user that owns the store."
            )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot write beside the store {path}: its folder {path.parent} is read-only for this user, and the "
            "store keeps its write-ahead log and lock file there. Make the folder writable, or change store.path."
        )


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10.0)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA foreign_keys=ON")
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(
            f"the store {path} could not be switched to WAL mode (got {mode}); is it on a network filesystem?"
        )
    db.execute("PRAGMA synchronous=NORMAL")
    # The write-ahead log is truncated back to this after checkpoints, so a burst of writes
    # (a backfill) does not leave a large -wal file behind for months.
    db.execute("PRAGMA journal_size_limit=67108864")
    return db
