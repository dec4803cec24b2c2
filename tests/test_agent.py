"""`fleetwatch run`: the loop's schedule (never overlapping, overruns recorded and started late
once), stopping cleanly on SIGTERM mid-poll and mid-delivery, the single-instance lock, and the
structured logs' correlation ids."""

from __future__ import annotations

import io
import json
import signal
import sqlite3
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.agent.loop import FakeWaiter, incident_event_line
from fleetwatch.clock import FakeClock
from fleetwatch.lock import LockHeld, StoreLock, holder
from fleetwatch.logs import setup, teardown
from fleetwatch.store import open_store, store_location
from simulator.slack import TOKEN as SLACK_TOKEN
from simulator.slack import SlackStandIn
from tests.agent_kit import LogLines, agent_config, agent_env, make_agent, session, spawn_run
from tests.conftest import control, set_clock


def _storm_start(fleet: Any) -> int:
    control(fleet, "/__fleet__/scenario", {"name": "connection-storm"})
    (label,) = fleet.model.incident_labels()
    return int(label["start"])


# -- the schedule ---------------------------------------------------------------------------------


def test_polls_never_overlap_and_an_overrun_starts_the_next_one_late_once(fleet: Any, tmp_path: Path) -> None:
    clock = fleet.model.clock
    # AWS is slow on some polls: these are how many emulated seconds each poll's GetMetricData
    # calls take (the first call of a poll; a poll that also reads a slice of the slow tier over
    # its own window makes a second, instant one). The first and the fourth overrun the 60 s
    # interval, the fourth by more than a whole interval.
    took = [90, 20, 20, 130, 20, 20, 20, 20]
    calls: list[int] = []

    def slow_call(**_: Any) -> None:  # a before-send handler that returns something is taken as the response
        if calls[-1] == 0:
            clock.advance(took[len(calls) - 1])
        calls[-1] += 1

    slow = session(**{"before-send.cloudwatch.GetMetricData": slow_call})
    cfg = agent_config(fleet, tmp_path / "fw.db")
    with open_store(cfg["store.path"]) as store:
        agent = make_agent(fleet, cfg, store=store, boto_session=slow, polls=8)
        poll = agent.collector.poll

        def counted(**kw: Any) -> Any:
            calls.append(0)
            return poll(**kw)

        agent.collector.poll = counted  # type: ignore[method-assign]
        assert agent.run() == 0
        rows = list(store.db.query("SELECT * FROM agent_cycles ORDER BY id"))
    assert len(rows) == 8, "exactly the polls asked for: overruns are not made up by extra polls"
    assert all(r["status"] == "ok" for r in rows)
    assert [r["overrun"] > 0 for r in rows] == [True, False, False, True, False, False, False, False]
    for a, b in pairwise(rows):
        assert b["started_at"] >= a["finished_at"], "a poll started before the previous one finished"
        if a["overrun"] > 0:
            # Late, at once, once: it starts when the overrunning poll ends, and is recorded as late.
            assert b["started_at"] == a["finished_at"] == b["scheduled_at"]
            assert a["overrun"] == pytest.approx(a["finished_at"] - (a["scheduled_at"] + 60), abs=1)
            assert a["skipped"] == int(a["overrun"] // 60)
        else:
            assert b["scheduled_at"] == a["scheduled_at"] + 60 and b["started_at"] == b["scheduled_at"]
    assert [r["skipped"] for r in rows] == [0, 0, 0, 1, 0, 0, 0, 0]
    # The dashboard's agent health says so.
    from web.data import agent_health

    conn = sqlite3.connect(tmp_path / "fw.db")
    health = agent_health(conn, int(clock.now()))
    conn.close()
    assert health["overruns_24h"] == 2 and health["worst_overrun_s"] == max(r["overrun"] for r in rows)


def test_a_failing_cycle_is_recorded_and_the_loop_goes_on(fleet: Any, store_target: Any) -> None:
    """On both store backends: each cycle polls, detects, alerts and records itself in the store."""
    cfg = agent_config(fleet, store_target)
    with open_store(store_location(cfg)) as store:
        agent = make_agent(fleet, cfg, store=store, polls=3)
        calls = {"n": 0}
        real = agent.pipeline.deliver

        def broken() -> Any:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("delivery blew up")
            return real()

        agent.pipeline.deliver = broken  # a bug in one stage, which nothing real can provoke on demand
        assert agent.run() == 0
        rows = list(store.db.query("SELECT status, error FROM agent_cycles ORDER BY id"))
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[1]["error"] == "RuntimeError: delivery blew up"


# -- stopping ---------------------------------------------------------------------------------------


def _metric_calls(fleet: Any) -> int:
    return sum(n for (_, _, _, op), n in fleet.usage.calls.items() if op == "GetMetricData")


def test_sigterm_mid_poll_abandons_it_within_seconds_and_the_next_start_carries_on(fleet: Any, tmp_path: Path) -> None:
    db = tmp_path / "fw.db"
    env = agent_env(fleet, db, FLEETWATCH_POLL_BACKFILL="1d", FLEETWATCH_WEB_PORT="0")
    # Real latency: every GetMetricData answers after 0.4 s, so the day's backfill takes seconds.
    control(
        fleet,
        "/__fleet__/faults",
        [{"service": "monitoring", "operation": "GetMetricData", "mode": "delay", "seconds": 0.4}],
    )
    try:
        proc = spawn_run(env, "--emulated-clock")
        lines = LogLines(proc)
        lines.wait_for("agent started")
        deadline = time.monotonic() + 120  # a bound on waiting, not a claim: 30 s ran out at load 20
        while _metric_calls(fleet) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for a real child process to reach its poll, not on a clock under test
        assert _metric_calls(fleet) >= 2, "the child never started fetching"
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        took = time.monotonic() - asked
        rest = [e["message"] for e in lines.rest()]
    finally:
        control(fleet, "/__fleet__/faults", [])
        if proc.poll() is None:
            proc.kill()
    assert took < 5, f"SIGTERM took {took:.1f} s"
    assert any("SIGTERM" in m for m in rest) and any("poll abandoned" in m for m in rest), rest
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT status FROM agent_cycles").fetchall() == [("abandoned",)]
    assert conn.execute("SELECT COUNT(*) FROM poll_log WHERE status = 'abandoned'").fetchone()[0] == 1
    conn.close()
    assert holder(db) is None, "the lock was released"
    # The next start resumes and finishes the backfill the first one gave up.
    proc = spawn_run(env, "--emulated-clock", "--polls", "1", "--no-dashboard")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM agent_cycles ORDER BY id").fetchall() == [("abandoned",), ("ok",)]
    assert conn.execute("SELECT COUNT(*) FROM cursors").fetchone()[0] >= 1
    conn.close()


def test_stopping_during_delivery_leaves_the_notification_owed(fleet: Any, tmp_path: Path) -> None:
    start = _storm_start(fleet)
    set_clock(fleet, start + 4 * 60)
    db = tmp_path / "fw.db"
    with SlackStandIn() as slack:
        cfg = agent_config(
            fleet,
            db,
            FLEETWATCH_SLACK_BOT_TOKEN=SLACK_TOKEN,
            FLEETWATCH_SLACK_API_URL=slack.api_url,
            FLEETWATCH_SLACK_CHANNEL="C0AGENT",
        )
        slack.fail("chat.postMessage", status=500, times=1000)
        with open_store(db) as store:
            agent = make_agent(fleet, cfg, store=store, polls=12)

            class SignalDuringBackoff(FakeWaiter):
                # SIGTERM arriving while a failed send waits to retry: the moment stop() is
                # called is the only thing this stands in for; the waiting is the agent's own.
                def sleep(self, seconds: float) -> None:
                    agent.stop()
                    super().sleep(seconds)

            waiter = SignalDuringBackoff(fleet.model.clock, agent.stop_event)
            agent.waiter, agent.pipeline.sleep = waiter, waiter.sleep
            agent.run()
            statuses = [r[0] for r in store.db.execute("SELECT status FROM agent_cycles ORDER BY id")]
            assert statuses[-1] == "stopped" and len(statuses) < 12
            sent = store.db.execute("SELECT COUNT(*) FROM notifications WHERE status = 'sent'").fetchone()[0]
            assert sent == 0
        slack.heal()
        posted_before = len(slack.messages(top_level_only=True))
        with open_store(db) as store:
            make_agent(fleet, cfg, store=store, polls=1).run()
            sent = store.db.execute(
                "SELECT incident_id FROM notifications WHERE status = 'sent' AND kind = 'firing'"
            ).fetchall()
        assert sent, "the notification owed before the stop was sent after the restart"
        assert len(slack.messages(top_level_only=True)) - posted_before == len(sent)


# -- one agent per store ------------------------------------------------------------------------------


def test_a_second_agent_refuses_and_names_the_holder_and_a_killed_holder_leaves_no_stale_lock(
    fleet: Any, tmp_path: Path
) -> None:
    db = tmp_path / "fw.db"
    env = agent_env(fleet, db, FLEETWATCH_WEB_PORT="0")
    first = spawn_run(env, "--emulated-clock", "--no-dashboard")
    try:
        LogLines(first).wait_for("agent started")
        second = spawn_run(env, "--emulated-clock", "--no-dashboard")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 3
        refusal = json.loads(err.strip().splitlines()[-1])
        assert refusal["level"] == "error" and refusal["holder_pid"] == first.pid
        assert f"in use by process {first.pid}" in refusal["message"] and "fleetwatch run" in refusal["message"]
        assert "store.path" in refusal["message"]
        with pytest.raises(LockHeld, match=str(first.pid)):
            StoreLock(db).acquire()
    finally:
        first.kill()  # SIGKILL: no chance to clean up
        first.wait(timeout=30)
    with StoreLock(db, "test") as lock:  # the kernel dropped the dead holder's lock
        assert holder(db) is not None and lock.path.exists()
    assert holder(db) is None


# -- structured logs -------------------------------------------------------------------------------------


def test_json_logs_carry_the_poll_and_incident_correlation_ids(fleet: Any, tmp_path: Path) -> None:
    start = _storm_start(fleet)
    set_clock(fleet, start + 4 * 60)
    stream = io.StringIO()
    handler = setup("json", "INFO", stream)
    try:
        cfg = agent_config(fleet, tmp_path / "fw.db")
        with open_store(cfg["store.path"]) as store:
            make_agent(fleet, cfg, store=store, polls=5).run()
            polls = {r[0] for r in store.db.execute("SELECT poll_id FROM agent_cycles")}
    finally:
        teardown(handler)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    finished = [e for e in entries if e["message"].startswith("poll finished")]
    assert {e["poll_id"] for e in finished} == polls and len(polls) == 5
    assert all(
        e["level"] == "info" and e["logger"] == "fleetwatch.agent.loop" and e["time"].endswith("Z") for e in finished
    )
    about = [e for e in entries if e["message"].startswith("incident ")]
    assert about, "no incident was logged"
    for e in about:
        assert e["incident_id"] == int(e["message"].split()[1]) and e["poll_id"] in polls


def test_fake_waiter_never_moves_the_clock_backwards() -> None:
    clock, stop = FakeClock(1000), threading.Event()
    waiter = FakeWaiter(clock, stop)
    assert waiter.wait_until(900) and clock.now() == 1000
    assert waiter.wait_until(1060) and clock.now() == 1060
    stop.set()
    assert not waiter.wait_until(2000) and clock.now() == 1060


def test_collect_refuses_a_store_an_agent_holds(fleet: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fleetwatch import cli

    db = tmp_path / "fw.db"
    with StoreLock(db, "fleetwatch run"):
        assert cli.main(["collect", "--once"], environ=agent_env(fleet, db)) == 3
    assert "only one agent may run on a store" in capsys.readouterr().err.lower()
    assert cli.main(["collect", "--once"], environ=agent_env(fleet, tmp_path / "missing" / "fw.db")) == 2
    assert "check that its folder exists" in capsys.readouterr().err


def test_log_lines_follow_an_emulated_clock() -> None:
    """Under --emulated-clock (the demo) each line carries the emulated time, so the console tells
    the story in the fleet's time, not the seconds the demo took."""
    import io
    import logging

    from fleetwatch.logs import follow_clock

    for fmt, expected in (
        ("text", "Fri 08:17 INFO    incident 3 fired"),
        ("json", '"time": "2027-01-15T08:17:00.000Z"'),
    ):
        stream = io.StringIO()
        handler = setup(fmt, "info", stream)
        try:
            follow_clock(lambda: 1_800_000_000 // 3600 * 3600 + 17 * 60)
            logging.getLogger("fleetwatch.agent.loop").info("incident 3 fired")
        finally:
            teardown(handler)
        assert expected in stream.getvalue(), stream.getvalue()


def test_the_emulated_clock_moves_forward_when_many_threads_wait_at_once(fleet: Any) -> None:
    # The discovery pacer's pool sleeps from several threads; each sleep moves the emulated fleet's
    # clock. Read-then-set from two threads at once would set it back, which the emulator refuses
    # (HTTP 400: the demo's first polls failed so).
    from concurrent.futures import ThreadPoolExecutor

    from fleetwatch.cli.run import EmulatedClock

    clock = EmulatedClock(fleet.endpoint)
    start = clock.now()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: [clock.sleep(0.25) for _ in range(10)], range(8)))
    assert clock.now() == pytest.approx(start + 8 * 10 * 0.25)
    assert fleet.model.clock.now() == pytest.approx(clock.now())


def test_an_incidents_severity_change_is_logged_from_and_to() -> None:
    # make demo's log: "incident 4 severity: storefront-api: p95 latency 301 ms …", neither which
    # severity it left nor which it took. alerts/incidents.py records the event's detail as
    # "critical -> warning".
    title = "storefront-api: p95 latency 301 ms over 5 min"
    assert incident_event_line(4, "severity", "critical -> warning", title) == (
        f"incident 4 severity critical → warning: {title}"
    )
    assert incident_event_line(5, "joined", "checkout-fn: 7.0% of invocations failed", title) == (
        "incident 5 joined by: checkout-fn: 7.0% of invocations failed"
    )
    assert incident_event_line(6, "resolved", "", title) == f"incident 6 resolved: {title}"
