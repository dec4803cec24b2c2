"""The resource page's "Not published" table: the planned series AWS does not publish for a
resource, and why (collector/published.py stores them as the `unpublished` fact after reading
ListMetrics), less those the store has samples of since."""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def not_published(
    conn: sqlite3.Connection, facts: dict[str, Any], series: list[dict[str, Any]]
) -> list[dict[str, str]]:
    """The `unpublished` rows still unpublished: ListMetrics is read at most daily (collector/
    poll.py VERIFY_INTERVAL), and a series AWS sends only when non-zero appears as soon as it is
    not. In `make demo`, posts' WriteThrottleEvents was "not published" beside its own chart after
    the hot partition."""
    return [u for u in unpublished(facts) if not _stored(conn, series, u)]


def unpublished(facts: dict[str, Any]) -> list[dict[str, str]]:
    """The `unpublished` fact as rows of text; malformed rows are skipped."""
    rows = facts.get("unpublished")
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        if isinstance(row, dict) and row.get("metric"):
            stats = row["stats"] if isinstance(row.get("stats"), list) else []
            out.append(
                {
                    "metric": str(row["metric"]),
                    "stats": ", ".join(str(s) for s in stats),
                    "dimensions": str(row.get("dimensions", "")),
                    "reason": str(row.get("reason", "")),
                }
            )
    return out


def _stored(conn: sqlite3.Connection, series: list[dict[str, Any]], row: dict[str, str]) -> bool:
    """Whether the store holds samples of the row's metric with its dimensions (written as
    collector/published.py writes them: "Name=value, Name=value", sorted by name)."""
    for s in series:
        if s["metric"] != row["metric"]:
            continue
        try:
            dims = json.loads(s.get("dimensions") or "{}")
        except ValueError:
            continue
        if not isinstance(dims, dict) or ", ".join(f"{k}={v}" for k, v in sorted(dims.items())) != row["dimensions"]:
            continue
        if any(True for _ in conn.execute("SELECT 1 AS one FROM samples WHERE series_id = ? LIMIT 1", [s["id"]])):
            return True
    return False
