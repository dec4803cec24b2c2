"""The JSON API and the pages over HTTP (FastAPI's TestClient drives the real application, its
middleware and its store): data from the emulated fleet, authentication of changes, CSRF,
escaping, security headers, limits, and schemathesis against the OpenAPI schema."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleetwatch.clock import FakeClock
from tests.web_kit import HOSTILE, HOSTILE_ID, PASSWORD, TOKEN, USER, web_config
from web.app import create_app

BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
HTML = {"Accept": "text/html"}


def make_client(web: dict[str, Any], **settings: str) -> TestClient:
    app = create_app(web_config(web["path"], **settings), web["path"], FakeClock(web["now"]), cache_ttl=0)
    return TestClient(app, base_url="http://127.0.0.1:8000")


@pytest.fixture()
def api(web_copy: dict[str, Any]) -> Iterator[TestClient]:
    with make_client(web_copy) as c:
        yield c


def csrf_of(client: TestClient, path: str) -> str:
    page = client.get(path, headers=HTML)
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m, "the page carries a CSRF token"
    return m.group(1)


def test_api_serves_the_fleet_incidents_resources_series(api: TestClient, web_copy: dict[str, Any]) -> None:
    incs = api.get("/api/incidents", params={"state": "open"}).json()
    storm = next(i for i in incs if i["id"] == web_copy["storm"])
    assert storm["severity"] == "critical" and "checkout-api" in storm["title"] and "orders-db" in storm["cause"]
    detail = api.get(f"/api/incidents/{storm['id']}").json()
    assert detail["notifications"] and detail["events"] and detail["alerts"]
    assert any(a["evidence"].get("series") for a in detail["alerts"])
    assert api.get("/api/incidents", params={"detector": "outcomes", "severity": "critical"}).json()
    assert api.get("/api/incidents", params={"account": "000000000000"}).json() == []
    page = api.get("/api/resources", params={"kind": "rds"}).json()
    assert page["total"] >= 1 and all(r["kind"] == "rds" for r in page["items"])
    db = next(r for r in page["items"] if r["name"] == "orders-db")
    assert db["facts"]["max_connections"] == 500
    series = api.get("/api/series", params={"resource": db["id"], "metric": "DatabaseConnections"}).json()
    assert series and max(v for _, v in series[0]["points"]) >= 400
    assert api.get("/api/findings").json()
    import sqlite3

    from web import data

    conn = sqlite3.connect(web_copy["path"])
    conn.row_factory = sqlite3.Row
    limits = data.headroom(conn, web_copy["now"])
    proxy = next(h for h in limits if h["name"] == "catalog-proxy")
    assert proxy["limit"] == "pooled connections" and proxy["value"] is not None, (
        "a proxy's headroom comes from its metrics"
    )
    # The overview shows only the limits close to full, fullest first, each in its own unit.
    near = data.near_limits(limits)["near"]
    assert near and all(max(h["used"] or 0, h["peak_used"] or 0) >= 0.5 for h in near) and len(near) < len(limits)
    page_html = api.get("/", headers=HTML).text
    assert "500 of 500" in page_html and "database connections" in page_html, "orders-db at its max_connections"
    assert "catalog-proxy" not in page_html.split("Close to a limit")[1].split("fleetwatch itself")[0], (
        "far from its limit"
    )
    assert api.get("/api/resources/" + db["id"]).json()["series"]
    assert api.get("/api/incidents/99999").status_code == 404


def test_healthz_liveness_and_readiness(api: TestClient, web_copy: dict[str, Any]) -> None:
    body = api.get("/healthz").json()
    assert body["live"] and body["store"] == "ok" and body["last_poll_age"] is not None and body["ready"]
    with make_client(web_copy) as later:
        later.app.state.dash.clock.advance(3600)  # type: ignore[attr-defined]
        r = later.get("/healthz", params={"ready": "true"})
        assert r.status_code == 503 and r.json()["live"] and not r.json()["ready"]
        assert later.get("/healthz").status_code == 200, "liveness does not depend on polling"
    # A dashboard whose clock is behind the agent's last poll (the demo's own server after polling).
    app = create_app(web_config(web_copy["path"]), web_copy["path"], FakeClock(web_copy["now"] - 600), cache_ttl=0)
    with TestClient(app, base_url="http://127.0.0.1:8000") as behind:
        assert behind.get("/healthz").json()["last_poll_age"] == 0, "never a negative age"


def test_changes_need_authentication(api: TestClient, web_copy: dict[str, Any]) -> None:
    inc = web_copy["storm"]
    r = api.post(f"/api/incidents/{inc}/ack")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert api.post(f"/api/incidents/{inc}/ack", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.post("/api/silences", json={"matchers": 'service="x"'}).status_code == 401
    assert api.get(f"/api/incidents/{inc}").json()["acked_by"] is None
    ok = api.post(f"/api/incidents/{inc}/ack", headers=BEARER)
    assert ok.status_code == 200 and ok.json() == {"incident_id": inc, "acknowledged": True, "by": "api-token"}
    assert api.get(f"/api/incidents/{inc}").json()["acked_by"] == "api-token"


def test_browser_credentials_also_need_the_csrf_token(api: TestClient, web_copy: dict[str, Any]) -> None:
    inc = web_copy["storm"]
    path = f"/incidents/{inc}/ack"
    # Basic credentials alone (what a forged cross-site form would carry) are refused.
    assert api.post(path, headers=BASIC, data={"csrf": ""}, follow_redirects=False).status_code == 403
    forged = api.post(path, headers=BASIC, data={"csrf": "abc.def"}, follow_redirects=False)
    assert forged.status_code == 403
    # A cross-site Origin is refused even with a valid token.
    token = csrf_of(api, f"/incidents/{inc}")
    cross = api.post(
        path, headers={**BASIC, "Origin": "https://evil.example"}, data={"csrf": token}, follow_redirects=False
    )
    assert cross.status_code == 403
    assert api.get(f"/api/incidents/{inc}").json()["acked_by"] is None
    good = api.post(
        path, headers={**BASIC, "Origin": "http://127.0.0.1:8000"}, data={"csrf": token}, follow_redirects=False
    )
    assert good.status_code == 303
    assert api.get(f"/api/incidents/{inc}").json()["acked_by"] == USER


def test_a_trusted_proxy_header_names_the_user_only_from_the_proxy(web_copy: dict[str, Any]) -> None:
    inc = web_copy["storm"]
    with make_client(
        web_copy, FLEETWATCH_WEB_USER_HEADER="X-Forwarded-User", FLEETWATCH_WEB_TRUSTED_PROXIES="10.0.0.1"
    ) as c:
        token = csrf_of(c, f"/incidents/{inc}")
        r = c.post(
            f"/incidents/{inc}/ack",
            headers={"X-Forwarded-User": "mallory"},
            data={"csrf": token},
            follow_redirects=False,
        )
        assert r.status_code == 401, "the test client is not the trusted proxy"
    with make_client(
        web_copy, FLEETWATCH_WEB_USER_HEADER="X-Forwarded-User", FLEETWATCH_WEB_TRUSTED_PROXIES="testclient"
    ) as c:
        token = csrf_of(c, f"/incidents/{inc}")
        r = c.post(
            f"/incidents/{inc}/ack", headers={"X-Forwarded-User": "dana"}, data={"csrf": token}, follow_redirects=False
        )
        assert r.status_code == 303 and c.get(f"/api/incidents/{inc}").json()["acked_by"] == "dana"


def test_with_no_credentials_configured_changes_are_off(web_copy: dict[str, Any]) -> None:
    with make_client(web_copy, FLEETWATCH_WEB_TOKEN="", FLEETWATCH_WEB_USERNAME="", FLEETWATCH_WEB_PASSWORD="") as c:
        r = c.post("/api/silences", json={"matchers": 'service="x"'}, headers=BEARER)
        assert r.status_code == 401 and "web.token" in r.json()["detail"]


def test_read_auth_closes_reading_too(web_copy: dict[str, Any]) -> None:
    with make_client(web_copy, FLEETWATCH_WEB_READ_AUTH="true") as c:
        assert c.get("/api/incidents").status_code == 401
        assert c.get("/", headers=HTML).status_code == 401
        assert c.get("/api/incidents", headers=BEARER).status_code == 200
        assert c.get("/", headers=BASIC).status_code == 200


def test_silences_through_the_api(api: TestClient) -> None:
    bad = api.post("/api/silences", json={"matchers": "nolabel=1"}, headers=BEARER)
    assert bad.status_code == 422 and "unknown label" in bad.json()["detail"]
    made = api.post(
        "/api/silences",
        json={"matchers": 'service="checkout"', "duration_seconds": 600, "comment": "deploy"},
        headers=BEARER,
    )
    assert made.status_code == 201
    s = made.json()
    assert s["active"] and s["author"] == "api-token" and s["ends_at"] - s["starts_at"] == 600
    assert [x["id"] for x in api.get("/api/silences").json()] == [s["id"]]
    assert api.delete(f"/api/silences/{s['id']}", headers=BEARER).status_code == 204
    assert api.get("/api/silences").json() == []
    assert api.delete(f"/api/silences/{s['id']}", headers=BEARER).status_code == 404


def test_hostile_names_are_escaped_everywhere(api: TestClient, web_copy: dict[str, Any]) -> None:
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for path in (
        "/",
        "/incidents",
        f"/incidents/{web_copy['hostile']}",
        "/resources?kind=api",
        "/resources/" + HOSTILE_ID,
    ):
        body = api.get(path, headers=HTML).text
        assert HOSTILE not in body, path
        assert escaped in body, path
    r = api.get("/api/resources/" + HOSTILE_ID)
    assert r.headers["content-type"] == "application/json" and r.json()["name"] == HOSTILE, "JSON carries it as data"


def test_security_headers_and_limits(api: TestClient) -> None:
    r = api.get("/", headers=HTML)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert r.headers["x-content-type-options"] == "nosniff"
    cookie = api.get("/silences", headers=HTML).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    huge = api.post("/api/silences", content=b"x" * 100_000, headers={**BEARER, "Content-Type": "application/json"})
    assert huge.status_code == 413
    assert api.get("/resources", params={"q": "x" * 500}).status_code == 422
    assert api.get("/settings", headers=HTML).text.count("********") >= 2, "secrets are redacted"
    assert (
        TOKEN not in api.get("/settings", headers=HTML).text and PASSWORD not in api.get("/settings", headers=HTML).text
    )


def test_search_is_literal(api: TestClient) -> None:
    everything = api.get("/api/resources").json()["total"]
    assert api.get("/api/resources", params={"q": "%"}).json()["total"] < everything
    assert api.get("/api/resources", params={"q": "orders"}).json()["total"] >= 2


def test_incidents_list_the_worst_open_ones_first(tmp_path: Any) -> None:
    import sqlite3

    from fleetwatch.store import open_store
    from web import data

    rows = [  # id: (state, severity, resolved)
        (1, "firing", "info", None),
        (2, "firing", "critical", None),
        (3, "resolved", "critical", 500),
        (4, "pending", "critical", None),
        (5, "firing", "warning", None),
        (6, "firing", "critical", None),
    ]
    with open_store(tmp_path / "order.db") as store:
        for i, state, severity, resolved in rows:
            store.db["incidents"].insert(
                {
                    "id": i,
                    "fingerprint": f"fp{i}",
                    "group_key": f"g{i}",
                    "state": state,
                    "severity": severity,
                    "title": f"incident {i}",
                    "started_at": 100 + i,
                    "updated_at": 100 + i,
                    "resolved_at": resolved,
                }
            )
    conn = sqlite3.connect(tmp_path / "order.db")
    conn.row_factory = sqlite3.Row
    assert [i["id"] for i in data.incidents(conn)] == [6, 2, 4, 5, 1, 3]


def test_a_resource_page_shows_its_nodata_state_and_the_incidents_it_took_part_in(tmp_path: Any) -> None:
    from urllib.parse import quote

    from fleetwatch.store import open_store

    queue, api = "sqs/123456789012/us-east-1/jobs-dlq", "api/123456789012/us-east-1/checkout-api"
    with open_store(tmp_path / "res.db") as store:
        store.upsert_resources(
            [
                {
                    "id": queue,
                    "account": "123456789012",
                    "region": "us-east-1",
                    "kind": "sqs",
                    "name": "jobs-dlq",
                    "facts": {},
                    "tags": {},
                }
            ],
            1000,
        )
        store.db["incidents"].insert(
            {
                "id": 4,
                "fingerprint": "fp4",
                "group_key": api,
                "state": "firing",
                "severity": "critical",
                "title": "checkout-api failing — jobs-dlq filling",
                "started_at": 900,
                "updated_at": 900,
                "labels": f'{{"resource": "{api}"}}',
            }
        )
        for fp, state, kind, title, inc in (
            ("a1", "nodata", "nodata", "no data: an inactive queue", None),
            ("a2", "firing", "finding", "jobs-dlq: 40 messages dead-lettered", 4),
        ):
            store.db["alerts"].insert(
                {
                    "fingerprint": fp,
                    "detector": "queues",
                    "resource_id": queue,
                    "key": fp,
                    "kind": kind,
                    "state": state,
                    "severity": "info" if kind == "nodata" else "warning",
                    "title": title,
                    "evidence": "{}",
                    "labels": "{}",
                    "last_seen": 1000,
                    "incident_id": inc,
                    "updated_at": 1000,
                }
            )
    app = create_app(web_config(tmp_path / "res.db"), tmp_path / "res.db", FakeClock(1060), cache_ttl=0)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        page = client.get("/resources/" + quote(queue, safe=""), headers=HTML)
    assert page.status_code == 200
    assert "no data: an inactive queue" in page.text and "nodata" in page.text
    assert "#4 checkout-api failing" in page.text, "an incident led by another resource that this one took part in"


def test_rows_render_their_account_severity_and_state_escaped(web_copy: dict[str, Any]) -> None:
    """The cells every row repeats (web/app.py renders them in Python, not as macros): an
    account's name beside its id, escaped; a severity and a state marked up by class."""
    with make_client(web_copy, FLEETWATCH_AWS_ACCOUNT_NAMES="123456789012=<i>shop</i>") as c:
        for path in ("/", "/incidents", f"/incidents/{web_copy['storm']}"):
            body = c.get(path, headers=HTML).text
            assert (
                '<span class="nowrap" title="account 123456789012">&lt;i&gt;shop&lt;/i&gt; '
                '<span class="muted">(123456789012)</span></span>'
            ) in body, path
            assert "<i>shop</i>" not in body, path
            assert re.search(r'<span class="sev sev-(critical|warning|info)">\1</span>', body), path
            assert re.search(r'<span class="state state-(firing|pending|recovering|resolved)">\1</span>', body), path


def test_pages_read_a_rows_keys_as_jinja_does() -> None:
    """web/app._Pages reads a dict's keys before asking for an attribute (faster); what a
    template gets is what Jinja gives: a dict's own methods stay methods, a missing key is
    undefined, anything not a dict is read as before."""
    from jinja2 import Environment

    from web.app import _Pages

    source = (
        "{{ r.name }}|{{ r.missing is undefined }}|{{ r.items is callable }}|{{ r['items'] }}|"
        "{{ r.get('name') }}|{{ n.real }}|{{ r.name.upper() }}"
    )
    row = {"name": "orders", "items": "a tag called items"}
    view = {"r": row, "n": 3 + 4j}
    plain = Environment().from_string(source).render(view)
    assert _Pages().from_string(source).render(view) == plain == "orders|True|True|a tag called items|orders|3.0|ORDERS"
