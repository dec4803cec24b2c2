"""The `fleetwatch` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fleetwatch import __version__
from fleetwatch.config import Config, ConfigError, load_config
from fleetwatch.config.loader import reference_markdown
from fleetwatch.store import StoreError, open_store, store_location

CONFIG_HELP = "configuration file (TOML); default: built-in defaults plus FLEETWATCH_* environment variables"


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetwatch", description="Observability and alerting for AWS serverless fleets."
    )
    parser.add_argument("--version", action="version", version=f"fleetwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = sub.add_parser("config", help="validate and show configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate FILE and print the effective configuration, secrets redacted")
    _config(check)
    check.add_argument("file", nargs="?", metavar="FILE", help="deprecated: the same as --config FILE")
    config_sub.add_parser("docs", help="print the configuration reference (Markdown) generated from the settings table")

    store = sub.add_parser("store", help="inspect or create the store")
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    info = store_sub.add_parser("info", help="open (migrating if needed) the store and print its schema and row counts")
    _config(info)
    copy = store_sub.add_parser("copy", help="copy the SQLite store (store.path) into a new, empty PostgreSQL database")
    copy.add_argument(
        "--to", required=True, metavar="URL", help="postgresql://user:password@host:5432/dbname (must exist, empty)"
    )
    _config(copy)

    plan = sub.add_parser("plan", help="discover the fleet and print the query plan, calls per poll and monthly cost")
    _config(plan)
    plan.add_argument("--no-discover", action="store_true", help="use the resources already in the store")

    collect = sub.add_parser("collect", help="poll the fleet into the store (backfilling history on first start)")
    _config(collect)
    collect.add_argument("--once", action="store_true", help="run one poll, print what it did, and exit")
    collect.add_argument(
        "--polls", type=int, default=None, help="stop after this many polls (default: run until Ctrl-C)"
    )

    det = sub.add_parser("detect", help="run one detection pass over the store and print the findings")
    _config(det)
    det.add_argument("--detector", action="append", help="run only this detector (repeatable)")

    det.add_argument("--alert", action="store_true", help="also turn the findings into incidents and send what is owed")

    inc = sub.add_parser("incidents", help="list incidents (open ones unless --all)")
    _config(inc)
    inc.add_argument("--all", action="store_true", help="include resolved and merged incidents")
    ack = sub.add_parser(
        "ack", help="acknowledge an open incident: no more repeats (changes and resolution are still sent)"
    )
    ack.add_argument("id", type=int, help="the incident's number, as `fleetwatch incidents` lists it (#ID)")
    ack.add_argument("--by", required=True, help="who acknowledges")
    _config(ack)
    sil = sub.add_parser("silence", help="add, list or expire silences")
    sil_sub = sil.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    sil_add = sil_sub.add_parser(
        "add", help="mute incidents whose alerts match, e.g. 'service=\"orders\" detector=queues'"
    )
    sil_add.add_argument(
        "matchers",
        help="Alertmanager-style matchers on the incident's labels (severity, service, "
        "account, region, detector, kind, name), space-separated, e.g. 'service=\"orders\" severity=critical'",
    )
    sil_add.add_argument("--duration", default="2h", help="how long (default 2h), e.g. 30m, 4h, 1d")
    sil_add.add_argument("--author", required=True, help="who adds the silence (shown with it)")
    sil_add.add_argument("--comment", default="", help="why, shown with the silence (default: none)")
    _config(sil_add)
    sil_list = sil_sub.add_parser("list", help="active and future silences")
    _config(sil_list)
    sil_exp = sil_sub.add_parser("expire", help="end a silence now")
    sil_exp.add_argument("id", type=int, help="the silence's number, as `fleetwatch silence list` shows it (#ID)")
    _config(sil_exp)

    dig = sub.add_parser("digest", help="render the weekly health digest to a file, or send it now")
    _config(dig)
    dig.add_argument(
        "--preview", metavar="FILE.html", help="write the digest of the week to now as HTML (and FILE.txt)"
    )
    dig.add_argument("--send", action="store_true", help="send the digest of the week to now to digest.targets")

    rep = sub.add_parser(
        "replay",
        help="score a CSV of timestamp,value with the anomaly layer; CSV with score, episode onsets and a summary out",
    )
    rep.add_argument(
        "file", help="CSV with a header row; first column time (ISO 8601 or epoch s), second value ('-' for stdin)"
    )
    rep.add_argument(
        "--detector", default="anomaly", help="anomaly (both directions, default), spike (rises only), dip (drops only)"
    )
    rep.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="surprise -log10(p) that opens an episode (default 3, one point in a thousand; overrides --profile)",
    )
    rep.add_argument(
        "--profile",
        default="default",
        choices=("default", "low-fp", "low-fn"),
        help="threshold chosen on NAB's development data: default 3, "
        "low-fp 4 (fewer false alarms), low-fn 2.5 (fewer misses)",
    )

    run = sub.add_parser(
        "run", help="run the agent: poll, detect, alert, send the digest and serve the dashboard until stopped"
    )
    _config(run)
    run.add_argument(
        "--polls", type=int, default=None, help="stop after this many polls (default: run until SIGTERM or Ctrl-C)"
    )
    run.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard")
    run.add_argument(
        "--port",
        type=int,
        default=None,
        help="dashboard port (default web.port, 8000; 0 picks a free one, the log says which)",
    )
    run.add_argument(
        "--emulated-clock",
        action="store_true",
        help="follow the emulated fleet's frozen clock at aws.endpoint_url, moving it forward instead of "
        "waiting (the demo; never with real AWS)",
    )
    run.add_argument(
        "--follow-clock",
        action="store_true",
        help="follow the emulated fleet's frozen clock without moving it: wait for whatever moves it (several "
        "agents on one emulated fleet, moved a minute at a time by a test; never with real AWS)",
    )

    serve = sub.add_parser("serve", help="serve the dashboard and JSON API on web.host:web.port")
    _config(serve)
    serve.add_argument("--host", default=None, help="address to bind (default web.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default web.port, 8000)")

    emulate = sub.add_parser("emulate", help="serve an emulated AWS fleet on loopback")
    _emulator_args(emulate)
    demo = sub.add_parser("demo", help="start the emulated fleet, collect it into a store and print each poll")
    _emulator_args(demo, default_scenario="tour")
    demo.add_argument(
        "--store", default="demo/fleetwatch.db", help="store to collect into (default demo/fleetwatch.db)"
    )
    demo.add_argument(
        "--polls",
        type=int,
        default=None,
        help="polls to run after the backfill, one emulated minute apart (default 270: from 4 h before the "
        "scenario's anchor, where the tour starts, to 30 min after it)",
    )
    demo.add_argument("--serve", action="store_true", help="keep serving the emulated fleet after the demo polls")
    demo.add_argument(
        "--dashboard-port",
        type=int,
        default=8000,
        help="serve the dashboard on 127.0.0.1:PORT after the polls (default 8000; 0 skips it)",
    )
    return parser


def _emulator_args(p: argparse.ArgumentParser, default_scenario: str = "healthy") -> None:
    p.add_argument(
        "--scenario", default=default_scenario, help=f"scenario name (default {default_scenario}); see --list-scenarios"
    )
    p.add_argument(
        "--port", type=int, default=4590, help="loopback port to serve on (default 4590; 0 picks a free one)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--functions", type=int, default=0, help="add this many generated Lambda functions to the fleet")
    p.add_argument("--queues", type=int, default=0, help="add this many generated SQS queues")
    p.add_argument("--tables", type=int, default=0, help="add this many generated DynamoDB tables")
    p.add_argument("--databases", type=int, default=0, help="add this many generated RDS instances")
    p.add_argument("--anchor", default=None, help="ISO-8601 UTC time the scenario's offsets count from (default: now)")
    p.add_argument(
        "--fake-clock", action="store_true", help="freeze time at the anchor; move it with POST /__fleet__/clock"
    )
    p.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The command line. Output cut short by its reader (`fleetwatch incidents | head`) ends the
    command quietly, with status 141 as if by SIGPIPE, as other command-line tools do."""
    try:
        try:
            return _main(argv, os.environ if environ is None else environ)
        finally:
            sys.stdout.flush()  # inside the try (after --help's exit too): the last lines may meet the closed pipe
    except BrokenPipeError:
        # Python's advice (library/signal.html, "Note on SIGPIPE"): point stdout at /dev/null so
        # the interpreter's own flush at exit does not raise again and print a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _main(argv: Sequence[str] | None, environ: Mapping[str, str]) -> int:
    args = _parser().parse_args(argv)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        # docker-compose.yml's `AWS_PROFILE: ${AWS_PROFILE:-}` passes it empty when the host has
        # none; botocore then looks for a profile named '' and fails every call. Empty is unset.
        if os.environ.get(name) == "":
            del os.environ[name]
    try:
        if args.command == "config":
            if args.config_command == "docs":
                sys.stdout.write(reference_markdown())
                return 0
            return _check(args, environ)
        if args.command == "replay":
            from fleetwatch.cli.replay import main as replay_main

            return replay_main(args.file, args.detector, args.threshold, args.profile)
        if args.command in ("emulate", "demo"):
            try:
                from fleetwatch.cli.demo import demo_command
                from simulator.cli import run_emulator
            except ImportError as exc:
                print(
                    f"fleetwatch: the emulated fleet needs the emulator extra ({exc.name} is missing); "
                    "install it with: pip install 'fleetwatch[emulator]'",
                    file=sys.stderr,
                )
                return 2
            return demo_command(args) if args.command == "demo" else run_emulator(args)
        cfg = load_config(args.config, environ=environ)  # every other command takes --config
        if args.command == "store" and args.store_command == "copy":
            return _copy(args, cfg)
        if args.command == "store":
            with open_store(store_location(cfg)) as store:
                print(f"store {store.path}: schema {store.schema_version}")
                for name in store.applied_migrations():
                    print(f"  migration {name}")
                for table in sorted(store.db.table_names()):
                    print(f"  {table}: {store.db[table].count} rows")
            return 0
        if args.command in ("plan", "collect"):
            return _collect(args, cfg)
        if args.command == "detect":
            from fleetwatch.agent.detection import detect, detector_settings
            from fleetwatch.clock import SystemClock

            with open_store(existing_store(cfg)) as store:
                detection = detect(
                    store, int(SystemClock().now()), names=args.detector, settings=detector_settings(cfg)
                )
                print(detection.summary())
                if args.alert:
                    from fleetwatch.agent.alerting import alert, build_pipeline

                    print(alert(build_pipeline(cfg, store, SystemClock()), store, detection).summary())
            return 1 if any(r.status != "ok" for r in detection.runs) else 0
        if args.command == "digest":
            from fleetwatch.cli.digest import digest_command

            with open_store(existing_store(cfg)) as store:
                return digest_command(args, cfg, store)
        if args.command in ("incidents", "ack", "silence"):
            from fleetwatch.cli.incidents import incident_command

            with open_store(existing_store(cfg)) as store:
                return incident_command(args, store)
        if args.command == "run":
            from fleetwatch.cli.run import run_command

            if args.polls is not None and args.polls < 1:
                print("fleetwatch: --polls must be 1 or more", file=sys.stderr)
                return 2
            return run_command(
                cfg,
                environ,
                polls=args.polls,
                dashboard=not args.no_dashboard,
                emulated_clock=args.emulated_clock,
                follow_clock=args.follow_clock,
                port=args.port,
            )
        if args.command == "serve":
            from fleetwatch.clock import SystemClock
            from web.server import serve_forever

            try:
                return serve_forever(cfg, existing_store(cfg), SystemClock(), args.host, args.port)
            except OSError as exc:
                print(f"fleetwatch: {exc.strerror or exc}", file=sys.stderr)
                return 2
    except ConfigError as exc:
        print(f"fleetwatch: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"fleetwatch: {exc}", file=sys.stderr)
        return 2
    return 1


def _check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """`config check`: the effective configuration, then what is allowed but probably a mistake."""
    if args.file and args.config and args.file != args.config:
        print("fleetwatch: config check got two files; give one, with --config FILE", file=sys.stderr)
        return 2
    if args.file:
        print(
            "fleetwatch: `config check FILE` is deprecated; write "
            "`config check --config FILE`, as every command takes it",
            file=sys.stderr,
        )
    path = args.config or args.file
    cfg = load_config(path, environ=environ)
    sys.stdout.write(
        f"# effective configuration from {path or 'the defaults and the environment'} (secrets redacted)\n"
    )
    sys.stdout.write(cfg.render())
    from fleetwatch.cli.run import config_warnings

    for warning in config_warnings(cfg):
        print(f"fleetwatch: warning: {warning}", file=sys.stderr)
    return 0


def existing_store(cfg: Config) -> str:
    """The store for a command that reads what the agent collected: refused when there is no
    SQLite store there, instead of creating an empty one and answering from it ("no open
    incidents"). A PostgreSQL store (store.url) is opened as it is: its database must exist."""
    if cfg["store.url"]:
        return str(cfg["store.url"])
    path = Path(cfg["store.path"])
    if path.exists():
        return str(path)
    source = cfg.sources["store.path"]
    where = {"default": "the default store.path", "file": f"store.path in {cfg.path}"}.get(
        source, f"store.path from {source[4:]}" if source.startswith("env ") else source
    )
    raise StoreError(
        f"no store at {path.resolve()} ({where}), so there is nothing to read. Give the configuration "
        "the agent runs with (--config FILE) or its store (FLEETWATCH_STORE_PATH=/path/to/fleetwatch.db); "
        "`fleetwatch run` creates the store when it starts"
    )


def _collect(args: argparse.Namespace, cfg: Config) -> int:
    from collector.aws import Aws, credentials_problem
    from fleetwatch.cli.collect import collect_command, plan_command
    from fleetwatch.clock import SystemClock
    from fleetwatch.lock import LockHeld, store_lock

    if args.command == "plan":
        problem = credentials_problem(cfg["aws.profile"]) if not args.no_discover else ""
        if problem:
            print(f"fleetwatch: {problem}", file=sys.stderr)
            return 2
        with open_store(existing_store(cfg) if args.no_discover else store_location(cfg)) as store:
            return plan_command(cfg, store, Aws.from_config(cfg), SystemClock(), discover=not args.no_discover)
    try:
        lock = store_lock(store_location(cfg), "fleetwatch collect").acquire()  # polling twice would double the cost
    except LockHeld as exc:
        print(f"fleetwatch: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(
            f"fleetwatch: cannot lock the store {cfg['store.path']}: {exc.strerror or exc}; check that its folder "
            "exists and is writable, or change store.path",
            file=sys.stderr,
        )
        return 2
    try:
        problem = credentials_problem(cfg["aws.profile"])
        if problem:  # every call would fail: say so once, with the fix
            print(f"fleetwatch: {problem}", file=sys.stderr)
            return 2
        with open_store(store_location(cfg)) as store:
            return collect_command(cfg, store, Aws.from_config(cfg), polls=1 if args.once else args.polls)
    finally:
        lock.release()


def _copy(args: argparse.Namespace, cfg: Config) -> int:
    """`store copy --to URL`: the SQLite store into a new, empty PostgreSQL database."""
    from fleetwatch.lock import LockHeld, store_lock
    from fleetwatch.store.copy import copy_store
    from fleetwatch.store.dialect import is_url

    if not is_url(args.to):
        print(
            "fleetwatch: --to takes a postgresql:// URL (postgresql://user:password@host:5432/dbname)", file=sys.stderr
        )
        return 2
    try:  # an agent writing meanwhile would leave the copy behind the source
        lock = store_lock(cfg["store.path"], "fleetwatch store copy").acquire()
    except LockHeld as exc:
        print(f"fleetwatch: {exc}", file=sys.stderr)
        return 3
    try:
        with open_store(cfg["store.path"]) as src, open_store(args.to) as dst:
            copy_store(src, dst, progress=lambda table, n: print(f"  {table}: {n} rows"))
            print(
                f"copied {src.path} into the {dst.path}; set store.url to it (FLEETWATCH_STORE_URL) and start the agent"
            )
    finally:
        lock.release()
    return 0
