"""A PostgreSQL connection that answers the part of sqlite_utils' `Database` the store uses, so
the store's SQL and migrations are written once for both backends.

`execute` and `query` take SQLite-style SQL (`?` placeholders, see dialect.to_pg); rows index by
position and by column name, as sqlite3.Row does; `db.table(name)` creates, alters, inserts and
updates with sqlite_utils' signatures. Sums of integers come back as int, not Decimal.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import RowMaker

from fleetwatch.store.dialect import to_pg
from fleetwatch.store.errors import StoreError

_TYPES = {str: "TEXT", int: "BIGINT", float: "DOUBLE PRECISION", bytes: "BYTEA"}


class Row(tuple):
    """A result row: by position (unpacks as a tuple) and by column name, like sqlite3.Row, so
    `dict(row)` gives the row's columns."""

    __slots__ = ()
    names: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        return self.names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)


def _row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    names = tuple(c.name for c in cursor.description or ())
    cls = type("Row", (Row,), {"__slots__": (), "names": names})
    return lambda values: cls(values)


class _NumericLoader(Loader):
    """SUM and AVG of BIGINT columns are NUMERIC: an int when whole, else a float (the SQLite
    store returns the same), never a Decimal the JSON API cannot serialise."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


def session_name() -> str:
    """What every session of this process is called on the server (pg_stat_activity's
    application_name, at most 63 bytes): an operator, or a test cutting one agent off, can tell
    which process and host a session belongs to."""
    return f"fleetwatch pid {os.getpid()} on {socket.gethostname()}"[:63]


def connect(url: str, *, read_only: bool = False, timeout: int = 10) -> psycopg.Connection[Any]:
    conn = psycopg.connect(
        url, autocommit=True, connect_timeout=timeout, row_factory=_row_factory, application_name=session_name()
    )
    conn.adapters.register_loader("numeric", _NumericLoader)
    if read_only:
        conn.execute("SET default_transaction_read_only = on")
    return conn


def where(url: str) -> str:
    """The database a URL names, for messages: never its password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the PostgreSQL database in store.url"
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"PostgreSQL database {info.get('dbname') or info.get('user') or '(default)'} on {host}{port}"


def explain(url: str, exc: BaseException) -> StoreError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    place = where(url)
    if isinstance(exc, pgerrors.DiskFull):
        return StoreError(
            f"cannot write to the {place}: its disk is full ({text}). This write was rolled back and "
            "nothing stored was lost; free space on the database server (or lower store.raw_retention)."
        )
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction | pgerrors.InsufficientPrivilege):
        return StoreError(
            f"cannot write to the {place}: {text}. Nothing was changed; connect as a user that owns the "
            "store's tables, to the primary (not a read replica)."
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreError(
            f"cannot reach the {place}: {text}. Whatever this write had begun was rolled back by the server, "
            "so nothing stored was lost. Start PostgreSQL (or fix store.url: "
            "postgresql://user:password@host:5432/dbname); fleetwatch reconnects on its next write."
        )
    return StoreError(f"{place}: {text}")


class _Conn:
    """What the store reaches through `db.conn`: executemany and whether a transaction is open."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.db.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self.db.raw.cursor() as cur:
                cur.executemany(to_pg(sql), rows)

    @property
    def in_transaction(self) -> bool:
        return self.db.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


class PgDatabase:
    """One psycopg connection in autocommit mode; the store's transactions are explicit."""

    dialect = "postgresql"

    def __init__(self, url: str, raw: psycopg.Connection[Any], read_only: bool = False) -> None:
        self.url = url
        self.raw = raw
        self.read_only = read_only
        self.conn = _Conn(self)
        self.has_id: dict[str, bool] = {}
        self.in_store_transaction = False

    def close(self) -> None:
        self.raw.close()

    def reconnect_if_lost(self) -> bool:
        """A new session when the server ended the last one (restart, failover, idle timeout);
        True when it did. Inside a transaction it does not: that transaction is gone."""
        if not self.raw.broken:
            return False
        try:
            self.raw = connect(self.url, read_only=self.read_only)
        except psycopg.Error as exc:
            raise explain(self.url, exc) from exc
        return True

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        if not self.in_store_transaction:  # never in one: its later statements would commit alone
            self.reconnect_if_lost()
        try:
            return self.raw.execute(to_pg(sql), list(args or ()))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if self.in_store_transaction or not self.raw.broken or not sql.lstrip().upper().startswith("SELECT"):
                raise explain(self.url, exc) from exc
        # The server ended the session under a read (restart, failover): a read is safe to ask
        # again, once, on a new session. A write is not: it may have committed before the cut.
        self.reconnect_if_lost()
        try:
            return self.raw.execute(to_pg(sql), list(args or ()))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise explain(self.url, exc) from exc

    def query(self, sql: str, args: Sequence[Any] | None = None) -> Iterator[dict[str, Any]]:
        for row in self.execute(sql, args).fetchall():
            yield dict(row)

    def table_names(self) -> list[str]:
        return [
            r[0]
            for r in self.raw.execute(
                "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
                "AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname"
            )
        ]

    def table(self, name: str) -> PgTable:
        """sqlite_utils' `db.table(name)`: typed as a Table, where `db[name]` may be a View."""
        return PgTable(self, name)

    def __getitem__(self, name: str) -> PgTable:
        return self.table(name)


class PgTable:
    """sqlite_utils' Table, for the calls the store and its migrations make."""

    def __init__(self, db: PgDatabase, name: str) -> None:
        self.db, self.name = db, name
        self.last_pk: Any = None

    @property
    def count(self) -> int:
        row = self.db.execute(f"SELECT COUNT(*) FROM {self.name}").fetchone()
        assert row is not None  # COUNT(*) answers one row
        return int(row[0])

    # -- schema --------------------------------------------------------------------------------

    def create(
        self,
        columns: dict[str, type],
        pk: str | tuple[str, ...] = "rowid",
        not_null: Iterable[str] = (),
        defaults: dict[str, Any] | None = None,
        foreign_keys: Iterable[tuple[str, str, str]] = (),
    ) -> PgTable:
        fks = {col: (table, ref) for col, table, ref in foreign_keys}
        nn, defaults = set(not_null), defaults or {}
        parts = []
        for col, kind in columns.items():
            if col == pk and kind is int:
                parts.append(f"{col} BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                continue
            text = f"{col} {_TYPES[kind]}"
            if col == pk:
                text += " PRIMARY KEY"
            if col in nn:
                text += " NOT NULL"
            if col in defaults:
                text += f" DEFAULT {_literal(defaults[col])}"
            if col in fks:
                text += f" REFERENCES {fks[col][0]}({fks[col][1]})"
            parts.append(text)
        if isinstance(pk, tuple):
            parts.append(f"PRIMARY KEY ({', '.join(pk)})")
        self.db.execute(f"CREATE TABLE {self.name} ({', '.join(parts)})")
        return self

    def create_index(
        self, columns: Sequence[str], index_name: str | None = None, unique: bool = False, if_not_exists: bool = False
    ) -> PgTable:
        name = index_name or f"idx_{self.name}_{'_'.join(columns)}"  # sqlite_utils' name
        self.db.execute(
            f"CREATE {'UNIQUE ' if unique else ''}INDEX {'IF NOT EXISTS ' if if_not_exists else ''}{name} "
            f"ON {self.name} ({', '.join(columns)})"
        )
        return self

    def add_column(self, col_name: str, col_type: type = str, not_null_default: Any = None) -> PgTable:
        extra = "" if not_null_default is None else f" NOT NULL DEFAULT {_literal(not_null_default)}"
        self.db.execute(f"ALTER TABLE {self.name} ADD COLUMN {col_name} {_TYPES[col_type]}{extra}")
        return self

    def drop(self, ignore: bool = False) -> None:
        self.db.execute(f"DROP TABLE {'IF EXISTS ' if ignore else ''}{self.name}")

    # -- rows ----------------------------------------------------------------------------------

    def insert(self, record: dict[str, Any], replace: bool = False, **_: Any) -> PgTable:
        """Insert one row; `last_pk` is its id when the table has one. `replace` deletes a row
        holding the same key first, as SQLite's INSERT OR REPLACE does (the tables it is used on
        have one unique column besides the id: the notification log's `key`)."""
        cols = list(record)
        if replace and "key" in record:
            self.db.execute(f"DELETE FROM {self.name} WHERE key = ?", [record["key"]])
        returning = " RETURNING id" if self._has_id() else ""
        row = self.db.execute(
            f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}){returning}",
            [record[c] for c in cols],
        )
        if returning:
            inserted = row.fetchone()
            assert inserted is not None  # INSERT … RETURNING of one row answers one row
            self.last_pk = inserted[0]
        else:
            self.last_pk = None
        return self

    def insert_all(self, records: Iterable[dict[str, Any]], **_: Any) -> PgTable:
        records = list(records)
        if records:
            cols = list(dict.fromkeys(c for r in records for c in r))
            self.db.conn.executemany(
                f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [[r.get(c) for c in cols] for r in records],
            )
        return self

    def upsert_all(self, records: Iterable[dict[str, Any]], pk: str, **_: Any) -> PgTable:
        records = list(records)
        if records:
            cols = list(dict.fromkeys(c for r in records for c in r))
            sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != pk)
            self.db.conn.executemany(
                f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT ({pk}) DO UPDATE SET {sets}",
                [[r.get(c) for c in cols] for r in records],
            )
        return self

    def update(self, pk_value: Any, updates: dict[str, Any], **_: Any) -> PgTable:
        cols = list(updates)
        self.db.execute(
            f"UPDATE {self.name} SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?",
            [*(updates[c] for c in cols), pk_value],
        )
        return self

    def _has_id(self) -> bool:
        if self.name not in self.db.has_id:
            self.db.has_id[self.name] = (
                self.db.execute(
                    "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                    "AND table_name = ? AND column_name = 'id'",
                    [self.name],
                ).fetchone()
                is not None
            )
        return self.db.has_id[self.name]


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"
