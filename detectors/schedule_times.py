"""When an EventBridge schedule expression is due: `rate(N unit)` and AWS's six-field `cron()`,
evaluated in UTC, as EventBridge evaluates scheduled rules.

AWS's cron dialect (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html,
"Cron expressions"; the same table in eb-cron-expressions.html): six required fields — minutes
0-59, hours 0-23, day-of-month 1-31 (`, - * ? / L W`), month 1-12 or JAN-DEC, day-of-week 1-7 or
SUN-SAT (`, - * ? L #`), year 1970-2199 — one of day-of-month / day-of-week must be `?`; scheduled
rules run in UTC+0. Unix cron libraries (croniter, cronsim) take five or six fields with seconds
first, Sunday as 0 and no `L`/`W`/`#` in AWS's places, so they cannot read these.

Why aws-croniter: it parses and validates exactly this dialect and steps to the next and previous
occurrence. Two gaps, handled here rather than with an evaluator of our own: a bare `L` in
day-of-week ("the last day of the week", Saturday = 7 in AWS's numbering) makes it find nothing,
so it is translated to `7`; and it gives up (returns None) after ten month steps, which only
happens for expressions that fire at most once a year or never again (a past year) — those are
reported as "cannot tell", not guessed.

EventBridge Scheduler schedules may name a zone (`ScheduleExpressionTimezone`, an IANA name; the
cron fields are then that zone's wall-clock time, daylight saving included — Scheduler user guide,
"Schedule types", time zones). aws-croniter works in UTC only, so the wall-clock time is handed
to it as if it were UTC and the answer read back in the zone.

`rate()` schedules have no phase of their own: EventBridge starts counting when the rule is
created, so their due times are counted from the last run seen (or from when the rule was first
known) — see `Schedule.next_after`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aws_croniter import AwsCroniter

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT = {"minute": 60, "hour": 3600, "day": 86400}


def _utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


@dataclass(frozen=True)
class Schedule:
    expression: str
    rate: int | None = None  # seconds, for rate()
    cron: AwsCroniter | None = None
    zone: ZoneInfo | None = None  # a Scheduler schedule's time zone; None is UTC

    def _wall(self, t: int) -> datetime:
        """`t` as the zone's wall-clock time, labelled UTC for aws-croniter."""
        return _utc(t) if self.zone is None else _utc(t).astimezone(self.zone).replace(tzinfo=UTC)

    def _instant(self, wall: datetime) -> int:
        return int(wall.timestamp() if self.zone is None else wall.replace(tzinfo=self.zone).timestamp())

    def next_after(self, t: int) -> int | None:
        """The first due time strictly after `t` (for rate(): `t` is taken as a run)."""
        if self.rate is not None:
            return t + self.rate
        assert self.cron is not None
        got = self.cron.get_next(self._wall(t), n=1)[0]
        return self._instant(got) if got is not None else None

    def last_due(self, t: int, n: int = 2) -> list[int]:
        """Up to `n` due times at or before `t`, newest first (cron only; rate() has no phase)."""
        if self.cron is None:
            return []
        return [self._instant(d) for d in self.cron.get_prev(self._wall(t), n=n, inclusive=True) if d is not None]

    def interval(self, at: int) -> int | None:
        """Seconds between runs: the rate, or the gap between the two due times before `at`."""
        if self.rate is not None:
            return self.rate
        due = self.last_due(at, 2)
        if len(due) < 2:
            nxt = self.next_after(at)
            after = self.next_after(nxt) if nxt is not None else None
            return after - nxt if nxt is not None and after is not None else None
        return due[0] - due[1]

    def count_due(self, start: int, end: int, cap: int = 100) -> int:
        """How many due times fall in [start, end] (start itself a due time), at most `cap`."""
        if end < start:
            return 0
        if self.rate is not None:
            return min(cap, (end - start) // self.rate + 1)
        n, t = 1, start
        while n < cap:
            nxt = self.next_after(t)
            if nxt is None or nxt > end:
                break
            n, t = n + 1, nxt
        return n


def parse(expression: str, zone: str | None = None) -> Schedule | None:
    """A Schedule for a rate() or cron() expression, cron in `zone` (IANA name; UTC if none); None
    for what cannot be evaluated (an `at()` one-time schedule, a malformed expression, an unknown
    zone, or one that never fires again)."""
    text = expression.strip()
    tz = None
    if zone and zone.upper() not in ("UTC", "ETC/UTC"):
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            return None
    match = _RATE.match(text)
    if match:
        n, unit = int(match.group(1)), match.group(2)
        # AWS: "If the value is equal to 1, then the unit must be singular"; >1 plural.
        if n < 1 or (n == 1) != (not unit.endswith("s")):
            return None
        return Schedule(text, rate=n * _UNIT[unit.rstrip("s")])
    match = _CRON.match(text)
    if not match:
        return None
    fields = match.group(1).split()
    if len(fields) != 6:
        return None
    if fields[4].upper() == "L":
        fields[4] = "7"  # the last day of the week: Saturday (1-7 = SUN-SAT)
    try:
        cron = AwsCroniter(" ".join(fields))
        schedule = Schedule(text, cron=cron, zone=tz)
        probe = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
        schedule.next_after(probe)
    except Exception:  # noqa: BLE001 - aws-croniter raises its own error types, and ValueError on LW
        return None
    return schedule
