"""One detection pass: read a window of the store into the detectors' inputs, run every
detector (one that throws is recorded as errored; the rest still run), and record the findings
and each detector's state."""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from detectors import READS, REGISTRY, WEEKLY
from detectors.base import Detector, Finding, Inputs, NoData, Resource, Series
from fleetwatch.store import Store

WINDOW = 75 * 60  # what the detectors see: trends, run starts and hour-long baselines
# Per-function series are most of a large fleet's points; the detectors need 40 minutes of them.
FUNCTION_WINDOW = 45 * 60
WEEK, WEEKS_BACK = 7 * 86400, 4  # "same hour of the week": the last four weeks, from raw samples or rollups
FUNCTION_SERIES = frozenset({("Invocations", "Sum"), ("Errors", "Sum"), ("Throttles", "Sum"), ("ConcurrentExecutions", "Maximum"),
                             ("ProvisionedConcurrencySpilloverInvocations", "Sum")})


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

    return {s.key: cfg[s.key] for s in SETTINGS if s.key.startswith("objectives.")}


def load_inputs(store: Store, now: int, window: int = WINDOW, settings: dict[str, Any] | None = None) -> Inputs:
    resources = [Resource(r["id"], r["kind"], r["name"], r["account"], r["region"], r["facts"], r["tags"])
                 for r in store.resources()]
    starts = {read: now - (min(window, FUNCTION_WINDOW) if read in FUNCTION_SERIES else window) for read in READS}
    points, periods = store.window(now, starts)
    series = {k: Series(v, periods.get(k, 60)) for k, v in points.items()}
    hour = now // 3600 * 3600
    weekly = store.hour_sums(WEEKLY, [hour - k * WEEK for k in range(1, WEEKS_BACK + 1)]) if WEEKLY else {}
    return Inputs(now, resources, series, settings or {}, loaded=READS, weekly=weekly)


def run(inputs: Inputs, detectors: dict[str, Detector] | None = None, names: Iterable[str] | None = None,
        tracer: trace.Tracer | None = None) -> DetectionPass:
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
                    (result.nodata if isinstance(item, NoData) else result.findings).append(item)
            except Exception as exc:  # noqa: BLE001 - one broken detector must not silence the others
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                result.status, result.error = "error", f"{type(exc).__name__}: {exc} (at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"
                result.findings, result.nodata = [], []
                span.set_status(Status(StatusCode.ERROR, result.error[:200]))
            span.set_attribute("fleetwatch.findings", len(result.findings))
        result.seconds = time.perf_counter() - started
        runs.append(result)
    return DetectionPass(uuid.uuid4().hex, inputs.now, runs)


def detect(store: Store, now: int, names: Iterable[str] | None = None, settings: dict[str, Any] | None = None,
           tracer: trace.Tracer | None = None) -> DetectionPass:
    tracer = tracer or trace.NoOpTracer()
    with tracer.start_as_current_span("fleetwatch.detect") as span:
        detection = run(load_inputs(store, now, settings=settings), names=names, tracer=tracer)
        record(store, detection)
        span.set_attribute("fleetwatch.pass.id", detection.pass_id)
        span.set_attribute("fleetwatch.findings", len(detection.findings))
    return detection


def record(store: Store, detection: DetectionPass) -> None:
    findings = [{"ts": detection.at, "pass_id": detection.pass_id, "detector": f.detector, "resource_id": f.resource_id,
                 "severity": f.severity, "title": f.title, "fingerprint": f.fingerprint, "started_at": f.started_at,
                 "cause": f.cause, "fix": f.fix, "evidence": json.dumps(f.evidence), "labels": json.dumps({"key": f.key})}
                for f in detection.findings]
    runs = [{"pass_id": detection.pass_id, "ts": detection.at, "detector": r.name, "status": r.status, "error": r.error or None,
             "findings": len(r.findings), "nodata": json.dumps([{"resource_id": n.resource_id, "why": n.why} for n in r.nodata]),
             "seconds": round(r.seconds, 6)} for r in detection.runs]
    store.record_detection(findings, runs)
