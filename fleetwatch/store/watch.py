"""What this process wrote to a store, for the incremental detection pass
(fleetwatch/agent/incremental.py): which series got points (series id -> the newest timestamp
written), which resources were written (ids), and how many times samples were pruned.

Kept by store path, not by Store object, so that writes through another Store on the same file
(the collector's background discovery has its own connection) are seen too. Writes by another
process are not: see docs/detectors.md (the incremental pass is off where several agents write)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Watch:
    series: dict[int, int] = field(default_factory=dict)
    resources: set[str] = field(default_factory=set)


_WATCHES: dict[str, list[Watch]] = {}
_PRUNES: dict[str, int] = {}
_LOCK = threading.Lock()


def watch(path: str) -> Watch:
    """A Watch that every later write to the store at `path` fills; the caller empties it."""
    seen = Watch()
    with _LOCK:
        _WATCHES.setdefault(path, []).append(seen)
    return seen


def unwatch(path: str, seen: Watch) -> None:
    with _LOCK:
        watches = _WATCHES.get(path, [])
        watches[:] = [w for w in watches if w is not seen]


def take(seen: Watch) -> tuple[dict[int, int], set[str]]:
    """What was written since the last take, emptied."""
    with _LOCK:
        series, resources = dict(seen.series), set(seen.resources)
        seen.series.clear()
        seen.resources.clear()
    return series, resources


def note_samples(path: str, rows: Iterable[tuple[int, int, float]]) -> None:
    if not _WATCHES.get(path):
        return
    newest: dict[int, int] = {}
    for sid, ts, _ in rows:
        if ts > newest.get(sid, -1):
            newest[sid] = ts
    with _LOCK:
        for seen in _WATCHES.get(path, []):
            for sid, ts in newest.items():
                if ts > seen.series.get(sid, -1):
                    seen.series[sid] = ts


def note_resources(path: str, ids: Iterable[str]) -> None:
    if not _WATCHES.get(path):
        return
    ids = set(ids)
    with _LOCK:
        for seen in _WATCHES.get(path, []):
            seen.resources |= ids


def note_prune(path: str) -> None:
    with _LOCK:
        _PRUNES[path] = _PRUNES.get(path, 0) + 1


def prunes(path: str) -> int:
    return _PRUNES.get(path, 0)
