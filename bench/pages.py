"""What the on-call receives: every labelled scenario, the look-alikes and a healthy fleet run
through the whole agent, scored by what the Slack, SMTP and PagerDuty stand-ins received.

For each scenario the emulated fleet is started on a fake clock an hour before its first
incident (with `poll.backfill` of history before that), and the production agent loop
(`fleetwatch.agent.loop.Agent`, what `fleetwatch run` runs) polls it once an emulated minute, with
the default alerting settings, until 40 minutes after its last incident ended. Then, per
labelled incident:

- threads: top-level Slack threads about it (a message in the thread names its resource or
  outcome between 10 minutes before its start and 20 after its end: a page of its own, or an
  update of a thread already open that it joined) — must be 1;
- pagerduty: PagerDuty incidents (distinct dedup keys triggered) for those threads — must be 1;
- delay: minutes from its labelled start (for a schedule that stopped, its first missed run) to
  the first message about it;
- title: whether the thread's head, as it reads at the end, names the outcome users feel and the
  cause resource;
- resolved: minutes from its labelled end (for a stopped schedule, its first run after it came
  back) to RESOLVED in that same thread; premature if a RESOLVED for it arrived before the
  labelled end.

Threads that match no labelled incident are false pages; on the healthy fleet and the
look-alikes every thread is one. Figures are per scenario (one JSON line each) and overall (the
last line).

    python bench/pages.py                      # every scenario here, the look-alikes, a healthy week
    python bench/pages.py --scenarios DIR      # scenario files from DIR (their fleets from --fleets DIR)
    python bench/pages.py --only connection-storm,hot-partition --healthy-days 0
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ANCHOR = 1_800_000_000 // 3600 * 3600  # a Friday 08:00 UTC; any minute would do
LEAD, TAIL = 3600, 40 * 60  # polled before the first incident starts, and after the last one ends
MATCH_BEFORE, MATCH_AFTER = 10 * 60, 20 * 60
COMPOSITE = {"tour", "soak-week"}  # made of the others, which are run one by one
# Failure modes measured against a hard limit, paged within 3 minutes; the others are trends (10).
LIMIT_KINDS = {
    "connection_exhaustion",
    "hot_partition",
    "table_capacity",
    "ses_sandbox",
    "ses_send_rate",
    "lambda_concurrency",
}
CREDS = {"aws_access_key_id": "AKIAFLEETWATCHBENCH1", "aws_secret_access_key": "emulated-secret-key"}


def scenario_files(folder: Path | None) -> list[Path]:
    from simulator.scenario import SCENARIOS_DIR

    root = folder or SCENARIOS_DIR
    return sorted(p for p in root.glob("*.toml") if p.stem not in COMPOSITE)


# -- one run -------------------------------------------------------------------------------------


def run_one(
    path: str,
    fleets: str | None,
    backfill: int,
    days: float = 0.0,
    workdir: str | None = None,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one scenario file through the agent; `days` > 0 runs that long from the anchor instead
    (the healthy fleet). Returns what the stand-ins received and the labels, scored."""
    import boto3

    from collector.aws import Aws
    from fleetwatch.agent.loop import Agent
    from fleetwatch.clock import FakeClock
    from fleetwatch.config import load_config
    from fleetwatch.logs import setup
    from fleetwatch.store import open_store
    from simulator.cli import start_emulator
    from simulator.mail import SmtpSink
    from simulator.scenario import load_scenario
    from simulator.slack import TOKEN, SlackStandIn

    setup("text", "WARNING")
    fleet_dirs = (Path(fleets),) if fleets else ()
    from simulator.fleet import load_fleet
    from simulator.scenario import scenario_fleet

    fleet = load_fleet(scenario_fleet(path), dirs=fleet_dirs)
    scenario = load_scenario(path, fleet)
    labels = [_as_users_see_it(i.label(ANCHOR), fleet) for i in scenario.incidents]
    # Polled until the last incident can have been seen to end (a stopped daily job: its next run).
    spans = [(i.start, i.end) for i in scenario.lookalikes] + [
        (lb["start"] - ANCHOR, lb.get("settles", lb["end"]) - ANCHOR) for lb in labels
    ]
    if days:
        start, end = ANCHOR, ANCHOR + int(days * 86400)
    elif spans:
        start, end = ANCHOR + min(s for s, _ in spans) - LEAD, ANCHOR + max(e for _, e in spans) + TAIL
    else:
        start, end = ANCHOR - LEAD, ANCHOR + TAIL
    start = start // 60 * 60
    clock = FakeClock(start)
    pagerduty = _pagerduty_standin(clock)
    emulator = start_emulator(path, anchor=ANCHOR, clock=clock, fleet_dirs=fleet_dirs)
    labels = [_when_runs_fall(lb, emulator.model) for lb in labels]
    wall = time.perf_counter()
    try:
        with (
            SlackStandIn(clock=clock.now) as slack,
            SmtpSink() as smtp,
            tempfile.TemporaryDirectory(dir=workdir) as tmp,
        ):
            fleet = emulator.model.fleet
            env = {
                "FLEETWATCH_STORE_PATH": str(Path(tmp) / "pages.db"),
                "FLEETWATCH_AWS_ENDPOINT_URL": emulator.endpoint,
                "FLEETWATCH_AWS_REGIONS": ",".join(sorted({r for a in fleet.accounts for r in a.regions})),
                "FLEETWATCH_AWS_ROLE_ARNS": ",".join(a.reader_role_arn for a in fleet.accounts),
                "FLEETWATCH_POLL_BACKFILL": f"{backfill}s",
                "FLEETWATCH_SLACK_BOT_TOKEN": TOKEN,
                "FLEETWATCH_SLACK_API_URL": slack.api_url,
                "FLEETWATCH_SLACK_CHANNEL": "C0PAGES",
                "FLEETWATCH_SMTP_HOST": "127.0.0.1",
                "FLEETWATCH_SMTP_PORT": str(smtp.port),
                "FLEETWATCH_SMTP_SECURITY": "none",
                "FLEETWATCH_EMAIL_TO": "oncall@example.com",
                "FLEETWATCH_LOG_FORMAT": "text",
            }
            env.update(pagerduty.env)
            env.update(overrides or {})
            cfg = load_config(None, environ=env)
            polls = (end - start) // 60 + 1
            with open_store(cfg["store.path"]) as store:
                aws = Aws.from_config(cfg, session=boto3.session.Session(**CREDS))
                Agent(cfg, store, aws, clock, polls=polls).run()
                notifications = [
                    dict(r)
                    for r in store.db.query("SELECT incident_id, target, kind, status, sent_at FROM notifications")
                ]
                failures = store.db.execute("SELECT COUNT(*) FROM notification_failures").fetchone()[0]
                incidents = [
                    dict(r) for r in store.db.query("SELECT id, title, state, started_at, resolved_at FROM incidents")
                ]
                unusual = _unusual_noise(store)
                if os.environ.get("PAGES_DUMP"):
                    Path(os.environ["PAGES_DUMP"]).mkdir(parents=True, exist_ok=True)
                    store.db.execute(f"VACUUM INTO '{Path(os.environ['PAGES_DUMP']) / (scenario.name + '.db')}'")
            received = {"slack": slack.messages(), "mail": len(smtp.messages()), "pagerduty": pagerduty.snapshot()}
    finally:
        emulator.stop()
        pagerduty.__exit__(None, None, None)
    if os.environ.get("PAGES_DUMP"):  # what the stand-ins received, to read or score again
        dump = Path(os.environ["PAGES_DUMP"]) / f"{scenario.name}.json"
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_text(
            json.dumps(
                {"labels": labels, "received": received, "notifications": notifications, "failures": failures}, indent=1
            )
        )
    out = score(labels, received, notifications, failures, len(emulator.model.fleet.resources), (end - start) / 86400)
    if os.environ.get("PAGES_DEBUG"):
        for t in _threads(received["slack"]):
            print(f"--- thread at +{(t['at'] - ANCHOR) / 60:.0f} min", file=sys.stderr)
            for at, text in t["events"]:
                print(f"  +{(at - ANCHOR) / 60:.0f} min {text[:200]!r}", file=sys.stderr)
        for inc in incidents:
            ended = "" if inc["resolved_at"] is None else f"+{(inc['resolved_at'] - ANCHOR) / 60:.0f}"
            print(
                f"incident {inc['id']} {inc['state']} "
                f"+{(inc['started_at'] - ANCHOR) / 60:.0f}..{ended} {inc['title'][:150]}",
                file=sys.stderr,
            )
    out["unusual"] = unusual
    out.update(
        scenario=scenario.name,
        polls=polls,
        wall_seconds=round(time.perf_counter() - wall, 1),
        incidents_opened=len(incidents),
        lookalikes=len(scenario.lookalikes),
        healthy=bool(days),
    )
    return out


def _unusual_noise(store: Any) -> dict[str, int]:
    """The `unusual` detector's own noise budget: its episodes (distinct findings), the
    incidents it led and that sent a notification (pages of its own), and the incidents where it
    stood beside a rule's finding as supporting evidence."""
    episodes = store.db.execute(
        "SELECT COUNT(*) FROM (SELECT DISTINCT fingerprint, started_at FROM findings WHERE detector = 'unusual')"
    ).fetchone()[0]
    mine = {fp for (fp,) in store.db.execute("SELECT fingerprint FROM alerts WHERE detector = 'unusual'")}
    led = supporting = 0
    for labels, members, sent in store.db.execute(
        "SELECT labels, members, EXISTS (SELECT 1 FROM notifications "
        "n WHERE n.incident_id = i.id AND n.status = 'sent') "
        "FROM incidents i"
    ):
        ours = mine.intersection(json.loads(members or "[]"))
        if json.loads(labels or "{}").get("detector") == "unusual":
            led += int(bool(sent))
        elif ours:
            supporting += 1
    tracks = store.db.execute("SELECT COUNT(*) FROM anomaly_state").fetchone()[0]  # the series it watched
    return {"episodes": episodes, "pages": led, "supporting": supporting, "series": tracks}


def _pagerduty_standin(clock: Any) -> Any:
    from simulator.pagerduty import ROUTING_KEY, PagerDutyStandIn

    standin = PagerDutyStandIn().__enter__()
    standin.env = {"FLEETWATCH_PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "FLEETWATCH_PAGERDUTY_URL": standin.url}
    return standin


# -- scoring ---------------------------------------------------------------------------------------


def incident_id(dedup_key: str) -> int | None:
    """Our incident id from a PagerDuty dedup key, `fleetwatch-<installation>-<id>`."""
    tail = str(dedup_key).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _incident_of(message: dict[str, Any]) -> int | None:
    key = ((message.get("metadata") or {}).get("event_payload") or {}).get("key", "")
    head = str(key).split("/", 1)[0]
    return int(head) if head.isdigit() else None


def _threads(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top-level Slack messages with their replies and updates, in order."""
    heads = [m for m in messages if not m.get("thread_ts")]
    out = []
    for h in heads:
        replies = [m for m in messages if m.get("thread_ts") == h["ts"]]
        events = (
            [(h["at"], h["text"])]
            + [(u["at"], u["text"]) for u in h.get("updates", [])]
            + [(r["at"], r["text"]) for r in replies]
        )
        events.sort(key=lambda e: e[0])
        final = h["updates"][-1]["text"] if h.get("updates") else h["text"]
        out.append(
            {
                "at": h["at"],
                "head": h["text"],
                "final": final,
                "events": events,
                "incident": _incident_of(h),
                "text": " ".join(t for _, t in events),
            }
        )
    return out


def _name(resource: str | None) -> str:
    return (resource or "").split(":", 1)[-1]


def _as_users_see_it(label: dict[str, Any], fleet: Any) -> dict[str, Any]:
    """The names a page uses for the label's resources (account-wide ones are named by service
    and region: "SES eu-west-1", "Lambda us-east-1"), and, for a schedule that stopped, the
    onset a page can follow: its first run that did not happen."""
    from detectors.schedule_times import parse

    out = dict(label)
    for field in ("resource", "outcome"):
        uid = label.get(field)
        if not uid:
            continue
        res = fleet.get(uid)
        names = {"ses": [f"SES {res.region}"]}.get(res.kind, [res.name])
        out[f"{field}_names"] = names
    if label["kind"] == "schedule_missed":
        res = fleet.get(label["resource"])
        schedule = parse(str(res.params.get("expression", "")))
        due = schedule.next_after(label["start"] - 1) if schedule else None
        back = schedule.next_after(label["end"] - 1) if schedule else None
        if due is not None:
            out["onset"] = due
        if back is not None:
            out["settles"] = back  # its next run after it came back: no sooner can anyone see it did
    return out


def _when_runs_fall(label: dict[str, Any], model: Any) -> dict[str, Any]:
    """A stopped rate() schedule's first missed run and its first run back, where the emulated
    schedule's phase puts them (an expression alone says only "within one interval")."""
    from simulator.drivers import first_due

    if label["kind"] != "schedule_missed":
        return label
    res = model.fleet.get(label["resource"])
    if not str(res.params.get("expression", "")).startswith("rate("):
        return label
    onset, back = first_due(model, res, label["start"]), first_due(model, res, label["end"])
    return {**label, **({"onset": onset} if onset else {}), **({"settles": back} if back else {})}


def score(
    labels: list[dict[str, Any]],
    received: dict[str, Any],
    notifications: list[dict[str, Any]],
    failures: int,
    resources: int,
    days: float,
) -> dict[str, Any]:
    threads = _threads(received["slack"])
    matched: set[int] = set()
    per: list[dict[str, Any]] = []
    pd = received["pagerduty"]
    for label in labels:
        cause_names = label.get("resource_names") or [_name(label["resource"])]
        outcome_names = label.get("outcome_names") or ([_name(label["outcome"])] if label.get("outcome") else [])
        onset = label.get("onset", label["start"])

        def told(label: dict[str, Any], names: list[str]) -> dict[int, int]:
            # A thread is about this incident when a message in it names it while the incident is
            # on: its first page, or an update of a thread already open (a related problem joined
            # the incident that was).
            found = {
                i: min(
                    (
                        at
                        for at, text in t["events"]
                        if label["start"] - MATCH_BEFORE <= at <= label["end"] + MATCH_AFTER
                        and any(n in text for n in names)
                    ),
                    default=None,
                )
                for i, t in enumerate(threads)
            }
            return {i: at for i, at in found.items() if at is not None}

        # By its cause; by its outcome only where the thread names no other incident's cause: an
        # API is shared by every problem behind it, but a page about the API alone, beside the
        # cause's own, is this problem paged twice.
        others = [
            n
            for other in labels
            if other is not label
            for n in (other.get("resource_names") or [_name(other["resource"])])
        ]
        hits = told(label, cause_names)
        for i, at in told(label, outcome_names).items():
            if i not in hits and not any(n in threads[i]["text"] for n in others):
                hits[i] = at
        mine = sorted(hits)
        matched.update(mine)
        row: dict[str, Any] = {"id": label["id"], "kind": label["kind"], "threads": len(mine)}
        if mine:
            first = threads[mine[0]]
            row["delay_min"] = round((max(hits[mine[0]], first["at"]) - onset) / 60, 1)
            row["title_names_outcome"] = not outcome_names or any(n in first["final"] for n in outcome_names)
            row["title_names_cause"] = any(n in first["final"] for n in cause_names)
            resolved = [at for at, text in first["events"] if text.startswith("[RESOLVED]")]
            row["resolved_in_thread"] = bool(resolved)
            row["resolved_after_end_min"] = (
                round((resolved[0] - label.get("settles", label["end"])) / 60, 1) if resolved else None
            )
            row["premature"] = any(
                at < label["end"] for i in mine for at, text in threads[i]["events"] if text.startswith("[RESOLVED]")
            )
            ours = {threads[i]["incident"] for i in mine}
            pages = [p for p in pd["incidents"] if incident_id(p["dedup_key"]) in ours]
            row["pagerduty"] = len(pages)
            row["pagerduty_resolved"] = all(p["status"] == "resolved" for p in pages) if pages else None
        per.append(row)
    false = [t["final"][:140] for i, t in enumerate(threads) if i not in matched]
    unresolved = sum(1 for t in threads if not any(text.startswith("[RESOLVED]") for _, text in t["events"]))
    lost = sum(1 for n in notifications if n["status"] != "sent") + failures
    return {
        "labelled": per,
        "threads": len(threads),
        "false_pages": len(false),
        "false_titles": false[:10],
        "threads_unresolved": unresolved,
        "lost_pages": lost,
        "mails": received["mail"],
        "pagerduty_incidents": len(pd["incidents"]),
        "pagerduty_events": len(pd["events"]),
        "resource_days": round(resources * days, 2),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [r for run in runs for r in run["labelled"]]
    paged = [r for r in rows if r["threads"] >= 1]
    limits = [r["delay_min"] for r in paged if r["kind"] in LIMIT_KINDS]
    trends = [r["delay_min"] for r in paged if r["kind"] not in LIMIT_KINDS]
    quiet = [run for run in runs if run["healthy"] or not run["labelled"]]
    resource_days = sum(run["resource_days"] for run in runs)
    false = sum(run["false_pages"] for run in runs)
    pd = [r["pagerduty"] for r in paged]
    return {
        "incidents": len(rows),
        "recall": round(len(paged) / len(rows), 3) if rows else None,
        "threads_per_incident_max": max((r["threads"] for r in rows), default=0),
        "incidents_with_one_thread": sum(1 for r in rows if r["threads"] == 1),
        "pagerduty_per_incident_max": max(pd) if pd else None,
        "pagerduty_resolved": sum(1 for r in paged if r["pagerduty_resolved"]),
        "lost_pages": sum(run["lost_pages"] for run in runs),
        "resolved_in_thread": round(sum(1 for r in paged if r["resolved_in_thread"]) / len(paged), 3)
        if paged
        else None,
        "premature_resolves": sum(1 for r in paged if r["premature"]),
        "titles_naming_outcome_and_cause": sum(1 for r in paged if r["title_names_outcome"] and r["title_names_cause"]),
        "median_page_delay_minutes": round(statistics.median([r["delay_min"] for r in paged]), 1) if paged else None,
        "median_page_delay_minutes_limits": round(statistics.median(limits), 1) if limits else None,
        "median_page_delay_minutes_trends": round(statistics.median(trends), 1) if trends else None,
        "false_pages": false,
        "unusual": {
            k: sum(run.get("unusual", {}).get(k, 0) for run in runs)
            for k in ("episodes", "pages", "supporting", "series")
        },
        "false_pages_quiet_runs": sum(run["false_pages"] for run in quiet),
        "resource_days": round(resource_days, 1),
        "false_pages_per_1000_resource_days": round(1000 * false / resource_days, 2) if resource_days else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scenarios", type=Path, help="a folder of scenario files (default: the ones shipped in simulator/scenarios)"
    )
    ap.add_argument("--fleets", type=Path, help="a folder the scenarios' fleets are looked up in first")
    ap.add_argument("--only", default="", help="comma-separated scenario names to run (default: all)")
    ap.add_argument(
        "--healthy-days", type=float, default=7.0, help="emulated days of the healthy fleet (0: skip; default 7)"
    )
    ap.add_argument(
        "--backfill", type=int, default=6 * 3600, help="seconds of history the first poll backfills (default 6 h)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for the agent, e.g. --set alerts.for=60 (default: the defaults users get)",
    )
    ap.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="scenarios run at once (default 2)"
    )
    args = ap.parse_args(argv)
    files = scenario_files(args.scenarios)
    if args.only:
        wanted = set(args.only.split(","))
        files = [f for f in files if f.stem in wanted]
        unknown = wanted - {f.stem for f in files}
        if unknown:
            ap.error(f"no scenario file for {sorted(unknown)} in {args.scenarios or 'simulator/scenarios'}")
    files = [f for f in files if f.stem != "healthy"]
    jobs: list[tuple[str, float]] = []
    if args.healthy_days:  # the longest run first, so the scenarios run beside it
        healthy = (
            (args.scenarios / "healthy.toml") if args.scenarios and (args.scenarios / "healthy.toml").exists() else None
        )
        jobs.append((str(healthy) if healthy else "healthy", args.healthy_days))
    jobs += [(str(f), 0.0) for f in files]
    if not jobs:
        ap.error("nothing to run")
    fleets = str(args.fleets) if args.fleets else None
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            ap.error(f"--set {item!r}: write KEY=VALUE with a setting's name, e.g. alerts.for=60")
        overrides["FLEETWATCH_" + key.replace(".", "_").upper()] = value
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    print(f"running {len(jobs)} scenario(s) through the agent, {args.workers} at a time", file=sys.stderr, flush=True)
    # One scenario per process: the emulator's moto backends are process-wide.
    with ProcessPoolExecutor(
        max_workers=max(1, args.workers), mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
    ) as pool:
        futures = {
            pool.submit(run_one, path, fleets, args.backfill, days, None, overrides): path for path, days in jobs
        }
        for fut in as_completed(futures):
            run = fut.result()
            runs.append(run)
            print(json.dumps(run), flush=True)
    result = summary(runs)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["settings"] = args.set
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
