"""How fast the emulated fleet answers a full-size GetMetricData call.

    python bench/emulator.py --functions 10000

Starts the emulator on loopback with a fleet padded to --functions Lambda functions, then times
--repeats GetMetricData calls of 500 queries (100 functions × 5 metrics, as a collector would ask)
over 60 one-minute points, each call on functions not asked before so no cache helps. Prints
each time and, last, a JSON line whose median_seconds is the figure to quote. Target: under 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from fleetwatch.clock import FakeClock  # noqa: E402
from simulator.cli import start_emulator  # noqa: E402

METRICS = [
    ("Invocations", "Sum"),
    ("Errors", "Sum"),
    ("Duration", "p99"),
    ("ConcurrentExecutions", "Maximum"),
    ("Throttles", "Sum"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--scenario", default="healthy")
    args = parser.parse_args()
    per_call = 500 // len(METRICS)
    if args.functions < per_call * (args.repeats + 1):
        parser.error(
            f"--functions must be at least {per_call * (args.repeats + 1)} so that every call asks new functions"
        )

    now = int(time.time()) // 60 * 60
    t0 = time.perf_counter()
    emulator = start_emulator(
        args.scenario,
        functions=args.functions,
        clock=FakeClock(now),
        anchor=now,
        progress=lambda msg: print(f"  {msg}", file=sys.stderr),
    )
    setup = time.perf_counter() - t0
    print(f"fleet of {len(emulator.model.fleet.resources)} resources ready in {setup:.1f} s at {emulator.endpoint}")
    try:
        cw = boto3.client(
            "cloudwatch",
            endpoint_url=emulator.endpoint,
            region_name="us-east-1",
            aws_access_key_id="AKIABENCHFLEETWATCH1",
            aws_secret_access_key="bench",
            config=Config(retries={"total_max_attempts": 1}, read_timeout=300),
        )
        generated = [r.name for r in emulator.model.fleet.resources if r.tags.get("generated")]

        def call(batch: int) -> tuple[float, int]:
            names = generated[batch * per_call : (batch + 1) * per_call]
            queries = [
                {
                    "Id": f"q{i}_{j}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/Lambda",
                            "MetricName": metric,
                            "Dimensions": [{"Name": "FunctionName", "Value": name}],
                        },
                        "Period": 60,
                        "Stat": stat,
                    },
                }
                for i, name in enumerate(names)
                for j, (metric, stat) in enumerate(METRICS)
            ]
            start = time.perf_counter()
            result = cw.get_metric_data(MetricDataQueries=queries, StartTime=now - 3600, EndTime=now)
            elapsed = time.perf_counter() - start
            assert len(result["MetricDataResults"]) == len(queries) == 500 and "NextToken" not in result
            return elapsed, sum(len(r["Values"]) for r in result["MetricDataResults"])

        warm, _ = call(0)  # builds the series registry once; not counted
        print(f"first call (builds the series index for {args.functions} functions): {warm:.3f} s")
        times = []
        for batch in range(1, args.repeats + 1):
            elapsed, points = call(batch)
            times.append(elapsed)
            print(f"call {batch}: 500 queries, {points} datapoints, {elapsed:.3f} s")
        median = statistics.median(times)
        print(f"median {median:.3f} s over {len(times)} calls (target < 1 s)")
        print(
            json.dumps(
                {
                    "benchmark": "emulator_get_metric_data",
                    "functions": args.functions,
                    "queries": 500,
                    "points_per_query": 60,
                    "repeats": len(times),
                    "median_seconds": round(median, 4),
                    "min_seconds": round(min(times), 4),
                    "max_seconds": round(max(times), 4),
                    "setup_seconds": round(setup, 1),
                }
            )
        )
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
