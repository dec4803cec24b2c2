"""`fleetwatch emulate` and `fleetwatch demo`: start the emulated fleet and say what it serves."""

from __future__ import annotations

import argparse
import errno
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetwatch.clock import Clock, FakeClock, SystemClock
from simulator.fleet import Fleet, FleetError, load_fleet
from simulator.model import FleetModel
from simulator.provision import provision
from simulator.scenario import load_scenario, scenario_fleet, scenario_names
from simulator.server import Emulator

# The demo starts 4 h before its anchor (on the hour) and polls until 30 min after it: the tour
# stages every failure mode inside that, so each one opens, pages and resolves while it watches.
DEMO_LEAD, DEMO_TAIL = 4 * 3600, 30 * 60
DEMO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAFLEETWATCHDEMO01", "AWS_SECRET_ACCESS_KEY": "emulated-secret-key"}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_emulator(
    scenario: str,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    seed: int | None = None,
    functions: int = 0,
    extra: dict[str, int] | None = None,
    anchor: float | None = None,
    clock: Clock | None = None,
    progress: Any = lambda _: None,
    fleet_dirs: tuple[Path, ...] = (),
) -> Emulator:
    """Load, serve and provision a fleet; returns the running Emulator (call .stop()). The
    scenario is a name or a file's path; `fleet_dirs` are searched for its fleet first."""
    fleet = load_fleet(scenario_fleet(scenario), extra={**(extra or {}), "lambda": functions}, dirs=fleet_dirs)
    scen = load_scenario(scenario, fleet)
    clock = clock or SystemClock()
    model = FleetModel(fleet, scen, int(anchor if anchor is not None else clock.now()), clock, seed)
    emulator = Emulator(model, host=host, port=port)
    emulator.start()
    try:
        provision(emulator.endpoint, fleet, progress)
    except BaseException:
        emulator.stop()
        raise
    emulator.usage.reset()
    return emulator


def launch(args: argparse.Namespace, demo: bool) -> Emulator | int:
    """Start the emulated fleet the command line asks for and print what it serves; an exit
    status instead when it cannot start (the message printed). `demo`: on emulated time from
    DEMO_LEAD before the anchor, so the tour's incidents unfold while the demo polls."""
    if args.list_scenarios:
        for name in scenario_names():
            scen = load_scenario(name)
            print(f"{name:28} {len(scen.incidents):2} incident(s)  {scen.description}")
        return 0
    try:
        anchor = datetime.fromisoformat(args.anchor.replace("Z", "+00:00")).timestamp() if args.anchor else None
    except ValueError:
        print(
            f"fleetwatch: --anchor {args.anchor!r} is not an ISO-8601 time such as 2026-11-22T12:00:00Z",
            file=sys.stderr,
        )
        return 2
    # The demo runs on emulated time, so its polls come a minute apart without waiting a minute.
    fake = args.fake_clock or demo
    if anchor is None and fake:
        # On the hour, so hourly jobs fall where the scenario means them to.
        anchor = time.time() // 3600 * 3600 if demo else time.time() // 60 * 60
    # The demo starts DEMO_LEAD before the anchor, so the tour's incidents unfold while it polls.
    clock: Clock = FakeClock(anchor - (DEMO_LEAD if demo else 0)) if fake and anchor is not None else SystemClock()
    started = time.monotonic()
    try:
        extra = {"sqs": args.queues, "dynamodb": args.tables, "rds": args.databases}
        emulator = start_emulator(
            args.scenario,
            port=args.port,
            host=args.host,
            seed=args.seed,
            functions=args.functions,
            extra=extra,
            anchor=anchor,
            clock=clock,
            progress=lambda msg: print(f"  creating {msg}", file=sys.stderr),
        )
    except FleetError as exc:
        print(f"fleetwatch: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"fleetwatch: port {args.port} on {args.host} is already in use; pick another with --port, "
                "or --port 0 for any free one",
                file=sys.stderr,
            )
            return 2
        raise
    print(describe(emulator, demo, time.monotonic() - started), flush=True)
    return emulator


def serve(emulator: Emulator) -> int:
    """Serve the emulated fleet until Ctrl-C, then stop it."""
    try:
        print("serving until Ctrl-C", flush=True)
        emulator.serve_forever()
    except KeyboardInterrupt:
        print("\nstopping the emulated fleet", file=sys.stderr)
    finally:
        emulator.stop()
    return 0


def run_emulator(args: argparse.Namespace) -> int:
    """`fleetwatch emulate`."""
    emulator = launch(args, demo=False)
    return emulator if isinstance(emulator, int) else serve(emulator)


def describe(emulator: Emulator, full: bool, seconds: float) -> str:
    info = emulator.info()
    fleet: Fleet = emulator.model.fleet
    lines = [
        f"fleetwatch emulated AWS fleet {info['fleet']!r}, scenario {info['scenario']!r} (seed {info['seed']})",
        *([f"  {info['description']}"] if info["description"] else []),
        f"  ready in {seconds:.1f} s; clock "
        f"{'frozen (fake)' if info['fake_clock'] else 'real'}, now {iso(info['now'])}, "
        f"scenario anchor {iso(info['anchor'])}",
        "",
        f"endpoint: {info['endpoint']}",
        f"  export AWS_ENDPOINT_URL={info['endpoint']}",
        f"  export AWS_ACCESS_KEY_ID={DEMO_CREDENTIALS['AWS_ACCESS_KEY_ID']} "
        f"AWS_SECRET_ACCESS_KEY={DEMO_CREDENTIALS['AWS_SECRET_ACCESS_KEY']} AWS_DEFAULT_REGION=us-east-1",
        "  (any access key works; other accounts are reached with sts assume-role on the roles below)",
        "",
        "accounts:",
    ]
    for acct in info["accounts"]:
        lines.append(
            f"  {acct['id']} {acct['name']}: regions {', '.join(acct['regions'])}; Lambda concurrency limit "
            f"{acct['concurrency_limit']}; reader role {acct['reader_role_arn']}"
        )
    lines += ["", "resources:"]
    grouped: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for res in fleet.resources:
        grouped[(res.account, res.region)][res.kind].append(res.name)
    for (account, region), kinds in grouped.items():
        lines.append(f"  {account} {region}:")
        for kind, names in sorted(kinds.items()):
            shown = names if full or len(names) <= 12 else [*names[:10], f"… and {len(names) - 10} more"]
            lines.append(f"    {kind:10} {len(names):5}  {', '.join(shown)}")
    lines += ["", f"incidents in scenario {info['scenario']!r}:"]
    if not info["incidents"]:
        lines.append("  none: a healthy fleet")
    for inc in sorted(info["incidents"], key=lambda i: i["start"]):
        where = (
            "ongoing"
            if inc["start"] <= info["now"] < inc["end"]
            else ("past" if inc["end"] <= info["now"] else "upcoming")
        )
        lines.append(f"  {inc['id']:30} {inc['kind']:24} {iso(inc['start'])} → {iso(inc['end'])} ({where})")
        lines.append(
            f"      at {inc['resource']}{' → users feel it at ' + inc['outcome'] if inc['outcome'] else ''}: "
            f"{inc['summary']}"
        )
    lines += [
        "",
        "control: GET /__fleet__/info, /__fleet__/usage (calls and CloudWatch cost), POST /__fleet__/scenario, "
        "/__fleet__/faults",
    ]
    return "\n".join(lines)
