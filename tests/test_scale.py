"""One agent at scale (issue 20, stage 0): what each cycle really took and where, a warning
before the agent falls behind, unchanged samples not rewritten, live SQS depth only where a
backlog grows, short re-reads with the full window now and then, and GetMetricData batches
fetched concurrently."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from fleetwatch.clock import FakeClock
from fleetwatch.logs import setup, teardown
from fleetwatch.store import open_store
from tests.agent_kit import agent_config, make_agent, session


# -- each cycle's real duration and stage times ----------------------------------------------------

def test_a_cycle_records_its_real_duration_and_stage_times_and_warns_before_it_falls_behind(fleet: Any, tmp_path: Path) -> None:
    # The emulated clock does not move during a cycle (as under --emulated-clock), but real time
    # does: on an injected timer, the first poll's GetMetricData takes 5 s, the second's 50 s of
    # the 60 s interval.
    real, cpu = FakeClock(0), FakeClock(0)
    took = iter([5, 50])

    def slow_call(**_: Any) -> None:
        real.advance(next(took, 5))
        cpu.advance(1)

    stream = io.StringIO()
    handler = setup("json", "INFO", stream)
    try:
        cfg = agent_config(fleet, tmp_path / "fw.db")
        with open_store(cfg["store.path"]) as store:
            agent = make_agent(fleet, cfg, store=store, boto_session=session(**{"before-send.cloudwatch.GetMetricData": slow_call}),
                               polls=2, timer=real.now, cpu_timer=cpu.now)
            assert agent.run() == 0
            rows = list(store.db.query("SELECT seconds, stages, started_at, finished_at FROM agent_cycles ORDER BY id"))
    finally:
        teardown(handler)
    assert len(rows) == 2
    stages = [json.loads(r["stages"]) for r in rows]
    for row, st in zip(rows, stages):
        assert {"poll", "detect", "alerts", "deliver"} <= set(st), st
        assert row["seconds"] == sum(s["seconds"] for s in st.values()) > 0
        assert st["poll"]["cpu_seconds"] == 1  # one GetMetricData, one injected CPU second
    assert [st["poll"]["seconds"] for st in stages] == [5, 50]
    warnings = [json.loads(line) for line in stream.getvalue().splitlines() if "close to falling behind" in line]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning" and warnings[0]["poll_id"], warnings
    assert "poll" in warnings[0]["message"] and "of its 60s interval" in warnings[0]["message"]
