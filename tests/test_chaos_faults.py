"""The agent against a failing AWS: through the fault proxy, 10 % of calls throttled with each
service's own error and 2 % answered 500 or 503, for a stretch of the orders path failing (the
soak week's first day; in `make test`, its first incident). Every labelled incident is still
detected and notified, the store afterwards holds exactly what a run without faults stored, and
the dashboard answers throughout. The same stretch runs twice on the emulator's fake clock: once
straight to the emulator, once through the proxy."""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.agent.loop import FakeWaiter
from fleetwatch.store import open_store
from simulator.faultproxy import FaultProxy
from simulator.slack import TOKEN as SLACK_TOKEN
from simulator.slack import SlackStandIn
from tests import chaos_kit
from tests.agent_kit import agent_config, make_agent
from tests.conftest import control, set_clock
from web.server import DashboardServer

THROTTLE, SERVER_ERRORS = 0.10, 0.02
LOOKBACK = 900  # poll.lookback's default: how far back every poll re-reads


def fault_rules() -> list[dict[str, Any]]:
    # Rules are tried in order, so the later ones see only what the earlier let through:
    # overall 10 % throttled, 1 % 500 and 1 % 503.
    r500 = SERVER_ERRORS / 2 / (1 - THROTTLE)
    r503 = SERVER_ERRORS / 2 / ((1 - THROTTLE) * (1 - r500))
    return [
        {"mode": "throttle", "rate": THROTTLE},
        {"mode": "error", "status": 500, "rate": r500},
        {"mode": "error", "status": 503, "rate": r503},
    ]


class ProbingWaiter(FakeWaiter):
    """Between cycles, asks the dashboard for its overview on a thread of its own, so the answer
    comes while the next poll runs; records each status and how long it took."""

    def __init__(self, clock: Any, stop: threading.Event, url: str) -> None:
        super().__init__(clock, stop)
        self.url, self.pool = url, ThreadPoolExecutor(max_workers=1)
        self.probes: list[Future[tuple[int, float]]] = []

    def _probe(self) -> tuple[int, float]:
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(self.url + "/", timeout=10) as resp:
                resp.read()
                return resp.status, time.perf_counter() - t0
        except OSError:
            return 0, time.perf_counter() - t0

    def wait_until(self, due: float) -> bool:
        self.probes.append(self.pool.submit(self._probe))
        return super().wait_until(due)

    def results(self) -> list[tuple[int, float]]:
        out = [f.result(timeout=30) for f in self.probes]
        self.pool.shutdown()
        return out


def run_stretch(fleet: Any, db: Path, start: int, polls: int, proxy: FaultProxy | None) -> dict[str, Any]:
    set_clock(fleet, start)
    with SlackStandIn() as slack:
        env = {
            "FLEETWATCH_SCOPE_INCLUDE_TAGS": "service=orders,service=checkout",
            "FLEETWATCH_SLACK_BOT_TOKEN": SLACK_TOKEN,
            "FLEETWATCH_SLACK_API_URL": slack.api_url,
            "FLEETWATCH_SLACK_CHANNEL": "C0CHAOS",
        }
        if proxy is not None:
            env["FLEETWATCH_AWS_ENDPOINT_URL"] = proxy.endpoint
        cfg = agent_config(fleet, db, **env)
        probes: list[tuple[int, float]] = []
        with open_store(db) as store:
            if proxy is None:
                assert make_agent(fleet, cfg, store=store, polls=polls + 1).run() == 0
            else:
                with DashboardServer(cfg, db, fleet.model.clock, port=0) as dash:
                    stop = threading.Event()
                    waiter = ProbingWaiter(fleet.model.clock, stop, dash.url)
                    proxy.set_rules(fault_rules())
                    with chaos_kit.fast_botocore_waits():
                        make_agent(fleet, cfg, store=store, polls=polls, waiter=waiter, stop=stop).run()
                        proxy.set_rules([])  # the faults stop; one more poll, as the clean run had
                        set_clock(fleet, start + polls * 60)
                        make_agent(fleet, cfg, store=store, polls=1).run()
                    probes = waiter.results()
            cycles = store.db.execute("SELECT status, COUNT(*) FROM agent_cycles GROUP BY status").fetchall()
            errored = store.db.execute("SELECT COUNT(*) FROM poll_log WHERE status = 'error'").fetchone()[0]
        keys = {m["metadata"]["event_payload"]["key"] for m in slack.messages() if m.get("metadata")}
        sent = [m["metadata"]["event_payload"]["key"] for m in slack.messages() if m.get("metadata")]
    return {
        "keys": keys,
        "duplicated": len(sent) - len(set(sent)),
        "probes": probes,
        "cycles": dict(cycles),
        "errored_sources": errored,
        "end": int(fleet.model.clock.now()),
    }


@pytest.mark.slow
def test_a_day_of_throttling_and_server_errors_loses_nothing(fleet: Any, tmp_path: Path) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "soak-week"})
    labels = sorted((x for x in fleet.model.incident_labels() if x["id"].endswith("-day1")), key=lambda x: x["start"])
    labels = chaos_kit.size(labels[:1], labels)
    start = int(labels[0]["start"]) // 60 * 60 - chaos_kit.size(20 * 60, 2 * 3600)
    end = chaos_kit.size(int(labels[0]["end"]) + 20 * 60, start + 86400)
    polls = (end - start) // 60

    clean = run_stretch(fleet, tmp_path / "clean.db", start, polls, None)
    with FaultProxy(fleet.endpoint, seed=8) as proxy:
        faulty = run_stretch(fleet, tmp_path / "faulty.db", start, polls, proxy)
        stats = proxy.stats()
    assert clean["end"] == faulty["end"]

    # Faults were injected, of every kind, and some sources failed even after their retries.
    injected = stats.get("injected", 0)
    share = injected / (injected + stats["forwarded"])
    assert 0.09 <= share <= 0.15, share
    assert any(k.startswith("throttle:monitoring:") for k in stats) and any(
        k.startswith("throttle:lambda:") for k in stats
    )
    assert any(k.startswith("error:") for k in stats)
    # Nothing lost: every sample the clean run stored is in the faulty run's store, with the same
    # value. Compared up to the lookback before the end (the newest minutes are still re-read, and
    # may be read at other moments in the two runs). The probes' snapshots (queue depth, account
    # limits: AWS keeps no history of them) are counted apart: they are taken when the slow tier
    # runs, which a failed poll moves by a minute, and one whose call failed after every retry
    # cannot be taken later.
    settled = clean["end"] - LOOKBACK
    want, got = chaos_kit.samples(tmp_path / "clean.db", settled), chaos_kit.samples(tmp_path / "faulty.db", settled)
    snapshot = lambda k: k[0].split("|")[1] == "fleetwatch/Probe"  # noqa: E731
    lost = [k for k in want if k not in got and not snapshot(k)]
    differ = [k for k in want if k in got and got[k] != want[k]]
    snapshots = (sum(1 for k in want if snapshot(k)), sum(1 for k in got if snapshot(k)))
    assert len(want) > 1000 and not lost and not differ, (chaos_kit.breakdown(lost), chaos_kit.breakdown(differ))
    # Every labelled incident was detected and notified, in both runs, and nothing twice.
    found = chaos_kit.outcomes(tmp_path / "faulty.db", fleet, labels, faulty["keys"])
    baseline = chaos_kit.outcomes(tmp_path / "clean.db", fleet, labels, clean["keys"])
    assert all(o["detected_at"] and o["notified"] for o in baseline), baseline
    assert all(o["detected_at"] and o["notified"] for o in found), found
    assert faulty["duplicated"] == 0
    # The dashboard answered every probe, while the polls ran.
    statuses = [s for s, _ in faulty["probes"]]
    seconds = sorted(t for _, t in faulty["probes"])
    assert statuses and set(statuses) == {200}, set(statuses)
    p95 = seconds[int(len(seconds) * 0.95) - 1] if len(seconds) > 1 else seconds[0]
    chaos_kit.record(
        "AWS throttling 10 % + 5xx 2 %",
        faults_injected=injected,
        incidents_expected=len(labels),
        detected=sum(bool(o["detected_at"]) for o in found),
        notified=sum(o["notified"] for o in found),
        notifications_duplicated=faulty["duplicated"],
        samples_lost=len(lost) + len(differ),
        polls=polls,
        simulated_hours=round(polls / 60, 1),
        probe_snapshots_clean_vs_faulty=snapshots,
        sources_failed_after_retries=faulty["errored_sources"],
        dashboard_probes=len(statuses),
        dashboard_p95_s=round(p95, 3),
        dashboard_median_s=round(statistics.median(seconds), 3),
        cycles=faulty["cycles"],
    )
