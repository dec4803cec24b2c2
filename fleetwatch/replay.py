"""`fleetwatch replay`: the anomaly layer over a CSV of `timestamp,value` (a CloudWatch export,
say), written back as `timestamp,value,score,anomaly` on standard output."""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import TextIO

from detectors.anomaly import Scorer, infer_step

# What counts as anomalous: both directions, only rises (errors, latency), only dips (traffic).
PROFILES = {"anomaly": 0, "spike": 1, "dip": -1}
MIN_STEP, MAX_STEP = 60, 86400


class ReplayError(ValueError):
    pass


def parse_time(text: str, line: int) -> int:
    text = text.strip()
    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(f"line {line}: {text!r} is neither an ISO-8601 time nor epoch seconds") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return int(stamp.timestamp())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_points(rows: Iterable[list[str]]) -> list[tuple[int, float | None, str]]:
    it = iter(rows)
    header = next(it, None)
    if header is None:
        raise ReplayError("the file is empty; expected a header row such as 'timestamp,value'")
    if len(header) > 1 and _is_number(header[1]):
        raise ReplayError("the first row must be a header such as 'timestamp,value' (it holds a number)")
    points = []
    for line, row in enumerate(it, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise ReplayError(f"line {line}: expected 'timestamp,value', got {','.join(row)!r}")
        raw = row[1].strip()
        try:
            value = float(raw) if raw else None
        except ValueError:
            raise ReplayError(f"line {line}: value {raw!r} is not a number (leave it empty for a missing point)") from None
        if value is not None and not math.isfinite(value):
            value = None
        points.append((parse_time(row[0], line), value, row[0].strip()))
    if len(points) < 2:
        raise ReplayError("need at least two rows of data")
    duplicates = 0
    for i, ((a, _, _), (b, _, text)) in enumerate(zip(points, points[1:]), start=3):
        if b < a:
            raise ReplayError(f"line {i}: time {text} is earlier than the row before it; sort the file by time")
        duplicates += b == a
    if duplicates:
        print(f"fleetwatch replay: warning: {duplicates} row(s) repeat the time of the row before; each is scored as a point",
              file=sys.stderr)
    return points


def replay(rows: Iterable[list[str]], profile: str = "anomaly", threshold: float = 6.0) -> Iterator[list[str]]:
    if profile not in PROFILES:
        raise ReplayError(f"unknown --detector {profile!r}; choose one of {', '.join(PROFILES)}")
    points = read_points(rows)
    step = infer_step([(t, v) for t, v, _ in points])
    if not MIN_STEP <= step <= MAX_STEP:
        raise ReplayError(f"the rows are {step} s apart; replay handles a regular step from 60 s to 1 day")
    direction = PROFILES[profile]
    scorer = Scorer(step, threshold)
    yield ["timestamp", "value", "score", "anomaly"]
    previous = None
    for t, value, text in points:
        if previous is not None:
            # A gap of several steps: the missing points are unknown, not zero.
            for _ in range(max(0, round((t - previous) / step) - 1)):
                scorer.update(None)
        previous = t
        score, anomalous = scorer.update(value)
        if anomalous and direction and score is not None and score * direction < 0:
            anomalous = False
        yield [text, "" if value is None else f"{value:g}", "" if score is None else f"{score:.3f}", "1" if anomalous else "0"]


def main(path: str, profile: str, threshold: float, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        with (open(path, newline="", encoding="utf-8") if path != "-" else sys.stdin) as fh:
            writer = csv.writer(out, lineterminator="\n")
            for row in replay(csv.reader(fh), profile, threshold):
                writer.writerow(row)
    except FileNotFoundError:
        print(f"fleetwatch replay: {path}: no such file", file=sys.stderr)
        return 2
    except (ReplayError, UnicodeDecodeError, csv.Error) as exc:
        print(f"fleetwatch replay: {path}: {exc}", file=sys.stderr)
        return 2
    return 0
