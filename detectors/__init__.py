"""Detectors: pure functions of series, resource facts and a clock, returning findings.

No boto3, no SQL and no wall clock in here. Importing the package registers every detector.
"""

from detectors import async_jobs, coldstarts, connections, limits, outcomes, queues, tables, unusual  # noqa: F401  (registration)
from detectors.base import REGISTRY

# Every series some detector reads: the pass loads these and nothing else.
_MODULES = (async_jobs, coldstarts, connections, limits, outcomes, queues, tables, unusual)
READS: frozenset[tuple[str, str]] = frozenset().union(*(m.READS for m in _MODULES))
# Series some detector holds against the same hour of the week in earlier weeks.
WEEKLY: frozenset[tuple[str, str]] = frozenset().union(*(getattr(m, "WEEKLY", frozenset()) for m in _MODULES))
# Series whose newest point some detector needs however old it is (a schedule's last run).
LAST_SEEN: frozenset[tuple[str, str]] = frozenset().union(*(getattr(m, "LAST_SEEN", frozenset()) for m in _MODULES))

# How far back from `now` detectors look (seconds), and the times in resources' facts they hold
# against `now`, by kind: what the incremental pass (fleetwatch/agent/incremental.py) wakes a
# resource for when no new point arrived. Detectors in WHOLE are run whole.
HORIZONS: frozenset[int] = frozenset().union(*(getattr(m, "HORIZONS", frozenset()) for m in _MODULES))
FACT_TIMES: dict[str, list] = {}
for _m in _MODULES:
    for _kind, _fn in getattr(_m, "FACT_TIMES", {}).items():
        FACT_TIMES.setdefault(_kind, []).append(_fn)
# Kinds whose answer moves with `now` alone (a schedule's missed runs): evaluated every pass.
ALWAYS_DUE = frozenset({"schedule"})
# Detectors that keep state across passes and feed every series at its bucket edges: run whole.
WHOLE = frozenset({"unusual"})

__all__ = ["ALWAYS_DUE", "FACT_TIMES", "HORIZONS", "LAST_SEEN", "READS", "REGISTRY", "WEEKLY", "WHOLE"]
