"""What one poll did, for the poll log and `fleetwatch collect`: per source its status, calls,
samples and cost, and the poll's one-paragraph summary."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from collector import coldstart_sources, plan
from collector.aws import CallTally, Place


@dataclass
class SourceResult:
    source: str
    place: Place
    status: str = "ok"
    error: str = ""
    samples: int = 0
    note: str = ""
    tally: CallTally = field(default_factory=CallTally)

    @property
    def cost(self) -> float:
        return cost_of(self.tally)


def cost_of(tally: CallTally) -> float:
    """In US dollars: GetMetricData's metrics requested, Logs Insights' bytes scanned, X-Ray's
    traces retrieved and scanned ($0.50 per million, https://aws.amazon.com/xray/pricing/;
    SIGNALS.md "X-Ray") and SQS requests ($0.40 per million, plan.PRICE_PER_SQS_REQUEST)."""
    sqs = sum(n for action, n in tally.calls.items() if action.startswith("sqs:"))
    return (
        tally.metrics * plan.PRICE_PER_METRIC
        + tally.scanned_bytes / coldstart_sources.GB * coldstart_sources.PRICE_PER_GB_SCANNED
        + tally.traces * plan.PRICE_PER_TRACE
        + sqs * plan.PRICE_PER_SQS_REQUEST
    )


@dataclass
class PollReport:
    poll_id: str
    started_at: int
    seconds: float
    tiers: dict[str, list[str]]  # place -> tiers polled
    sources: list[SourceResult]
    queries: int = 0
    abandoned: bool = False

    @property
    def calls(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for s in self.sources:
            out.update(s.tally.calls)
        return out

    @property
    def metrics(self) -> int:
        return sum(s.tally.metrics for s in self.sources)

    @property
    def scanned_bytes(self) -> int:
        return sum(s.tally.scanned_bytes for s in self.sources)

    @property
    def cost(self) -> float:
        total = CallTally()
        for s in self.sources:
            total.add(s.tally)
        return cost_of(total)

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.sources)

    @property
    def errors(self) -> list[SourceResult]:
        return [s for s in self.sources if s.status != "ok"]

    def summary(self) -> str:
        calls = self.calls
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at))
        scanned = f", {self.scanned_bytes / 1e6:.1f} MB of logs scanned" if self.scanned_bytes else ""
        lines = [
            f"poll {stamp} ({self.poll_id[:8]}): {sum(calls.values())} API calls, {self.metrics} metrics requested"
            f"{scanned} (${self.cost:.4f}), {self.samples} samples stored, "
            f"{len(self.errors)} errored source(s), {self.seconds:.1f} s"
        ]
        if calls:
            lines.append(
                "  calls: " + ", ".join(f"{op} {n}" for op, n in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])))
            )
        for place, tiers in sorted(self.tiers.items()):
            lines.append(f"  {place}: tiers {'+'.join(tiers) or 'none'}")
        for s in self.sources:
            if s.note and s.status == "ok":
                lines.append(f"  {s.place} {s.source}: {s.note}")
        for s in self.errors:
            lines.append(f"  ERROR {s.place} {s.source}: {s.error}")
        return "\n".join(lines)


# -- the polling cost every surface states --------------------------------------------------------

WEEK = 7 * 86400
HOUR = 3600  # poll_hours (fleetwatch.store) sums the poll log per UTC hour
MIN_COVERED = 3600  # a rate over less than an hour of polls says little; at least an hour is assumed


@dataclass(frozen=True)
class PollingCost:
    """What fleetwatch's own polling cost over [since, end) by the poll log (each row's cost is
    cost_of its calls), and that rate over a 30-day month. The overview, the digest and
    `fleetwatch plan` all state this one figure (polling_cost)."""

    usd: float
    api_calls: int
    polls: int
    since: int  # the first poll in the window, or `end` when there was none
    end: int

    @property
    def covered_seconds(self) -> int:
        return max(self.end - self.since, MIN_COVERED)

    @property
    def usd_per_month(self) -> float:
        return self.usd * plan.MONTH / self.covered_seconds if self.polls else 0.0

    def sentence(self) -> str:
        """One line, the same words on every surface."""
        if not self.polls:
            return "no polls recorded yet"
        covered = self.covered_seconds  # the time the rate is taken over (at least MIN_COVERED)
        span = f"{covered / 86400:.1f} days" if covered >= 86400 else f"{covered / 3600:.1f} hours"
        return (
            f"${self.usd_per_month:,.2f} a month at the rate of the last {span} "
            f"(${self.usd:,.2f} for {self.polls:,} polls and {self.api_calls:,} API calls)"
        )


def polling_cost(db: Any, end: int, window: int = WEEK) -> PollingCost:
    """The poll log over [end - window, end): its cost, calls and polls (rows sharing a poll_id
    are one poll; older rows without one count one each), and where it starts. `db` is a sqlite3
    connection or sqlite_utils Database. The log may cover less than the window (a new agent, or
    store.history_retention), so the monthly rate is over the time it does cover.

    The whole hours inside the window are read from poll_hours (the store keeps the log's sums
    per hour as it writes and prunes the log); only the partial hours at the window's two edges
    are summed from the log itself. A poll's rows share its started_at, so no poll is in two hours."""
    start = end - window
    first_hour, last_hour = -(-start // HOUR) * HOUR, end // HOUR * HOUR
    raw = (
        "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(api_calls), 0), "
        "COUNT(DISTINCT COALESCE(poll_id, 'row' || id)), MIN(started_at) FROM poll_log "
        "WHERE started_at >= ? AND started_at < ?"
    )
    if first_hour >= last_hour:
        parts = [db.execute(raw, [start, end]).fetchone()]
    else:
        parts = [
            db.execute(raw, [start, first_hour]).fetchone(),
            db.execute(
                "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(api_calls), 0), COALESCE(SUM(polls), 0), "
                "MIN(first_at) FROM poll_hours WHERE hour >= ? AND hour < ?",
                [first_hour, last_hour],
            ).fetchone(),
            db.execute(raw, [last_hour, end]).fetchone(),
        ]
    starts = [int(p[3]) for p in parts if p[3] is not None]
    return PollingCost(
        sum(float(p[0]) for p in parts),
        sum(int(p[1]) for p in parts),
        sum(int(p[2]) for p in parts),
        min(starts) if starts else end,
        end,
    )
