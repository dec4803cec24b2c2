"""The agent loop behind `fleetwatch run`: every poll.fast_interval, one cycle of collect →
detect → alert, then the weekly digest when it is due and the store's retention every hour.

- Cycles never overlap: one runs at a time, on one thread. A cycle that runs past the next one's
  start is recorded as an overrun, and the next cycle starts as soon as it ends: late, once,
  never twice to catch up (the collector's cursors fetch the missed window anyway).
- Stopping (SIGTERM, Ctrl-C) is asked between AWS calls and between notifications: the poll is
  abandoned (cursors move only after their window is stored, so nothing is half-written), and
  notifications not yet sent stay owed in the store for the next start.
- One clock, injected; waiting goes through a Waiter, so tests and the demo run weeks of cycles
  on a fake clock without sleeping.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.trace import Status, StatusCode

from collector.aws import Aws
from collector.poll import Collector
from fleetwatch.agent.alerting import build_pipeline, observations, resources
from fleetwatch.agent.detection import detect, detector_settings
from fleetwatch.agent.incremental import IncrementalDetection
from fleetwatch.clock import Clock, FakeClock
from fleetwatch.cluster import Cluster, NotLeader
from fleetwatch.logs import correlated
from fleetwatch.store import Store
from fleetwatch.store.dialect import POSTGRESQL
from fleetwatch.telemetry import Telemetry

log = logging.getLogger("fleetwatch.agent.loop")
PRUNE_EVERY = 3600
DIGEST_RETRY = 15 * 60  # a digest whose targets failed is tried again after this, not every cycle
# A cycle whose real duration passes this share of the poll interval is warned about, before the
# agent falls behind (an overrun).
BEHIND_SHARE = 0.75


class Stopping(Exception):
    """Raised out of a wait when the agent is asked to stop; unwinds the cycle in progress."""


class Waiter(Protocol):
    def wait_until(self, due: float) -> bool:
        """Return when the clock reaches `due` (True) or the agent is asked to stop (False)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` (a retry's backoff); raise Stopping if the agent is asked to stop."""
        ...


class RealWaiter:
    """Waits on the system clock, woken at once by stop."""

    def __init__(self, clock: Clock, stop: threading.Event) -> None:
        self.clock, self.stop = clock, stop

    def wait_until(self, due: float) -> bool:
        while not self.stop.is_set():
            left = due - self.clock.now()
            if left <= 0:
                return True
            self.stop.wait(min(left, 60.0))  # re-read the clock now and then: it may be stepped
        return False

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(max(seconds, 0.0)):
            raise Stopping


class FakeWaiter:
    """Moves a fake clock instead of waiting: the tests, the soak and the demo."""

    def __init__(self, clock: FakeClock, stop: threading.Event) -> None:
        self.clock, self.stop = clock, stop

    def wait_until(self, due: float) -> bool:
        if self.stop.is_set():
            return False
        if due > self.clock.now():
            self.clock.set(due)
        return True

    def sleep(self, seconds: float) -> None:
        if self.stop.is_set():
            raise Stopping
        self.clock.advance(max(seconds, 0.0))


@dataclass
class Cycle:
    poll_id: str
    scheduled_at: float
    started_at: float
    finished_at: float = 0.0
    status: str = "ok"  # ok, abandoned, stopped, not_leader (lost the alerting lock mid-cycle), error
    error: str = ""
    findings: int = 0
    sent: int = 0
    failed: int = 0
    overrun: float = 0.0
    skipped: int = 0
    # Real (not clock) seconds: the whole cycle, and each stage's wall and this process's CPU
    # seconds. Under an emulated or fake clock, the clock's finished - started says nothing.
    seconds: float = 0.0
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    unread: str = ""  # when every source failed (not one answer from AWS): their errors

    @property
    def lag(self) -> float:
        return max(self.started_at - self.scheduled_at, 0.0)

    def row(self) -> dict[str, Any]:
        return {
            "poll_id": self.poll_id,
            "scheduled_at": int(self.scheduled_at),
            "started_at": int(self.started_at),
            "finished_at": int(self.finished_at),
            "status": self.status,
            "error": self.error or None,
            "lag": round(self.lag, 3),
            "seconds": round(self.seconds, 3),
            "stages": json.dumps(self.stages, sort_keys=True),
            "overrun": round(self.overrun, 3),
            "skipped": self.skipped,
            "findings": self.findings,
            "sent": self.sent,
            "failed": self.failed,
        }


def incident_event_line(inc_id: int, event: str, detail: str, title: str) -> str:
    """The log line of one incident event: what joined (not the title again), a severity change
    from and to ("incident 4 severity: storefront-api: …" said neither), else the event and title."""
    if event == "joined":
        return f"incident {inc_id} joined by: {detail}"
    if event == "severity" and detail:
        return f"incident {inc_id} severity {detail.replace(' -> ', ' → ')}: {title}"
    return f"incident {inc_id} {event}: {title}"


class Agent:
    def __init__(
        self,
        cfg: Any,
        store: Store,
        aws: Aws,
        clock: Clock,
        *,
        waiter: Waiter | None = None,
        stop: threading.Event | None = None,
        telemetry: Telemetry | None = None,
        polls: int | None = None,
        ses: Any = None,
        timer: Callable[[], float] = time.perf_counter,
        cpu_timer: Callable[[], float] = time.process_time,
        must_read_at_start: bool = False,
        agent_id: str | None = None,
    ) -> None:
        self.cfg, self.store, self.clock = cfg, store, clock
        # Real elapsed time and this process's CPU time, for each cycle's stage times (injected:
        # the tests give counters of their own).
        self.timer, self.cpu_timer = timer, cpu_timer
        self.stop_event = stop or threading.Event()
        self.waiter = waiter or (
            FakeWaiter(clock, self.stop_event) if isinstance(clock, FakeClock) else RealWaiter(clock, self.stop_event)
        )
        self.telemetry = telemetry or Telemetry.off()
        self.polls = polls
        # `fleetwatch run`: a first poll that reads nothing at all (no credentials, no access, no
        # network) ends the agent with the errors, rather than a warning a minute forever. Once a
        # poll has read something, failing sources are logged and polled again: AWS has bad minutes.
        self.must_read_at_start = must_read_at_start
        self.interval = float(cfg["poll.fast_interval"])
        # Re-discovery off the poll cycle, on its own thread; on a fake clock (tests, the demo)
        # it stays in the cycle so that runs are reproducible.
        self.collector = Collector.from_config(
            cfg, store, aws, clock, should_stop=self.stopping, background_discovery=not isinstance(clock, FakeClock)
        )
        # On PostgreSQL, several agents share the store (fleetwatch.cluster): this one polls the
        # places it holds the lease of, and alerts only while it is the leader. On SQLite there
        # is one agent, and it is the leader.
        self.cluster = (
            Cluster(store, getattr(store, "url", ""), self.interval, agent_id=agent_id)
            if store.dialect is POSTGRESQL
            else None
        )  # PgStore.url: the database's URL
        if self.cluster is not None:
            self.collector.only = self.cluster.own
        self.pipeline = build_pipeline(
            cfg,
            store,
            clock,
            sleep=self.waiter.sleep,
            ses=ses,
            stopping=self.stopping,
            tracer=self.telemetry.tracer,
            fence=self.cluster.fence if self.cluster else None,
        )
        self.settings = detector_settings(cfg)
        # The detection pass, incremental between full ones (fleetwatch/agent/incremental.py). It
        # learns what changed from this process's writes, so not while several agents write the
        # store (PostgreSQL with a cluster): there every pass is full.
        self.detection = IncrementalDetection(store) if self.cluster is None else None
        self._pruned_at = 0.0
        self._digest_failed_at: float | None = None

    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def stop(self) -> None:
        self.stop_event.set()

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Cycle until stopped (or `polls` cycles). Returns 0, or 1 if the last cycle failed."""
        log.info(
            "agent started: polling every %ss",
            int(self.interval),
            extra={"store": str(self.store.path), "regions": self.cfg["aws.regions"]},
        )
        due, done, last = self.clock.now(), 0, None
        while self.polls is None or done < self.polls:
            if not self.waiter.wait_until(due):
                break
            last = self.cycle(due)
            done += 1
            if done == 1 and last.unread and self.must_read_at_start:
                log.error(
                    "stopping: the first poll could not read anything from AWS: %s. Fix that and start fleetwatch "
                    "again; once it reads, a source that fails is logged and polled again",
                    last.unread,
                )
                return 2
            if last.status == "stopped" or self.stopping():
                break
            next_due = due + self.interval
            if last.finished_at > next_due:
                # Overran: start the next one now, late, once; the ticks passed meanwhile are not made up.
                last.overrun = last.finished_at - next_due
                last.skipped = int(last.overrun // self.interval)
                self.telemetry.overruns.add(1)
                log.warning(
                    "poll overran its %ss interval by %.1f s; the next poll starts late%s",
                    int(self.interval),
                    last.overrun,
                    f" ({last.skipped} interval(s) skipped)" if last.skipped else "",
                    extra={"poll_id": last.poll_id},
                )
                self._save(last, update=True)
                next_due = last.finished_at
            due = next_due
        if self.cluster is not None:
            try:
                self.cluster.close()  # its places go to the others at once, and the lead if it held it
            except Exception as exc:  # noqa: BLE001 - the store unreachable: the leases expire on their own
                log.warning(
                    "could not hand this agent's places over on stopping (%s); the other agents take "
                    "them when its leases expire",
                    exc,
                )
        log.info("agent stopped after %d poll(s)", done)
        return 1 if last is not None and last.status == "error" else 0

    def cycle(self, scheduled_at: float) -> Cycle:
        """One poll, detection pass and delivery, then the digest and retention when due."""
        cycle = Cycle(uuid.uuid4().hex, scheduled_at, self.clock.now())
        began = self.timer()
        tracer = self.telemetry.tracer
        with (
            correlated(poll_id=cycle.poll_id),
            tracer.start_as_current_span(
                "fleetwatch.poll", attributes={"fleetwatch.poll.id": cycle.poll_id, "fleetwatch.poll.lag": cycle.lag}
            ) as span,
        ):
            try:
                self._cycle(cycle)
            except Stopping:
                cycle.status, cycle.error = "stopped", "the agent stopped during delivery; what was not sent stays owed"
                log.info("stopping: %s", cycle.error)
            except NotLeader as exc:  # the lock's session ended mid-cycle: nothing more is written or sent
                cycle.status, cycle.error = "not_leader", str(exc)
                log.warning("%s", exc)
            except Exception as exc:  # noqa: BLE001 - a failed cycle is logged and recorded; the loop goes on
                cycle.status, cycle.error = "error", f"{type(exc).__name__}: {exc}"
                log.error("cycle failed: %s", cycle.error, extra={"traceback": traceback.format_exc(limit=8)})
            if cycle.status in ("error", "abandoned"):
                span.set_status(Status(StatusCode.ERROR, cycle.error[:200]))
            span.set_attribute("fleetwatch.poll.status", cycle.status)
        cycle.finished_at = self.clock.now()
        cycle.seconds = self.timer() - began
        self._warn_if_behind(cycle)
        self._save(cycle)
        return cycle

    @contextmanager
    def _stage(self, cycle: Cycle, name: str) -> Iterator[None]:
        wall, cpu = self.timer(), self.cpu_timer()
        try:
            yield
        finally:
            cycle.stages[name] = {
                "seconds": round(self.timer() - wall, 3),
                "cpu_seconds": round(self.cpu_timer() - cpu, 3),
            }

    def _warn_if_behind(self, cycle: Cycle) -> None:
        """A cycle that took most of its interval in real time: the next larger fleet, or slower
        AWS, and cycles overrun. Said before it happens, with where the time went."""
        if cycle.seconds <= BEHIND_SHARE * self.interval:
            return
        where = ", ".join(
            f"{name} {s['seconds']:.1f} s ({s['cpu_seconds']:.1f} s CPU)" for name, s in cycle.stages.items()
        )
        log.warning(
            "the cycle took %.1f s of its %ss interval (%.0f %%): the agent is close to falling behind (%s); "
            "lengthen poll.fast_interval, narrow what is collected (scope.*), or split the accounts and Regions "
            "between agents",
            cycle.seconds,
            int(self.interval),
            100 * cycle.seconds / self.interval,
            where,
            extra={"poll_id": cycle.poll_id, "cycle_seconds": round(cycle.seconds, 3), "stages": cycle.stages},
        )

    def _cycle(self, cycle: Cycle) -> None:
        log.debug("polling")
        with self._stage(cycle, "poll"):
            report = self.collector.poll(poll_id=cycle.poll_id)
        if report.abandoned:
            cycle.status, cycle.error = (
                "abandoned",
                "the agent stopped during the poll; its window is fetched again next time",
            )
            log.info("poll abandoned: the agent is stopping")
            return
        self.telemetry.record_poll(report, cycle.lag)
        log.info(
            "poll finished in %.1f s: %d API calls, %d metrics ($%.4f), %d samples, %d errored source(s)",
            report.seconds,
            sum(report.calls.values()),
            report.metrics,
            report.cost,
            report.samples,
            len(report.errors),
            extra={"api_calls": sum(report.calls.values()), "samples": report.samples, "lag_s": round(cycle.lag, 3)},
        )
        if report.errors and not any(s.status == "ok" and s.source != "sts" for s in report.sources):
            # ("sts" results with status ok are only the tally of calls made outside any source)
            by_error: dict[str, list[str]] = {}
            for s in report.errors:
                by_error.setdefault(s.error, []).append(f"{s.source} in {s.place}")
            cycle.unread = "; ".join(
                f"{', '.join(where[:3])}{f' and {len(where) - 3} more' if len(where) > 3 else ''}: {error}"
                for error, where in by_error.items()
            )
        for s in report.errors:
            log.warning(
                "source %s in %s failed: %s",
                s.source,
                s.place,
                s.error,
                extra={"source": s.source, "account": s.place.account, "region": s.place.region},
            )
        if self.stopping():
            return
        if self.cluster is not None and not self.cluster.lead():
            return  # another agent is the alerting leader: this one only collects

        log.debug("detecting")
        with self._stage(cycle, "detect"):
            if self.detection is not None:
                detection = self.detection.detect(
                    report.started_at, settings=self.settings, tracer=self.telemetry.tracer
                )
                log.debug("detection pass: %s", self.detection.last, extra={"pass": self.detection.last})
            else:
                detection = detect(self.store, report.started_at, settings=self.settings, tracer=self.telemetry.tracer)
        cycle.findings = len(detection.findings)
        for r in detection.runs:
            if r.status != "ok":
                log.error("detector %s failed: %s", r.name, r.error, extra={"detector": r.name})

        observed, ran_ok = observations(detection)
        seen = self.store.db.execute("SELECT COALESCE(MAX(id), 0) FROM incident_events").fetchone()[0]
        with self._stage(cycle, "alerts"):
            self.pipeline.observe(observed, ran_ok, resources(self.store), detection.at)
        for inc_id, event, detail, title, state in self.store.db.execute(
            "SELECT e.incident_id, e.event, e.detail, i.title, i.state FROM incident_events e "
            "JOIN incidents i ON i.id = e.incident_id WHERE e.id > ? ORDER BY e.id",
            [seen],
        ):
            with correlated(incident_id=inc_id):
                log.info(
                    "%s", incident_event_line(inc_id, event, detail, title), extra={"state": state, "detail": detail}
                )
        log.debug("delivering")
        with self.telemetry.tracer.start_as_current_span("fleetwatch.deliver"), self._stage(cycle, "deliver"):
            delivery = self.pipeline.deliver()
        cycle.sent = sum(1 for o in delivery.outcomes if o.ok)
        cycle.failed = len(delivery.outcomes) - cycle.sent
        self.telemetry.record_delivery(delivery.outcomes)
        if self.telemetry.plan.metrics:  # the incident query only when someone receives the gauge
            self.telemetry.record_detection(
                [r.name for r in detection.runs],
                Counter(f.detector for f in detection.findings),
                self._open_by_detector(),
            )
        if self.stopping() or (self.cluster is not None and not self.cluster.leadership.held()):
            return
        with self._stage(cycle, "digest_retention"):
            self._digest()
            self._prune()

    # -- weekly digest and retention -------------------------------------------------------------

    def _digest(self) -> None:
        from alerts.digest import digest_targets, owed_digest
        from fleetwatch.agent.alerting import send_due_digest

        now = self.clock.now()
        if self._digest_failed_at is not None and now - self._digest_failed_at < DIGEST_RETRY:
            return
        owed = owed_digest(self.store, now, self.cfg)
        if owed is None or not digest_targets(self.cfg):
            return
        first = self.store.db.execute("SELECT MIN(started_at) FROM poll_log").fetchone()[0]
        if first is None or owed[1] < first:
            return  # due before this store collected anything: there is no week to report on
        with self.telemetry.tracer.start_as_current_span("alerts.digest", attributes={"alerts.digest.period": owed[0]}):
            sent = send_due_digest(self.cfg, self.store, self.clock, self.waiter.sleep)
        if sent is None:
            return
        period, errors = sent
        if errors:
            self._digest_failed_at = now
            log.warning("digest %s not delivered to every target: %s", period, "; ".join(errors))
        else:
            self._digest_failed_at = None
            log.info("digest %s sent", period)

    def _prune(self) -> None:
        now = self.clock.now()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        with self.telemetry.tracer.start_as_current_span("fleetwatch.retention"):
            samples = self.store.prune(int(now), self.cfg["store.raw_retention"], self.cfg["store.rollup_retention"])
            history = self.store.prune_history(
                int(now),
                self.cfg["store.history_retention"],
                self.cfg["store.incident_retention"],
                self.cfg["store.rollup_retention"],
            )
        removed = {k: v for k, v in {**samples, **history}.items() if v}
        if removed:
            log.info(
                "retention: %s", ", ".join(f"{k} {v}" for k, v in sorted(removed.items())), extra={"removed": removed}
            )

    # -- records ---------------------------------------------------------------------------------

    def _open_by_detector(self) -> Counter[str]:
        rows = self.store.db.execute(
            "SELECT DISTINCT i.id, a.detector FROM incidents i JOIN alerts a ON a.incident_id = i.id "
            "WHERE i.resolved_at IS NULL"
        ).fetchall()
        return Counter(detector for _, detector in rows)

    def _save(self, cycle: Cycle, update: bool = False) -> None:
        row = {**cycle.row(), "agent_id": self.cluster.agent_id if self.cluster is not None else ""}
        try:
            with self.store.transaction() as db:
                if update:
                    db.execute(
                        "UPDATE agent_cycles SET overrun = ?, skipped = ? WHERE poll_id = ?",
                        [row["overrun"], row["skipped"], row["poll_id"]],
                    )
                else:
                    db.table("agent_cycles").insert(row)
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop the loop; the log says so
            log.error("could not record the cycle: %s", exc)
