"""`fleetwatch replay`: the anomaly layer over a CSV of `timestamp,value` (a CloudWatch export,
say), written back as `timestamp,value,score,anomaly,episode` on standard output: the score is
the surprise -log10(p) of the point, `anomaly` is 1 at an episode's onset only, `episode` numbers
the rows of an episode (from its onset while the score stays at or above half the threshold).
One summary line goes to standard error."""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import pairwise
from typing import TextIO

from detectors.anomaly import PROFILES as THRESHOLDS
from detectors.anomaly import Scorer, infer_step

# What counts as anomalous: both directions, only rises (errors, latency), only dips (traffic).
DIRECTIONS = {"anomaly": 0, "spike": 1, "dip": -1}
MIN_STEP, MAX_STEP = 60, 86400
IRREGULAR_SHARE = 0.1  # more gaps than this that are not a whole number of steps: refused


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
        stamp = stamp.replace(tzinfo=UTC)
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
            raise ReplayError(
                f"line {line}: value {raw!r} is not a number (leave it empty for a missing point)"
            ) from None
        if value is not None and not math.isfinite(value):
            value = None
        points.append((parse_time(row[0], line), value, row[0].strip()))
    if len(points) < 2:
        raise ReplayError("need at least two rows of data")
    duplicates = 0
    for i, ((a, _, _), (b, _, text)) in enumerate(pairwise(points), start=3):
        if b < a:
            raise ReplayError(f"line {i}: time {text} is earlier than the row before it; sort the file by time")
        duplicates += b == a
    if duplicates:
        print(
            f"fleetwatch replay: warning: {duplicates} row(s) repeat "
            "the time of the row before; each is scored as a point",
            file=sys.stderr,
        )
    return points


class Summary:
    def __init__(self) -> None:
        self.points = self.episodes = self.flagged = self.irregular = self.step = 0
        self.threshold = 0.0

    def line(self) -> str:
        odd = f", {self.irregular} gap(s) not a whole number of steps" if self.irregular else ""
        return (
            f"fleetwatch replay: {self.points} points, step {self.step} s{odd}; {self.episodes} episode(s), "
            f"{self.flagged} point(s) flagged at threshold {self.threshold:g}"
        )


def check_step(points: list[tuple[int, float | None, str]], summary: Summary) -> int:
    step = infer_step([(t, v) for t, v, _ in points])
    if not MIN_STEP <= step <= MAX_STEP:
        raise ReplayError(f"the rows are {step} s apart; replay handles a regular step from 60 s to 1 day")
    gaps = [b - a for (a, _, _), (b, _, _) in pairwise(points) if b > a]
    odd = [g for g in gaps if g % step]
    if len(odd) > IRREGULAR_SHARE * len(gaps):
        raise ReplayError(
            f"the step is irregular: {len(odd)} of {len(gaps)} gaps are not a whole number of "
            f"{step} s steps; resample the series to a fixed period (CloudWatch: one Period) first"
        )
    summary.step, summary.irregular = step, len(odd)
    return step


def replay(
    rows: Iterable[list[str]],
    direction: str = "anomaly",
    threshold: float | None = None,
    profile: str = "default",
    summary: Summary | None = None,
) -> Iterator[list[str]]:
    if direction not in DIRECTIONS:
        raise ReplayError(f"unknown --detector {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    if profile not in THRESHOLDS:
        raise ReplayError(f"unknown --profile {profile!r}; choose one of {', '.join(THRESHOLDS)}")
    if threshold is not None and not 0 < threshold <= 12:
        raise ReplayError(f"--threshold {threshold:g} is out of range; a score is -log10(p), from 0 to 12 (default 3)")
    summary = summary or Summary()
    summary.threshold = THRESHOLDS[profile] if threshold is None else threshold
    points = read_points(rows)
    step = check_step(points, summary)
    want = DIRECTIONS[direction]
    scorer = Scorer(step, summary.threshold)
    yield ["timestamp", "value", "score", "anomaly", "episode"]
    previous = None
    shown = False  # the open episode leans the asked way
    for t, value, text in points:
        if previous is not None:
            # A gap of several steps: the missing points are unknown, not zero.
            for _ in range(max(0, (t - previous) // step - 1)):
                scorer.update(None)
        previous = t
        score, onset, lean = scorer.update(value)
        if onset:
            shown = not want or lean == want
            summary.episodes += shown
        inside = shown and scorer.episodes.current is not None and (score or 0.0) >= summary.threshold / 2
        summary.flagged += inside
        summary.points += 1
        yield [
            text,
            "" if value is None else f"{value:g}",
            "" if score is None else f"{score:.3f}",
            "1" if onset and shown else "0",
            str(summary.episodes) if inside else "",
        ]


def main(
    path: str,
    direction: str = "anomaly",
    threshold: float | None = None,
    profile: str = "default",
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    summary = Summary()
    try:
        with open(path, newline="", encoding="utf-8") if path != "-" else sys.stdin as fh:
            writer = csv.writer(out, lineterminator="\n")
            for row in replay(csv.reader(fh), direction, threshold, profile, summary):
                writer.writerow(row)
    except FileNotFoundError:
        print(f"fleetwatch replay: {path}: no such file", file=sys.stderr)
        return 2
    except (ReplayError, UnicodeDecodeError, csv.Error) as exc:
        print(f"fleetwatch replay: {path}: {exc}", file=sys.stderr)
        return 2
    print(summary.line(), file=sys.stderr)
    return 0
