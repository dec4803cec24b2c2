"""A store for the dashboard tests, filled the way the agent fills it: the emulated fleet in a
connection storm, collected by the real collector, detected, and alerted through the real
pipeline (to the Slack stand-in), so an incident with its cause, evidence, timeline and
notifications exists. Plus one hostile resource.

AWS refuses '<' and '>' in Lambda, SQS and DynamoDB names, so the hostile name cannot come
through the emulator; it is written into the store directly, as the collector would have
written an API Gateway name that carried it, and alerted through the same pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alerts.state import Observation
from fleetwatch.agent.alerting import build_pipeline, observations, resources
from fleetwatch.agent.detection import detect
from fleetwatch.config import load_config
from fleetwatch.store import open_store
from tests.conftest import ANCHOR, control, make_collector, set_clock

HOSTILE = "<script>alert(1)</script>"
HOSTILE_ID = "api/123456789012/us-east-1/" + HOSTILE
TOKEN = "test-token-0123456789"
USER, PASSWORD = "oncall", "correct horse battery"
ACCOUNT_NAMES = "123456789012=shop-prod,210987654321=shop-staging"


def web_config(store_path: Path, **extra: str) -> Any:
    env = {
        "FLEETWATCH_STORE_PATH": str(store_path),
        "FLEETWATCH_WEB_TOKEN": TOKEN,
        "FLEETWATCH_WEB_USERNAME": USER,
        "FLEETWATCH_WEB_PASSWORD": PASSWORD,
        "FLEETWATCH_WEB_REFRESH": "5s",
        "FLEETWATCH_AWS_ACCOUNT_NAMES": ACCOUNT_NAMES,
    }
    env.update(extra)
    return load_config(None, environ=env)


def build_web_store(emulator: Any, folder: Path) -> dict[str, Any]:
    """Returns {'path', 'now', 'storm' (incident id of the storm), 'hostile' (its incident id)}."""
    from simulator.slack import TOKEN as SLACK_TOKEN
    from simulator.slack import SlackStandIn

    path = folder / "web.db"
    control(emulator, "/__fleet__/scenario", {"name": "connection-storm"})
    (label,) = emulator.model.incident_labels()
    try:
        with SlackStandIn() as slack, open_store(path) as store:
            cfg = load_config(
                None,
                environ={
                    "FLEETWATCH_SLACK_BOT_TOKEN": SLACK_TOKEN,
                    "FLEETWATCH_SLACK_API_URL": slack.api_url,
                    "FLEETWATCH_SLACK_CHANNEL": "C0WEB",
                    "FLEETWATCH_ALERTS_FOR": "1m",
                    "FLEETWATCH_ALERTS_GROUP_WAIT": "0",
                },
            )
            clock = emulator.model.clock
            pipeline = build_pipeline(cfg, store, clock, sleep=lambda s: None)
            collector = make_collector(emulator, store, backfill=2 * 3600)
            store.upsert_resources(
                [
                    {
                        "id": HOSTILE_ID,
                        "account": "123456789012",
                        "region": "us-east-1",
                        "kind": "api",
                        "name": HOSTILE,
                        "facts": {"note": HOSTILE},
                        "tags": {"team": HOSTILE},
                    }
                ],
                int(label["start"]),
            )
            hostile = Observation(
                "outcomes",
                HOSTILE_ID,
                "5xx",
                "finding",
                "warning",
                f"{HOSTILE}: 9% of requests failing",
                cause=f"cause {HOSTILE}",
                fix=f"fix {HOSTILE}",
            )
            for m in range(4, 12):
                now = int(label["start"] + m * 60)
                set_clock(emulator, now)
                collector.poll()
                store.upsert_resources(
                    [
                        {
                            "id": HOSTILE_ID,
                            "account": "123456789012",
                            "region": "us-east-1",
                            "kind": "api",
                            "name": HOSTILE,
                            "facts": {"note": HOSTILE},
                            "tags": {"team": HOSTILE},
                        }
                    ],
                    now,
                )
                observed, ran_ok = observations(detect(store, now))
                pipeline.observe([*observed, hostile], ran_ok, resources(store), now)
                pipeline.deliver()
            incs = pipeline.store.incidents()
            storm = next(i.id for i in incs if "orders-db" in i.title)
            hostile_id = next(i.id for i in incs if i.labels.get("resource") == HOSTILE_ID)
            return {"path": path, "now": now, "storm": storm, "hostile": hostile_id, "label": label}
    finally:
        control(emulator, "/__fleet__/scenario", {"name": "healthy"})
        set_clock(emulator, ANCHOR)
