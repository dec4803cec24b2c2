"""`fleetwatch emulate` and `fleetwatch demo`: start the emulated fleet and say what it serves."""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fleetwatch.clock import Clock, FakeClock, ResumedClock, SystemClock
from simulator.fleet import FleetError, Fleet, load_fleet
from simulator.model import FleetModel
from simulator.provision import provision
from simulator.scenario import load_scenario, scenario_fleet, scenario_names
from simulator.server import Emulator

# The demo starts 4 h before its anchor (on the hour) and polls until 30 min after it: the tour
# stages every failure mode inside that, so each one opens, pages and resolves while it watches.
DEMO_LEAD, DEMO_TAIL = 4 * 3600, 30 * 60
DEMO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAFLEETWATCHDEMO01", "AWS_SECRET_ACCESS_KEY": "emulated-secret-key"}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_emulator(scenario: str, *, port: int = 0, host: str = "127.0.0.1", seed: int | None = None,
                   functions: int = 0, extra: dict[str, int] | None = None, anchor: float | None = None, clock: Clock | None = None,
                   progress: Any = lambda _: None, fleet_dirs: tuple[Path, ...] = ()) -> Emulator:
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


def run_emulator(args: argparse.Namespace, demo: bool) -> int:
    if args.list_scenarios:
        for name in scenario_names():
            scen = load_scenario(name)
            print(f"{name:28} {len(scen.incidents):2} incident(s)  {scen.description}")
        return 0
    try:
        anchor = datetime.fromisoformat(args.anchor.replace("Z", "+00:00")).timestamp() if args.anchor else None
    except ValueError:
        print(f"fleetwatch: --anchor {args.anchor!r} is not an ISO-8601 time such as 2026-11-22T12:00:00Z", file=sys.stderr)
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
        emulator = start_emulator(args.scenario, port=args.port, host=args.host, seed=args.seed, functions=args.functions, extra=extra,
                                  anchor=anchor, clock=clock, progress=lambda msg: print(f"  creating {msg}", file=sys.stderr))
    except FleetError as exc:
        print(f"fleetwatch: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"fleetwatch: port {args.port} on {args.host} is already in use; pick another with --port, "
                  "or --port 0 for any free one", file=sys.stderr)
            return 2
        raise
    print(describe(emulator, demo, time.monotonic() - started), flush=True)
    if demo:
        try:
            polls = args.polls if args.polls is not None else (DEMO_LEAD + DEMO_TAIL) // 60
            status = demo_run(emulator, args.store, polls, args.dashboard_port)
        except BaseException:
            emulator.stop()
            raise
        if not args.serve:
            emulator.stop()
            if not args.dashboard_port:
                return status
            return demo_dashboard(args.store, args.dashboard_port, emulator.model.clock.now(),
                                  Path(args.store).parent / "fleetwatch.toml", polls)
    try:
        print("serving until Ctrl-C", flush=True)
        emulator.serve_forever()
    except KeyboardInterrupt:
        print("\nstopping the emulated fleet", file=sys.stderr)
    finally:
        emulator.stop()
    return 0


def demo_dashboard(store_path: str, port: int, ended_at: float, cfg_file: Path, polls: int) -> int:
    """Serve the dashboard over the demo's store until Ctrl-C, once the demo's agent has
    stopped: with the configuration the agent ran with (its file), a clock running on from where
    the agent's emulated time ended, a banner saying plainly that nothing polls any more, and a
    password made for this run so the acknowledge and silence buttons work."""
    import secrets

    from web.server import serve_forever

    password = secrets.token_urlsafe(9)
    cfg, note = after_demo(store_path, ended_at, cfg_file, polls, password)
    try:
        return serve_forever(cfg, store_path, ResumedClock(ended_at), "127.0.0.1", port, stopped=note,
                             banner=f"— the agent has stopped; sign in as demo / {password} to acknowledge and silence")
    except OSError as exc:
        print(f"fleetwatch: {exc.strerror or exc}; or skip the dashboard with --dashboard-port 0", file=sys.stderr)
        return 2


def after_demo(store_path: str, ended_at: float, cfg_file: Path, polls: int, password: str) -> tuple[Any, str]:
    """The configuration of the dashboard left after the demo (the agent's file, plus a sign-in)
    and what its banner says."""
    from fleetwatch.config import load_config

    cfg = load_config(cfg_file, environ={"FLEETWATCH_STORE_PATH": store_path, "FLEETWATCH_WEB_USERNAME": "demo",
                                         "FLEETWATCH_WEB_PASSWORD": password})
    note = (f"The demo's agent ran its {polls} polls and stopped at {iso(ended_at)} (emulated time; the clock runs on "
            f"from there). Nothing polls or notifies any more: this dashboard shows what the agent stored, and Settings "
            f"shows the configuration it ran with ({cfg_file}). Run `make demo` again to resume.")
    return cfg, note


def demo_config(emulator: Emulator, store_path: str) -> dict[str, str]:
    """The environment a fleetwatch pointed at this emulator would be configured with."""
    fleet = emulator.model.fleet
    regions = sorted({r for a in fleet.accounts for r in a.regions})
    return {"FLEETWATCH_STORE_PATH": store_path, "FLEETWATCH_AWS_ENDPOINT_URL": emulator.endpoint,
            "FLEETWATCH_AWS_REGIONS": ",".join(regions),
            "FLEETWATCH_AWS_ROLE_ARNS": ",".join(a.reader_role_arn for a in fleet.accounts)}


def demo_run(emulator: Emulator, store_path: str, polls: int, dashboard_port: int) -> int:
    """Run the agent as production runs it, `fleetwatch run`, against the emulated fleet: on its
    clock (each wait moves it a minute), notifying a Slack stand-in and an SMTP sink, serving the
    dashboard, and sending its own traces and metrics to an OTLP receiver standing in for an
    OpenTelemetry Collector. Its logs stream through; a summary follows."""
    import os
    import subprocess

    from simulator.mail import SmtpSink
    from simulator.otel_sink import OtelSink
    from simulator.pagerduty import ROUTING_KEY, PagerDutyStandIn
    from simulator.slack import TOKEN, SlackStandIn

    out_dir = Path(store_path).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    slack, smtp, sink = SlackStandIn().__enter__(), SmtpSink().__enter__(), OtelSink().__enter__()
    pager = PagerDutyStandIn().__enter__()
    try:
        cfg_file = out_dir / "fleetwatch.toml"
        cfg_file.write_text(demo_toml(emulator, store_path, slack.api_url, smtp.port, dashboard_port, pager.url))
        # The demo's agent is configured by its file alone: FLEETWATCH_* and OTEL_* set in this
        # shell for a real agent must not point it elsewhere.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETWATCH_", "OTEL_"))}
        env = {**inherited, **DEMO_CREDENTIALS, "FLEETWATCH_SLACK_BOT_TOKEN": TOKEN, "FLEETWATCH_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
               "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_METRIC_EXPORT_INTERVAL": "5000",
               "OTEL_SERVICE_NAME": "fleetwatch-demo"}
        command = [sys.executable, "-m", "fleetwatch.cli", "run", "--config", str(cfg_file), "--polls", str(polls + 1),
                   "--emulated-clock"] + ([] if dashboard_port else ["--no-dashboard"])
        print(f"notifications go to a Slack stand-in at {slack.api_url} (channel C0DEMO), an SMTP server on "
              f"127.0.0.1:{smtp.port} and a PagerDuty stand-in at {pager.url};\nthe agent's traces and metrics go to an "
              f"OTLP receiver at {sink.url}\n", flush=True)
        print(f"$ OTEL_EXPORTER_OTLP_ENDPOINT={sink.url} fleetwatch run --config {cfg_file} --polls {polls + 1} --emulated-clock\n"
              f"  (the first poll backfills a day; then {polls} polls one emulated minute apart"
              + (f"; dashboard on http://127.0.0.1:{dashboard_port} meanwhile)" if dashboard_port else ")"), flush=True)
        child = subprocess.Popen(command, env=env)
        try:
            status = child.wait()
        except KeyboardInterrupt:  # the agent got the Ctrl-C too and is stopping; let it finish
            status = child.wait()
        from fleetwatch.store import open_store

        with open_store(store_path) as store:
            incidents = store.db.execute("SELECT COUNT(*), SUM(resolved_at IS NULL) FROM incidents").fetchone()
            print(f"\nstore {store_path}: {store.db['samples'].count} samples of {store.db['series'].count} series, "
                  f"{store.db['resources'].count} resources, {incidents[0]} incidents ({incidents[1] or 0} open); "
                  "run again to see it resume where it ended", flush=True)
        print(f"telemetry received from the agent: {sink.summary()}", flush=True)
    finally:
        sink.__exit__(None, None, None)
        _keep_notifications(out_dir, slack, smtp, pager)
    return status


def demo_toml(emulator: Emulator, store_path: str, slack_url: str, smtp_port: int, dashboard_port: int, pagerduty_url: str = "") -> str:
    """The demo's configuration file: what a fleetwatch pointed at this emulator is set up with
    (the bot token and the PagerDuty routing key come from the environment, as secrets should)."""
    env = demo_config(emulator, store_path)
    lines = ["# Written by `fleetwatch demo`: the agent's configuration for the emulated fleet.",
             "[store]", f"path = {json.dumps(str(Path(store_path).resolve()))}", "",
             "[aws]", f"endpoint_url = {json.dumps(env['FLEETWATCH_AWS_ENDPOINT_URL'])}",
             f"regions = {json.dumps(env['FLEETWATCH_AWS_REGIONS'].split(','))}",
             f"role_arns = {json.dumps(env['FLEETWATCH_AWS_ROLE_ARNS'].split(','))}", "",
             "[slack]", f"api_url = {json.dumps(slack_url)}", 'channel = "C0DEMO"', "",
             "[smtp]", 'host = "127.0.0.1"', f"port = {smtp_port}", 'security = "none"', "",
             "[email]", 'to = ["oncall@example.com"]', "",
             *(["[pagerduty]", f"url = {json.dumps(pagerduty_url)}", ""] if pagerduty_url else []),
             "[log]", 'format = "text"', "",
             "[web]", 'host = "127.0.0.1"', f"port = {dashboard_port or 8000}", f'public_url = "http://127.0.0.1:{dashboard_port or 8000}"',
             ""]
    return "\n".join(lines)


def _keep_notifications(out_dir: Path, slack: Any, smtp: Any, pager: Any = None) -> None:
    """Write what the stand-ins received next to the store, so it can be read after the demo."""
    slack_file = out_dir / "slack-messages.json"
    slack_file.write_text(json.dumps(slack.messages(), indent=2))
    if pager is not None:
        pager_file = out_dir / "pagerduty-events.json"
        got = pager.snapshot()
        pager_file.write_text(json.dumps(got, indent=2))
        print(f"PagerDuty: {len(got['events'])} events, {len(got['incidents'])} incidents in {pager_file}", flush=True)
        pager.__exit__(None, None, None)
    mail_dir = out_dir / "mail"
    mail_dir.mkdir(exist_ok=True)
    for old in mail_dir.glob("*.eml"):
        old.unlink()
    for i, (_, msg) in enumerate(smtp.messages(), 1):
        (mail_dir / f"{i:03d}.eml").write_bytes(msg.as_bytes())
    print(f"notifications: {len(slack.messages())} Slack messages in {slack_file}, {len(smtp.messages())} mails in {mail_dir}/",
          flush=True)
    slack.__exit__(None, None, None)
    smtp.__exit__(None, None, None)


def describe(emulator: Emulator, full: bool, seconds: float) -> str:
    info = emulator.info()
    fleet: Fleet = emulator.model.fleet
    lines = [
        f"fleetwatch emulated AWS fleet {info['fleet']!r}, scenario {info['scenario']!r} (seed {info['seed']})",
        *([f"  {info['description']}"] if info["description"] else []),
        f"  ready in {seconds:.1f} s; clock {'frozen (fake)' if info['fake_clock'] else 'real'}, now {iso(info['now'])}, "
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
        lines.append(f"  {acct['id']} {acct['name']}: regions {', '.join(acct['regions'])}; Lambda concurrency limit "
                     f"{acct['concurrency_limit']}; reader role {acct['reader_role_arn']}")
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
        where = "ongoing" if inc["start"] <= info["now"] < inc["end"] else ("past" if inc["end"] <= info["now"] else "upcoming")
        lines.append(f"  {inc['id']:30} {inc['kind']:24} {iso(inc['start'])} → {iso(inc['end'])} ({where})")
        lines.append(f"      at {inc['resource']}{' → users feel it at ' + inc['outcome'] if inc['outcome'] else ''}: {inc['summary']}")
    lines += ["", "control: GET /__fleet__/info, /__fleet__/usage (calls and CloudWatch cost), POST /__fleet__/scenario, "
              "/__fleet__/faults"]
    return "\n".join(lines)
