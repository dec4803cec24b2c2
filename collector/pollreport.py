"""What one poll did, for the poll log and `fleetwatch collect`: per source its status, calls,
samples and cost, and the poll's one-paragraph summary."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

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
    return (tally.metrics * plan.PRICE_PER_METRIC
            + tally.scanned_bytes / coldstart_sources.GB * coldstart_sources.PRICE_PER_GB_SCANNED
            + tally.traces * plan.PRICE_PER_TRACE + sqs * plan.PRICE_PER_SQS_REQUEST)


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
        lines = [f"poll {stamp} ({self.poll_id[:8]}): {sum(calls.values())} API calls, {self.metrics} metrics requested"
                 f"{scanned} (${self.cost:.4f}), {self.samples} samples stored, {len(self.errors)} errored source(s), {self.seconds:.1f} s"]
        if calls:
            lines.append("  calls: " + ", ".join(f"{op} {n}" for op, n in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))))
        for place, tiers in sorted(self.tiers.items()):
            lines.append(f"  {place}: tiers {'+'.join(tiers) or 'none'}")
        for s in self.sources:
            if s.note and s.status == "ok":
                lines.append(f"  {s.place} {s.source}: {s.note}")
        for s in self.errors:
            lines.append(f"  ERROR {s.place} {s.source}: {s.error}")
        return "\n".join(lines)
