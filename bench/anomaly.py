"""The generic anomaly layer on real, labelled production telemetry (Microsoft's cloud
monitoring dataset, ../shared/data/ms-cloud-monitoring): event-level precision and recall, and
false alarms per week on the series that have no labelled anomaly.

    python bench/anomaly.py [--data DIR] [--threshold 6]

Every CSV goes through the same code as `fleetwatch replay` (each decision from the rows before
it and itself). A labelled segment (consecutive rows with Label 1) is found when a flag lands
inside it or within a tolerance after it (3 rows, and at least 10 minutes); flags closer than
the tolerance form one alarm; an alarm is true when it touches a segment or its tolerance.
Prints a line per series and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.anomaly import infer_step  # noqa: E402
from fleetwatch.replay import parse_time, replay  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ms-cloud-monitoring"
WEEK = 7 * 86400


def runs(flags: list[bool], merge_gap: int = 0) -> list[tuple[int, int]]:
    """(first, last) row indices of runs of True, merging runs separated by <= merge_gap rows."""
    out: list[tuple[int, int]] = []
    for i, f in enumerate(flags):
        if not f:
            continue
        if out and i - out[-1][1] <= merge_gap + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def evaluate(path: Path, threshold: float) -> dict[str, Any]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    labels = [r[2].strip() == "1" for r in rows[1:] if r and any(c.strip() for c in r)]
    scored = list(replay(([r[0], r[1]] for r in rows), "anomaly", threshold))[1:]
    flags = [r[3] == "1" for r in scored]
    times = [parse_time(r[0], i) for i, r in enumerate(rows[1:], start=2) if r and any(c.strip() for c in r)]
    step = infer_step([(t, 0.0) for t in times])
    tolerance = max(3, math.ceil(600 / step))
    segments = runs(labels)
    alarms = runs(flags, tolerance)
    found = sum(any(a0 <= s1 + tolerance and a1 >= s0 for a0, a1 in alarms) for s0, s1 in segments)
    true_alarms = sum(any(a0 <= s1 + tolerance and a1 >= s0 for s0, s1 in segments) for a0, a1 in alarms)
    weeks = (times[-1] - times[0] + step) / WEEK
    return {"series": f"{path.parent.name}/{path.name}", "step": step, "rows": len(flags), "segments": len(segments),
            "found": found, "alarms": len(alarms), "true_alarms": true_alarms, "weeks": weeks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--threshold", type=float, default=6.0)
    args = parser.parse_args()
    files = sorted(Path(args.data).glob("*/*.csv"))
    if not files:
        raise SystemExit(f"no CSV files under {args.data}")
    started = time.perf_counter()
    results = []
    for path in files:
        r = evaluate(path, args.threshold)
        results.append(r)
        print(f"{r['series']:52} step {r['step']:5}s  segments {r['found']:3}/{r['segments']:<3} alarms {r['true_alarms']:3}/{r['alarms']:<3}",
              flush=True)
    segments = sum(r["segments"] for r in results)
    alarms = sum(r["alarms"] for r in results)
    clean = [r for r in results if r["segments"] == 0]
    clean_weeks = sum(r["weeks"] for r in clean)
    summary = {
        "series": len(results), "threshold": args.threshold,
        "segments": segments, "segments_found": sum(r["found"] for r in results),
        "recall": round(sum(r["found"] for r in results) / segments, 3) if segments else None,
        "alarms": alarms, "true_alarms": sum(r["true_alarms"] for r in results),
        "precision": round(sum(r["true_alarms"] for r in results) / alarms, 3) if alarms else None,
        "series_without_anomalies": len(clean), "weeks_without_anomalies": round(clean_weeks, 2),
        "false_alarms_per_week": round(sum(r["alarms"] for r in clean) / clean_weeks, 3) if clean_weeks else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
