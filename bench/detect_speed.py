"""How long one detection pass takes over a large fleet.

    python bench/detect_speed.py --functions 10000 [--hours 48] [--repeats 5]

Builds a store directly (no emulator: this measures the pass, not the collector) with
--functions Lambda functions, each with the six series the collector stores for a function at
the period it stores them (slow tier: one point per 5 minutes) for --hours, plus the account;
then times --repeats full passes (load the window from SQLite, run every detector). Prints each
pass and, last, one JSON line with the median `seconds_per_pass` and where the time goes. Target: under 1 s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.catalog import PERIODS, SLOW  # noqa: E402
from fleetwatch.agent.detection import load_inputs, run  # noqa: E402
from fleetwatch.store import SeriesKey, open_store  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"
FUNCTION_SERIES = [
    ("Invocations", "Sum"),
    ("Errors", "Sum"),
    ("Throttles", "Sum"),
    ("Duration", "p95"),
    ("Duration", "p99"),
    ("ConcurrentExecutions", "Maximum"),
]


def build(store, functions: int, hours: float, now: int) -> int:  # type: ignore[no-untyped-def]
    rng = random.Random(functions)
    period = PERIODS[SLOW]  # every per-function series is in the slow tier
    points = int(hours * 3600 // period)
    start = now - points * period
    rows = [
        {
            "id": f"lambda/{ACCOUNT}/{REGION}/fn-{i:05d}",
            "account": ACCOUNT,
            "region": REGION,
            "kind": "lambda",
            "name": f"fn-{i:05d}",
            "facts": {"memory": 512},
            "tags": {"service": f"svc-{i % 50:02d}"},
        }
        for i in range(functions)
    ]
    rows.append(
        {
            "id": f"lambda_account/{ACCOUNT}/{REGION}/account",
            "account": ACCOUNT,
            "region": REGION,
            "kind": "lambda_account",
            "name": "account",
            "facts": {"concurrency_limit": 1000},
            "tags": {},
        }
    )
    store.upsert_resources(rows, now)
    written = 0
    for i, r in enumerate(rows[:-1]):
        rate = rng.lognormvariate(3.0, 1.0)
        batch = []
        for metric, stat in FUNCTION_SERIES:
            base = {
                "Invocations": rate,
                "Errors": rate * 0.001,
                "Throttles": 0.0,
                "Duration": 120.0,
                "ConcurrentExecutions": max(1.0, rate / 60),
            }[metric] * (1.5 if stat == "p99" else 1.0)
            key = SeriesKey(r["id"], "AWS/Lambda", metric, (("FunctionName", r["name"]),), stat, period)
            batch.append((key, [(start + m * period, round(base * rng.uniform(0.8, 1.2), 3)) for m in range(points)]))
        written += store.write_samples(batch)
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} functions, {written:,} samples", flush=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=10000)
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--store", help="build the store here and reuse it on later runs with the same sizes (it is large)"
    )
    args = parser.parse_args()
    now = 1_800_000_000 // 60 * 60
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(args.store or Path(tmp) / "speed.db")) as store:
        t = time.perf_counter()
        samples = store.db["samples"].count if len(store.resources()) == args.functions + 1 else 0
        if samples:
            print(f"reusing the store at {args.store}: {samples:,} samples", flush=True)
        else:
            samples = build(store, args.functions, args.hours, now)
            print(f"store of {samples:,} samples built in {time.perf_counter() - t:.0f} s", flush=True)
        loads, detects, totals = [], [], []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            inputs = load_inputs(store, now + i * 60)
            t1 = time.perf_counter()
            detection = run(inputs)
            t2 = time.perf_counter()
            assert all(r.status == "ok" for r in detection.runs), [r.error for r in detection.runs]
            loads.append(t1 - t0)
            detects.append(t2 - t1)
            totals.append(t2 - t0)
            print(
                f"pass {i + 1}: {totals[-1]:.2f} s (load {loads[-1]:.2f} s, detectors {detects[-1]:.2f} s), "
                f"{sum(len(s) for s in inputs.series.values()):,} points in the window",
                flush=True,
            )
        print(
            json.dumps(
                {
                    "functions": args.functions,
                    "hours": args.hours,
                    "samples": samples,
                    "seconds_per_pass": round(statistics.median(totals), 3),
                    "load_seconds": round(statistics.median(loads), 3),
                    "detect_seconds": round(statistics.median(detects), 3),
                    "repeats": args.repeats,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
