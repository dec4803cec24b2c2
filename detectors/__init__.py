"""Detectors: pure functions of series, resource facts and a clock, returning findings.

No boto3, no SQL and no wall clock in here. Importing the package registers every detector.
"""

from detectors import coldstarts, connections, limits, outcomes, queues, tables  # noqa: F401  (registration)
from detectors.base import REGISTRY

# Every series some detector reads: the pass loads these and nothing else.
READS: frozenset[tuple[str, str]] = frozenset().union(*(m.READS for m in (coldstarts, connections, limits, outcomes, queues, tables)))

__all__ = ["READS", "REGISTRY"]
