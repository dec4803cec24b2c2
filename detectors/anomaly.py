"""The generic anomaly layer: a causal baseline and robust score for any regular series.

Each point is scored against what came before it only: the level is the median of the same
slot in up to four previous seasons (a day, for steps of a minute to an hour; a week for daily
data), corrected by the recent offset from those seasons, or the recent median before a full
season exists; the scale is the median absolute deviation of recent residuals, floored so that
a flat or count-like series does not turn every wiggle into a storm. A point is anomalous when
its score passes the threshold for `persist` points in a row (isolated blips are not alarms).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

SEASONS = 4
MAD_TO_SIGMA = 1.4826


def _median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class Scorer:
    step: int  # seconds between points
    threshold: float = 6.0
    persist: int = 0  # 0: chosen from the step (3 points at minute steps, 1 at hourly and slower)
    values: list[float | None] = field(default_factory=list)
    residuals: deque[float] = field(default_factory=lambda: deque(maxlen=240))
    streak: int = 0
    counts: bool = True  # every value so far a whole number >= 0

    def __post_init__(self) -> None:
        if self.step <= 0:
            raise ValueError("the step must be a positive number of seconds")
        if self.step <= 3600 and 86400 % self.step == 0:
            self.period = 86400 // self.step
        elif self.step == 86400:
            self.period = 7
        else:
            self.period = 0
        self.window = max(12, min(3600 // self.step, 60)) if self.step < 3600 else 24 if self.step == 3600 else 7
        if not self.persist:
            self.persist = 3 if self.step < 600 else 2 if self.step < 3600 else 1

    def level(self) -> float | None:
        """The expected value of the next point, from the points before it."""
        n = len(self.values)
        recent = [v for v in self.values[-self.window:] if v is not None]
        if len(recent) < min(self.window, 6):
            return None
        if not self.period or n < self.period:
            return _median(recent)
        seasonal = [self.values[n - k * self.period] for k in range(1, SEASONS + 1) if n - k * self.period >= 0]
        seasonal = [v for v in seasonal if v is not None]
        if not seasonal:
            return _median(recent)
        base = _median(seasonal)
        # The recent offset from the same slots of earlier seasons: a level shift, not an anomaly.
        offsets = []
        for i in range(max(0, n - self.window), n):
            past = [self.values[i - k * self.period] for k in range(1, SEASONS + 1) if i - k * self.period >= 0]
            past = [v for v in past if v is not None]
            if past and self.values[i] is not None:
                offsets.append(self.values[i] - _median(past))  # type: ignore[operator]
        return base + (_median(offsets) if offsets else 0.0)

    def scale(self, level: float) -> float:
        floor = max(abs(level) * 0.05, 1e-9)
        if self.counts:
            floor = max(floor, math.sqrt(max(level, 0.0) + 1.0))  # Poisson-like noise of a count
        if len(self.residuals) < 6:
            return max(floor, abs(level) * 0.25, 1e-9)
        mad = _median([abs(r) for r in self.residuals])
        return max(MAD_TO_SIGMA * mad, floor)

    def update(self, value: float | None) -> tuple[float | None, bool]:
        """Score `value` against the points before it, then learn it. A missing value scores
        nothing and breaks a streak."""
        if value is None or math.isnan(value):
            self.values.append(None)
            self.streak = 0
            return None, False
        if self.counts and (value < 0 or value != int(value)):
            self.counts = False
        level = self.level()
        score: float | None = None
        anomalous = False
        if level is not None:
            scale = self.scale(level)
            score = (value - level) / scale
            self.streak = self.streak + 1 if abs(score) >= self.threshold else 0
            anomalous = self.streak >= self.persist
            # Learn from a clipped residual, so an anomaly does not widen its own yardstick.
            self.residuals.append(max(-self.threshold * scale, min(self.threshold * scale, value - level)))
        self.values.append(value)
        return score, anomalous


def score_series(points: list[tuple[int, float | None]], threshold: float = 6.0, persist: int = 0) -> list[tuple[float | None, bool]]:
    """Score a whole series in order (each decision from the points before it and itself)."""
    if len(points) < 2:
        return [(None, False) for _ in points]
    step = infer_step(points)
    scorer = Scorer(step, threshold, persist)
    return [scorer.update(v) for _, v in points]


def infer_step(points: list[tuple[int, float | None]]) -> int:
    gaps = [b[0] - a[0] for a, b in zip(points, points[1:]) if b[0] > a[0]]
    if not gaps:
        raise ValueError("every row has the same time; cannot tell the step")
    return int(_median([float(g) for g in gaps]))
