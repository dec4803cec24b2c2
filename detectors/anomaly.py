"""The generic anomaly layer: a calibrated surprise for any regular series, and episodes.

Each point is scored against what came before it only, in constant time and memory per series
(`Model`: a few dozen numbers, plus one value per slot of a day when the step divides a day).
A series of whole numbers >= 0 (a count) is modelled on a square-root scale, where Poisson-like
noise has the same size at every level. Three questions are asked of each point, on the
series' own noise scale (the typical change between neighbouring points, never below the
series' quantum, so a count that moves by one is not a storm):

1. is it far from ALL of the recent context (the median of the last 5 points), the long-run
   level and the same slot of the learnt day? (a spike or the first point of a shift; a quiet
   hour after a busy one is near the long-run level, so it is not news);
2. has the mean of the last 12 points left the long-run level? (a sustained shift);
3. has the series left its daily shape for the last 6 points? (asked only once a day is
   learnt; the day is an exponentially weighted profile, so a burst yesterday fades).

Each answer becomes a tail probability from the series' own history of answers: a
peaks-over-threshold fit (above a running 90th percentile the tail is exponential, its mean
excess learnt online), so a series whose big moves are routine gets small surprises and a
placid one large ones. The point question is also checked against the series' own count of
points the fit called that rare: a burst it makes every few hundred points is not "one in
10^12" however the fit extrapolates, while the first such point keeps its full surprise.
The score is the surprise -log10(p) of the rarest answer, less log10(number of questions) for
asking several, capped at 12 ("one point in a thousand" is 3).

That surprise alone could not tell NAB's labelled windows from routine bursts, so a point is
also asked whether it (or the mean of its last 6 points) is NEW: beyond the range the series
has shown (`Range`), by 3 % of its width and half a noise scale (CAD OSE's idea of novelty);
and whether its departure from the daily shape is new (the mean of the last 6 departures beyond
the range of such means, by 10 % of its width: an afternoon at the night's level).
The score is the largest of the novelty scores and surprise / SURPRISE_PER_SCORE, so the
default threshold 3 means "new to this series" or "a surprise of 10.5" on every series.

`Episodes` turns scores into episodes: one opens at the first point whose score reaches the
threshold and closes after `quiet` points in a row below half of it; it is reported once, with
its onset, peak and end. One reopening the same way soon after (flapping) needs twice the
threshold. See docs/anomaly.md for the choices and the figures.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

MAX_SCORE = 12.0
WARMUP = 150  # points learnt before any score is given
SHORT = 5  # points of recent context (median)
SUSTAIN = 12  # points averaged for a sustained shift
SEASON_SUSTAIN = 6  # points averaged for a departure from the daily shape
SLOT_RATE = 0.3  # weight of today's point in the learnt day
TAIL_Q = 0.9  # the exponential tail starts at this running quantile
TAIL_MEMORY = 200  # points of memory of the tail fit
MAX_SLOTS = 1440  # the daily shape is learnt for steps of 1 minute to 1 hour
NOVEL_MEAN = 6  # points averaged for a novel level
NOVEL_MARGIN = 0.03  # a value is novel beyond the remembered range by this fraction of its width...
NOVEL_GATE = 0.5  # ...and by this many noise scales (early records of plain noise are not news)
NOVEL_SURPRISE = 0.5  # ...and only when the point is this surprising by the calibrated tests
RANGE_DECAY = 1e-4  # the remembered range relaxes toward the level by this fraction a point
RANGE_HOLD = 100  # points an extreme is held after the series last came near it
SURPRISE_PER_SCORE = 3.5  # a calibrated surprise of 10.5 alone scores 3
RARE = 10.0  # a surprise a checked tail counts: about what alarms alone (10.5, less log10(questions))
RARE_MEMORY = 10_000  # points over which those are remembered (e-folding: 35 days at 5-minute steps)
# Which questions' tails are checked: the point's (bursts); checking the means' too lost NAB's
# artificial daily-shape windows (docs/anomaly.md).
CHECKED = (True, False, False)
DEFAULT_THRESHOLD = 3.0
# A departure from the daily shape is also asked whether it is NEW: the mean of the last 6
# residuals from the learnt day beyond the range of such means the series has shown (issue 18,
# fourth pass). A CloudWatch series' daily shape is its traffic's; an afternoon whose requests fall
# to the night's level is inside the range of values (so never new) yet unlike any day so far.
# Asked once RESID_DAYS days are learnt, and only when the daily-shape question itself is a
# little surprising (RESID_SURPRISE, its own tail's -log10 p), beyond 10 % of the range's width
# (a residual's range is narrow and noisy: 3 %, as for values, added false alarms on both datasets).
RESID_DAYS = 2
RESID_MARGIN = 0.1
RESID_SURPRISE = 2.0
# An episode that reopens in the same direction within REOPEN_WITHIN points of the last one's end
# is most often the same disturbance flapping: it needs REOPEN_FACTOR x the threshold to open.
# One the other way (a recovery overshooting, a drop after a surge) is asked the usual threshold,
# as is one after a longer calm (docs/anomaly.md: across directions it lost Microsoft segments).
REOPEN_WITHIN = 150
REOPEN_FACTOR = 2.0
# Chosen on NAB's development split (docs/anomaly.md): the best standard, low-FP and low-FN score.
PROFILES = {"default": DEFAULT_THRESHOLD, "low-fp": 3.5, "low-fn": 2.5}


class Tail:
    """Running tail probability of a statistic >= 0: a stochastic-approximation quantile u
    (TAIL_Q) and the mean excess beta above it (an exponential tail, the GPD of shape 0).

    A `checked` tail also counts the answers its fit called rare (a surprise >= RARE), decayed
    over RARE_MEMORY points. Once the series has given one, no surprise is taken as rarer than
    the rate at which it gives them: -log10(count / points). The fit clips each excess (so one
    outlier does not flatten it), so on a bursty series every routine burst scores "one in
    10^12"; the count says "the 3rd in 5,000 points" instead. A series that never gave one is
    unaffected: its first extreme point keeps its full surprise."""

    __slots__ = ("u", "beta", "n", "rare", "checked")

    def __init__(self, checked: bool = False) -> None:
        self.u = 1.0
        self.beta = 1.0
        self.n = 0
        self.rare = 0.0
        self.checked = checked

    def fit(self, z: float) -> float:
        """-log10 P(Z >= z) by the fitted tail; 0 until WARMUP answers are learnt."""
        if z <= 0 or self.n < WARMUP:
            return 0.0
        if z <= self.u:
            return -math.log10(1.0 - TAIL_Q * z / self.u)
        return min(MAX_SCORE, -math.log10(1.0 - TAIL_Q) + (z - self.u) / self.beta / math.log(10))

    def surprise(self, z: float) -> float:
        """The fit's surprise, no more than the series' own rate of rare answers allows."""
        s = self.fit(z)
        if self.rare > 0:
            s = min(s, -math.log10(self.rare / min(self.n, RARE_MEMORY)))
        return s

    def learn(self, z: float) -> None:
        if self.checked:
            self.rare *= 1.0 - 1.0 / RARE_MEMORY
            if self.fit(z) >= RARE:
                self.rare += 1.0
        self.n += 1
        rate = 2.0 / min(self.n + 1, TAIL_MEMORY)
        step = rate * max(self.u, 0.05)
        if z > self.u:
            excess = min(z - self.u, 8.0 * self.beta)  # one outlier must not flatten the tail
            self.beta += rate * (max(excess, 1e-6) - self.beta)
            self.u += step * TAIL_Q
        else:
            self.u = max(self.u - step * (1.0 - TAIL_Q), 1e-6)


class Range:
    """The range of values seen lately. An extreme that the series keeps coming back to (within
    NOVEL_MARGIN of the width) is held; one not revisited for RANGE_HOLD points relaxes toward
    the level by RANGE_DECAY a point, so a record of long ago stops silencing today's."""

    __slots__ = ("hi", "lo", "since_hi", "since_lo")

    def __init__(self) -> None:
        self.hi, self.lo = -math.inf, math.inf
        self.since_hi = self.since_lo = 0

    def novelty(
        self, v: float, s: float, margin: float = NOVEL_MARGIN, gate: float = NOVEL_GATE
    ) -> tuple[float, float]:
        """(score, lean) of v beyond the range: DEFAULT_THRESHOLD where it is beyond by
        NOVEL_MARGIN of the range's width and NOVEL_GATE noise scales s, in proportion."""
        excess, lean = (v - self.hi, 1.0) if v > self.hi else (self.lo - v, -1.0) if v < self.lo else (0.0, 0.0)
        if excess <= 0:
            return 0.0, 0.0
        need = max(margin * (self.hi - self.lo), gate * s, 1e-12)
        return min(MAX_SCORE, DEFAULT_THRESHOLD * excess / need), lean

    def learn(self, v: float, level: float) -> None:
        if not math.isfinite(self.hi):
            self.hi = self.lo = v
            return
        band = NOVEL_MARGIN * (self.hi - self.lo)
        self.since_hi = 0 if v >= self.hi - band else self.since_hi + 1
        self.since_lo = 0 if v <= self.lo + band else self.since_lo + 1
        if self.since_hi > RANGE_HOLD:
            self.hi -= RANGE_DECAY * (self.hi - level)
        if self.since_lo > RANGE_HOLD:
            self.lo -= RANGE_DECAY * (self.lo - level)
        self.hi, self.lo = max(self.hi, v), min(self.lo, v)


def daily_slots(step: int) -> int:
    """Points in a day when the step divides it and is 1 minute to 1 hour, else 0 (no daily shape)."""
    return 86400 // step if 60 <= step <= 3600 and 86400 % step == 0 else 0


class Model:
    """One series' state; `update(x)` scores x against the points before it, then learns it."""

    __slots__ = (
        "step",
        "counts",
        "n",
        "recent",
        "level",
        "noise",
        "quantum",
        "prev",
        "tails",
        "period",
        "slots",
        "snoise",
        "sres",
        "values",
        "means",
        "resid",
    )

    def __init__(self, step: int, counts: bool = True) -> None:
        self.step = step
        self.counts = counts  # every warm-up value a whole number >= 0: modelled as sqrt(x + 3/8)
        self.n = 0
        self.recent: deque[float] = deque(maxlen=SUSTAIN)
        self.level = 0.0
        self.noise = 0.0  # mean absolute change between neighbouring points
        self.quantum = math.inf  # smallest non-zero change seen
        self.prev: float | None = None
        self.tails = (Tail(CHECKED[0]), Tail(CHECKED[1]), Tail(CHECKED[2]))
        self.period = daily_slots(step)
        self.slots = array("d", bytes(8 * self.period))
        self.snoise = 0.0  # mean absolute departure from the learnt day
        self.sres: deque[float] = deque(maxlen=SEASON_SUSTAIN)
        self.values, self.means = Range(), Range()  # the remembered range of values, of NOVEL_MEAN-means
        self.resid = Range()  # the remembered range of SEASON_SUSTAIN-means of departures from the day

    def scale(self) -> float:
        q = self.quantum if math.isfinite(self.quantum) else 0.0
        return max(1.25 * self.noise, q, 1e-9 * abs(self.level), 1e-12)

    def update(self, x: float) -> tuple[float | None, int]:
        """(surprise, direction +1 / -1) of x; None while warming up."""
        if self.counts and self.n < WARMUP and (x < 0 or x != int(x)):
            self.__init__(self.step, counts=False)  # type: ignore[misc]  # not a count: learn afresh
        if self.counts:  # decided by the warm-up; a later fraction keeps the same scale
            x = math.copysign(math.sqrt(abs(x) + 0.375), x)
        score: float | None = None
        direction = 0
        seasonal = self.period and self.n >= self.period
        if len(self.recent) >= SHORT:  # points learnt, not slots passed: missing ones add none
            s = self.scale()
            ctx = sorted(list(self.recent)[-SHORT:])[SHORT // 2]
            sref = self.slots[self.n % self.period] if seasonal else x
            z1 = min(abs(x - ctx), abs(x - self.level), abs(x - sref) if seasonal else math.inf) / s
            window = list(self.recent)[-(SUSTAIN - 1) :] + [x]
            mean = sum(window) / len(window)
            z2 = abs(mean - self.level) / s / math.sqrt(SUSTAIN)
            z3 = rmean = 0.0
            if seasonal:
                res = list(self.sres)[-(SEASON_SUSTAIN - 1) :] + [x - sref]
                rmean = sum(res) / len(res)
                z3 = abs(rmean) / max(1.25 * self.snoise, 0.1 * s, 1e-12)
            if self.n >= WARMUP:
                a, b = self.tails[0].surprise(z1), self.tails[1].surprise(z2)
                c = self.tails[2].surprise(z3) if seasonal else 0.0
                surprise = max(0.0, max(a, b, c) - math.log10(3.0 if seasonal else 2.0))
                lean = x - self.level if a >= max(b, c) else mean - self.level if b >= c else x - sref
                nx = nm = lx = lm = nr = lr = 0.0
                if surprise >= NOVEL_SURPRISE and (not self.period or self.n >= self.period):
                    nx, lx = self.values.novelty(x, s)
                    nm, lm = self.means.novelty(sum(window[-NOVEL_MEAN:]) / min(len(window), NOVEL_MEAN), s)
                    if seasonal and self.n >= RESID_DAYS * self.period and c >= RESID_SURPRISE:
                        nr, lr = self.resid.novelty(rmean, max(1.25 * self.snoise, 0.1 * s), RESID_MARGIN)
                score = max(surprise / SURPRISE_PER_SCORE, nx, nm, nr)
                if score > surprise / SURPRISE_PER_SCORE:
                    lean = lx if nx >= max(nm, nr) else lm if nm >= nr else lr
                direction = 1 if lean >= 0 else -1
            self.tails[0].learn(z1)
            self.tails[1].learn(z2)
            if seasonal:
                self.tails[2].learn(z3)
        self._learn(x)
        return score, direction

    def skip(self) -> None:
        """A missing point: nothing learnt, but the slot of the day moves on."""
        self.n += 1

    def _learn(self, x: float) -> None:
        if self.prev is not None:
            d = abs(x - self.prev)
            if d > 0:
                self.quantum = min(self.quantum, d)
            limit = 6.0 * self.noise if self.n > 20 else math.inf  # a burst must not widen the yardstick
            self.noise += (min(d, limit) - self.noise) / min(self.n + 1, 100)
        if self.n == 0:
            self.level = x
        else:
            s = 20 * self.scale()
            self.level += max(-s, min(s, x - self.level)) / min(self.n + 1, 300)
        if self.period:
            k = self.n % self.period
            if self.n < self.period:
                self.slots[k] = x
            else:
                r = x - self.slots[k]
                self.sres.append(r)
                self.resid.learn(sum(self.sres) / len(self.sres), 0.0)
                limit = 6.0 * self.snoise if self.n > 2 * self.period else math.inf
                self.snoise += 0.01 * (min(abs(r), limit) - self.snoise)
                self.slots[k] += SLOT_RATE * r
        self.recent.append(x)
        self.values.learn(x, self.level)
        self.means.learn(sum(list(self.recent)[-NOVEL_MEAN:]) / min(len(self.recent), NOVEL_MEAN), self.level)
        self.prev = x
        self.n += 1


STATE_HEAD = 34  # numbers before the variable parts in model_state's layout


def model_numbers(m: Model) -> array:
    """A Model as an array of doubles (the live detector stores it as text; no pickle, so a store
    someone else wrote cannot run code here, and far cheaper than JSON)."""
    nums = array(
        "d",
        [
            m.step,
            float(m.counts),
            m.n,
            m.level,
            m.noise,
            m.quantum,
            math.nan if m.prev is None else m.prev,
            m.snoise,
            len(m.recent),
            len(m.sres),
        ],
    )
    for t in m.tails:
        nums.extend((t.u, t.beta, t.n, t.rare))
    for r in (m.values, m.means, m.resid):
        nums.extend((r.hi, r.lo, r.since_hi, r.since_lo))
    nums.extend(m.recent)
    nums.extend(m.sres)
    nums.extend(m.slots)
    return nums


def model_from_numbers(nums: array) -> Model:
    """The Model `model_numbers` wrote; ValueError when they are not one (the caller starts afresh)."""
    try:
        m = Model(int(nums[0]), bool(nums[1]))
        nr, ns = int(nums[8]), int(nums[9])
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise ValueError(f"not a stored anomaly model: {exc}") from exc
    if (
        m.step <= 0
        or not 0 <= nr <= SUSTAIN
        or not 0 <= ns <= SEASON_SUSTAIN
        or len(nums) != STATE_HEAD + nr + ns + m.period
    ):
        raise ValueError(f"not a stored anomaly model: {len(nums)} numbers for a step of {m.step} s")
    m.n, m.level, m.noise, m.quantum = int(nums[2]), nums[3], nums[4], nums[5]
    m.prev = None if math.isnan(nums[6]) else nums[6]
    m.snoise = nums[7]
    for i, t in enumerate(m.tails):
        t.u, t.beta, t.n, t.rare = nums[10 + 4 * i], nums[11 + 4 * i], int(nums[12 + 4 * i]), nums[13 + 4 * i]
    for i, r in enumerate((m.values, m.means, m.resid)):
        r.hi, r.lo, r.since_hi, r.since_lo = (
            nums[22 + 4 * i],
            nums[23 + 4 * i],
            int(nums[24 + 4 * i]),
            int(nums[25 + 4 * i]),
        )
    at = STATE_HEAD
    m.recent.extend(nums[at : at + nr])
    m.sres.extend(nums[at + nr : at + nr + ns])
    m.slots = nums[at + nr + ns :]
    return m


@dataclass
class Episode:
    onset: int  # index of the first point
    peak: int
    peak_score: float
    end: int  # index of the last point at or above half the threshold
    direction: int  # +1 above what was expected, -1 below


@dataclass
class Episodes:
    """Scores to episodes, one point at a time: open at the threshold, close after `quiet`
    points in a row below half of it (or missing)."""

    threshold: float = DEFAULT_THRESHOLD
    quiet: int = 12
    current: Episode | None = None
    below: int = 0
    since: int = 1 << 30  # points since the last episode closed
    last_dir: int = 0  # that episode's direction

    def feed(self, i: int, score: float | None, direction: int) -> tuple[bool, Episode | None]:
        """(is point i an episode's onset, the episode that closed with it if any)."""
        s = score or 0.0
        ep = self.current
        if ep is None:
            self.since += 1
            flapping = self.since <= REOPEN_WITHIN and direction == self.last_dir
            need = self.threshold * (REOPEN_FACTOR if flapping else 1.0)
            if s >= need:
                self.current, self.below = Episode(i, i, s, i, direction), 0
                return True, None
            return False, None
        if s >= self.threshold / 2:
            ep.end, self.below = i, 0
            if s > ep.peak_score:
                ep.peak, ep.peak_score = i, s
            return False, None
        self.below += 1
        if self.below >= self.quiet:
            self.current, self.since, self.last_dir = None, 0, ep.direction
            return False, ep
        return False, None


class Scorer:
    """A series' model and its episodes: `update(value)` -> (score, onset?, direction).
    A missing value (None or NaN) scores nothing but keeps the time of day."""

    def __init__(self, step: int, threshold: float = DEFAULT_THRESHOLD) -> None:
        if step <= 0:
            raise ValueError("the step must be a positive number of seconds")
        self.model = Model(step)
        self.episodes = Episodes(threshold)
        self.index = 0
        self.closed: list[Episode] = []

    def update(self, value: float | None) -> tuple[float | None, bool, int]:
        i = self.index
        self.index += 1
        score, direction = (None, 0)
        if value is None or math.isnan(value):
            self.model.skip()
        else:
            score, direction = self.model.update(value)
        onset, closed = self.episodes.feed(i, score, direction)
        if closed:
            self.closed.append(closed)
        return score, onset, direction

    def finish(self) -> list[Episode]:
        """Every episode, the one still open included."""
        if self.episodes.current is not None:
            self.closed.append(self.episodes.current)
            self.episodes.current = None
        return self.closed


def score_series(
    points: list[tuple[int, float | None]], threshold: float = DEFAULT_THRESHOLD
) -> list[tuple[float | None, bool]]:
    """(score, onset?) of each point of a whole series, in order, each from the points before it and itself."""
    if len(points) < 2:
        return [(None, False) for _ in points]
    scorer = Scorer(infer_step(points), threshold)
    return [scorer.update(v)[:2] for _, v in points]


def infer_step(points: list[tuple[int, float | None]]) -> int:
    gaps = sorted(b[0] - a[0] for a, b in pairwise(points) if b[0] > a[0])
    if not gaps:
        raise ValueError("every row has the same time; cannot tell the step")
    return int(gaps[len(gaps) // 2])
