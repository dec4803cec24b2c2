"""The incremental detection pass (issue 20): the same findings as a full pass, for work in
proportion to what changed since the last one.

A full pass (fleetwatch.agent.detection.detect) reads every series' window and runs every
detector over every resource. This one keeps the last pass's windows and, per detector, what
each resource's evaluation yielded and read (detectors.base.Tracking), and re-evaluates only:

- resources whose series' windows changed: new or rewritten points (the store tells which series
  were written, Store.watch_writes; a re-read that stored the same values changes nothing) or
  points that left the loaded window;
- resources one of whose points crossed a horizon a detector holds against `now` (HORIZONS in
  each detector module, and three periods for `imminent`): "the last 5 minutes" loses a point
  with no new one arriving, and "no datapoints in 15 minutes" starts; times in facts likewise
  (FACT_TIMES: a queue's live depth reading);
- resources whose facts changed, or whose open alert's held baseline changed;
- whatever read any of those (a queue reads its consumers' series, an account every function's,
  a database its callers'), from what each evaluation really read;
- every resource that had a finding or a NoData last pass (to update, age or resolve it), and
  every kind whose answer moves with `now` alone (ALWAYS_DUE: a schedule's missed runs).

The other resources' findings are carried over unchanged. Detectors in WHOLE (`unusual`: it
feeds every series its bucket at each 5-minute edge, and keeps its state in the store) run whole
every pass, on the same windows.

A full pass is run on start (the caches live in this process, never in the store: an agent that
restarts rebuilds them), every FULL_EVERY passes, when the clock hour changes (the weekly
baselines), when resources appear or go, when a series appears, after samples were pruned, after
a detector failed, and when the clock went back or jumped past the window.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Iterator
from typing import Any

from opentelemetry import trace

from detectors import ALWAYS_DUE, FACT_TIMES, HORIZONS, LAST_SEEN, READS, REGISTRY, WHOLE, unusual
from detectors.base import Detector, Finding, Inputs, NoData, Series, Tracking
from fleetwatch.agent.detection import (
    WINDOW,
    DetectionPass,
    held_baselines,
    last_seen,
    load_inputs,
    load_states,
    record,
    run,
    to_resource,
    window_starts,
)
from fleetwatch.store import Store
from fleetwatch.store.watch import take

FULL_EVERY = 15  # passes (15 minutes at the default interval): the safety net under the caches
Item = Finding | NoData


class IncrementalDetection:
    """Detection passes over one store, incremental between full ones. One per agent process."""

    def __init__(self, store: Store, full_every: int = FULL_EVERY) -> None:
        self.store, self.full_every = store, full_every
        self.written = store.watch_writes()
        self.last: dict[str, Any] = {}  # what the last pass did: kind, why, how many evaluated
        self.prev_now: int | None = None
        self.settings: dict[str, Any] = {}
        self.passes, self.failed, self.prunes = 0, False, 0
        self.due: set[str] = set()

    def close(self) -> None:
        self.store.unwatch_writes(self.written)

    # -- the pass --------------------------------------------------------------------------------

    def detect(
        self, now: int, settings: dict[str, Any] | None = None, tracer: trace.Tracer | None = None
    ) -> DetectionPass:
        tracer = tracer or trace.NoOpTracer()
        with tracer.start_as_current_span("fleetwatch.detect") as span:
            try:
                why = self._full_why(now, settings)
                due: set[str] | None = None
                if not why:
                    loaded, got = self._load_changes(now)
                    if isinstance(got, str):  # something only a full load can answer turned up
                        why = got
                    else:
                        inputs, due = loaded, got
                if why:
                    inputs = self._load_full(now, self.store.resources(), settings)
                detection = self._run(inputs, due, tracer)
                record(self.store, detection, inputs)
            except BaseException:
                self.prev_now = None  # the caches may be half updated: the next pass is full
                raise
            self.prev_now, self.settings = now, dict(settings or {})
            self.passes = 0 if why else self.passes + 1
            self.due = set(self.ids) if due is None else due  # what this pass evaluated
            evaluated = len(self.due)
            self.last = {"kind": "full" if why else "incremental", "why": why, "evaluated": evaluated}
            span.set_attribute("fleetwatch.pass.id", detection.pass_id)
            span.set_attribute("fleetwatch.pass.kind", self.last["kind"])
            span.set_attribute("fleetwatch.findings", len(detection.findings))
        return detection

    def _full_why(self, now: int, settings: dict[str, Any] | None) -> str:
        if self.prev_now is None:
            return "first pass"
        if self.failed:
            return "a detector failed last pass"
        if self.passes + 1 >= self.full_every:
            return f"every {self.full_every} passes"
        if now < self.prev_now or now - self.prev_now > WINDOW:
            return "the clock went back or jumped past the window"
        if now // 3600 != self.prev_now // 3600:
            return "a new clock hour (weekly baselines)"
        if dict(settings or {}) != self.settings:
            return "settings changed"
        if self.store.prunes != self.prunes:
            return "samples were pruned"
        return ""

    def _load_full(self, now: int, rows: list[dict[str, Any]], settings: dict[str, Any] | None) -> Inputs:
        take(self.written)
        self.prunes = self.store.prunes
        self.catalog = {row[0]: row for row in self.store.series_catalog(READS)}
        self.sids_of: dict[tuple[str, str, str], list[int]] = {}
        for sid, rid, _, metric, stat, _ in self.catalog.values():
            self.sids_of.setdefault((rid, metric, stat), []).append(sid)
        self.other: set[int] = set()  # written series no detector reads
        # Series with points stamped `now` or later (a probe's reading at the poll's own second):
        # not in this window, so read again once they are. From the store: written before this
        # engine started, too (the samples_ts index).
        self.pending: dict[int, int] = {
            int(sid): int(ts)
            for sid, ts in self.store.db.execute(
                "SELECT series_id, MAX(ts) FROM samples WHERE ts >= ? GROUP BY series_id", [now]
            )
            if sid in self.catalog
        }
        inputs = load_inputs(self.store, now, settings=settings, rows=rows, catalog=list(self.catalog.values()))
        self.inputs, self.ids, self.rows = inputs, [r["id"] for r in rows], {r["id"]: r for r in rows}
        self.index = {rid: i for i, rid in enumerate(self.ids)}
        self.kind = {r["id"]: r["kind"] for r in rows}
        # Per period of series (0: times in facts): second -> the resources with a point then.
        self.times: dict[int, dict[int, set[str]]] = {}
        for (rid, _, _), s in inputs.series.items():
            self._note_times(rid, s.period, (t for t, _ in s.points))
        for r in rows:
            self._note_times(r["id"], 0, self._fact_times(r))
        self.outputs: dict[str, dict[tuple[int, str], list[Item]]] = {}
        self.whole = set(WHOLE)
        self.reads: dict[str, set[Any]] = {}
        self.dependents: dict[Any, set[str]] = {}
        self.failed, self.passes = False, 0
        return inputs

    def _load_changes(self, now: int) -> tuple[Inputs, set[str] | str]:
        """The cached inputs brought to `now`, and the resources to evaluate (or why a full load
        is needed instead)."""
        prev, inputs = self.prev_now or now, self.inputs
        starts = window_starts(now)
        # What was written since the last pass, and what was written earlier for later than it.
        written, touched = take(self.written)
        rows = self._rows(touched)
        if any((r["id"] in self.index) == (r["gone_at"] is not None) for r in rows):
            return inputs, "resources appeared or went"
        rows = [r for r in rows if r["id"] in self.index]
        for sid, ts in written.items():
            if sid not in self.catalog:
                self.other.add(sid)
                continue
            self.pending[sid] = max(ts, self.pending.get(sid, ts))
        unknown = self.other - self._checked_other
        if unknown and self._reads_any(unknown):
            return inputs, "a new series"
        keys = {(self.catalog[sid][1], self.catalog[sid][3], self.catalog[sid][4]) for sid in self.pending}
        self.pending = {sid: ts for sid, ts in self.pending.items() if ts >= now}
        sids = [sid for key in keys for sid in self.sids_of[key]]
        points, periods = self.store.window(now, starts, [self.catalog[sid] for sid in sids])
        changed: set[str] = set()
        for key in keys:
            new = points.get(key, ())
            old = inputs.series.get(key)
            if (old.points if old is not None else ()) == new:
                continue
            changed.add(key[0])
            period = periods.get(key, 60)
            self._note_times(key[0], period, {t for t, _ in new} - ({t for t, _ in old.points} if old else set()))
            if new:
                inputs.series[key] = Series(new, period)
            else:
                inputs.series.pop(key, None)
        seen_keys = [key for key in keys if (key[1], key[2]) in LAST_SEEN]
        if seen_keys:
            inputs.last_seen.update(
                last_seen(self.store, LAST_SEEN, now, sids=[sid for key in seen_keys for sid in self.sids_of[key]])
            )
        # Points that left the loaded window.
        for key, s in list(inputs.series.items()):
            start = starts[(key[1], key[2])]
            if s.points[0][0] < start:
                kept = s.points[bisect.bisect_left(s.points, (start, float("-inf"))) :]
                changed.add(key[0])
                if kept:
                    inputs.series[key] = Series(kept, s.period)
                else:
                    del inputs.series[key]
        # Points (and fact times) that crossed a horizon since the last pass: a detector holding a
        # time t against `now - h` (Series.since/before, `<`, `>=`) answers otherwise from now = t + h + 1.
        crossed: set[str] = set()
        for period, at in self.times.items():
            for h in HORIZONS | ({3 * period} if period else set()):
                for t in range(prev - h, now - h):
                    crossed |= at.get(t, set())
            for t in [t for t in at if t < now - WINDOW - max(HORIZONS) - 3 * period - 60]:
                del at[t]
        # Facts that changed, of the resources written since the last pass.
        facts: set[str] = set()
        for r in rows:
            was = self.rows[r["id"]]
            if r["facts"] != was["facts"] or r["tags"] != was["tags"] or r["name"] != was["name"]:
                facts.add(r["id"])
                self._note_times(r["id"], 0, self._fact_times(r))
        if facts:
            self.rows.update({rid: r for r in rows if (rid := r["id"]) in facts})
            fresh = {r.id: r for r in inputs.resources}
            fresh.update({rid: to_resource(self.rows[rid]) for rid in facts})
            inputs.resources = [fresh[rid] for rid in self.ids]  # a new list: Inputs re-indexes it
        held = held_baselines(self.store)
        moved = {fp for fp in held.keys() | inputs.held.keys() if held.get(fp) != inputs.held.get(fp)}
        inputs.held = held
        due = changed | crossed | facts | {rid for fp in moved for rid in self._ids_in(fp)}
        for rid in changed | crossed:
            due |= self.dependents.get(rid, set())
        for rid in facts:
            due |= self.dependents.get(("r", rid), set()) | self.dependents.get(("k", self.kind[rid]), set())
        # A finding may say how long it has lasted or start `now`: its resource is re-run. A NoData
        # names no time (a schedule's, which may, is re-run anyway).
        due |= {
            rid
            for name, out in self.outputs.items()
            if name not in self.whole
            for (_, rid), items in out.items()
            if any(isinstance(i, Finding) for i in items)
        }
        due |= {rid for rid, kind in self.kind.items() if kind in ALWAYS_DUE}
        inputs.now = now
        inputs.new_states, inputs.states, inputs.seed = {}, {}, {}
        if unusual.enabled(inputs.settings):
            load_states(self.store, inputs)
        return inputs, due

    # -- running the detectors ---------------------------------------------------------------------

    def _run(self, inputs: Inputs, due: set[str] | None, tracer: trace.Tracer) -> DetectionPass:
        """Run every detector: those in `whole` over everything, the others over `due` (None:
        everything) with what each evaluation yields and reads tracked; then put each detector's
        findings together, carried and fresh, in the order a full pass yields them."""
        tracks: dict[str, Tracking] = {}
        fresh: dict[str, list[tuple[int, str | None, Item]]] = {}

        def tracked(name: str, fn: Detector) -> Detector:
            def go(inp: Inputs) -> Iterator[Item]:
                inp.only, inp.track = (
                    (due, tracks.setdefault(name, Tracking())) if name not in self.whole else (None, None)
                )
                try:
                    for item in fn(inp):
                        if inp.track is not None:
                            fresh.setdefault(name, []).append((inp.track.loop, inp.track.current, item))
                        yield item
                finally:
                    inp.only, inp.track = None, None

            return go

        detection = run(inputs, {name: tracked(name, fn) for name, fn in REGISTRY.items()}, tracer=tracer)
        for r in detection.runs:
            if r.status != "ok":
                self.failed = True
                continue
            if r.name in self.whole:
                continue
            got = fresh.get(r.name, [])
            if any(rid is None for _, rid, _ in got):
                # It yielded outside a `due` loop: it is run whole from now on (this pass was full or
                # it is run again whole now, so what it says this pass is complete).
                self.whole.add(r.name)
                self.outputs.pop(r.name, None)
                if due is not None:
                    again = run(inputs, {r.name: REGISTRY[r.name]}, tracer=tracer).runs[0]
                    r.status, r.error, r.findings, r.nodata = again.status, again.error, again.findings, again.nodata
                continue
            out = self.outputs.setdefault(r.name, {})
            if due is None:
                out.clear()
            else:
                for key in [k for k in out if k[1] in due or k[1] in tracks.get(r.name, Tracking()).reads]:
                    del out[key]
            for loop, rid, item in got:
                out.setdefault((loop, rid or ""), []).append(item)
            items = [i for k in sorted(out, key=lambda k: (k[0], self.index.get(k[1], -1))) for i in out[k]]
            r.findings = [i for i in items if isinstance(i, Finding)]
            r.nodata = [i for i in items if isinstance(i, NoData)]
        self._note_reads(tracks, due)
        return detection

    def _note_reads(self, tracks: dict[str, Tracking], due: set[str] | None) -> None:
        """What each evaluated resource read, and the inverted index (what reads what). A resource
        evaluated by every detector (in `due`, or a full pass) has its reads replaced; one
        evaluated only as another's `always` has them added to."""
        fresh: dict[str, set[Any]] = {}
        for t in tracks.values():
            for rid, tokens in t.reads.items():
                fresh.setdefault(rid, set()).update(tokens)
        if due is None:
            self.reads, self.dependents = {}, {}
        for rid in set(fresh) | (due or set()):
            old = self.reads.get(rid, set())
            new = fresh.get(rid, set()) if due is None or rid in due else old | fresh.get(rid, set())
            for token in old - new:
                self.dependents.get(token, set()).discard(rid)
            for token in new - old:
                self.dependents.setdefault(token, set()).add(rid)
            self.reads[rid] = new

    # -- bookkeeping ---------------------------------------------------------------------------------

    def _note_times(self, rid: str, period: int, times: Iterable[int]) -> None:
        at = self.times.setdefault(period, {})
        for t in times:
            at.setdefault(int(t), set()).add(rid)

    def _rows(self, ids: set[str]) -> list[dict[str, Any]]:
        """The rows of these resources as Store.resources reads them, gone ones included."""
        out: list[dict[str, Any]] = []
        ordered = sorted(ids)
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            out += self.store.db.query(f"SELECT * FROM resources WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        for row in out:
            row["facts"], row["tags"] = json.loads(row["facts"]), json.loads(row["tags"])
        return out

    def _fact_times(self, row: dict[str, Any]) -> list[int]:
        return [t for fn in FACT_TIMES.get(row["kind"], ()) for t in fn(row["facts"]) if t]

    @property
    def _checked_other(self) -> set[int]:
        return self.__dict__.setdefault("_other_checked", set())

    def _reads_any(self, sids: set[int]) -> bool:
        """Whether any of these newly written series is one a detector reads (a new series)."""
        self._checked_other.update(sids)
        ids = sorted(sids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.store.db.execute(
                f"SELECT metric, stat FROM series WHERE id IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            if any((m, s) in READS for m, s in rows):
                return True
        return False

    def _ids_in(self, fingerprint: str) -> list[str]:
        """The resource ids a finding fingerprint (detector:resource id:key) may name."""
        parts = fingerprint.split(":")
        return [c for i in range(2, len(parts) + 1) if (c := ":".join(parts[1:i])) in self.index]
