"""After `make demo` ends its polling, the dashboard left running says plainly that the agent has
stopped, shows the configuration the agent ran with (its file, not defaults), and its clock runs
on from where the agent's emulated time ended (ages grow; /healthz never freezes at "0 s")."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fleetwatch.cli.demo import after_demo, demo_toml, rerun_note, set_aside
from fleetwatch.clock import ResumedClock
from fleetwatch.store import open_store
from web.app import create_app


def test_the_dashboard_after_the_demo_is_the_agents_and_says_it_stopped(emulator: Any, tmp_path: Path) -> None:
    store_path = str(tmp_path / "fleetwatch.db")
    cfg_file = tmp_path / "fleetwatch.toml"
    cfg_file.write_text(
        demo_toml(emulator, store_path, "http://127.0.0.1:9/slack", 2525, 8123, "http://127.0.0.1:9/pd")
    )
    ended = 1_800_000_000
    with open_store(store_path) as store:
        store.record_polls(
            [
                {
                    "started_at": ended - 70,
                    "finished_at": ended - 60,
                    "source": "cloudwatch",
                    "account": "123456789012",
                    "region": "us-east-1",
                    "status": "ok",
                    "api_calls": 4,
                    "cost_usd": 0.001,
                }
            ]
        )
    ticks = [100.0]  # the monotonic clock the dashboard's clock runs on, moved by the test
    cfg, note = after_demo(store_path, ended, cfg_file, 270, "pw-for-the-test")
    client = TestClient(create_app(cfg, store_path, ResumedClock(ended, lambda: ticks[0]), cache_ttl=0, stopped=note))

    settings = html.unescape(client.get("/settings").text)
    assert 'channel = "C0DEMO"' in settings and emulator.endpoint in settings, "the agent's configuration, not defaults"
    assert str(cfg_file) in settings and "The agent has stopped." in settings

    first = client.get("/").text
    assert "The agent has stopped." in first and "270 polls" in first
    assert client.get("/healthz").json()["last_poll_age"] == 60
    ticks[0] += 600  # ten minutes on: the clock is not frozen where the agent stopped
    assert client.get("/healthz").json()["last_poll_age"] == 660
    later = client.get("/").text
    clock = lambda page: page.split('<span class="clock"', 1)[1].split("</span>", 1)[0]  # noqa: E731
    assert clock(first) != clock(later)


def test_what_the_demo_says_of_a_second_run_is_what_set_aside_does(tmp_path: Path) -> None:
    # `make demo` ended with "run again to see it resume where it ended" and its banner with "Run
    # `make demo` again to resume", while a second demo sets this store aside and starts afresh.
    store_path = str(tmp_path / "fleetwatch.db")
    with open_store(store_path):
        pass
    cfg_file = tmp_path / "fleetwatch.toml"
    cfg_file.write_text(f"[store]\npath = {store_path!r}\n")
    _, note = after_demo(store_path, 1_800_000_000, cfg_file, 270, "pw-for-the-test")
    said = rerun_note(store_path)
    assert said in note and "resume" not in note.lower()
    assert "a day's backfill and 270 polls" in note, "the agent's log says 271 polls: the backfill is one"
    assert f"{store_path}.previous" in said
    kept = set_aside(store_path)
    assert kept is not None and str(kept) in said and not Path(store_path).exists()
