"""Incremental discovery: only what changed gets detail calls.

Discovery lists each kind (one call a page) and then asks per resource for what the list does
not carry (tags, concurrency, attributes). A resource whose list entry shows no change since the
stored facts keeps its stored detail; see `Prior`.
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

# Stored with each resource's facts: when its detail calls were last made, and the change
# marker its list call carried then.
DETAIL_AT, DETAIL_MARKER = "detail_at", "detail_marker"


class _HasFacts(Protocol):
    facts: dict[str, Any]


F = TypeVar("F", bound=_HasFacts)  # discovery.Found (not imported: discovery imports this module)


@dataclass
class Prior:
    """Incremental discovery: what earlier discoveries stored for this place. A resource whose
    change marker (read from the list call: Lambda's RevisionId and LastModified, a Scheduler
    schedule's LastModificationDate, ...) equals the stored one, and whose detail is younger than
    its refresh age, keeps its stored detail (tags, and the facts only detail calls give) and gets
    no detail call. Tags and some settings change without moving any marker, so every detail is
    asked again after at most `max_age` seconds; each resource's age is spread between half and
    all of it (by a hash of its name) so that refreshes do not all fall due in one discovery.
    `max_age` 0 asks everything every time."""

    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    now: int = 0
    max_age: int = 0
    reused: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, rows: list[dict[str, Any]], now: int, max_age: int) -> Prior:
        return cls({(r["kind"], r["name"]): r for r in rows}, now, max_age)

    def refresh_age(self, kind: str, name: str) -> float:
        return self.max_age * (0.5 + (zlib.crc32(f"{kind}/{name}".encode()) % 1000) / 2000)

    def stored(self, kind: str, name: str, marker: str) -> dict[str, Any] | None:
        """The stored row if its detail can be kept, else None (ask again)."""
        row = self.rows.get((kind, name))
        if row is None or self.max_age <= 0:
            return None
        facts = row.get("facts") or {}
        at = facts.get(DETAIL_AT)
        if (
            facts.get(DETAIL_MARKER) != marker
            or not isinstance(at, (int, float))
            or not 0 <= self.now - at < self.refresh_age(kind, name)
        ):
            return None
        with self._lock:
            self.reused[kind] += 1
        return row

    def kept(self, row: dict[str, Any], listed: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
        """A stored row's tags and facts, with what the list call gave now on top."""
        return dict(row.get("tags") or {}), {**(row.get("facts") or {}), **listed}

    def stamp(self, found: F, marker: str) -> F:
        found.facts[DETAIL_AT], found.facts[DETAIL_MARKER] = self.now, marker
        return found
