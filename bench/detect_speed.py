"""How long one detection pass takes over a large fleet, full and incremental.

    python bench/detect_speed.py --functions 10000 [--hours 48] [--repeats 5]
    python bench/detect_speed.py --functions 10000 --hours 2 --incremental 20 [--queues 0.4]

Builds a store directly (no emulator: this measures the pass, not the collector) with
--functions Lambda functions, each with the six series the collector stores for a function at
the period it stores them (slow tier: one point per 5 minutes) for --hours, plus the account;
then times --repeats full passes (load the window from SQLite, run every detector). Prints each
pass and, last, one JSON line with the median `seconds_per_pass` and where the time goes. Target: under 1 s.

--incremental N plays N one-minute cycles after that: each writes the points a collector would
(a fifth of the functions their newest 5-minute point, as the slow tier spread over its interval
does; each active queue its minute), then runs a full pass (load + detectors, not recorded) and
the incremental pass (fleetwatch.agent.incremental, recorded as the agent does), asserts that
both found the same, and reports the CPU seconds (time.process_time) of each. --queues adds that
share of the functions as SQS queues, each consumed by a function, a fifth of them publishing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.catalog import PERIODS, SLOW  # noqa: E402
from fleetwatch.agent.detection import load_inputs, run  # noqa: E402
from fleetwatch.agent.incremental import IncrementalDetection  # noqa: E402
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


QUEUE_SERIES = [
    ("ApproximateNumberOfMessagesVisible", "Maximum"),
    ("ApproximateAgeOfOldestMessage", "Maximum"),
    ("NumberOfMessagesSent", "Sum"),
    ("NumberOfMessagesDeleted", "Sum"),
]


def function_points(rng: random.Random, r: dict, rate: float, times: list[int]) -> list:  # type: ignore[type-arg]
    period = PERIODS[SLOW]
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
        batch.append((key, [(t, round(base * rng.uniform(0.8, 1.2), 3)) for t in times]))
    return batch


def queue_points(rng: random.Random, q: dict, times: list[int]) -> list:  # type: ignore[type-arg]
    batch = []
    for metric, stat in QUEUE_SERIES:
        base = {"ApproximateNumberOfMessagesVisible": 3.0, "ApproximateAgeOfOldestMessage": 5.0}.get(metric, 40.0)
        key = SeriesKey(q["id"], "AWS/SQS", metric, (("QueueName", q["name"]),), stat, 60)
        batch.append((key, [(t, round(base * rng.uniform(0.8, 1.2), 3)) for t in times]))
    return batch


def queue_rows(functions: int, share: float) -> list[dict]:  # type: ignore[type-arg]
    return [
        {
            "id": f"sqs/{ACCOUNT}/{REGION}/q-{i:05d}",
            "account": ACCOUNT,
            "region": REGION,
            "kind": "sqs",
            "name": f"q-{i:05d}",
            "facts": {"retention": 345600, "consumers": [f"fn-{i:05d}"]},
            "tags": {},
        }
        for i in range(int(functions * share))
    ]


def build(store, functions: int, hours: float, now: int, queues: float = 0.0) -> int:  # type: ignore[no-untyped-def]
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
    qrows = queue_rows(functions, queues)
    store.upsert_resources(rows + qrows, now)
    written = 0
    for i, q in enumerate(qrows):
        if i % 5 == 0:  # a fifth of the queues are active: an idle queue publishes nothing
            written += store.write_samples(queue_points(rng, q, list(range(now - 3600, now, 60))))
    for i, r in enumerate(rows[:-1]):
        rate = rng.lognormvariate(3.0, 1.0)
        written += store.write_samples(function_points(rng, r, rate, [start + m * period for m in range(points)]))
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} functions, {written:,} samples", flush=True)
    return written


def incremental(store, args, now: int) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """--incremental cycles: write what a collector would, then a full and an incremental pass."""
    rng = random.Random(7)
    functions = [r for r in store.resources() if r["kind"] == "lambda"]
    queues = [r for r in store.resources() if r["kind"] == "sqs"]
    engine = IncrementalDetection(store)
    settings = {"unusual.enabled": args.unusual == "on"}
    full_cpu, inc_cpu, evaluated, kinds = [], [], [], []
    for c in range(0, args.incremental + 1):
        t = now + c * 60
        if c:
            bucket = t // 300 * 300 - 300
            batch = []
            for i, r in enumerate(functions):
                if i % 5 == c % 5:
                    batch += function_points(rng, r, rng.lognormvariate(3.0, 1.0), [bucket])
            for i, q in enumerate(queues):
                if i % 5 == 0:
                    batch += queue_points(rng, q, [t - 60])
            store.write_samples(batch)
        c0 = time.process_time()
        full = run(load_inputs(store, t, settings=settings))
        c1 = time.process_time()
        inc = engine.detect(t, settings=settings)
        c2 = time.process_time()
        assert inc.said() == full.said(), f"cycle {c}: the incremental pass differs from the full pass"
        full_cpu.append(c1 - c0)
        inc_cpu.append(c2 - c1)
        evaluated.append(engine.last["evaluated"])
        kinds.append(engine.last["kind"])
        print(
            f"cycle {c}: full {full_cpu[-1]:.3f} s CPU, {engine.last['kind']} {inc_cpu[-1]:.3f} s CPU "
            f"({engine.last['why'] or str(engine.last['evaluated']) + ' resources evaluated'}), "
            f"{len(full.findings)} findings, same",
            flush=True,
        )
    steady = [x for x, k in zip(inc_cpu, kinds, strict=True) if k == "incremental"]
    fulls = [x for x, k in zip(inc_cpu, kinds, strict=True) if k == "full"]
    return {
        "full_pass_cpu_seconds": round(statistics.median(full_cpu[1:] or full_cpu), 3),
        "incremental_pass_cpu_seconds": round(statistics.median(steady), 3) if steady else None,
        "incremental_engine_full_pass_cpu_seconds": round(statistics.median(fulls), 3),
        "evaluated_per_incremental_pass": round(
            statistics.median([e for e, k in zip(evaluated, kinds, strict=True) if k == "incremental"] or [0])
        ),
        "cycles": args.incremental,
        "unusual": args.unusual,
        "max_full_pass_cpu_seconds": round(max(full_cpu), 3),
        "max_incremental_pass_cpu_seconds": round(max(steady), 3) if steady else None,
        "identical": True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=10000)
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queues", type=float, default=0.0, help="SQS queues, as a share of the functions")
    parser.add_argument("--incremental", type=int, default=0, metavar="N", help="then N cycles, full vs incremental")
    parser.add_argument(
        "--unusual",
        choices=("on", "off"),
        default="off",
        help="the unusual detector in the --incremental cycles (off: it runs whole in both passes, and its "
        "first passes learn a day of history for 500 new series each, which is not the steady state)",
    )
    parser.add_argument(
        "--store", help="build the store here and reuse it on later runs with the same sizes (it is large)"
    )
    args = parser.parse_args()
    now = 1_800_000_000 // 60 * 60
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(args.store or Path(tmp) / "speed.db")) as store:
        t = time.perf_counter()
        size = args.functions + 1 + int(args.functions * args.queues)
        samples = store.db["samples"].count if len(store.resources()) == size and not args.incremental else 0
        if samples:
            print(f"reusing the store at {args.store}: {samples:,} samples", flush=True)
        else:
            samples = build(store, args.functions, args.hours, now, args.queues)
            print(f"store of {samples:,} samples built in {time.perf_counter() - t:.0f} s", flush=True)
        loads, detects, totals = [], [], []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            inputs = load_inputs(store, now)
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
        out = {
            "functions": args.functions,
            "queues": int(args.functions * args.queues),
            "hours": args.hours,
            "samples": samples,
            "seconds_per_pass": round(statistics.median(totals), 3) if totals else None,
            "load_seconds": round(statistics.median(loads), 3) if loads else None,
            "detect_seconds": round(statistics.median(detects), 3) if detects else None,
            "repeats": args.repeats,
        }
        if args.incremental:
            out |= incremental(store, args, now)
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
