"""`fleetwatch incidents`, `ack` and `silence`: the on-call's hands on the alert pipeline from a shell."""

from __future__ import annotations

import argparse
import sys
import time

from alerts.store import AlertStore
from fleetwatch.clock import SystemClock
from fleetwatch.config.settings import parse_duration
from fleetwatch.store import Store


def _when(t: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else "-"


def incident_command(args: argparse.Namespace, store: Store) -> int:
    alerts = AlertStore(store)
    now = int(SystemClock().now())
    if args.command == "incidents":
        rows = alerts.incidents(open_only=not args.all)
        if not rows:
            print("no open incidents" if not args.all else "no incidents")
        for inc in rows:
            ack = f" acked by {inc.acked_by}" if inc.acked_by else ""
            print(
                f"#{inc.id:<5} {inc.state:10} {inc.severity:8} since {_when(inc.started_at)}{ack}\n       {inc.title}"
            )
            if inc.cause:
                print(f"       cause: {inc.cause}")
        return 0
    if args.command == "ack":
        if alerts.acknowledge(args.id, args.by, now):
            print(f"incident #{args.id} acknowledged by {args.by}")
            return 0
        print(
            f"fleetwatch: incident #{args.id} is not open (or already acknowledged); see `fleetwatch incidents`",
            file=sys.stderr,
        )
        return 1
    if args.silence_command == "add":
        try:
            duration = parse_duration(args.duration)
            sid = alerts.add_silence(args.matchers, now, now + duration, args.author, args.comment, now)
        except ValueError as exc:
            print(f"fleetwatch: silence not added: {exc}", file=sys.stderr)
            return 2
        print(f"silence #{sid}: {args.matchers} until {_when(now + duration)}")
        return 0
    if args.silence_command == "list":
        silences = list(store.db.query("SELECT * FROM silences WHERE ends_at > ? ORDER BY ends_at", [now]))
        for r in silences:
            print(
                f"#{r['id']:<4} {r['matchers']}  {_when(r['starts_at'])} -> "
                f"{_when(r['ends_at'])}  by {r['author']}  {r['comment'] or ''}"
            )
        if not silences:
            print("no active silences")
        return 0
    if alerts.expire_silence(args.id, now):
        print(f"silence #{args.id} expired")
        return 0
    print(f"fleetwatch: silence #{args.id} is not active", file=sys.stderr)
    return 1
