"""`fleetwatch digest`: write the weekly digest to a file for a look (--preview), or send it now (--send)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from alerts import digest
from fleetwatch.accounts import configured
from fleetwatch.agent.alerting import channels
from fleetwatch.clock import SystemClock
from fleetwatch.store import Store


def digest_command(args: Any, cfg: Any, store: Store) -> int:
    clock = SystemClock()
    now = int(clock.now())
    d = digest.gather(store, now, names=configured(cfg), url=digest.digest_url(cfg))
    if not args.preview and not args.send:
        print("fleetwatch digest: give --preview FILE.html or --send", file=sys.stderr)
        return 2
    if args.preview:
        path = Path(args.preview)
        path.write_text(digest.render_html(d))
        path.with_suffix(".txt").write_text(digest.render_text(d))
        print(f"digest {d.period} written to {path} and {path.with_suffix('.txt')}")
    if args.send:
        targets = digest.digest_targets(cfg)
        if not targets:
            print("fleetwatch digest: nowhere to send it: set digest.targets or email.to", file=sys.stderr)
            return 2
        errors = digest.send_digest(
            store,
            d,
            targets,
            channels(cfg, clock, time.sleep),
            cfg["email.from"],
            now,
            time.sleep,
            cfg["alerts.max_attempts"],
            cfg["web.public_url"],
            scheduled=False,
        )
        for e in errors:
            print(f"fleetwatch digest: {e}", file=sys.stderr)
        if errors:
            return 1
        print(f"digest {d.period} sent to {', '.join(targets)}")
    return 0
