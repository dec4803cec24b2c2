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

__all__ = ["LAST_SEEN", "READS", "REGISTRY", "WEEKLY"]
