"""One poll: discover what is due, plan the queries, fetch them in as few GetMetricData calls
as the limits allow, run the state probes, and store it all, with a poll-log row per source.

Each place (account, region) is collected on its own thread. A source that fails (an account
whose role cannot be assumed, a throttled CloudWatch, a service that errors) gets an errored
row with its message and is tried again next poll; its cursor does not move, so the window it
missed is fetched then. Nothing else is held up.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from opentelemetry import context as otel_context

from collector import coldstart_sources, discovery, pacing, plan, probes, published
from collector.aws import AssumeRoleError, Aws, CallTally, Place
from collector.catalog import ALIGN, DETAIL, FAST, SLOW
from collector.incremental import Prior
from collector.metricdata import Chunk, fetch, linked_chunks, windows
from collector.plan import PlacePlan, Triggered
from collector.pollreport import PollReport, SourceResult
from collector.probes import ALIAS_FRACTION
from collector.scope import Scope
from fleetwatch.clock import Clock
from fleetwatch.store import SeriesKey, Store, open_store

# Not a tier: a cursor row saying until when a place last read its full re-read window (the
# short window on the polls between), so whichever agent holds the place keeps that rhythm.
FULL = "full"

Progress = Callable[[int, int, str], None]  # (done, total, what) for long backfills
FAILURES = (ClientError, BotoCoreError, AssumeRoleError, probes.ProbeError, *discovery.UNREADABLE)
# Places polled at once: as many as there are, up to PLACE_THREADS (the pool is sized to the
# fleet at each poll; a single place polls on the caller's thread). CloudWatch's GetMetricData
# quota is 50 transactions per second per account and Region (CloudWatch service quotas,
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html), and a
# place IS one account and Region: one worker holds a place for the whole poll, so a place never
# has more than METRIC_THREADS calls in flight however large the pool (a monitoring account's hub
# per Region likewise; with several agents, each place is leased to one). The pool therefore
# spends no place's quota faster; it is bounded for this process instead: each worker holds its
# place's boto3 clients and up to METRIC_THREADS connections, and the parsing and the store's
# writes share one interpreter lock and one SQLite connection, so past ~16 workers a poll of
# many small places gains nothing (100 accounts x 10 Regions: 1,000 places, 63 a worker).
PLACE_THREADS = 16


def place_threads(places: int) -> int:
    """Workers for a poll of `places` places: one each, up to PLACE_THREADS."""
    return max(1, min(PLACE_THREADS, places))


# Namespaces whose datapoints can land later than poll.lookback re-reads: an SQS queue that wakes
# after six inactive hours publishes its first metrics up to 15 minutes late (SQS Developer Guide,
# "Monitoring Amazon SQS queues using CloudWatch"; SIGNALS.md §4). Their series are re-read over
# that much (plus one period) on every full re-read (every poll.slow_interval), whatever the cursor says:
# GetMetricData is billed per metric requested, not per datapoint, so the longer window costs nothing.
LATE_SECONDS = {"AWS/SQS": 15 * 60}
# GetMetricData calls of one place in flight at once. CloudWatch allows 50 per second per account
# and Region, and 180,000 datapoints a second for windows starting within 3 hours (CloudWatch
# service quotas, https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html;
# SIGNALS.md): four calls of 500 queries, each answering in well over 80 ms, stay under both.
METRIC_THREADS = 4
VERIFY_INTERVAL = 24 * 3600  # seconds between two verifications of a place's plan against ListMetrics


class PollAbandoned(Exception):
    """The agent is stopping: the poll stops between two calls. Cursors move only after their
    window is stored, so what was not finished is fetched again by the next poll."""


class Collector:
    def __init__(
        self,
        store: Store,
        aws: Aws,
        clock: Clock,
        *,
        lookback: int = 900,
        backfill: int = 86400,
        short_lookback: int | None = None,
        slow_interval: int = 300,
        fast_interval: int = 60,
        spread_slow: bool = False,
        discovery_interval: int = 3600,
        xray_max_traces: int = 100,
        scope: Scope | None = None,
        progress: Progress | None = None,
        probes: bool = True,
        should_stop: Callable[[], bool] | None = None,
        sources: tuple[str, ...] | list[str] = coldstart_sources.SOURCES,
        logs_gb_per_day: float = 1.0,
        logs_query_timeout: float = 30.0,
        sleep: Callable[[float], None] | None = None,
        quota_fraction: float = pacing.DEFAULT_FRACTION,
        detail_refresh: int = 6 * 3600,
        background_discovery: bool = False,
        pacer: pacing.Pacer | None = None,
    ) -> None:
        self.store, self.aws, self.clock = store, aws, clock
        self.lookback, self.backfill = lookback, backfill
        # Re-read on polls where the slow tier is not due (None: the full lookback every poll).
        self.short_lookback = min(short_lookback, lookback) if short_lookback else lookback
        self._full_at: dict[Place, int] = {}  # when each place last re-read the full lookback
        self.slow_interval, self.discovery_interval = slow_interval, discovery_interval
        # The slow tier spread over the fast polls of its interval (collector.plan.slow_slice):
        # each poll reads 1/k of it. Off (k = 1, the whole tier every slow_interval) unless asked.
        self.fast_interval = max(1, fast_interval)
        self.slow_slices = max(1, slow_interval // self.fast_interval) if spread_slow else 1
        self.xray_max_traces = xray_max_traces
        self.scope = scope or Scope()
        self.progress = progress
        self.run_probes = probes  # off only to time the metric path alone (bench/collector.py)
        self.should_stop = should_stop or (lambda: False)  # asked between calls; True abandons the poll
        self._db = threading.Lock()  # one SQLite connection: store calls are serialised
        self._done = 0
        self._total = 0
        self.coldstarts = coldstart_sources.Reader(
            clock=clock,
            log=aws.log,
            lookback=lookback,
            sources=sources,
            gb_per_day=logs_gb_per_day,
            query_timeout=logs_query_timeout,
            xray_max_traces=xray_max_traces,
            destination_ttl=discovery_interval,
            fetch=fetch,
            sleep=sleep,
        )
        # Discovery's control-plane calls wait for their slot on the injected clock.
        self.pacer = pacer or pacing.Pacer(
            clock.now, sleep or getattr(clock, "sleep", None) or time.sleep, quota_fraction
        )
        # The deploy probe's ListAliases calls: buckets of their own (never queued behind a
        # discovery), at a share that keeps discovery and probe together under half of Lambda's quota.
        self.probe_pacer = pacing.Pacer(
            self.pacer.now, self.pacer.sleep, ALIAS_FRACTION, on_release=self.pacer.on_release
        )
        self.detail_refresh = detail_refresh
        # Re-discovery on a thread of its own, so that the poll never waits for it (see _poll).
        self.background_discovery = background_discovery
        self._background: threading.Thread | None = None
        self._background_places: set[Place] = set()
        self._background_done: list[SourceResult] = []
        self._background_calls: dict[Place, CallTally] = {}
        # Series whose window came back InternalError / PartialData: the start of what is still
        # to be read. Their tier's cursor moves on for the other series; these are asked again
        # from there until an answer is Complete (at most 15 days back, as a cursor). Kept in the
        # store (Store.note_rereads), not here: the next agent to hold the place reads them too.
        # How ListMetrics is paced (collector/published.py): on the injected clock, as discovery's
        # pacer (a fake or emulated clock moves instead of sleeping); tests may replace both.
        self.sleep: Callable[[float], None] = self.pacer.sleep
        self.monotonic: Callable[[], float] = self.pacer.now
        # Several agents on one store (fleetwatch.cluster): given every place and the poll's
        # time, the places this agent holds the lease of; only those are discovered and polled.
        self.only: Callable[[list[tuple[str, str]], int], set[tuple[str, str]]] | None = None

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        store: Store,
        aws: Aws,
        clock: Clock,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        background_discovery: bool = False,
    ) -> Collector:
        return cls(
            store,
            aws,
            clock,
            lookback=cfg["poll.lookback"],
            backfill=cfg["poll.backfill"],
            short_lookback=cfg["poll.short_lookback"],
            slow_interval=cfg["poll.slow_interval"],
            fast_interval=int(cfg["poll.fast_interval"]),
            spread_slow=True,
            discovery_interval=cfg["discovery.interval"],
            xray_max_traces=cfg["poll.xray_max_traces"],
            scope=Scope.from_config(cfg),
            progress=progress,
            should_stop=should_stop,
            sources=cfg["poll.coldstart_sources"],
            logs_gb_per_day=cfg["poll.logs_insights_gb_per_day"],
            logs_query_timeout=cfg["poll.logs_query_timeout"],
            quota_fraction=cfg["discovery.quota_fraction"],
            detail_refresh=cfg["discovery.detail_refresh"],
            background_discovery=background_discovery,
        )

    # -- the poll --------------------------------------------------------------------------------

    def poll(
        self, *, force_discovery: bool = False, tiers: tuple[str, ...] | None = None, poll_id: str | None = None
    ) -> PollReport:
        """One poll of every place. `tiers` forces which tiers run (default: fast, plus slow when due)."""
        started = time.perf_counter()
        now = int(self.clock.now())
        poll_id = poll_id or uuid.uuid4().hex
        self.aws.log.take()
        try:
            return self._poll(poll_id, now, started, force_discovery, tiers)
        except PollAbandoned:
            self.aws.log.take()
            report = PollReport(poll_id, now, time.perf_counter() - started, {}, [], abandoned=True)
            with self._db:
                self.store.record_polls(
                    [
                        {
                            "poll_id": poll_id,
                            "started_at": now,
                            "finished_at": int(self.clock.now()),
                            "source": "poll",
                            "account": "",
                            "region": "",
                            "status": "abandoned",
                            "error": "the agent stopped during this poll; its window is fetched again next poll",
                        }
                    ]
                )
            return report

    def _poll(
        self, poll_id: str, now: int, started: float, force_discovery: bool, tiers: tuple[str, ...] | None
    ) -> PollReport:
        places, failed = self._places()
        results: list[SourceResult] = list(failed)

        due = [p for p in places if force_discovery or self._discovery_due(p, now)]
        if self.background_discovery and not force_discovery:
            # A place never discovered has nothing to poll yet: discovered here. Re-discovery runs
            # on its own thread (its calls paced, so it may take longer than a poll interval on a
            # large account) while this poll goes on with the resources stored.
            fresh = [p for p in due if not self._resources(p)]
            self._start_background([p for p in due if p not in fresh], now)
            due = fresh
        results += self._each(due, lambda p: self._discover_and_verify(p, now))

        if self.should_stop():
            raise PollAbandoned
        plans = {}
        for place in places:
            planned = self._plan(place, now, tiers)
            undiscovered = any(r.place == place and r.source == "discovery" and r.status != "ok" for r in results)
            if undiscovered and not planned[0].resources:
                continue  # never discovered: nothing to poll yet
            plans[place] = planned
        self._done = 0
        monitoring = self.aws.monitoring() if plans else None
        if monitoring is None:
            # Progress is reported only when a window spans several calls: a backfill or a resume.
            self._total = (
                sum(len(chunks) for _, chunks in plans.values()) if any(len(c) > 1 for _, c in plans.values()) else 0
            )
            results += self._each(list(plans), lambda p: self._collect(p, plans[p][0], plans[p][1], now))
        else:
            # Monitoring-account mode: every place's metric queries of a Region in as few
            # GetMetricData calls of the monitoring account as 500 queries a call allow.
            by_region = linked_chunks({p: chunks for p, (_, chunks) in plans.items()}, now // 60 * 60)
            self._total = sum(len(c) for c in by_region.values()) if any(len(c) > 1 for c in by_region.values()) else 0
            hubs = [Place(monitoring[0], region) for region in sorted(by_region)]
            results += self._each(
                hubs,
                lambda hub: [
                    self._metrics(hub, by_region[hub.region], lambda svc: self.aws.client(hub, svc), now, monitoring[0])
                ],
            )
            results += self._each(list(plans), lambda p: self._collect(p, plans[p][0], plans[p][1], now, metrics=False))
        read = {r.place for r in results if r.source == "cloudwatch" and r.status == "ok"}
        fulls = [
            (p.account, p.region, FULL, pp.full_end)
            for p, (pp, _) in plans.items()
            if pp.full_end is not None and (p if monitoring is None else Place(monitoring[0], p.region)) in read
        ]
        if fulls:
            with self._db:
                self.store.advance_cursors(fulls, now)

        tallies = self.aws.log.take()
        results += self._background_results(tallies)
        for r in results:
            tally = tallies.pop((r.place, r.source), None)
            if tally is not None:
                r.tally.add(tally)
        for (place, source), tally in tallies.items():  # calls made outside any source (AssumeRole)
            results.append(SourceResult(source or "sts", place, tally=tally))
        report = PollReport(
            poll_id,
            now,
            time.perf_counter() - started,
            {str(p): pp.tiers for p, (pp, _) in plans.items()},
            results,
            queries=sum(len(pp.plan.queries) for pp, _ in plans.values()),
        )
        self._record(report, now)
        return report

    def discover(self) -> list[SourceResult]:
        now = int(self.clock.now())
        self.aws.log.take()
        places, failed = self._places()
        results = failed + self._each(places, lambda p: self._discover_and_verify(p, now))
        tallies = self.aws.log.take()
        for r in results:
            r.tally.add(tallies.get((r.place, r.source), CallTally()))
        self._record(PollReport(uuid.uuid4().hex, now, 0.0, {}, results), now)
        return results

    def _places(self) -> tuple[list[Place], list[SourceResult]]:
        try:
            places = self.aws.places()
        except FAILURES as exc:
            return [], [
                SourceResult("sts", Place("?", r), "error", discovery.describe_error(exc)) for r in self.aws.regions
            ]
        if self.only is not None:
            held = self.only([(p.account, p.region) for p in places], int(self.clock.now()))
            places = [p for p in places if (p.account, p.region) in held]
        return places, []

    def _each(self, places: list[Place], work: Callable[[Place], list[SourceResult]]) -> list[SourceResult]:
        if len(places) <= 1:
            return [r for p in places for r in work(p)]
        parent = otel_context.get_current()  # the poll's span, so each call's span is its child

        def traced(place: Place) -> list[SourceResult]:
            token = otel_context.attach(parent)
            try:
                return work(place)
            finally:
                otel_context.detach(token)

        with ThreadPoolExecutor(max_workers=place_threads(len(places))) as pool:
            return [r for rs in pool.map(traced, places) for r in rs]

    def _resources(self, place: Place) -> list[dict[str, Any]]:
        with self._db:
            return self.store.resources(account=place.account, region=place.region)

    # -- discovery -------------------------------------------------------------------------------

    def _discovery_due(self, place: Place, now: int) -> bool:
        with self._db:
            last = self.store.last_poll("discovery", place.account, place.region)
        return last is None or now - last >= self.discovery_interval

    def _start_background(self, places: list[Place], now: int) -> None:
        """Discover `places` on a background thread with its own store connection (SQLite in WAL
        mode lets it write while the poll reads; the poll's connection is not shared across
        threads without the collector's lock, and the agent also uses it for detection). One such
        thread at a time: a place already being discovered is not started again."""
        with self._db:
            if not places or (self._background is not None and self._background.is_alive()):
                return
            self._background_places = set(places)

        def run() -> None:
            store = open_store(self.store.path)
            lock = threading.Lock()
            try:
                for place in places:
                    if self.should_stop():
                        break
                    result = self._discover(place, now, store, lock)
                    due = result.status == "ok" and self._verify_due(place, now, store, lock)
                    verified = [self._verify(place, now, store, lock)] if due else []
                    with self._db:
                        self._background_done += [result, *verified]
                        self._background_places.discard(place)
            finally:
                store.close()
                with self._db:
                    self._background_places.clear()

        self._background = threading.Thread(target=run, name="fleetwatch-discovery", daemon=True)
        self._background.start()

    def _background_results(self, tallies: dict[tuple[Place, str], CallTally]) -> list[SourceResult]:
        """Background discoveries finished since the last poll, to be recorded by this one, with
        every call they made. Calls of one still running are kept for its own result."""
        with self._db:
            done, self._background_done = self._background_done, []
            running = set(self._background_places)
            for key in [k for k in tallies if k[1] == "discovery" and k[0] in running | {r.place for r in done}]:
                self._background_calls.setdefault(key[0], CallTally()).add(tallies.pop(key))
            for r in done:
                r.tally.add(self._background_calls.pop(r.place, CallTally()))
        return done

    def wait_for_discovery(self, timeout: float | None = None) -> bool:
        """Wait for a background discovery to finish (the CLI, before it exits; tests)."""
        thread = self._background
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _discover(self, place: Place, now: int, store: Store | None = None, lock: Any = None) -> SourceResult:
        store, lock = store or self.store, lock or self._db
        result = SourceResult("discovery", place)
        with lock:
            stored = store.resources(account=place.account, region=place.region)
        prior = Prior.of(stored, now, self.detail_refresh)
        with self.aws.log.source("discovery"), self.pacer.active():
            try:
                found, errors = discovery.discover_place(
                    lambda svc: pacing.paced(self.aws.client(place, svc), place.account, place.region), place, prior
                )
            except FAILURES as exc:
                result.status, result.error = "error", discovery.describe_error(exc)
                return result
        kept = discovery.scoped(found, self.scope.admits)
        with lock:
            known = {r["id"]: r for r in store.resources(account=place.account, region=place.region)}
            rows = []
            for f in kept:
                rid = discovery.resource_id(f.kind, place, f.name)
                facts = dict(f.facts)
                old = known.get(rid, {}).get("facts", {})
                if f.kind in ("ses", "lambda_account"):  # keep what the probes learnt
                    facts = {**old, **facts}
                if published.FACT in old:  # kept until the next verification replaces it
                    facts.setdefault(published.FACT, old[published.FACT])
                if f.kind == "lambda":  # a new LastModified, or an alias moved: a deploy
                    facts.update(probes.deploy_facts(facts, old, now))
                rows.append(
                    {
                        "id": rid,
                        "account": place.account,
                        "region": place.region,
                        "kind": f.kind,
                        "name": f.name,
                        "arn": f.arn,
                        "facts": facts,
                        "tags": f.tags,
                    }
                )
            store.upsert_resources(rows, now)
            failed_kinds = {k for name in errors for k in discovery.OWNS[name]}
            seen = {r["id"] for r in rows}
            gone = [rid for rid, r in known.items() if rid not in seen and r["kind"] not in failed_kinds]
            store.mark_gone(gone, now)
        reused = sum(prior.reused.values())
        result.note = (
            f"{len(kept)} resources ({len(found) - len(kept)} out of scope, {len(gone)} gone; "
            f"{reused} unchanged kept their stored detail)"
        )
        if errors:
            result.status = "error"
            result.error = "; ".join(f"{k}: {v}" for k, v in errors.items())
        return result

    def _discover_and_verify(self, place: Place, now: int) -> list[SourceResult]:
        found = self._discover(place, now)
        if found.status != "ok" and not self._resources(place):
            return [found]
        return [found, self._verify(place, now)] if self._verify_due(place, now) else [found]

    def _verify_due(self, place: Place, now: int, store: Store | None = None, lock: Any = None) -> bool:
        """ListMetrics lists every series of the place (at 20,000 functions, ~10^3 pages whose
        parsing costs the agent more CPU than the rest of discovery), and what AWS publishes
        changes slowly (a series is listed while it had data in the past two weeks): verified at
        most every VERIFY_INTERVAL, not at each hourly discovery."""
        store, lock = store or self.store, lock or self._db
        with lock:
            last = store.last_poll("listmetrics", place.account, place.region)
        return last is None or now - last >= VERIFY_INTERVAL

    def _verify(self, place: Place, now: int, store: Store | None = None, lock: Any = None) -> SourceResult:
        """The plan against ListMetrics (collector/published.py): which planned series AWS does
        not publish, stored as each resource's `unpublished` fact. Polling is not changed."""
        store, lock = store or self.store, lock or self._db
        result = SourceResult("listmetrics", place)
        with lock:
            resources = store.resources(account=place.account, region=place.region)
        with self.aws.log.source("listmetrics"):
            try:
                pacer = published.Pacer(published.RATE, self.sleep, self.monotonic)
                got = published.verify(self.aws.client(place, "cloudwatch"), resources, pacer)
            except FAILURES as exc:
                result.status, result.error = "error", discovery.describe_error(exc)
                return result
        with lock:
            for rid, rows in got.facts.items():
                store.update_facts(rid, {published.FACT: rows}, now)
        result.note = got.note()
        return result

    # -- planning --------------------------------------------------------------------------------

    def _plan(self, place: Place, now: int, forced: tuple[str, ...] | None) -> tuple[_PlacePoll, list[Chunk]]:
        end = now // 60 * 60
        resources = self._resources(place)
        k = self.slow_slices
        names = [plan.slice_cursor(j, k) for j in range(k)]
        with self._db:
            cursors = {t: self.store.cursor(place.account, place.region, t) for t in (FAST, FULL, *names)}
            if k > 1 and any(cursors[n] is None for n in names):
                # A store polled before the slow tier was spread: its slices start from the tier's cursor.
                legacy = self.store.cursor(place.account, place.region, SLOW)
                cursors.update({n: legacy for n in names if cursors[n] is None})
            rereads = self.store.rereads(place.account, place.region)
            triggered = plan.triggers(self.store, resources, end, self.lookback)
        if forced is not None:
            tiers = [t for t in (FAST, SLOW) if t in forced]
            due = set(range(k)) if SLOW in tiers else set()
        else:
            due = {j for j in range(k) if self._slice_due(j, cursors[names[j]], end)}
            tiers = [FAST] + ([SLOW] if due else [])
        if forced is not None and DETAIL not in forced:
            triggered = Triggered()
        place_plan = plan.build(place, resources, tiers, triggered, k, due)
        # What the poll report shows: "slow" when the whole slow tier is read, else its slices.
        labels = [t for t in tiers if t != SLOW] + (
            [SLOW] if len(due) == k else [f"{SLOW} {','.join(map(str, sorted(due)))}/{k}"] if due else []
        )

        # The full re-read window once every slow_interval (and always without a short window),
        # a short one on the polls between: late datapoints land within a slow interval, and a
        # fast poll parses and stores a few minutes a series instead of the whole lookback.
        # When the place last read its full window is a cursor in the store (tier FULL), so an
        # agent taking the place over keeps the place's rhythm rather than its own.
        full_at = max(self._full_at.get(place, -plan.MAX_HISTORY), cursors[FULL] or -plan.MAX_HISTORY)
        full = self.short_lookback >= self.lookback or end - full_at >= self.slow_interval - 30
        if full:
            self._full_at[place] = end  # in the store once its window is stored (see poll)
        lookback = self.lookback if full else self.short_lookback
        # Each slow series is read once per slow interval, so always over the full window (the
        # slow tier used to be read on the full re-read's poll; a slice is read on any poll).
        reads = [(FAST, lookback)] if FAST in tiers else []
        reads += [(names[j], self.lookback) for j in sorted(due)]
        starts: dict[str, int] = {}
        for name, back in reads:
            cursor = cursors[name]
            start = end - max(self.backfill, self.lookback) if cursor is None else min(cursor, end - back)
            starts[name] = max(start, end - plan.MAX_HISTORY) // ALIGN * ALIGN
        starts[DETAIL] = (end - lookback) // ALIGN * ALIGN
        # A re-read goes back as far as a tier's cursor may: CloudWatch's 15 days of one-minute
        # data. One series over 15 days is one call, so a series that keeps failing stays cheap.
        oldest = (end - plan.MAX_HISTORY) // ALIGN * ALIGN
        by_start: dict[tuple[int, bool], list[tuple[Place, plan.Query]]] = {}
        for q in place_plan.queries:
            late = LATE_SECONDS.get(q.key.namespace, 0) if full or q.tier == SLOW else 0
            if late:  # points published late: the whole tier reads that far back, so it stays one call
                # (GetMetricData bills per metric requested, not per datapoint, so this costs nothing)
                starts[q.cursor] = min(
                    starts[q.cursor], max(end - late - q.key.period, end - plan.MAX_HISTORY) // ALIGN * ALIGN
                )
        for q in place_plan.queries:
            start = starts[q.cursor]
            pending = rereads.get(q.key.key)
            if pending is not None and max(pending, oldest) < start:
                by_start.setdefault((max(pending, oldest), True), []).append((place, q))
            else:
                by_start.setdefault((start, False), []).append((place, q))
        chunks = windows(by_start, end)
        return _PlacePoll(place_plan, labels, triggered, resources, end if full else None), chunks

    def _slice_due(self, index: int, cursor: int | None, end: int) -> bool:
        """Is slice `index` of the slow tier read by the poll ending at `end`? Never read; or a
        slow interval since it was (one slice: the slow tier as it always was; spread: a turn
        missed, say by an overrun); or its turn, one fast poll in each slow interval by the
        minute, and not read within this fast interval (the first polls of a new place, whose
        slices were all read at once)."""
        if cursor is None or end - cursor >= self.slow_interval - 30:
            return True
        k = self.slow_slices
        return k > 1 and (end // self.fast_interval) % k == index and end - cursor >= self.fast_interval - 30

    # -- collection ------------------------------------------------------------------------------

    def _collect(
        self, place: Place, pp: _PlacePoll, chunks: list[Chunk], now: int, metrics: bool = True
    ) -> list[SourceResult]:
        clients = lambda svc: self.aws.client(place, svc)  # noqa: E731
        end = now // 60 * 60
        results = [self._metrics(place, chunks, clients, now)] if metrics else []
        if not self.run_probes:
            return results
        if pp.triggered.reasons and results:
            results[0].note += "; detail: " + ", ".join(
                f"{rid.rsplit('/', 1)[-1]} ({why})" for rid, why in sorted(pp.triggered.reasons.items())
            )
        probes_due: list[tuple[str, Callable[[], probes.ProbeResult]]] = []
        by_kind = {r["kind"]: r for r in pp.resources if r["kind"] in ("ses", "lambda_account")}
        if "ses" in by_kind:
            probes_due.append(("probe:ses", lambda: probes.ses_account(clients, by_kind["ses"]["id"], end)))
        if "lambda_account" in by_kind:
            probes_due.append(
                (
                    "probe:lambda",
                    lambda: probes.lambda_account(
                        clients, by_kind["lambda_account"]["id"], end, self._concurrency(pp.resources, end)
                    ),
                )
            )
        if pp.plan.queues:
            probes_due.append(
                ("probe:sqs", lambda: self._queues(clients, self._queues_to_probe(pp, end), end, len(pp.plan.queues)))
            )
        if pp.plan.functions:
            probes_due.append(
                (
                    "probe:deploys",
                    lambda: probes.deploys(
                        clients,
                        pp.plan.functions,
                        pp.plan.aliased,
                        end,
                        probes.ALIAS_CHECKS,
                        lambda: self.probe_pacer.acquire(place.account, place.region, "lambda", "ListAliases"),
                    ),
                )
            )
        if pp.plan.coldstart_functions:
            probes_due += self.coldstarts.probes(place, clients, pp.plan.coldstart_functions, end)
        if pp.plan.insight_rules:
            probes_due.append(
                ("insights", lambda: probes.hot_keys(clients, pp.plan.insight_rules, end - self.lookback, end))
            )
        for source, run in probes_due:
            if self.should_stop():
                raise PollAbandoned
            result = SourceResult(source, place)
            with self.aws.log.source(source):
                try:
                    got = run()
                except FAILURES as exc:
                    result.status, result.error = "error", discovery.describe_error(exc)
                    results.append(result)
                    continue
            with self._db:
                for rid, facts in got.facts.items():
                    self.store.update_facts(rid, facts, now)
                result.samples = self.store.write_samples(got.points)
            if got.stored is not None:
                got.stored()
            result.note = got.note
            if got.failure is not None:
                result.status, result.error = "error", discovery.describe_error(got.failure)
            results.append(result)
        return results

    def _concurrency(
        self, resources: list[dict[str, Any]], end: int
    ) -> dict[str, tuple[str, int | None, list[tuple[int, float]]]]:
        """The last 10 minutes of each function's stored ConcurrentExecutions (Maximum)."""
        functions = {r["id"]: r for r in resources if r["kind"] == "lambda"}
        with self._db:
            got = self.store.recent_values(list(functions), ["ConcurrentExecutions"], end - 600, end + 60)
        return {
            rid: (
                r["name"],
                r["facts"].get("reserved_concurrency"),
                got.get((rid, "ConcurrentExecutions", "Maximum"), []),
            )
            for rid, r in functions.items()
        }

    def _queues_to_probe(self, pp: _PlacePoll, end: int) -> list[tuple[str, str]]:
        """Live depth only where a backlog grows (probes.queues_to_probe), from the CloudWatch
        points this poll has just stored."""
        facts = {r["id"]: r["facts"] for r in pp.resources if r["kind"] == "sqs"}
        with self._db:
            recent = self.store.recent_values(
                [rid for rid, _ in pp.plan.queues], list(probes.RISING_READS), end - probes.RISING_WINDOW, end + 60
            )
        return probes.queues_to_probe(pp.plan.queues, facts, recent)

    def _queues(self, clients: Any, queues: list[tuple[str, str]], ts: int, planned: int) -> probes.ProbeResult:
        got, errors = probes.queue_depth(clients, queues, ts)
        if errors and len(errors) == len(queues):
            raise probes.ProbeError("; ".join(errors[:3]))
        got.note = f"{len(queues) - len(errors)} of {planned} queues (the others steady or idle)"
        if errors:
            got.note += f"; failed: {'; '.join(errors[:3])}"
        return got

    def _metrics(self, place: Place, chunks: list[Chunk], clients: Any, now: int, monitoring: str = "") -> SourceResult:
        """Fetch chunk by chunk (oldest first), a chunk's batches up to METRIC_THREADS at once. Each
        batch's samples are stored on a writer thread, in order, while later batches are fetched;
        a chunk's cursors move only once all of its batches are stored. With `monitoring` (the
        monitoring account's id), `place` is the monitoring account's and each query of another
        account carries its AccountId."""
        result = SourceResult("cloudwatch", place)
        partial: list[str] = []
        with (
            self.aws.log.source("cloudwatch"),
            ThreadPoolExecutor(max_workers=1) as writer,
            ThreadPoolExecutor(max_workers=METRIC_THREADS) as fetcher,
        ):
            try:
                cw = clients("cloudwatch")
                for chunk in chunks:
                    batches = [
                        chunk.items[i : i + plan.MAX_QUERIES] for i in range(0, len(chunk.queries), plan.MAX_QUERIES)
                    ]

                    def one(
                        batch: list[tuple[Place, plan.Query]], chunk: Chunk = chunk
                    ) -> tuple[Any, list[str], set[SeriesKey]]:
                        if self.should_stop():
                            raise PollAbandoned
                        accounts = (
                            [p.account if p.account != monitoring else "" for p, _ in batch] if monitoring else None
                        )
                        incomplete: set[SeriesKey] = set()
                        points, problems = fetch(
                            cw, [q for _, q in batch], chunk.start, chunk.end, incomplete, accounts
                        )
                        return points, problems, incomplete

                    # A chunk's batches in flight together (at most METRIC_THREADS), taken in order.
                    pending = []
                    for batch, (points, problems, incomplete) in zip(
                        batches, fetcher.map(pacing.in_context(one), batches), strict=True
                    ):
                        partial.extend(problems)
                        self._note_incomplete(batch, incomplete, chunk.start)
                        pending.append(writer.submit(self._write, points))
                        self._advance(f"{place} {_span(chunk.start, chunk.end)}")
                    result.samples += sum(f.result() for f in pending)
                    with self._db:
                        self.store.advance_cursors(
                            [(p.account, p.region, t, chunk.end) for p, t in chunk.advances], now
                        )
            except FAILURES as exc:
                result.status, result.error = "error", discovery.describe_error(exc)
        if partial:
            result.note = f"{len(partial)} queries not complete: {'; '.join(partial[:3])}"
        return result

    def _note_incomplete(self, batch: list[tuple[Place, plan.Query]], incomplete: set[SeriesKey], start: int) -> None:
        """A series whose answer was not Complete is read again from `start` next poll; one that
        came back Complete from (or before) its pending start is caught up. Chunks are fetched
        oldest first, so a later chunk's failure is noted after an earlier chunk's success."""
        pending = [(p.account, p.region, q.key.key, start) for p, q in batch if q.key in incomplete]
        done = [(p.account, p.region, q.key.key, start) for p, q in batch if q.key not in incomplete]
        with self._db:
            self.store.note_rereads(pending, done)

    def _write(self, points: list[tuple[SeriesKey, list[tuple[int, float]]]]) -> int:
        with self._db:
            return self.store.write_samples(points)

    def _advance(self, what: str) -> None:
        with self._db:
            self._done += 1
            done, total = self._done, self._total
        if self.progress is not None and total:
            self.progress(done, total, what)

    # -- the poll log ----------------------------------------------------------------------------

    def _record(self, report: PollReport, now: int) -> None:
        finished = int(self.clock.now())
        rows = [
            {
                "poll_id": report.poll_id,
                "started_at": now,
                "finished_at": finished,
                "source": s.source,
                "account": s.place.account,
                "region": s.place.region,
                "status": s.status,
                "error": s.error or None,
                "api_calls": s.tally.total,
                "metrics_requested": s.tally.metrics,
                "cost_usd": round(s.cost, 6),
                "samples_written": s.samples,
                "detail": json.dumps(
                    {
                        "calls": dict(s.tally.calls),
                        "attempts": s.tally.attempts,
                        "traces": s.tally.traces,
                        "scanned_bytes": s.tally.scanned_bytes,
                        "note": s.note,
                    },
                    sort_keys=True,
                ),
            }
            for s in report.sources
        ]
        with self._db:
            self.store.record_polls(rows)


@dataclass
class _PlacePoll:
    plan: PlacePlan
    tiers: list[str]
    triggered: Triggered
    resources: list[dict[str, Any]]  # read once per poll: a 10,000-function place is a large read
    full_end: int | None = None  # this poll reads the full re-read window, up to here


def _span(start: int, end: int) -> str:
    return f"{time.strftime('%m-%d %H:%M', time.gmtime(start))}–{time.strftime('%H:%M', time.gmtime(end))}"
