"""Secrets never leak. Known secrets are planted (the Slack token, the SMTP password, the AWS
keys, the dashboard's token and password), `fleetwatch run` works through an incident with
Slack and the mail server each failing once and telemetry exported over OTLP, and then every
output is searched for them: the logs at debug level, the error messages, every dashboard page
(settings, digest preview, incident), the telemetry as exported, the Slack messages and mails,
the digest, the configuration check, and the store file itself."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from simulator.mail import SmtpSink
from simulator.otel_sink import OtelSink
from simulator.slack import TOKEN as SLACK_TOKEN
from simulator.slack import SlackStandIn
from tests import chaos_kit
from tests.agent_kit import ROOT, LogLines, agent_env, spawn_run
from tests.conftest import control, set_clock

SMTP_PASSWORD = "smtp-PLANTED-pw-5e1c9"
AWS_SECRET = "PLANTEDawsSECRETkey/0123456789abcdefABCDEF"
AWS_SESSION = "PLANTEDsessionTOKEN0123456789"
WEB_TOKEN = "web-PLANTED-token-77aa"
WEB_PASSWORD = "web-PLANTED-password-88bb"
WEBHOOK = "https://hooks.slack.com/services/T0PLANTED/B0PLANTED/planted0webhook0secret"
SECRETS = {
    "slack token": SLACK_TOKEN,
    "smtp password": SMTP_PASSWORD,
    "aws secret key": AWS_SECRET,
    "aws session token": AWS_SESSION,
    "web token": WEB_TOKEN,
    "web password": WEB_PASSWORD,
    "slack webhook": "planted0webhook0secret",
}


def get(url: str) -> str:
    req = urllib.request.Request(
        url, headers={"Authorization": "Basic " + base64.b64encode(f"oncall:{WEB_PASSWORD}".encode()).decode()}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback dashboard
            return resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:  # an error page is an output too
        return f"{exc.code} " + exc.read().decode("utf-8", "replace")


def leaks(outputs: dict[str, bytes | str]) -> list[str]:
    found = []
    for where, text in outputs.items():
        data = text.encode("utf-8", "replace") if isinstance(text, str) else text
        for name, secret in SECRETS.items():
            if secret.encode() in data:
                found.append(f"{name} in {where}")
    return found


def test_planted_secrets_appear_in_no_output(fleet: Any, tmp_path: Path) -> None:
    control(fleet, "/__fleet__/scenario", {"name": "connection-storm"})
    (label,) = fleet.model.incident_labels()
    set_clock(fleet, int(label["start"]) // 60 * 60 - 5 * 60)
    db = tmp_path / "fw.db"
    outputs: dict[str, bytes | str] = {}
    with SlackStandIn() as slack, SmtpSink(username="fleetwatch", password=SMTP_PASSWORD) as smtp, OtelSink() as otel:
        slack.fail("chat.postMessage", status=500)
        smtp.fail(451)
        env = agent_env(
            fleet,
            db,
            FLEETWATCH_SCOPE_INCLUDE_TAGS="service=orders,service=checkout",
            FLEETWATCH_LOG_LEVEL="DEBUG",
            FLEETWATCH_SLACK_BOT_TOKEN=SLACK_TOKEN,
            FLEETWATCH_SLACK_API_URL=slack.api_url,
            FLEETWATCH_SLACK_CHANNEL="C0SECRET",
            FLEETWATCH_EMAIL_TO="oncall@example.com",
            FLEETWATCH_SMTP_HOST="127.0.0.1",
            FLEETWATCH_SMTP_PORT=str(smtp.port),
            FLEETWATCH_SMTP_SECURITY="none",
            FLEETWATCH_SMTP_USERNAME="fleetwatch",
            FLEETWATCH_SMTP_PASSWORD=SMTP_PASSWORD,
            FLEETWATCH_WEB_TOKEN=WEB_TOKEN,
            FLEETWATCH_WEB_USERNAME="oncall",
            FLEETWATCH_WEB_PASSWORD=WEB_PASSWORD,
            FLEETWATCH_WEB_PORT="0",
            FLEETWATCH_DIGEST_TARGETS="email:oncall@example.com",
            AWS_SECRET_ACCESS_KEY=AWS_SECRET,
            AWS_SESSION_TOKEN=AWS_SESSION,
            OTEL_EXPORTER_OTLP_ENDPOINT=otel.url,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        )
        proc = spawn_run(env, "--emulated-clock")
        try:
            lines = LogLines(proc)
            url = lines.wait_for("dashboard on")["message"].split(" on ", 1)[1]
            lines.wait_for("sent firing", timeout=120)
            lines.wait_for("sent firing", timeout=120)  # Slack and mail, each after its one failure
            incident = json.loads(get(url + "/api/incidents"))[0]["id"]
            for page in (
                "/",
                "/settings",
                "/incidents",
                f"/incidents/{incident}",
                "/digest",
                "/digest/preview",
                "/resources",
                "/api/incidents",
                f"/api/incidents/{incident}",
                "/api/findings",
                "/healthz",
                "/openapi.json",
                "/nowhere",
            ):
                outputs[f"dashboard {page}"] = get(url + page)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        rest = lines.rest()
        outputs["logs"] = "\n".join(str(e) for e in lines.seen + rest)
        assert proc.stdout is not None
        outputs["stdout"] = proc.stdout.read()
        outputs["slack messages"] = str(slack.messages())
        outputs["mails"] = b"\n".join(m.as_bytes() for _, m in smtp.messages())
        outputs["telemetry"] = b"\n".join(otel.bodies)
        spans = otel.spans()
        assert any("error" in str(e).lower() for e in lines.seen + rest), "the failed sends were logged"
        # The digest, rendered and sent by the command line.
        preview = tmp_path / "digest.html"
        digest_env = {**env, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        digest = subprocess.run(
            [sys.executable, "-m", "fleetwatch.cli", "digest", "--preview", str(preview), "--send"],
            cwd=ROOT,
            env={k: v for k, v in digest_env.items() if not k.startswith("OTEL_")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        outputs["digest command"] = digest.stdout + digest.stderr
        outputs["digest html"] = preview.read_bytes() if preview.exists() else b""
        outputs["digest text"] = (
            preview.with_suffix(".txt").read_bytes() if preview.with_suffix(".txt").exists() else b""
        )
        outputs["digest mail"] = b"\n".join(m.as_bytes() for _, m in smtp.messages())
    assert spans and outputs["digest html"], (len(spans), digest.stderr[-500:])
    # Errors: a configuration check of the lot, and one with a malformed secret value.
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    check = subprocess.run(
        [sys.executable, "-m", "fleetwatch.cli", "config", "check", str(empty)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in env.items() if k.startswith("FLEETWATCH_")},
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "FLEETWATCH_SLACK_WEBHOOK_URL": WEBHOOK,
        },
        timeout=60,
    )
    outputs["config check"] = check.stdout + check.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "fleetwatch.cli", "config", "check", str(empty)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "FLEETWATCH_SLACK_WEBHOOK_URL": "not a url " + WEBHOOK,
            "FLEETWATCH_SMTP_PASSWORD": SMTP_PASSWORD,
            "FLEETWATCH_SMTP_PORT": SMTP_PASSWORD,
        },
        timeout=60,
    )
    outputs["config error"] = bad.stdout + bad.stderr
    assert check.returncode == 0 and "********" in check.stdout
    assert bad.returncode == 2 and "FLEETWATCH_SMTP_PORT" in bad.stderr
    outputs["store"] = b"".join(p.read_bytes() for p in tmp_path.glob("fw.db*") if p.is_file())
    found = leaks(outputs)
    assert not found, found
    chaos_kit.record(
        "planted secrets searched for",
        bad_inputs_tried=len(SECRETS) * len(outputs),
        handled=len(SECRETS) * len(outputs) - len(found),
        outputs_searched=sorted(outputs),
        telemetry_bytes=len(outputs["telemetry"]),
        log_lines=len(lines.seen) + len(rest),
    )
