"""`python -m simulator.standins slack|smtp|pagerduty|webhook`: the Slack stand-in, the SMTP sink,
the PagerDuty Events API v2 stand-in or a webhook receiver as a process of its own, for the
compose file's demo profile. Each prints what it receives, one line per message, so `docker
compose logs slack` shows the notifications; all stop on SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.standins", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("slack", "smtp", "pagerduty", "webhook"))
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)"
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server: Any
    if args.what == "slack":
        from simulator.slack import TOKEN, SlackStandIn

        server = SlackStandIn(host=args.host, port=args.port).__enter__()
        print(f"Slack stand-in on {server.api_url} (bot token {TOKEN})", flush=True)

        def seen() -> list[str]:
            return [f"slack {m.get('channel')}: {m.get('text', '')[:200]}" for m in server.messages()]
    elif args.what == "pagerduty":
        from simulator.pagerduty import ROUTING_KEY, PagerDutyStandIn

        server = PagerDutyStandIn(host=args.host, port=args.port).__enter__()
        print(f"PagerDuty Events API v2 stand-in on {server.url} (routing key {ROUTING_KEY})", flush=True)

        def seen() -> list[str]:
            return [
                f"pagerduty {e['event_action']} {e.get('dedup_key', '')}: "
                f"{(e.get('payload') or {}).get('summary', '')[:200]}"
                for e in server.snapshot()["events"]
            ]
    elif args.what == "webhook":
        from simulator.webhook import WebhookReceiver

        server = WebhookReceiver(host=args.host, port=args.port).__enter__()
        print(f"webhook receiver on {server.url('/')}", flush=True)

        def seen() -> list[str]:
            return [
                f"webhook {p.get('receiver')} {p.get('status')}: "
                f"{(p.get('commonAnnotations') or {}).get('incident_title', '')[:200]}"
                for p in server.payloads()
            ]
    else:
        from simulator.mail import SmtpSink

        server = SmtpSink(host=args.host, port=args.port).__enter__()
        print(f"SMTP sink on {args.host}:{server.port}", flush=True)

        def seen() -> list[str]:
            return [f"mail to {', '.join(rcpt)}: {msg['Subject']}" for rcpt, msg in server.messages()]

    shown = 0
    while not stop.wait(1.0):  # a real process printing what arrived, once a second
        lines = seen()
        for line in lines[shown:]:
            print(line, flush=True)
        shown = len(lines)
    server.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
