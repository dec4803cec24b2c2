"""Hostile names and messages: HTML, Slack mrkdwn, Markdown, control characters, a mail header
injection, very long and wide strings. Through the alert pipeline they reach Slack (real HTTP to
the stand-in) and mail (real SMTP) escaped and cut to Slack's and mail's limits; through the
emulated AWS (an API renamed and an error message rewritten by the fault proxy) they reach the
store and the dashboard, which escapes them."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from alerts.state import Observation
from fleetwatch.config import load_config
from fleetwatch.store import open_store
from simulator.faultproxy import FaultProxy, Rule, json_rewrite
from tests import chaos_kit
from tests.alerting_kit import World, rid, world_fixture  # noqa: F401 - the `world` fixture
from tests.conftest import ANCHOR, make_collector, set_clock
from web.server import DashboardServer

HOSTILE = {
    "html": "<script>alert(1)</script><img src=x onerror=alert(2)>",
    "slack mrkdwn": "<!channel> <!here> <@U0123> <https://evil.example|click me> *bold* _it_ ~s~",
    "markdown": "[click](https://evil.example) ![i](https://evil.example/x.png) # head `code` ```block```",
    "control characters": "a\x00b\x1b[31mc\x07d\re\nf\u202eg\u2066h\u200bi\x7f",
    "mail header injection": "x\r\nBcc: victim@example.com\r\nSubject: pwned",
    "very long": "A" * 100_000,
    "wide": "🔥障害 " * 3000,
}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_text_reaches_slack_and_mail_escaped_and_cut(world: World, case: str) -> None:
    text = HOSTILE[case]
    world.resources = [
        r if r.name != "checkout-api" else type(r)(r.id, r.kind, text, r.account, r.region, r.facts, {"team": text})
        for r in world.resources
    ]
    obs = Observation(
        "outcomes",
        rid("api", "checkout-api"),
        "5xx",
        "finding",
        "critical",
        f"{text}: 12% failing",
        cause=f"cause {text}",
        fix=f"fix {text}",
    )
    for _ in range(4):
        world.tick(obs)
    (msg,) = world.slack.messages(top_level_only=True)
    # Slack: nothing in `text` can ping, link or format; blocks are plain text; every limit kept.
    body = msg["text"]
    for raw in ("<script", "<img", "<!channel>", "<!here>", "<@U0123>", "<https://evil"):
        assert raw not in body
    assert not CONTROL.search(body) and len(body) <= 3000
    assert len(msg["blocks"]) <= 50
    for block in msg["blocks"]:
        for part in [block.get("text")] + list(block.get("elements") or []) + list(block.get("fields") or []):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                assert part["type"] == "plain_text" or part["text"] == part["text"].replace("<!", ""), part
                assert len(part["text"]) <= (150 if block["type"] == "header" else 3000) and not CONTROL.search(
                    part["text"]
                )
    # Mail: one message to the one recipient, a subject on one line, HTML escaped, bounded size.
    ((to, mail),) = world.smtp.messages()
    assert to == ["oncall@example.com"] and mail["Bcc"] is None
    subject = str(mail["Subject"])
    assert "\r" not in subject and "\n" not in subject and len(subject) <= 210
    html = mail.get_body(("html",)).get_content()
    plain = mail.get_body(("plain",)).get_content()
    assert "<script" not in html and "<img" not in html and not re.search(r"<[^>]*onerror", html)
    assert not CONTROL.search(plain.replace("\n", "").replace("\r", ""))
    assert len(mail.as_bytes()) < 100_000
    chaos_kit.record(
        f"hostile text to Slack and mail: {case}", group="hostile text to Slack and mail", bad_inputs_tried=1, handled=1
    )


def test_hostile_names_and_messages_from_aws_reach_the_dashboard_escaped(fleet: Any, tmp_path: Path) -> None:
    hostile = HOSTILE["html"] + " " + HOSTILE["slack mrkdwn"] + " " + HOSTILE["control characters"] + " " + "B" * 5000

    def rename(call: Any, body: dict[str, Any]) -> None:
        for api in body.get("item", body.get("items", [])):
            if api.get("name") == "checkout-api":
                api["name"] = hostile

    set_clock(fleet, ANCHOR + 3600)
    with FaultProxy(fleet.endpoint) as proxy, open_store(tmp_path / "fw.db") as store:
        proxy.set_rules(
            [
                Rule(mode="rewrite", service="apigateway", operation="GET /restapis", rewrite=json_rewrite(rename)),
                Rule(
                    mode="error",
                    service="lambda",
                    operation="GetAccountSettings",
                    status=500,
                    code="InternalFailure",
                    message=hostile,
                ),
            ]
        )
        collector = make_collector(
            fleet, store, regions=["us-east-1"], roles=[], endpoint=proxy.endpoint, max_attempts=1
        )
        report = collector.poll()
        names = [r["name"] for r in store.resources() if r["kind"] == "api"]
    assert hostile in names, "the name was stored as AWS sent it"
    assert any(s.status == "error" and "<script>" in s.error for s in report.sources), "the message was kept as data"
    cfg = load_config(None, environ={"FLEETWATCH_STORE_PATH": str(tmp_path / "fw.db")})
    pages = {}
    with DashboardServer(cfg, tmp_path / "fw.db", fleet.model.clock, port=0) as dash:
        api_id = f"api/123456789012/us-east-1/{hostile}"
        for path in (
            "/",
            "/resources?kind=api",
            "/resources/" + urllib.parse.quote(api_id, safe=""),
            "/resources/" + urllib.parse.quote(api_id),
        ):
            req = urllib.request.Request(dash.url + path, headers={"Accept": "text/html"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    pages[path] = (resp.status, resp.read().decode())
            except urllib.error.HTTPError as exc:
                pages[path] = (exc.code, exc.read().decode())
    assert any(status == 200 and "&lt;script&gt;" in html for status, html in pages.values()), {
        p: s for p, (s, _) in pages.items()
    }
    for path, (_status, html) in pages.items():
        assert "<script>alert" not in html and "<img src=x" not in html and "<!channel>" not in html, path
        assert not CONTROL.search(html.replace("\n", "").replace("\r", "").replace("\t", "")), path
    overview = pages["/"][1]
    assert "&lt;script&gt;" in overview, "the errored source's message is shown, escaped"
    chaos_kit.record(
        "hostile API name and AWS error message to the dashboard",
        bad_inputs_tried=2,
        handled=2,
        pages_checked=len(pages),
    )
