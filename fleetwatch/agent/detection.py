"""One detection pass: read a window of the store into the detectors' inputs, run every
detector (one that throws is recorded as errored; the rest still run), and record the findings
and each detector's state."""

from __future__ import annotations

import json
import sqlite3
import time
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from detectors import LAST_SEEN, READS, REGISTRY, WEEKLY, unusual
from detectors.base import Detector, Finding, Inputs, NoData, Resource, Series
from fleetwatch.store import Store

WINDOW = 75 * 60  # what the detectors see: trends, run starts and hour-long baselines
# Per-function series are most of a large fleet's points; the detectors need 40 minutes of them.
FUNCTION_WINDOW = 45 * 60
WEEK, WEEKS_BACK = 7 * 86400, 4  # "same hour of the week": the last four weeks, from raw samples or rollups
FUNCTION_SERIES = frozenset(
    {
        ("Invocations", "Sum"),
        ("Errors", "Sum"),
        ("Throttles", "Sum"),
        ("ConcurrentExecutions", "Maximum"),
        ("ProvisionedConcurrencySpilloverInvocations", "Sum"),
        ("Duration", "p95"),
    }
)
SEED_PER_PASS = 500  # first-seen outcome series the `unusual` detector learns a day of history for, per pass


@dataclass
class DetectorRun:
    name: str
    status: str = "ok"
    error: str = ""
    findings: list[Finding] = field(default_factory=list)
    nodata: list[NoData] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class DetectionPass:
    pass_id: str
    at: int
    runs: list[DetectorRun]

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.runs for f in r.findings]

    def said(self) -> list[Any]:
        """Everything the pass said, in order, comparable between passes (no pass id): per
        detector its status, findings (with evidence, as JSON) and NoData."""
        return [
            (
                r.name,
                r.status,
                [
                    (f.fingerprint, f.severity, f.title, f.started_at, f.cause, json.dumps(f.evidence, sort_keys=True))
                    for f in r.findings
                ],
                [(n.resource_id, n.why) for n in r.nodata],
            )
            for r in self.runs
        ]

    def summary(self) -> str:
        lines = []
        for f in sorted(self.findings, key=lambda f: ({"critical": 0, "warning": 1}.get(f.severity, 2), f.detector)):
            lines.append(f"  {f.severity.upper():8} {f.detector:15} {f.title}")
            if f.cause:
                lines.append(f"  {'':8} {'':15} cause: {f.cause}")
        for r in self.runs:
            if r.status != "ok":
                lines.append(f"  ERROR    {r.name:15} {r.error}")
        return "\n".join(lines) if lines else "  no findings"


def detector_settings(cfg: Any) -> dict[str, Any]:
    """The settings detectors read (objectives), from a loaded configuration."""
    from fleetwatch.config.settings import SETTINGS

    return {s.key: cfg[s.key] for s in SETTINGS if s.key.startswith(("objectives.", "unusual."))}


def window_starts(now: int, window: int = WINDOW) -> dict[tuple[str, str], int]:
    """Where each (metric, stat) the detectors read starts being loaded."""
    return {read: now - (min(window, FUNCTION_WINDOW) if read in FUNCTION_SERIES else window) for read in READS}


def to_resource(r: dict[str, Any]) -> Resource:
    return Resource(r["id"], r["kind"], r["name"], r["account"], r["region"], r["facts"], r["tags"])


def load_inputs(
    store: Store,
    now: int,
    window: int = WINDOW,
    settings: dict[str, Any] | None = None,
    rows: list[dict[str, Any]] | None = None,
    catalog: list[tuple[int, str, str, str, str, int]] | None = None,
) -> Inputs:
    """The detectors' inputs at `now`; `rows` (Store.resources) and `catalog`
    (Store.series_catalog) when the caller already read them."""
    rows = store.resources() if rows is None else rows
    resources = [to_resource(r) for r in rows]
    starts = window_starts(now, window)
    points, periods = store.window(now, starts, catalog)
    series = {k: Series(v, periods.get(k, 60)) for k, v in points.items()}
    hour = now // 3600 * 3600
    weekly = store.hour_sums(WEEKLY, [hour - k * WEEK for k in range(1, WEEKS_BACK + 1)]) if WEEKLY else {}
    inputs = Inputs(
        now,
        resources,
        series,
        settings or {},
        loaded=READS,
        weekly=weekly,
        last_seen=last_seen(store, LAST_SEEN, now),
        first_seen={r["id"]: int(r["first_seen"]) for r in rows},
        held=held_baselines(store),
    )
    if unusual.enabled(inputs.settings):
        load_states(store, inputs)
    return inputs


def load_states(store: Store, inputs: Inputs) -> None:
    """The `unusual` detector's stored tracks (the JSON of those due a bucket or with an episode
    open), and a day of stored history for up to SEED_PER_PASS outcome series it has no track of."""
    until = (inputs.now - unusual.SETTLE) // unusual.STEP * unusual.STEP
    # Every stored track's key and last bucket; the track itself only where a bucket is due or
    # an episode is open (between bucket edges that is next to nothing).
    inputs.states = {
        (rid, metric, stat): (int(last_t), state)
        for rid, metric, stat, last_t, state in store.db.execute(
            "SELECT resource_id, metric, stat, last_t, CASE WHEN last_t "
            "< ? OR episode_open = 1 THEN state END FROM anomaly_state",
            [until - unusual.STEP],
        )
    }
    new = sorted(
        {
            (r.id, s.metric, s.stat)
            for r in inputs.resources
            for s in unusual.BY_KIND.get(r.kind, ())
            if (r.id, s.metric, s.stat) in inputs.series and (r.id, s.metric, s.stat) not in inputs.states
        }
    )[:SEED_PER_PASS]
    if not new:
        return
    weights = {s.weight for s in unusual.SIGNALS if s.weight}
    history = store.recent_values(
        sorted({k[0] for k in new}), sorted({k[1] for k in new} | weights), inputs.now - unusual.SEED, inputs.now
    )
    for key in new:
        inputs.seed[key] = Series(tuple(history.get(key, ())), inputs.series[key].period)
        for w in weights:  # a weighted rate's requests
            inputs.seed.setdefault((key[0], w, "Sum"), Series(tuple(history.get((key[0], w, "Sum"), ())), 60))


def last_seen(
    store: Store, reads: frozenset[tuple[str, str]] | set[tuple[str, str]], now: int, sids: Iterable[int] | None = None
) -> dict[tuple[str, str, str], int]:
    """When the newest point up to `now` of each series whose (metric, stat) is in `reads` was, from
    raw samples or (once those are pruned) hourly rollups, however old. One query: each
    correlated MAX is a seek on the (series_id, ts) primary key, so it costs a few page reads per
    series whatever the history holds. `sids`: only those series (in chunks of 500)."""
    wanted = set(reads)
    if not wanted:
        return {}
    select = (
        "SELECT s.resource_id, s.metric, s.stat, "
        "(SELECT MAX(ts) FROM samples WHERE series_id = s.id AND ts <= ?), "
        "(SELECT MAX(ts) FROM rollups WHERE series_id = s.id AND ts <= ?) FROM series s WHERE "
    )
    if sids is None:
        metrics = sorted({m for m, _ in wanted})
        rows = store.db.execute(
            select + f"s.metric IN ({','.join('?' * len(metrics))})", [now, now, *metrics]
        ).fetchall()
    else:
        ids, rows = sorted(sids), []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows += store.db.execute(select + f"s.id IN ({','.join('?' * len(chunk))})", [now, now, *chunk]).fetchall()
    out: dict[tuple[str, str, str], int] = {}
    for rid, metric, stat, raw, rolled in rows:
        if (metric, stat) not in wanted or (raw is None and rolled is None):
            continue
        t = max(int(raw or 0), int(rolled or 0))
        key = (rid, metric, stat)
        out[key] = max(out.get(key, 0), t)  # several sources of one series: the newest
    return out


def held_baselines(store: Store) -> dict[str, dict[str, Any]]:
    """The baselines open alerts were decided with, by fingerprint, from their stored evidence
    ({"baseline": x, "since": t}): "usually" stays what it was before the incident. Read-only;
    the alerts table belongs to the alert pipeline (an older store without it holds nothing)."""
    try:
        rows = store.db.execute(
            "SELECT detector, resource_id, key, evidence, started_at FROM alerts WHERE state != 'resolved' "
            "AND kind = 'finding' AND evidence LIKE '%\"baseline_since\"%'"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for detector, resource_id, key, raw, started_at in rows:
        # Keyed as the detectors name their findings (Finding.fingerprint), not by the alert's hash.
        fingerprint = f"{detector}:{resource_id}:{key or ''}"
        try:
            ev = json.loads(raw or "{}")
        except ValueError:
            continue
        if isinstance(ev, dict) and isinstance(ev.get("baseline"), (int, float)):
            out[fingerprint] = {"baseline": float(ev["baseline"]), "since": ev.get("baseline_since") or started_at}
    return out


def run(
    inputs: Inputs,
    detectors: dict[str, Detector] | None = None,
    names: Iterable[str] | None = None,
    tracer: trace.Tracer | None = None,
) -> DetectionPass:
    chosen = detectors if detectors is not None else REGISTRY
    wanted = set(names) if names is not None else None
    tracer = tracer or trace.NoOpTracer()
    runs = []
    for name, fn in chosen.items():
        if wanted is not None and name not in wanted:
            continue
        result = DetectorRun(name)
        started = time.perf_counter()
        with tracer.start_as_current_span("fleetwatch.detector", attributes={"fleetwatch.detector": name}) as span:
            try:
                for item in fn(inputs):
                    if isinstance(item, NoData):
                        result.nodata.append(item)
                    else:
                        result.findings.append(item)
            except Exception as exc:  # noqa: BLE001 - one broken detector must not silence the others
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                result.status, result.error = (
                    "error",
                    f"{type(exc).__name__}: {exc} (at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})",
                )
                result.findings, result.nodata = [], []
                span.set_status(Status(StatusCode.ERROR, result.error[:200]))
            span.set_attribute("fleetwatch.findings", len(result.findings))
        result.seconds = time.perf_counter() - started
        runs.append(result)
    return DetectionPass(uuid.uuid4().hex, inputs.now, runs)


def detect(
    store: Store,
    now: int,
    names: Iterable[str] | None = None,
    settings: dict[str, Any] | None = None,
    tracer: trace.Tracer | None = None,
) -> DetectionPass:
    tracer = tracer or trace.NoOpTracer()
    with tracer.start_as_current_span("fleetwatch.detect") as span:
        inputs = load_inputs(store, now, settings=settings)
        detection = run(inputs, names=names, tracer=tracer)
        record(store, detection, inputs)
        span.set_attribute("fleetwatch.pass.id", detection.pass_id)
        span.set_attribute("fleetwatch.findings", len(detection.findings))
    return detection


def record(store: Store, detection: DetectionPass, inputs: Inputs | None = None) -> None:
    """The pass's findings and runs, and the state detectors left in `inputs.new_states` (only
    when the detector that keeps it ran cleanly: a half-fed track is not stored)."""
    findings = [
        {
            "ts": detection.at,
            "pass_id": detection.pass_id,
            "detector": f.detector,
            "resource_id": f.resource_id,
            "severity": f.severity,
            "title": f.title,
            "fingerprint": f.fingerprint,
            "started_at": f.started_at,
            "cause": f.cause,
            "fix": f.fix,
            "evidence": json.dumps(f.evidence),
            "labels": json.dumps({"key": f.key}),
        }
        for f in detection.findings
    ]
    runs = [
        {
            "pass_id": detection.pass_id,
            "ts": detection.at,
            "detector": r.name,
            "status": r.status,
            "error": r.error or None,
            "findings": len(r.findings),
            "nodata": json.dumps([{"resource_id": n.resource_id, "why": n.why} for n in r.nodata]),
            "seconds": round(r.seconds, 6),
        }
        for r in detection.runs
    ]
    ok = {r.name for r in detection.runs if r.status == "ok"}
    states = (
        [(*key, t, is_open, text) for key, (t, is_open, text) in inputs.new_states.items()]
        if inputs is not None and "unusual" in ok
        else []
    )
    store.record_detection(findings, runs, states)
