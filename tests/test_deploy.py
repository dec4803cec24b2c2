"""The deployment files, checked without a Docker engine (this machine has none): the compose
file against the Compose specification's JSON schema, every image it builds from this repository
against a Dockerfile that exists and has the target named, every file it mounts, and the
configuration files it ships against fleetwatch's own settings."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fleetwatch.config import load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _compose_schema() -> dict[str, Any]:
    # The Compose specification's schema, as check-jsonschema ships it (vendored from compose-spec).
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    return json.loads(text)


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_would_catch_a_mistake(compose: dict[str, Any]) -> None:
    schema = _compose_schema()
    broken = json.loads(json.dumps(compose))
    broken["services"]["agent"]["restart_policy"] = "always"  # not a service key (it lives under deploy:)
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_every_image_built_from_this_repository_has_its_dockerfile_and_target(compose: dict[str, Any]) -> None:
    built = {name: svc["build"] for name, svc in compose["services"].items() if "build" in svc}
    assert {"agent", "emulator"} <= set(built)
    for name, build in built.items():
        build = {"context": build} if isinstance(build, str) else build
        context = (ROOT / build.get("context", ".")).resolve()
        assert context.is_dir() and ROOT in (context, *context.parents), (
            f"{name}: context {context} is not in the repository"
        )
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.MULTILINE | re.IGNORECASE)
        if "target" in build:
            assert build["target"] in stages, (
                f"{name}: target {build['target']} is not a stage of {dockerfile.name} ({stages})"
            )
        for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+\S+$", dockerfile.read_text(), re.MULTILINE):
            for path in src.split():
                assert (context / path).exists(), f"{dockerfile.name} copies {path}, which does not exist"
    # Services that run an image built here reference one of the built images.
    images = {svc.get("image") for svc in compose["services"].values() if "build" in svc}
    for name, svc in compose["services"].items():
        if "build" not in svc and str(svc.get("image", "")).startswith("fleetwatch"):
            assert svc["image"] in images, f"{name} runs {svc['image']}, which nothing here builds"


def test_the_agent_keeps_its_store_on_a_volume_and_the_demo_profile_has_its_parts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    agent = services["agent"]
    assert "profiles" not in agent, "the agent runs in every profile"
    assert any(v.startswith("fleetwatch-data:/var/lib/fleetwatch") for v in agent["volumes"])
    assert "fleetwatch-data" in compose["volumes"]
    assert all(p.startswith("127.0.0.1:") for p in agent["ports"]), "the dashboard is published on loopback only"
    demo = {name for name, svc in services.items() if "demo" in svc.get("profiles", [])}
    assert demo == {"emulator", "slack", "smtp", "otel-collector"}
    assert re.fullmatch(r"otel/opentelemetry-collector(-contrib)?:\d+\.\d+\.\d+", services["otel-collector"]["image"])


def test_the_cluster_profile_runs_three_agents_on_one_postgresql(compose: dict[str, Any]) -> None:
    """`docker compose --env-file deploy/cluster.env up`: PostgreSQL and three agents (the
    always-on `agent` and agent-2, agent-3) with the same image, configuration and store.url, each
    serving the dashboard on its own loopback port; the agents wait for the database to be healthy."""
    services = compose["services"]
    cluster = {name for name, svc in services.items() if "cluster" in svc.get("profiles", [])}
    assert cluster == {"postgres", "agent-2", "agent-3"}
    agents = [services[n] for n in ("agent", "agent-2", "agent-3")]
    assert {a["image"] for a in agents} == {"fleetwatch:latest"} and len({str(a["command"]) for a in agents}) == 1
    assert all(a["environment"]["FLEETWATCH_STORE_URL"] == "${FLEETWATCH_STORE_URL:-}" for a in agents)
    assert all(a["depends_on"]["postgres"]["condition"] == "service_healthy" for a in agents)
    assert services["agent"]["depends_on"]["postgres"]["required"] is False, "the default profile has no PostgreSQL"
    ports = [p for a in agents for p in a["ports"]]
    assert len(ports) == 3 == len({p.rsplit(":", 1)[0] for p in ports}) and all(
        p.startswith("127.0.0.1:") for p in ports
    )
    pg = services["postgres"]
    assert re.fullmatch(r"postgres:\d+\.\d+", pg["image"]) and "ports" not in pg, "pinned, and not published"
    assert "pg_isready" in pg["healthcheck"]["test"] and any(v.startswith("fleetwatch-pg:") for v in pg["volumes"])
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy/cluster.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["COMPOSE_PROFILES"] == "cluster"
    url = env["FLEETWATCH_STORE_URL"]
    assert url.startswith("postgresql://fleetwatch:") and "@postgres:5432/fleetwatch" in url
    assert f":{env['FLEETWATCH_PG_PASSWORD']}@" in url, "the agents' password is the database's"
    load_config(ROOT / "deploy/fleetwatch.toml", environ={"FLEETWATCH_STORE_URL": url})


def test_every_mounted_file_exists_and_the_shipped_configurations_load(compose: dict[str, Any]) -> None:
    for name, config in compose["configs"].items():
        assert (ROOT / config["file"]).is_file(), f"config {name}: {config['file']} does not exist"
    otel = yaml.safe_load((ROOT / "deploy/otel-collector.yaml").read_text())
    for pipeline in otel["service"]["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(otel["receivers"]) and set(pipeline["exporters"]) <= set(
            otel["exporters"]
        )
    assert {"traces", "metrics"} <= set(otel["service"]["pipelines"])
    for toml in ("deploy/fleetwatch.toml", "deploy/demo.toml"):
        load_config(ROOT / toml, environ={})  # raises ConfigError naming the problem
    demo = load_config(ROOT / "deploy/demo.toml", environ={})
    assert demo["aws.endpoint_url"] == "http://emulator:4590" and demo["smtp.host"] == "smtp"
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy/demo.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["COMPOSE_PROFILES"] == "demo" and env["FLEETWATCH_CONFIG_FILE"] == "demo.toml"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"


def test_the_demo_profiles_slack_and_smtp_stand_ins_run_as_processes_and_print_what_they_get() -> None:
    import queue
    import signal
    import smtplib
    import subprocess
    import sys
    import threading
    from email.message import EmailMessage

    from slack_sdk import WebClient

    from simulator.slack import TOKEN

    def start(what: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.standins", what, "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        out = proc.stdout
        threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
        return proc, lines

    slack, slack_lines = start("slack")
    smtp, smtp_lines = start("smtp")
    try:
        url = slack_lines.get(timeout=30).split(" on ", 1)[1].split()[0]
        WebClient(token=TOKEN, base_url=url).chat_postMessage(
            channel="C0DEMO", text="orders-db at 98% of max_connections"
        )
        assert slack_lines.get(timeout=10).strip() == "slack C0DEMO: orders-db at 98% of max_connections"
        port = int(smtp_lines.get(timeout=30).rsplit(":", 1)[1])
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = (
            "fleetwatch@example.com",
            "oncall@example.com",
            "[fleetwatch] checkout-api",
        )
        mail.set_content("body")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(mail)
        assert smtp_lines.get(timeout=10).strip() == "mail to oncall@example.com: [fleetwatch] checkout-api"
    finally:
        for proc in (slack, smtp):
            proc.send_signal(signal.SIGTERM)
    assert slack.wait(timeout=10) == 0 and smtp.wait(timeout=10) == 0
