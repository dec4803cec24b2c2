"""fleetwatch: observability and alerting for AWS serverless fleets.

This package is the spine: configuration, the store and its migrations, the clock and the CLI.
"""

__version__ = "0.1.0"
