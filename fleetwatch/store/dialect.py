"""What differs between the two store backends, in one place, so the SQL elsewhere is written
once: written for SQLite with `?` placeholders, and carried to PostgreSQL by `to_pg`.

Shared SQL keeps to what both understand: `INSERT … ON CONFLICT (…) DO UPDATE SET col =
excluded.col`, `RETURNING id`, columns qualified by their table inside an upsert's SET. What
they spell differently is asked of the store's `Dialect`: the two-argument MAX/MIN (SQLite's
scalar functions, PostgreSQL's GREATEST/LEAST) and reading a key of a JSON text column.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    greatest: str  # the larger of two values
    least: str

    def json_text(self, column: str, key: str) -> str:
        """A top-level string key of a JSON object stored as text, as SQL text."""
        if not key.replace("_", "").isalnum():
            raise ValueError(f"not a JSON key fleetwatch writes: {key!r}")
        if self.name == "postgresql":
            return f"({column})::jsonb ->> '{key}'"
        return f"json_extract({column}, '$.{key}')"

    def json_value(self, column: str, key: str) -> str:
        """A top-level key of a JSON object stored as text, as a value: SQLite answers numbers as
        numbers and arrays or objects as JSON text, psycopg answers jsonb as Python values, so
        callers take either (json_loaded)."""
        self.json_text(column, key)  # the same check of the key
        if self.name == "postgresql":
            return f"({column})::jsonb -> '{key}'"
        return f"json_extract({column}, '$.{key}')"

    @property
    def ordered_join(self) -> str:
        """A join SQLite's planner must take in the order written (CROSS JOIN … ON, SQLite's way
        to fix the order); PostgreSQL plans a plain JOIN itself and refuses ON after CROSS JOIN."""
        return "JOIN" if self.name == "postgresql" else "CROSS JOIN"

    def id_list(self, alias: str = "j") -> tuple[str, str]:
        """A table of the integer ids in one JSON array parameter (`?`), for a join: (the FROM
        item, the id column). One parameter however many ids, in both dialects."""
        if self.name == "postgresql":
            return f"jsonb_array_elements_text(CAST(? AS jsonb)) AS {alias}(value)", f"CAST({alias}.value AS BIGINT)"
        return f"json_each(?) {alias}", f"{alias}.value"


def json_loaded(value: object) -> object:
    """A json_value answer as a Python value, from either dialect."""
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


SQLITE = Dialect("sqlite", greatest="MAX", least="MIN")
POSTGRESQL = Dialect("postgresql", greatest="GREATEST", least="LEAST")


def dialect_of(db: object) -> Dialect:
    """The dialect of a store's connection or database: PostgreSQL's (fleetwatch.store.pgdb)
    say so; anything else is SQLite."""
    return POSTGRESQL if getattr(db, "dialect", "sqlite") == "postgresql" else SQLITE


def is_url(target: object) -> bool:
    """store.url values name a PostgreSQL database; anything else is a SQLite file's path."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


@functools.lru_cache(maxsize=2048)
def to_pg(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s`, and a literal `%` doubled (psycopg reads `%`
    everywhere in a query that has parameters, inside quotes too). `?` inside a quoted literal
    or identifier is left alone."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if ch == "%":
            out.append("%%")
        elif quote:
            out.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)
