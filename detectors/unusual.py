"""The `unusual` detector: the generic anomaly layer (detectors/anomaly.py) run live over the
outcome signals, for what no rule names.

Each outcome series is cut into 5-minute buckets (the slow tier's period; a minute-level series
is summed or averaged into them) and each closed bucket is fed once to the series' `Model`, whose
state the detection pass loads from and saves to the store (`anomaly_state`, one row a series):
O(1) work and a few KiB a series, so every outcome series of a large fleet can afford it.

A bucket counts against users only in the bad direction of its signal and past a floor that
matters (`SIGNALS`): more 5XX, slower, more errors; invocations, queue inflow or mail deliveries
falling to near zero. Such buckets make an episode (anomaly.Episodes): it opens at the
threshold, and once a second bucket is elevated (a lone late datapoint or blip is not news) and
while it stays open one finding (WARNING) stands, started at its onset, with the
peak and the last elevated bucket in its evidence; it closes after QUIET buckets below half the
threshold, which ends the alert. A rule firing on the same resource takes the incident's title;
this finding joins it as supporting evidence (alerts/incidents.py).

Missing buckets: a Sum with no datapoint in a bucket the collector has covered is 0 (CloudWatch
publishes no Lambda `Invocations` datapoint for a minute without invocations; "Lambda sends
these metrics to CloudWatch only if they have a nonzero value",
https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html); an Average or a
percentile with none is skipped (no requests, no latency).
"""

from __future__ import annotations

import base64
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from detectors.anomaly import DEFAULT_THRESHOLD, Episode, Episodes, Model, model_from_numbers, model_numbers
from detectors.base import WARNING, Finding, Inputs, Series, count_text, detector, series_evidence

STEP = 300  # seconds a bucket covers: the slow tier's period (collector/catalog.py PERIODS)
SETTLE = 300  # a bucket is fed this long after it ends, once late CloudWatch datapoints are in
LOADED = 45 * 60  # the pass loads at least this much of every series (fleetwatch/agent/detection.py FUNCTION_WINDOW)
SEED = 86400  # a series seen for the first time is fed this much stored history first
HOLD = 6 * 3600  # an episode is held open by buckets still past the floors for at most this long
QUIET = 3  # buckets below half the threshold that end an episode (15 minutes)
DEFAULT_ENABLED = True  # the setting unusual.enabled's default (fleetwatch/config/settings.py)
TRACK_HEAD = 12  # a stored track's own numbers before its model's
MEAN_MEMORY = 288  # buckets in the usual level shown to people and held against the floors (about a day)


@dataclass(frozen=True)
class Signal:
    kind: str
    metric: str
    stat: str
    direction: int  # +1: a rise hurts users; -1: a fall does
    what: str
    unit: str  # of the value shown (detectors/base.py UNITS)
    floor: float = 0.0  # rises: the bucket must be at least this
    ratio: float = 0.0  # rises: at least this times the usual; falls: at most this times the usual
    usual_at_least: float = 0.0  # falls: only a series usually at least this busy (per bucket)
    weight: str = ""  # a rate averaged by this Sum series (requests), whose failures must reach `failures`
    failures: float = 0.0


SIGNALS = (
    # API Gateway: 5XXError (REST) / 5xx (HTTP) Average is the share of requests failing, Latency
    # p95 the latency users feel (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html,
    # https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-metrics.html).
    # The rate is weighted by Count (requests) and needs 5 failed requests in the bucket, as the
    # outcomes rule does (detectors/outcomes.py MIN_ERRORS): two failures of thirty are noise.
    Signal(
        "api", "5XXError", "Average", 1, "5XX error rate", "ratio", floor=0.002, ratio=2.0, weight="Count", failures=5.0
    ),
    Signal("api", "5xx", "Average", 1, "5XX error rate", "ratio", floor=0.002, ratio=2.0, weight="Count", failures=5.0),
    Signal("api", "Latency", "p95", 1, "p95 latency", "ms", ratio=1.5),
    # Lambda: Errors, Invocations (Sum) and Duration (p95), by FunctionName
    # (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html).
    Signal("lambda", "Errors", "Sum", 1, "errors", "count", floor=5.0, ratio=2.0),
    Signal("lambda", "Duration", "p95", 1, "p95 duration", "ms", ratio=1.5),
    Signal("lambda", "Invocations", "Sum", -1, "invocations", "count", ratio=0.1, usual_at_least=30.0),
    # SQS NumberOfMessagesSent (Sum): inflow (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html).
    Signal("sqs", "NumberOfMessagesSent", "Sum", -1, "messages sent to it", "count", ratio=0.1, usual_at_least=30.0),
    # SES Delivery (Sum) (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-cloudwatch.html).
    Signal("ses", "Delivery", "Sum", -1, "mail deliveries", "count", ratio=0.1, usual_at_least=30.0),
)
READS = {(s.metric, s.stat) for s in SIGNALS} | {(s.weight, "Sum") for s in SIGNALS if s.weight}
BY_KIND: dict[str, tuple[Signal, ...]] = {}
for _s in SIGNALS:
    BY_KIND[_s.kind] = (*BY_KIND.get(_s.kind, ()), _s)


class Track:
    """One series' live state: its model, its open episode, the last bucket fed, and the usual
    level in the signal's own unit (an exponentially weighted mean of the buckets)."""

    def __init__(
        self,
        model: Model | None = None,
        last_t: int | None = None,
        usual: float = 0.0,
        seen: int = 0,
        episodes: Episodes | None = None,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.model = model or Model(STEP)
        self.last_t, self.usual, self.seen = last_t, usual, seen
        self.episodes = episodes or Episodes(threshold, quiet=QUIET)
        self.last_value: float | None = None

    def dumps(self) -> str:
        """The track as text (base64 of doubles: its own numbers, then the model's)."""
        ep = self.episodes.current
        head = [
            math.nan if self.last_value is None else self.last_value,
            self.usual,
            self.seen,
            self.episodes.below,
            *((1.0, ep.onset, ep.peak, ep.peak_score, ep.end, ep.direction) if ep else (0.0,) + (math.nan,) * 5),
            self.episodes.since,  # how long since the last episode closed, and its direction: a
            self.episodes.last_dir,  # flapping reopen needs more (anomaly.REOPEN_WITHIN)
        ]
        nums = array("d", head)
        nums.extend(model_numbers(self.model))
        return base64.b64encode(nums.tobytes()).decode("ascii")

    @classmethod
    def loads(cls, text: str, last_t: int, threshold: float) -> Track:
        """A stored track; ValueError when the text is not one (the caller starts the series afresh)."""
        nums = array("d")
        try:
            nums.frombytes(base64.b64decode(text.encode("ascii"), validate=True))
        except (ValueError, TypeError, UnicodeEncodeError, AttributeError) as exc:
            raise ValueError(f"not a stored unusual track: {exc}") from exc
        if len(nums) < TRACK_HEAD:
            raise ValueError(f"not a stored unusual track: {len(nums)} numbers")
        model = model_from_numbers(nums[TRACK_HEAD:])
        if model.step != STEP:
            raise ValueError(f"a track stored at a step of {model.step} s, not {STEP} s")
        episodes = Episodes(threshold, quiet=QUIET, below=int(nums[3]), since=int(nums[10]), last_dir=int(nums[11]))
        if nums[4]:
            episodes.current = Episode(int(nums[5]), int(nums[6]), nums[7], int(nums[8]), int(nums[9]))
        track = cls(model, last_t, nums[1], int(nums[2]), episodes)
        track.last_value = None if math.isnan(nums[0]) else nums[0]
        return track

    def feed(self, t: int, value: float | None, signal: Signal, failures: float = math.inf) -> None:
        """Bucket t: score it, keep its episode, learn it. None: a missing bucket. `failures`: of
        a weighted rate, how many failed in the bucket."""
        if self.last_t is not None and t > self.last_t + STEP:
            self.model.n += (t - self.last_t) // STEP - 1  # buckets never fed: the time of day moves on
        self.last_t = t
        if value is None or math.isnan(value):
            self.model.skip()
            self.episodes.feed(t, None, 0)
            return
        score, direction = self.model.update(value)
        matters = self.matters(value, signal) and failures >= signal.failures
        hurts = score is not None and direction == signal.direction and matters
        ep = self.episodes.current
        if ep is not None and score is not None and matters and t - ep.onset < HOLD:
            # Still as far from the usual as it opened: the model may have learnt the new level
            # already, but users still feel it, so the episode (and its alert) goes on.
            score, hurts = max(score, self.episodes.threshold / 2), True
        self.episodes.feed(t, score if hurts else 0.0, signal.direction)
        if self.episodes.current is None:
            # The usual level is what came before the episode: it is not learnt from its buckets.
            self.usual += (value - self.usual) / min(self.seen + 1, MEAN_MEMORY)
            self.seen += 1
        self.last_value = value

    def matters(self, value: float, s: Signal) -> bool:
        if s.direction > 0:
            return value >= s.floor and value >= s.ratio * self.usual
        return self.usual >= s.usual_at_least and value <= s.ratio * self.usual


def buckets(series: Series, since: int, until: int, summed: bool, covered: int) -> Iterator[tuple[int, float | None]]:
    """(bucket start, value) of every whole bucket in [since, until): the sum or mean of its
    points; a Sum bucket without points is 0 if the collector covered it, else the walk stops."""
    acc: dict[int, list[float]] = {}
    for t, v in series.points:
        if since <= t < until:
            acc.setdefault(t // STEP * STEP, []).append(v)
    for b in range(since, until, STEP):
        vals = acc.get(b)
        if vals:
            yield b, sum(vals) if summed else sum(vals) / len(vals)
        elif summed:
            if covered < b + STEP - series.period:
                return  # not collected yet: fed next pass
            yield b, 0.0
        else:
            yield b, None


def weighted(rate: Series, count: Series, since: int, until: int) -> Iterator[tuple[int, float | None, float]]:
    """(bucket start, the rate weighted by the count, failures) of every whole bucket in [since,
    until); a bucket without requests has no rate."""
    counts = dict(count.points)
    acc: dict[int, list[float]] = {}
    for t, v in rate.points:
        if since <= t < until and t in counts:
            a = acc.setdefault(t // STEP * STEP, [0.0, 0.0])
            a[0] += v * counts[t]
            a[1] += counts[t]
    for b in range(since, until, STEP):
        num, den = acc.get(b, (0.0, 0.0))
        yield (b, num / den, num) if den else (b, None, 0.0)


@detector("unusual")
def unusual(inp: Inputs) -> Iterator[Finding]:
    """Feed each outcome series its closed buckets since the last pass. `inp.states` holds, per
    series with a stored track, (last bucket fed, the track's JSON, or None when the pass did not
    load it: nothing is due and no episode is open); `inp.seed` the stored history of series seen
    for the first time. Updated tracks go to `inp.new_states` for the pass to save."""
    if not enabled(inp.settings):
        return
    threshold = float(inp.settings.get("unusual.threshold", DEFAULT_THRESHOLD))
    covered: dict[int, int] = {}
    for s in inp.series.values():
        if s.points:
            covered[s.period] = max(covered.get(s.period, 0), s.points[-1][0])
    until = (inp.now - SETTLE) // STEP * STEP  # buckets ending by now - SETTLE
    for resource in inp.resources:
        for signal in BY_KIND.get(resource.kind, ()):
            key = (resource.id, signal.metric, signal.stat)
            window = inp.series.get(key) or Series()
            if key in inp.states:
                last_t, text = inp.states[key]
                if text is None:
                    continue  # stored, nothing due, no episode open: not loaded this pass
                try:
                    track, points, span = Track.loads(text, last_t, threshold), window, LOADED
                except ValueError:  # not a track this version can read (derived state): learnt afresh
                    track, points, span = Track(threshold=threshold), window, LOADED
            elif key in inp.seed:
                track, points, span = Track(threshold=threshold), inp.seed[key], SEED
            else:
                continue  # not seeded yet (the pass seeds a bounded number of series at a time)
            earliest = -(-(inp.now - span) // STEP) * STEP
            if track.last_t is None and points:
                # Not before its first stored point: a bucket before the collector began is unknown, not 0.
                earliest = max(earliest, points.points[0][0] // STEP * STEP)
            since = max(track.last_t + STEP if track.last_t is not None else earliest, earliest)
            period = window.period if window else points.period
            if signal.weight:
                wkey = (resource.id, signal.weight, "Sum")
                count = inp.seed.get(wkey, Series()) if span == SEED else inp.series.get(wkey, Series())
                for b, value, failed in weighted(points, count, since, until):
                    track.feed(b, value, signal, failed)
            else:
                for b, value in buckets(
                    Series(points.points, period), since, until, signal.stat == "Sum", covered.get(period, 0)
                ):
                    track.feed(b, value, signal)
            if track.last_t is not None:
                inp.new_states[key] = (track.last_t, track.episodes.current is not None, track.dumps())
            finding = _finding(resource, signal, track, window)
            if finding is not None:
                yield finding


def enabled(settings: dict[str, Any]) -> bool:
    return bool(settings.get("unusual.enabled", DEFAULT_ENABLED))


def _finding(resource: Any, signal: Signal, track: Track, points: Series) -> Finding | None:
    ep = track.episodes.current
    if ep is None or ep.end == ep.onset:
        return None  # one bucket is no finding: a late datapoint or a blip must not page (two: 5 min later)
    from datetime import datetime

    onset = datetime.fromtimestamp(ep.onset, tz=UTC).strftime("%H:%M UTC")
    # The episode's most extreme bucket, not the last (an episode stays open for QUIET buckets
    # after it calms down: "rose to 2 per 5 min (usually 2)" in a RESOLVED message says nothing),
    # nor the one that scored highest (the model adapts, so that is often the onset, below what
    # followed: "2.6%" for an outage that reached 12%).
    summed = signal.stat == "Sum"
    seen = [(t, v) for t in range(ep.onset, ep.end + STEP, STEP) if (v := _bucket(points, t, summed)) is not None]
    # Only a bucket as far from the usual as the detector calls unusual can be the worst: a count
    # that fell to nothing has no datapoints in its idle buckets, and once the loaded window no
    # longer reaches them, the lowest bucket left is one after traffic came back ("fell as low as
    # 4,888 per 5 min (usually 4,446)" in `make demo`).
    unusual_buckets = [(t, v) for t, v in seen if track.matters(v, signal)]
    if not seen and track.last_value is not None and track.matters(track.last_value, signal):
        unusual_buckets = [(ep.end, track.last_value)]  # a count without datapoints: 0, as fed
    usual = _show(track.usual, signal.unit)
    per = " per 5 min" if signal.unit == "count" else ""
    if not unusual_buckets:  # its worst is out of the points loaded: no number rather than a wrong one
        side = "below" if signal.direction < 0 else "above"
        title = f"{resource.name}: unusual {signal.what} — {side} its usual {usual}{per} since {onset}"
        return _with_evidence(resource, signal, track, points, ep, title)
    # The latest of equal extremes: a plateau still at its worst is told as now.
    worst_t, worst = (
        max(unusual_buckets, key=lambda tv: (tv[1], tv[0]))
        if signal.direction > 0
        else min(unusual_buckets, key=lambda tv: (tv[1], -tv[0]))
    )
    shown = _show(worst, signal.unit)
    if worst_t >= (track.last_t if track.last_t is not None else ep.end):  # as far out as it has been, now
        movement = ("fell to " if signal.direction < 0 else "rose to ") if per else ""
        said = f"{movement}{shown}{per}"
    else:
        at = datetime.fromtimestamp(worst_t, tz=UTC).strftime("%H:%M")
        said = f"{'fell as low as' if signal.direction < 0 else 'peaked at'} {shown}{per} at {at}"
    title = f"{resource.name}: unusual {signal.what} — {said} (usually {usual}) since {onset}"
    return _with_evidence(resource, signal, track, points, ep, title)


def _with_evidence(resource: Any, signal: Signal, track: Track, points: Series, ep: Any, title: str) -> Finding:
    ev = series_evidence(
        {signal.metric: points}, units={signal.metric: signal.unit, "baseline": signal.unit}, baseline=track.usual
    )
    ev["episode"] = {
        "onset": ep.onset,
        "peak": ep.peak,
        "peak_score": round(ep.peak_score, 2),
        "end": ep.end + STEP,
        "bucket_seconds": STEP,
    }
    ev["supporting"] = "a statistical finding: shown beside any rule that fires on the same resource"
    return Finding(
        "unusual",
        resource.id,
        WARNING,
        title,
        ep.onset,
        ev,
        cause=f"{signal.what} left the range this {resource.kind} has shown",
        fix="Look at what changed at the onset (a deploy, a dependency, traffic); "
        "set unusual.enabled = false to turn this detector off.",
        key=f"{signal.metric}:{signal.stat}",
    )


def _bucket(points: Series, start: int, summed: bool) -> float | None:
    """The value of the bucket starting at `start` (the sum or mean of its points), if the
    points loaded still reach back to it."""
    vals = [v for t, v in points.points if start <= t < start + STEP]
    if not vals:
        return None
    return sum(vals) if summed else sum(vals) / len(vals)


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    if unit == "ratio":
        from detectors.base import pct

        return pct(value)
    if unit == "ms":
        return f"{count_text(value)} ms"
    return count_text(value)
