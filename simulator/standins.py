"""`python -m simulator.standins slack|smtp`: the Slack stand-in or the SMTP sink as a process of
its own, for the compose file's demo profile. Each prints what it receives, one line per
message, so `docker compose logs slack` shows the notifications; both stop on SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.standins", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("slack", "smtp"))
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)")
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
