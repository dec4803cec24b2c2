"""How far one agent goes: its CPU and wall time per cycle and per discovery as the fleet grows,
discovery's control-plane calls against each documented quota, store bytes per sample, memory,
and how many agents 50,000 functions and 20,000 queues would need.

    python bench/scale.py                      # 2,500, 10,000 and 20,000 functions, queues at 40 %
    python bench/scale.py --sizes 2500 --cycles 10
    python bench/scale.py --sizes 20000 --save big.jsonl   # sizes in separate runs, then
    python bench/scale.py --load small.jsonl big.jsonl      # the report over all of them

For each size it starts the emulated fleet in its own process (bench/fleetbench.py; one account
and region, padded to that many functions and queues), so this process is the agent alone, and
runs the agent's own loop (`fleetwatch.agent.Agent`, default settings, the history backfill cut
to the re-read window) on the emulator's clock, as `fleetwatch run --emulated-clock` does:

- a cold discovery, and an hourly (incremental) one after the cycles. Discovery's pacer runs on a
  fake clock of its own: its waits are counted ("paced seconds", how long it takes against AWS),
  not slept, and every call it lets go is recorded for the quota figures;
- --cycles cycles of poll, detect and alert, the emulated clock moving a minute each; the first
  reads the whole slow tier, each later one the fifth of it whose turn it is ("slow" cycles,
  with the whole tier, are what an agent without the spread ran every fifth minute).

The agent's CPU is this process's CPU time (all threads; time.process_time), the primary figure on
a machine shared with other work; wall seconds include the emulator's answers. The emulator's own
CPU is read from /proc so that the two can be told apart. Every fifth cycle used to carry the
whole slow tier; the agent now spreads it over the cycles of its interval, so each size also
reports the cycles' spread (the worst steady cycle's CPU over the median's).

The projection (see project()) splits each size's worst steady cycle into its poll, which several
agents share, and the rest (detection, alerts, retention), which the alerting leader does for the
whole fleet; fits each as c * functions**b over all the sizes measured; and finds the fewest agents
whose poll of 50,000 / a functions plus the leader's part stays within 45 s of CPU (the 75 % of
the 60 s interval where an agent warns that it is falling behind). Its last line is JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402

from bench.fleetbench import CREDS, process_cpu_seconds, quota_use, start_fleet  # noqa: E402
from collector.aws import Aws  # noqa: E402
from collector.pacing import Pacer  # noqa: E402
from collector.probes import ALIAS_FRACTION  # noqa: E402
from fleetwatch.agent.loop import BEHIND_SHARE, Agent  # noqa: E402
from fleetwatch.cli.run import EmulatedClock  # noqa: E402
from fleetwatch.clock import FakeClock  # noqa: E402
from fleetwatch.config import load_config  # noqa: E402
from fleetwatch.store import open_store  # noqa: E402

CYCLE_CPU_BUDGET = 60.0  # agent CPU seconds one cycle may take (its interval, on one core)
# What an agent is sized to: the share of the interval at which it warns that it is falling
# behind (fleetwatch.agent.loop.BEHIND_SHARE), not all of it.
AGENT_CPU_TARGET = CYCLE_CPU_BUDGET * BEHIND_SHARE
TARGET_FUNCTIONS, TARGET_QUEUES = 50_000, 20_000


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Timed:
    """Agent CPU, wall and emulator CPU seconds over a block."""

    def __init__(self, emulator_pid: int) -> None:
        self.pid = emulator_pid

    def __enter__(self) -> Timed:
        self.cpu0, self.wall0, self.emu0 = time.process_time(), time.perf_counter(), process_cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0
        self.emulator_cpu = process_cpu_seconds(self.pid) - self.emu0

    def figures(self) -> dict[str, float]:
        return {
            "agent_cpu_seconds": round(self.cpu, 2),
            "wall_seconds": round(self.wall, 2),
            "emulator_cpu_seconds": round(self.emulator_cpu, 2),
        }


def _recording(poll: Any, reports: list[Any]) -> Any:
    """`poll`, keeping each report it returns in `reports`."""

    def recorded(**kw: Any) -> Any:
        reports.append(poll(**kw))
        return reports[-1]

    return recorded


def measure(functions: int, args: argparse.Namespace) -> dict[str, Any]:
    queues = round(functions * args.queue_share)
    t0 = time.perf_counter()
    proc, endpoint = start_fleet(functions=functions, queues=queues, tables=args.tables, databases=args.databases)
    print(
        f"\n== {functions:,} functions, {queues:,} queues: emulated fleet ready in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return run(functions, queues, endpoint, proc.pid, Path(tmp) / "scale.db", args)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def run(
    functions: int, queues: int, endpoint: str, emulator_pid: int, path: Path, args: argparse.Namespace
) -> dict[str, Any]:
    cfg = load_config(
        None,
        environ={
            "FLEETWATCH_STORE_PATH": str(path),
            "FLEETWATCH_AWS_ENDPOINT_URL": endpoint,
            "FLEETWATCH_AWS_REGIONS": "us-east-1",
            "FLEETWATCH_AWS_READ_TIMEOUT": "300s",
            "FLEETWATCH_POLL_BACKFILL": "900s",
            "FLEETWATCH_LOG_LEVEL": "warning",
        },
    )
    clock = EmulatedClock(endpoint)
    aws = Aws.from_config(cfg, session=boto3.session.Session(**CREDS))
    out: dict[str, Any] = {"functions": functions, "queues": queues}
    with open_store(path) as store:
        agent = Agent(cfg, store, aws, clock)
        collector = agent.collector
        # Discovery's pacing on a fake clock of its own: its waits are counted, not slept (on the
        # emulator's clock, each wait would be an HTTP call moving it).
        paced = FakeClock(clock.now())
        released: list[tuple[str, float]] = []
        recording = {"on": True}

        def on_release(key: tuple[str, str, str], t: float) -> None:
            if recording["on"]:
                released.append((key[2], t))

        collector.pacer = Pacer(paced.now, paced.sleep, cfg["discovery.quota_fraction"], on_release=on_release)
        collector.probe_pacer = Pacer(paced.now, paced.sleep, ALIAS_FRACTION)
        collector.sleep, collector.monotonic = paced.sleep, paced.now  # ListMetrics' pacing too

        begun = paced.now()
        with Timed(emulator_pid) as t:
            results = collector.discover()
        assert all(r.status == "ok" for r in results), [(r.source, r.error) for r in results if r.status != "ok"]
        cold = {**t.figures(), "paced_seconds": round(paced.now() - begun), "calls": len(released)}
        print(f"cold discovery: {cold}; {results[0].note}", flush=True)
        cold_quota = quota_use(released)
        recording["on"] = False

        cycles = []
        due = clock.now()
        for i in range(args.cycles):
            clock.set(max(clock.now(), due))
            reports: list[Any] = []
            poll = collector.poll
            collector.poll = _recording(poll, reports)  # type: ignore[method-assign]
            profiler = cProfile.Profile() if args.profile and i > 0 else None
            with Timed(emulator_pid) as t:
                if profiler is not None:
                    profiler.enable()
                cycle = agent.cycle(due)
                if profiler is not None:
                    profiler.disable()
            collector.poll = poll  # type: ignore[method-assign]
            report = reports[0]
            tiers = sorted({tier for ts in report.tiers.values() for tier in ts})
            kind = "first" if i == 0 else ("slow" if "slow" in tiers else "fast")
            row = {
                "kind": kind,
                **t.figures(),
                "samples": report.samples,
                "status": cycle.status,
                "calls": sum(report.calls.values()),
                "stages": getattr(cycle, "stages", {}),
            }
            cycles.append(row)
            print(
                f"cycle {i + 1} ({kind}, tiers {','.join(tiers)}): agent CPU {t.cpu:.1f} s, wall {t.wall:.1f} s, "
                f"emulator CPU {t.emulator_cpu:.1f} s, {report.samples:,} samples, {row['calls']:,} calls, "
                f"stages {row['stages']}",
                flush=True,
            )
            if profiler is not None:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                profiler.dump_stats(Path(args.profile) / f"cycle-{functions}-{i + 1}-{kind}.prof")
            due += 60

        # An hourly discovery: incremental, most of the fleet unchanged.
        clock.set(max(clock.now(), due + 3600))
        paced.set(max(paced.now(), begun + 3600 * math.ceil((paced.now() - begun) / 3600 + 1)))
        recording["on"], n, begun = True, len(released), paced.now()
        with Timed(emulator_pid) as t:
            results = collector.discover()
        hourly = {**t.figures(), "paced_seconds": round(paced.now() - begun), "calls": len(released) - n}
        print(f"hourly discovery: {hourly}; {results[0].note}", flush=True)

        samples = store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        pages = store.db.execute("PRAGMA page_count").fetchone()[0] * store.db.execute("PRAGMA page_size").fetchone()[0]
        out.update(
            {
                "cold_discovery": cold,
                "hourly_discovery": hourly,
                "cycles": cycles,
                "discovery_quota": cold_quota,
                "store_bytes": pages,
                "samples_stored": samples,
                "store_bytes_per_sample": round(pages / samples, 1) if samples else None,
                "agent_rss_mib": round(rss_mib(), 1),
                "agent_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    for kind in ("fast", "slow"):
        got = [c["agent_cpu_seconds"] for c in cycles if c["kind"] == kind]
        walls = [c["wall_seconds"] for c in cycles if c["kind"] == kind]
        if got:
            out[f"{kind}_cycle"] = {
                "agent_cpu_seconds": round(statistics.median(got), 2),
                "max_agent_cpu_seconds": max(got),
                "wall_seconds": round(statistics.median(walls), 2),
            }
    out["max_cycle_agent_cpu_seconds"] = max(c["agent_cpu_seconds"] for c in cycles)
    out["cycle_spread"] = spread(cycles)
    return out


def slow_text(r: dict[str, Any]) -> str:
    """The slow tier's figure in words: a whole-tier cycle if the agent ran one, else the first
    cycle (which reads all of it) and a note that steady cycles each carry a fifth of it."""
    if r.get("slow_cycle"):
        return f"slow cycle {r['slow_cycle']}"
    first = next((c for c in r["cycles"] if c["kind"] == "first"), None)
    if first is None:
        return "no slow-tier cycle measured"
    return (
        f"slow tier spread over its interval (each steady cycle reads a fifth of it; the first cycle, "
        f"which reads all of it, took {first['agent_cpu_seconds']} s agent CPU, {first['wall_seconds']} s wall)"
    )


def spread(cycles: list[dict[str, Any]]) -> dict[str, float] | None:
    """How evenly the work falls on the cycles: the worst steady cycle (every one after the
    first) against the median one, in agent CPU."""
    steady = [c["agent_cpu_seconds"] for c in cycles if c["kind"] != "first"]
    if not steady:
        return None
    return {
        "max_agent_cpu_seconds": max(steady),
        "median_agent_cpu_seconds": round(statistics.median(steady), 2),
        "max_over_median": round(max(steady) / max(statistics.median(steady), 1e-9), 2),
    }


def power_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """y = c * x**b by least squares in log-log space over (x, y) points (b = 1 through the one
    point when there is only one, or when a figure is zero)."""
    pts = [(x, y) for x, y in points if x > 0 and y > 0]
    if len(pts) < 2 or len({x for x, _ in pts}) < 2:
        x, y = pts[-1] if pts else (1.0, 0.0)
        return y / x, 1.0
    lx, ly = [math.log(x) for x, _ in pts], [math.log(y) for _, y in pts]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    b = sum((a - mx) * (c - my) for a, c in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)
    return math.exp(my - b * mx), b


def worst_cycle_split(r: dict[str, Any]) -> tuple[float, float]:
    """The worst steady cycle's agent CPU (every cycle after the first) split into what several
    agents share (the poll: each agent polls only the places it holds) and what they do not
    (detection, alerts, delivery, digest and retention: the alerting leader's, over the whole
    fleet, in issue 20's stage 1)."""
    steady = [c for c in r["cycles"] if c["kind"] != "first"] or r["cycles"]
    worst = max(steady, key=lambda c: c["agent_cpu_seconds"])
    poll = float(worst.get("stages", {}).get("poll", {}).get("cpu_seconds", worst["agent_cpu_seconds"]))
    poll = min(poll, worst["agent_cpu_seconds"])
    return poll, worst["agent_cpu_seconds"] - poll


def project(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Agents for 50,000 functions and 20,000 queues (the same 40 %), from the figures measured.

    Each size's worst steady cycle (agent CPU, all threads) is split into its poll, which several
    agents share (each polls the places it holds), and the rest, which the alerting leader does
    over the whole fleet. Each part is fitted as c * functions**b over every size measured (b is
    printed: 1 is linear), and the projection is the fewest agents a such that
    poll(50,000 / a) + rest(50,000) stays within AGENT_CPU_TARGET: the share of the 60 s interval
    at which the agent warns that it is falling behind. None when the leader's part alone is over
    it: more agents would not help."""
    rows = sorted(results, key=lambda r: r["functions"])
    split = [(r["functions"], *worst_cycle_split(r)) for r in rows]
    pc, pb = power_fit([(n, p) for n, p, _ in split])
    lc, lb = power_fit([(n, rest) for n, _, rest in split])
    leader = lc * TARGET_FUNCTIONS**lb
    agents = None
    for a in range(1, 101):
        if pc * (TARGET_FUNCTIONS / a) ** pb + leader <= AGENT_CPU_TARGET:
            agents = a
            break
    one = pc * TARGET_FUNCTIONS**pb + leader
    return {
        "cycle_agent_cpu_seconds_at_50k": round(one, 1),
        "poll_cpu_fit": {"c": pc, "exponent": round(pb, 2)},
        "leader_cpu_fit": {"c": lc, "exponent": round(lb, 2)},
        "leader_cpu_seconds_at_50k": round(leader, 1),
        "agent_cpu_target_seconds": AGENT_CPU_TARGET,
        "agents_for_50k": agents,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2500,10000,20000", help="functions in the fleet, comma-separated")
    parser.add_argument("--queue-share", type=float, default=0.4, help="queues per function")
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--databases", type=int, default=5)
    parser.add_argument(
        "--cycles", type=int, default=10, help="agent cycles per size (the first reads the whole slow tier)"
    )
    parser.add_argument(
        "--profile", help="write a cProfile of each cycle after the first to this folder (the main thread's calls)"
    )
    parser.add_argument("--save", help="also write each size's figures to this file (JSON lines)")
    parser.add_argument(
        "--load", nargs="*", default=[], help="report on figures saved by earlier runs instead of measuring"
    )
    args = parser.parse_args()
    if args.load:
        results = [
            json.loads(line) for path in args.load for line in Path(path).read_text().splitlines() if line.strip()
        ]
    else:
        results = []
        for n in args.sizes.split(","):
            results.append(measure(int(n), args))
            if args.save:
                with open(args.save, "a") as f:
                    f.write(json.dumps(results[-1]) + "\n")
    results.sort(key=lambda r: r["functions"])
    for r in results:
        share = max(q["peak_share_of_quota"] for q in r["discovery_quota"].values())
        print(
            f"{r['functions']:,} functions / {r['queues']:,} queues: fast "
            f"cycle {r.get('fast_cycle')}, {slow_text(r)}, "
            f"cold discovery {r['cold_discovery']}, hourly discovery {r['hourly_discovery']}, "
            f"{r['store_bytes_per_sample']} store bytes a sample, agent {r['agent_rss_mib']} MiB "
            f"(peak {r['agent_peak_rss_mib']} MiB), discovery at most {share:.0%} of any quota",
            flush=True,
        )
    for r in results:
        poll, rest = worst_cycle_split(r)
        print(
            f"{r['functions']:,} functions: worst steady cycle {poll + rest:.1f} s agent CPU (poll {poll:.1f} s, "
            f"detection/alerts/retention {rest:.1f} s); cycles' spread {spread(r['cycles'])}",
            flush=True,
        )
    projection = project(results)
    agents = projection["agents_for_50k"]
    print(
        f"projected from {len(results)} size(s): poll CPU ~ functions^{projection['poll_cpu_fit']['exponent']}, "
        f"the rest ~ functions^{projection['leader_cpu_fit']['exponent']} (least squares in log-log; 1 is linear). "
        f"At {TARGET_FUNCTIONS:,} functions and {TARGET_QUEUES:,} queues one agent's worst cycle would take "
        f"{projection['cycle_agent_cpu_seconds_at_50k']} s CPU, of which {projection['leader_cpu_seconds_at_50k']} s "
        f"is the alerting leader's (detection, alerts, retention: not shared). Agents are sized to "
        f"{AGENT_CPU_TARGET:.0f} s ({BEHIND_SHARE:.0%} of the {CYCLE_CPU_BUDGET:.0f} s interval, where an agent warns "
        f"that it is falling behind): the fewest a with poll(50,000/a) + leader(50,000) <= {AGENT_CPU_TARGET:.0f} s -> "
        + (
            f"{agents} agent(s)"
            if agents
            else "none suffices: the leader's part alone is over it (make detection incremental first)"
        ),
        flush=True,
    )
    print(
        json.dumps(
            {
                "functions": [r["functions"] for r in results],
                "queues": [r["queues"] for r in results],
                "max_cycle_agent_cpu_seconds": max(r["max_cycle_agent_cpu_seconds"] for r in results),
                "discovery_quota_share_max": max(
                    q["peak_share_of_quota"] for r in results for q in r["discovery_quota"].values()
                ),
                **projection,
                "sizes": results,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
