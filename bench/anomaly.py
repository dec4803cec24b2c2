"""The generic anomaly layer at ONE default configuration for every series, on labelled data:

* NAB's development split (../shared/data/nab-dev, 41 series, 86 windows) scored by
  ../shared/tools/nab_score.py: standard, low-FP and low-FN profiles, and event-level recall
  and precision, from the episode onsets `fleetwatch replay` writes (its `anomaly` column);
* Microsoft's cloud-monitoring dataset (../shared/data/ms-cloud-monitoring): recall, precision
  and false alarms a week, overall and on `service-unavailable`;
* points per second on one core and the memory of one series' state.

    python bench/anomaly.py [--threshold 3] [--profile default|low-fp|low-fn] [--live 1000] [--live-only]

`--live N` also measures the live `unusual` detector through the store (detectors/unusual.py):
N functions' error and invocation series (2N series) with a day of 5-minute history in a
fresh store, then detection passes (`fleetwatch.agent.detection.detect`, the detector alone) — the
first ones learn the stored day, then a pass at a bucket's edge (every series fed one bucket,
its state read and written) and passes between edges (nothing due) — per series and pass, less
the same pass with the detector off.

Every CSV goes through `fleetwatch replay`'s code (each decision from the rows before it and
itself). Microsoft segments: a labelled segment (consecutive rows with Label 1) is found when
an episode opens inside it or within a tolerance after it (3 rows, and at least 10 minutes); an
episode is a true alarm when its onset touches a segment or its tolerance. Prints the figures
and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.anomaly import PROFILES, Model, Scorer, infer_step  # noqa: E402
from fleetwatch.cli.replay import Summary, parse_time, replay  # noqa: E402

SHARED = ROOT.parent / "shared"
NAB = SHARED / "data" / "nab-dev"
MS = SHARED / "data" / "ms-cloud-monitoring"
SCORER = SHARED / "tools" / "nab_score.py"
WEEK = 7 * 86400


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]


def timestamps(rows: list[list[str]]) -> list[int]:
    return [parse_time(r[0], i) for i, r in enumerate(rows[1:], start=2)]


def nab(threshold: float, out: Path) -> tuple[dict[str, Any], int, float]:
    files = sorted((NAB / "data").glob("*/*.csv"))
    points, seconds = 0, 0.0
    for path in files:
        rows = rows_of(path)
        # Row by row, as NAB scores rows: some files have irregular or unsorted times, which replay refuses.
        started = time.perf_counter()
        times = [parse_time(r[0], i) for i, r in enumerate(rows[1:], start=2)]
        scorer = Scorer(infer_step([(t, None) for t in sorted(times)]), threshold)
        scored = [["timestamp", "anomaly"]] + [[r[0], "1" if scorer.update(float(r[1]))[1] else "0"] for r in rows[1:]]
        seconds += time.perf_counter() - started
        points += len(rows) - 1
        target = out / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(scored)
    result = subprocess.run(
        [
            sys.executable,
            str(SCORER),
            "--nab",
            str(NAB),
            "--results",
            str(out),
            "--subset",
            "",
            "--column",
            "anomaly",
            "--binary",
            "--events",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout), points, seconds


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


def microsoft_series(path: Path, threshold: float) -> dict[str, Any]:
    rows = rows_of(path)
    labels = [r[2].strip() == "1" for r in rows[1:]]
    scored = list(replay(([r[0], r[1]] for r in rows), threshold=threshold, summary=(summary := Summary())))[1:]
    onsets = [i for i, r in enumerate(scored) if r[3] == "1"]
    times = [parse_time(r[0], i) for i, r in enumerate(rows[1:], start=2)]
    tolerance = max(3, math.ceil(600 / summary.step))
    segments = runs(labels)
    found = sum(any(s0 <= i <= s1 + tolerance for i in onsets) for s0, s1 in segments)
    true_alarms = sum(any(s0 <= i <= s1 + tolerance for s0, s1 in segments) for i in onsets)
    return {
        "category": path.parent.name,
        "series": path.name,
        "step": summary.step,
        "segments": len(segments),
        "found": found,
        "alarms": len(onsets),
        "true_alarms": true_alarms,
        "weeks": (times[-1] - times[0] + summary.step) / WEEK,
    }


def tally(results: list[dict[str, Any]]) -> dict[str, Any]:
    segments = sum(r["segments"] for r in results)
    alarms = sum(r["alarms"] for r in results)
    found = sum(r["found"] for r in results)
    true = sum(r["true_alarms"] for r in results)
    weeks = sum(r["weeks"] for r in results)
    return {
        "series": len(results),
        "segments": segments,
        "found": found,
        "recall": round(found / segments, 3) if segments else None,
        "alarms": alarms,
        "precision": round(true / alarms, 3) if alarms else None,
        "false_alarms_per_week": round((alarms - true) / weeks, 2) if weeks else None,
        "weeks": round(weeks, 1),
    }


def memory_per_series(step: int, points: int = 3000) -> int:
    """Bytes held by one series' state after `points` points (the state is bounded by then)."""
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    model = Model(step)
    for i in range(points):
        model.update(float(100 + (i * 7919) % 13))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(s.size_diff for s in after.compare_to(before, "filename"))


def live_cost(functions: int) -> dict[str, Any]:
    """CPU seconds per series of the `unusual` detector's passes through a store (see the docstring):
    process time, so other jobs on a shared machine do not count (SQLite runs in-process)."""
    import random

    from detectors.unusual import STEP
    from fleetwatch.agent.detection import SEED_PER_PASS, detect
    from fleetwatch.store import open_store
    from fleetwatch.store.db import SeriesKey

    rng = random.Random(1)
    now = 1_800_000_000 // 3600 * 3600 + 2 * 60  # two minutes into a bucket: the last one is not due yet
    start = now - 86400 - 3600
    on = {"unusual.enabled": True}
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "live.db") as store:
        batch = []
        for i in range(functions):
            rid = f"lambda/123456789012/us-east-1/fn-{i}"
            store.upsert_resource(
                id=rid, account="123456789012", region="us-east-1", kind="lambda", name=f"fn-{i}", seen_at=start
            )
            base = rng.uniform(20, 2000)
            for metric, scale in (("Invocations", 1.0), ("Errors", 0.01)):
                key = SeriesKey(rid, "AWS/Lambda", metric, (("FunctionName", f"fn-{i}"),), "Sum", 300)
                batch.append(
                    (key, [(t, float(round(scale * base * rng.uniform(0.8, 1.2)))) for t in range(start, now, STEP)])
                )
        store.write_samples(batch)
        series = 2 * functions
        t0 = time.process_time()
        seeding = 0
        while store.db.execute("SELECT COUNT(*) FROM anomaly_state").fetchone()[0] < series:
            detect(store, now, names=["unusual"], settings=on)
            seeding += 1
        seeded = time.process_time() - t0
        later = [now + 60 * k for k in range(1, 6)]  # one of these is a bucket's edge + SETTLE
        timings = []  # (the pass with the detector, the same pass without it: loading the window etc.)
        for t in later:
            without = []
            for _ in range(3):  # a shared machine: the quickest of three
                t1 = time.process_time()
                detect(store, t, names=["unusual"], settings={"unusual.enabled": False})
                without.append(time.process_time() - t1)
            t2 = time.process_time()
            detect(store, t, names=["unusual"], settings=on)
            timings.append((time.process_time() - t2, min(without)))
        size = store.db.execute("SELECT AVG(LENGTH(state)) FROM anomaly_state").fetchone()[0]
    timings.sort()
    edge, between = timings[-1], timings[len(timings) // 2]
    return {
        "functions": functions,
        "series": series,
        "seed_passes": seeding,
        "seed_per_pass": SEED_PER_PASS,
        "seed_ms_per_series": round(1000 * seeded / series, 2),
        "edge_pass_s": round(edge[0], 3),
        "edge_us_per_series": round(1e6 * (edge[0] - edge[1]) / series),
        "between_pass_s": round(between[0], 3),
        "between_us_per_series": round(1e6 * (between[0] - between[1]) / series),
        "pass_without_s": round(between[1], 3),
        "state_bytes_per_series": round(size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=None, help="overrides --profile")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES))
    parser.add_argument(
        "--live",
        type=int,
        default=1000,
        metavar="FUNCTIONS",
        help="also measure the live detector's cost through a store of this many functions (0: skip)",
    )
    parser.add_argument("--live-only", action="store_true", help="only the live detector's cost")
    args = parser.parse_args()
    if args.live_only:
        cost = live_cost(args.live or 1000)
        print(json.dumps({"live": cost}), flush=True)
        return
    threshold = PROFILES[args.profile] if args.threshold is None else args.threshold
    if not NAB.is_dir() or not MS.is_dir():
        raise SystemExit(f"the labelled data is missing: expected {NAB} and {MS}")

    with tempfile.TemporaryDirectory() as tmp:
        scored, points, seconds = nab(threshold, Path(tmp))
    profiles = {p: round(v["fixed"]["score"], 2) for p, v in scored["profiles"].items()}
    ev = scored["events"]
    print(
        f"NAB development split ({scored['files']} series, {scored['windows']} windows), threshold {threshold:g}: "
        f"standard {profiles['standard']}, low-FP {profiles['reward_low_FP_rate']}, "
        f"low-FN {profiles['reward_low_FN_rate']}; "
        f"events: recall {ev['found']}/{ev['windows']} = {ev['recall']:.3f}, precision {ev['precision']:.3f}, "
        f"{ev['false_alarms']} false alarms ({ev['false_alarms_per_week']:.2f} a week a series)",
        flush=True,
    )

    results = [microsoft_series(p, threshold) for p in sorted(MS.glob("*/*.csv"))]
    overall = tally(results)
    categories = {
        c: tally([r for r in results if r["category"] == c]) for c in sorted({r["category"] for r in results})
    }
    for c, t in categories.items():
        print(
            f"  MS {c:36} segments {t['found']:3}/{t['segments']:<3} recall {t['recall']}  precision {t['precision']}  "
            f"false alarms {t['false_alarms_per_week']}/week over {t['weeks']} weeks",
            flush=True,
        )
    print(
        f"Microsoft ({overall['series']} series): recall {overall['recall']}, precision {overall['precision']}, "
        f"{overall['false_alarms_per_week']} false alarms a week a series",
        flush=True,
    )

    memory = {f"{step}s": memory_per_series(step) for step in (60, 300, 3600, 86400)}
    pps = points / seconds
    print(
        f"speed: {pps:,.0f} points/s on one core (replay, CSV parsing included); "
        f"memory per series: " + ", ".join(f"{k} step {v / 1024:.1f} KiB" for k, v in memory.items()),
        flush=True,
    )
    cost = live_cost(args.live) if args.live else None
    if cost:
        print(
            f"live `unusual`: {cost['edge_us_per_series']} µs a series "
            f"at a bucket's edge, {cost['between_us_per_series']} µs "
            f"between, {cost['state_bytes_per_series']} B of state a series ({cost['series']} series)",
            flush=True,
        )
    print(
        json.dumps(
            {
                "threshold": threshold,
                "live": cost,
                "nab": {
                    **profiles,
                    "event_recall": round(ev["recall"], 3),
                    "event_precision": round(ev["precision"], 3),
                    "false_alarms": ev["false_alarms"],
                },
                "microsoft": overall,
                "service_unavailable": categories.get("service-unavailable"),
                "points_per_second": round(pps),
                "memory_bytes_per_series": memory,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
