"""`fleetwatch demo`: the emulated fleet, the Slack, SMTP, PagerDuty and OTLP stand-ins, and the
production agent (`fleetwatch run --emulated-clock`) on them; then the dashboard over what it
stored. The emulator is an optional extra, so it is imported inside the command only."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fleetwatch.clock import ResumedClock
from fleetwatch.store.dialect import is_url

# simulator.server.Emulator; not imported here, as the emulator is an optional extra.
Emulator = Any


def demo_command(args: argparse.Namespace) -> int:
    from simulator.cli import DEMO_LEAD, DEMO_TAIL, launch, serve

    emulator = launch(args, demo=True)
    if isinstance(emulator, int):
        return emulator
    moved = set_aside(args.store)
    if moved:
        print(
            f"the last demo's store is kept as {moved} (each demo starts on an empty store: "
            "its emulated clock starts 4 h before the hour again, inside what the last demo stored)",
            flush=True,
        )
    try:
        polls = args.polls if args.polls is not None else (DEMO_LEAD + DEMO_TAIL) // 60
        status = demo_run(emulator, args.store, polls, args.dashboard_port)
    except BaseException:
        emulator.stop()
        raise
    if args.serve:
        return serve(emulator)
    emulator.stop()
    if not args.dashboard_port:
        return status
    return demo_dashboard(
        args.store, args.dashboard_port, emulator.model.clock.now(), Path(args.store).parent / "fleetwatch.toml", polls
    )


def set_aside(store_path: str) -> Path | None:
    """Move a previous demo's SQLite store (with its -wal and -shm files) to `<name>.previous`,
    replacing an older one, and say where; None when there is none. Every demo's emulated clock
    starts 4 h before the current hour (simulator/cli.py), so a store left by a demo of the last
    few hours holds samples from this one's future and cursors past its clock: the agent would skip
    what the fleet now publishes and the dashboard would show the last run's values."""
    path = Path(store_path)
    if is_url(store_path) or not path.exists():
        return None
    kept = path.with_name(path.name + ".previous")
    for suffix in ("", "-wal", "-shm"):
        src, dst = Path(f"{path}{suffix}"), Path(f"{kept}{suffix}")
        dst.unlink(missing_ok=True)
        if src.exists():
            src.rename(dst)
    return kept


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
        return serve_forever(
            cfg,
            store_path,
            ResumedClock(ended_at),
            "127.0.0.1",
            port,
            stopped=note,
            banner=f"— the agent has stopped; sign in as demo / {password} to acknowledge and silence",
        )
    except OSError as exc:
        print(f"fleetwatch: {exc.strerror or exc}; or skip the dashboard with --dashboard-port 0", file=sys.stderr)
        return 2


def after_demo(store_path: str, ended_at: float, cfg_file: Path, polls: int, password: str) -> tuple[Any, str]:
    """The configuration of the dashboard left after the demo (the agent's file, plus a sign-in)
    and what its banner says."""
    from fleetwatch.config import load_config
    from simulator.cli import iso

    cfg = load_config(
        cfg_file,
        environ={
            "FLEETWATCH_STORE_PATH": store_path,
            "FLEETWATCH_WEB_USERNAME": "demo",
            "FLEETWATCH_WEB_PASSWORD": password,
        },
    )
    note = (
        f"The demo's agent ran a day's backfill and {polls} polls and stopped at {iso(ended_at)} (emulated time; the "
        f"clock runs on from there). Nothing polls or notifies any more: this dashboard shows what the agent stored, "
        f"and Settings shows the configuration it ran with ({cfg_file}). {rerun_note(store_path)}"
    )
    return cfg, note


def rerun_note(store_path: str) -> str:
    """What running the demo again does with this store: set_aside keeps it beside the new one, and
    the new demo starts afresh (it used to say the next run would resume where this one ended)."""
    if is_url(store_path):
        return "Running `make demo` again starts a new run on the same database."
    return f"Running `make demo` again starts afresh and keeps this store as {store_path}.previous."


def demo_config(emulator: Emulator, store_path: str) -> dict[str, str]:
    """The environment a fleetwatch pointed at this emulator would be configured with."""
    fleet = emulator.model.fleet
    regions = sorted({r for a in fleet.accounts for r in a.regions})
    return {
        "FLEETWATCH_STORE_PATH": store_path,
        "FLEETWATCH_AWS_ENDPOINT_URL": emulator.endpoint,
        "FLEETWATCH_AWS_REGIONS": ",".join(regions),
        "FLEETWATCH_AWS_ROLE_ARNS": ",".join(a.reader_role_arn for a in fleet.accounts),
    }


def demo_run(emulator: Emulator, store_path: str, polls: int, dashboard_port: int) -> int:
    """Run the agent as production runs it, `fleetwatch run`, against the emulated fleet: on its
    clock (each wait moves it a minute), notifying a Slack stand-in and an SMTP sink, serving the
    dashboard, and sending its own traces and metrics to an OTLP receiver standing in for an
    OpenTelemetry Collector. Its logs stream through; a summary follows."""
    import os
    import subprocess

    from simulator.cli import DEMO_CREDENTIALS
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
        env = {
            **inherited,
            **DEMO_CREDENTIALS,
            "FLEETWATCH_SLACK_BOT_TOKEN": TOKEN,
            "FLEETWATCH_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
            "OTEL_SERVICE_NAME": "fleetwatch-demo",
        }
        command = [
            sys.executable,
            "-m",
            "fleetwatch.cli",
            "run",
            "--config",
            str(cfg_file),
            "--polls",
            str(polls + 1),
            "--emulated-clock",
        ] + ([] if dashboard_port else ["--no-dashboard"])
        print(
            f"notifications go to a Slack stand-in at {slack.api_url} (channel C0DEMO), an SMTP server on "
            f"127.0.0.1:{smtp.port} and a PagerDuty stand-in at {pager.url};\nthe agent's traces and metrics go to an "
            f"OTLP receiver at {sink.url}\n",
            flush=True,
        )
        print(
            f"$ OTEL_EXPORTER_OTLP_ENDPOINT={sink.url} fleetwatch run "
            f"--config {cfg_file} --polls {polls + 1} --emulated-clock\n"
            f"  (the first poll backfills a day; then {polls} polls one emulated minute apart"
            + (f"; dashboard on http://127.0.0.1:{dashboard_port} meanwhile)" if dashboard_port else ")"),
            flush=True,
        )
        child = subprocess.Popen(command, env=env)
        try:
            status = child.wait()
        except KeyboardInterrupt:  # the agent got the Ctrl-C too and is stopping; let it finish
            status = child.wait()
        from fleetwatch.store import open_store

        with open_store(store_path) as store:
            incidents = store.db.execute("SELECT COUNT(*), SUM(resolved_at IS NULL) FROM incidents").fetchone()
            print(
                f"\nstore {store_path}: {store.db['samples'].count} samples of {store.db['series'].count} series, "
                f"{store.db['resources'].count} resources, {incidents[0]} incidents ({incidents[1] or 0} open). "
                + rerun_note(store_path),
                flush=True,
            )
        print(f"telemetry received from the agent: {sink.summary()}", flush=True)
    finally:
        sink.__exit__(None, None, None)
        _keep_notifications(out_dir, slack, smtp, pager)
    return status


def demo_toml(
    emulator: Emulator, store_path: str, slack_url: str, smtp_port: int, dashboard_port: int, pagerduty_url: str = ""
) -> str:
    """The demo's configuration file: what a fleetwatch pointed at this emulator is set up with
    (the bot token and the PagerDuty routing key come from the environment, as secrets should)."""
    env = demo_config(emulator, store_path)
    lines = [
        "# Written by `fleetwatch demo`: the agent's configuration for the emulated fleet.",
        "[store]",
        f"path = {json.dumps(str(Path(store_path).resolve()))}",
        "",
        "[aws]",
        f"endpoint_url = {json.dumps(env['FLEETWATCH_AWS_ENDPOINT_URL'])}",
        f"regions = {json.dumps(env['FLEETWATCH_AWS_REGIONS'].split(','))}",
        f"role_arns = {json.dumps(env['FLEETWATCH_AWS_ROLE_ARNS'].split(','))}",
        "",
        "[slack]",
        f"api_url = {json.dumps(slack_url)}",
        'channel = "C0DEMO"',
        "",
        "[smtp]",
        'host = "127.0.0.1"',
        f"port = {smtp_port}",
        'security = "none"',
        "",
        "[email]",
        'to = ["oncall@example.com"]',
        "",
        *(["[pagerduty]", f"url = {json.dumps(pagerduty_url)}", ""] if pagerduty_url else []),
        "[log]",
        'format = "text"',
        "",
        "[web]",
        'host = "127.0.0.1"',
        f"port = {dashboard_port or 8000}",
        f'public_url = "http://127.0.0.1:{dashboard_port or 8000}"',
        "",
    ]
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
    print(
        f"notifications: {len(slack.messages())} Slack messages in "
        f"{slack_file}, {len(smtp.messages())} mails in {mail_dir}/",
        flush=True,
    )
    slack.__exit__(None, None, None)
    smtp.__exit__(None, None, None)
