"""Detectors: pure functions of series, resource facts and a clock, returning findings.

No boto3, no SQL and no wall clock in here. Importing the package registers every detector.
"""

from detectors import coldstarts, connections, limits, outcomes, queues, tables  # noqa: F401  (registration)
from detectors.base import REGISTRY

__all__ = ["REGISTRY"]
