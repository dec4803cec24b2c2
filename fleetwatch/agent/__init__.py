"""The agent behind `fleetwatch run`: the loop (loop.py), the detection pass over the store
(detection.py) and the alert pipeline wired from the configuration (alerting.py).

It sits above the domain packages (collector, detectors, alerts, web), which it runs, and below
the CLI (fleetwatch.cli), which starts it. See docs/architecture.md."""
