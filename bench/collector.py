"""What a full poll costs: GetMetricData calls against the minimum, the collector's time against
bare boto3 making the same calls, samples stored per second, and the monthly CloudWatch bill
against polling the whole catalog every minute.

    python bench/collector.py --functions 1000 --queues 200 --tables 50 --databases 5

Starts the emulated fleet in its own process (as AWS would be), padded with generated
resources in one account and region, discovers it, then --repeats times: moves the emulated
clock on five minutes (so both tiers are due) and times (a) the collector's poll of every metric
(plan, fetch, parse, store; the state probes are off so both sides make the same calls) and (b)
bare boto3 sending the very same GetMetricData requests with no planning or storing. The two
alternate in order each repeat. Prints each repeat and, last, one JSON line; quote its medians.
Targets: get_metric_data_calls == min_calls, overhead_ratio <= 1.3, monthly cost <= a third of
naive.

With --discovery-hours N (e.g. `--functions 10000 --discovery-hours 7`), it first measures
discovery against the control-plane quotas: a cold discovery, then one an hour for N hours, each
paced by the collector's own pacer on a fake clock (the waits are counted, not slept). Every call
the pacer lets go is recorded; it prints, per quota, the calls made in the busiest hour and the
most made within any one second, against the documented quota (target: under half of each), and
adds them to the JSON line as "discovery".

It also projects the monitoring-account mode (--monitoring-accounts, default 10): the measured
fleet dealt over that many accounts, GetMetricData calls an hour through one monitoring account
against each account polling its own, and the monthly cost of each ("monitoring_account").
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from bench.fleetbench import CREDS, RemoteClock, quota_use, start_fleet  # noqa: E402
from collector.aws import Aws  # noqa: E402
from collector.pacing import Pacer  # noqa: E402
from collector.plan import MAX_QUERIES  # noqa: E402
from collector.poll import Collector  # noqa: E402
from collector.report import project  # noqa: E402
from fleetwatch.clock import FakeClock  # noqa: E402
from fleetwatch.store import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--queues", type=int, default=200)
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--databases", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scenario", default="healthy")
    parser.add_argument(
        "--discovery-hours",
        type=int,
        default=0,
        help="also measure discovery's control-plane calls over this many hours",
    )
    parser.add_argument(
        "--monitoring-accounts",
        type=int,
        default=10,
        help="project the monitoring-account mode for the fleet spread over this many accounts",
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    proc, endpoint = start_fleet(
        functions=args.functions,
        queues=args.queues,
        tables=args.tables,
        databases=args.databases,
        scenario=args.scenario,
    )
    print(f"emulated fleet ready at {endpoint} in {time.perf_counter() - t0:.0f} s", flush=True)
    try:
        run(args, endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(args: argparse.Namespace, endpoint: str) -> None:
    clock = RemoteClock(endpoint)
    session = boto3.session.Session(**CREDS)
    aws = Aws(
        regions=["us-east-1"], role_arns=[], endpoint_url=endpoint, session=session, read_timeout=300, max_attempts=1
    )
    # Its own session: the collector tunes how its sessions parse timestamps; bare boto3 must
    # run with every default.
    bare = boto3.session.Session(**CREDS).client(
        "cloudwatch",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=Config(read_timeout=300, retries={"total_max_attempts": 1}),
    )
    discovery = measure_discovery(args, aws, clock) if args.discovery_hours else None
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "bench.db") as store:
        # Discovery's pacing waits on a fake clock of its own: the emulator's clock moves only
        # when told, so a pacer on it would wait for ever (its calls are measured above).
        own = FakeClock(clock.now())
        collector = Collector(store, aws, clock, backfill=0, probes=False, pacer=Pacer(own.now, own.sleep))
        t = time.perf_counter()
        collector.discover()
        print(f"discovered {len(store.resources())} resources in {time.perf_counter() - t:.1f} s", flush=True)
        collector.poll(tiers=("fast", "slow"))  # warm-up: series rows created, caches filled

        place = aws.places()[0]
        polls, sdks, calls, samples, queries = [], [], [], [], 0
        for i in range(args.repeats):
            clock.advance(300)
            now = int(clock.now())
            pp, chunks = collector._plan(place, now, ("fast", "slow"))
            queries = len(pp.plan.queries)
            requests = [
                [q.request(f"q{j}") for j, q in enumerate(c.queries[k : k + MAX_QUERIES])]
                for c in chunks
                for k in range(0, len(c.queries), MAX_QUERIES)
            ]
            window = (chunks[0].start, chunks[-1].end)

            def sdk(requests: list[list[dict[str, Any]]], window: tuple[int, int]) -> float:
                started = time.perf_counter()
                for batch in requests:
                    token = None
                    while True:
                        extra = {"NextToken": token} if token else {}
                        page = bare.get_metric_data(
                            MetricDataQueries=batch,
                            StartTime=window[0],
                            EndTime=window[1],
                            ScanBy="TimestampAscending",
                            **extra,
                        )
                        token = page.get("NextToken")
                        if not token:
                            break
                return time.perf_counter() - started

            def poll() -> float:
                started = time.perf_counter()
                report = collector.poll(tiers=("fast", "slow"))
                elapsed = time.perf_counter() - started
                assert not report.errors, report.summary()
                calls.append(report.calls["cloudwatch:GetMetricData"])
                samples.append(report.samples)
                return elapsed

            if i % 2:
                sdks.append(sdk(requests, window))
                polls.append(poll())
            else:
                polls.append(poll())
                sdks.append(sdk(requests, window))
            print(
                f"repeat {i + 1}: {queries} queries, {calls[-1]} calls, "
                f"poll {polls[-1]:.2f} s, bare boto3 {sdks[-1]:.2f} s, "
                f"ratio {polls[-1] / sdks[-1]:.2f}, {samples[-1]} samples",
                flush=True,
            )

        by_place: dict[str, list[dict[str, Any]]] = {}
        for r in store.resources():
            by_place.setdefault(f"{r['account']}/{r['region']}", []).append(r)
        p = project(by_place, 60, 300)
        monitoring = project_monitoring(store.resources(), args.monitoring_accounts)
        poll_s, sdk_s = statistics.median(polls), statistics.median(sdks)
        result = {
            "functions": args.functions,
            "queues": args.queues,
            "tables": args.tables,
            "databases": args.databases,
            "queries": queries,
            "fast_queries": p.fast_queries,
            "slow_queries": p.slow_queries,
            "get_metric_data_calls": int(statistics.median(calls)),
            "min_calls": math.ceil(queries / MAX_QUERIES),
            "poll_seconds": round(poll_s, 3),
            "sdk_seconds": round(sdk_s, 3),
            "overhead_ratio": round(poll_s / sdk_s, 3),
            "samples": int(statistics.median(samples)),
            "samples_per_second": round(statistics.median(samples) / poll_s),
            "monthly_cost_usd": round(p.monthly_cost_usd, 2),
            "naive_monthly_cost_usd": round(p.naive_monthly_cost_usd, 2),
            "cost_ratio": round(p.monthly_cost_usd / p.naive_monthly_cost_usd, 3),
            "repeats": args.repeats,
            **({"discovery": discovery} if discovery else {}),
            "monitoring_account": monitoring,
        }
        print(json.dumps(result), flush=True)


def project_monitoring(resources: list[dict[str, Any]], accounts: int) -> dict[str, Any]:
    """Monitoring-account mode against each account polling its own: the measured fleet's plan
    dealt round-robin over `accounts` accounts of one Region (the emulator pads one account), its
    GetMetricData calls an hour both ways (collector/report.py, the figures `fleetwatch plan`
    prints) and the cost, which is the same: GetMetricData is billed per metric, not per call."""
    accounts = max(1, accounts)
    dealt = {f"{i:012d}/us-east-1": resources[i::accounts] for i in range(accounts)}
    p = project(dealt, 60, 300)
    out = {
        "accounts": accounts,
        "calls_per_hour_each_account": round(p.calls_per_hour),
        "calls_per_hour_monitoring_account": round(p.monitoring_calls_per_hour),
        "monthly_cost_usd_each_account": round(p.monthly_cost_usd, 2),
        "monthly_cost_usd_monitoring_account": round(p.monthly_cost_usd, 2),
    }
    print(
        f"monitoring-account mode over {accounts} accounts: "
        f"{out['calls_per_hour_monitoring_account']:,} GetMetricData calls an hour "
        f"against {out['calls_per_hour_each_account']:,} with each account "
        f"polling its own; ${out['monthly_cost_usd_each_account']:,.2f} "
        "a month either way (billed per metric, not per call)",
        flush=True,
    )
    return out


def measure_discovery(args: argparse.Namespace, aws: Aws, clock: RemoteClock) -> dict[str, Any]:
    """Discovery's control-plane calls per quota: busiest hour and busiest second, measured from
    the times the pacer let each call go (on its own fake clock, so nothing sleeps)."""
    paced = FakeClock(clock.now())
    released: list[tuple[str, float]] = []
    pacer = Pacer(paced.now, paced.sleep, on_release=lambda key, t: released.append((key[2], t)))
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "discovery.db") as store:
        collector = Collector(store, aws, clock, backfill=0, probes=False, pacer=pacer)
        start = paced.now()
        for hour in range(args.discovery_hours + 1):
            if hour:
                clock.advance(3600)
                paced.set(max(paced.now(), start + hour * 3600))
            begun, n = paced.now(), len(released)
            results = collector.discover()
            assert all(r.status == "ok" for r in results), [r.error for r in results]
            print(
                f"discovery {hour}: {len(released) - n} paced calls over "
                f"{paced.now() - begun:.0f} s (paced); {results[0].note}",
                flush=True,
            )
    return quota_use(released)


if __name__ == "__main__":
    main()
