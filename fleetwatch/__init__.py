"""fleetwatch: observability and alerting for AWS serverless fleets.

This package is the ground floor: configuration (config/), the store and its migrations (store/),
the clock, logs, telemetry, the store lock and the HTTP server thread. Above it sit the domain
packages (collector, detectors, alerts, web), then the agent (fleetwatch.agent) and the CLI
(fleetwatch.cli). Imports only run downward: see docs/architecture.md and tests/test_layers.py.
"""

__version__ = "0.1.0"
