"""`fleetwatch plan` and `fleetwatch collect`: the collector from the command line."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from collector.aws import Aws
from collector.poll import Collector
from collector.pollreport import PollReport, polling_cost
from collector.report import render
from fleetwatch.clock import Clock, SystemClock
from fleetwatch.store import Store


class Bar:
    """A terminal progress bar (tqdm) for long backfills; silent for the usual one-call polls."""

    def __init__(self, stream: TextIO | None = None, minimum: int = 2) -> None:
        self.stream, self.minimum = stream or sys.stderr, minimum
        self._bar: Any = None

    def __call__(self, done: int, total: int, what: str) -> None:
        if total < self.minimum:
            return
        if self._bar is None or self._bar.total != total:
            from tqdm import tqdm

            self.close()
            self._bar = tqdm(
                total=total,
                desc="backfill",
                unit="call",
                file=self.stream,
                leave=True,
                dynamic_ncols=True,
                mininterval=0.5,
            )
        self._bar.set_postfix_str(what, refresh=False)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def plan_command(
    cfg: Any, store: Store, aws: Aws, clock: Clock, discover: bool, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Exit status 0 when the plan covers the whole fleet; 1 when discovery failed anywhere (the
    plan then covers only what was found, and says so), or nothing was found at all."""
    out, err = out or sys.stdout, err or sys.stderr
    collector = Collector.from_config(cfg, store, aws, clock)
    failed = []
    if discover:
        for r in collector.discover():
            if r.status == "ok":
                print(f"discovery {r.place}: {r.note or 'ok'}", file=out)
            else:
                failed.append(r)
                print(f"discovery {r.place} failed: {r.error}", file=out)
        print(file=out)
    by_place: dict[str, list[dict[str, Any]]] = {}
    for row in store.resources():
        by_place.setdefault(f"{row['account']}/{row['region']}", []).append(row)
    if by_place:
        print(
            render(
                by_place, cfg["poll.fast_interval"], cfg["poll.slow_interval"], cfg["poll.logs_insights_gb_per_day"]
            ),
            file=out,
        )
        # What polling has cost so far, by the one function the overview and the digest use.
        print(
            f"\npolling cost measured from the poll log: {polling_cost(store.db, int(clock.now())).sentence()}",
            file=out,
        )
    places = sorted({str(r.place) for r in failed})
    if failed:
        print(
            f"fleetwatch: discovery failed in {len(places)} place(s) ({', '.join(places)}): "
            + ("the plan above covers only the resources the store already holds; " if by_place else "")
            + "see each place's error above for the fix",
            file=err,
        )
    elif not by_place:
        print(
            "fleetwatch: no resources discovered yet; run without "
            "--no-discover, or check aws.regions and aws.role_arns",
            file=err,
        )
    return 1 if failed or not by_place else 0


def collect_command(
    cfg: Any,
    store: Store,
    aws: Aws,
    clock: Clock | None = None,
    *,
    polls: int | None = 1,
    out: TextIO | None = None,
    between: Callable[[], None] | None = None,
    after: Callable[[PollReport], None] | None = None,
    brief: bool = False,
) -> int:
    """Run `polls` polls (None: until interrupted), printing each summary. Exit status 1 if the
    last poll had errored sources, so scripts notice. `brief` prints one line per poll after the
    first (errors still in full)."""
    out = out or sys.stdout
    clock = clock or SystemClock()
    bar = Bar()
    collector = Collector.from_config(cfg, store, aws, clock, progress=bar)
    report: PollReport | None = None
    n = 0
    try:
        while polls is None or n < polls:
            started = clock.now()
            report = collector.poll()
            bar.close()
            text = report.summary()
            if brief and n > 0:
                text = "\n".join(line for i, line in enumerate(text.splitlines()) if i == 0 or "ERROR" in line)
            print(text, file=out, flush=True)
            if after is not None:
                after(report)
            n += 1
            if polls is not None and n >= polls:
                break
            if between is not None:
                between()
            else:
                time.sleep(max(0.0, cfg["poll.fast_interval"] - (clock.now() - started)))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        bar.close()
    return 1 if report is not None and report.errors else 0
