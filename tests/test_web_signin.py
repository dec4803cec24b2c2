"""A refused sign-in answers people with an HTML page that says what happened and what to do,
and the API with JSON (the dashboard's own error page, base layout, no raw JSON in a browser)."""

from __future__ import annotations

import base64
from typing import Any

from fastapi.testclient import TestClient

from fleetwatch.clock import FakeClock
from tests.web_kit import USER, web_config
from web.app import create_app
from web.auth import MAX_FAILURES

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _client(web_copy: dict[str, Any], **settings: str) -> TestClient:
    app = create_app(
        web_config(web_copy["path"], **settings), web_copy["path"], FakeClock(web_copy["now"]), cache_ttl=0
    )
    return TestClient(app, base_url="http://127.0.0.1:8000")


def _is_page(r: Any, title: str) -> None:
    assert r.headers["content-type"].startswith("text/html"), r.text[:200]
    assert f"<h1>{title}</h1>" in r.text and 'id="error-detail"' in r.text and "<nav>" in r.text
    assert not r.text.lstrip().startswith("{")


def test_a_refused_sign_in_is_a_page_for_people_and_json_for_the_api(web_copy: dict[str, Any]) -> None:
    wrong = _basic(USER, "not the password")
    with _client(web_copy, FLEETWATCH_WEB_READ_AUTH="true") as c:
        page = c.get("/", headers={**BROWSER, **wrong})
        assert page.status_code == 401 and page.headers["www-authenticate"].startswith("Basic"), (
            "the browser asks again"
        )
        _is_page(page, "Not signed in")
        assert "Go back and try again, signing in" in page.text and "web.username" in page.text
        api = c.get("/api/incidents", headers={**BROWSER, **wrong})
        assert api.status_code == 401 and api.headers["content-type"] == "application/json" and "detail" in api.json()
    with _client(web_copy) as c:
        form = c.post(
            f"/incidents/{web_copy['storm']}/ack",
            headers={**BROWSER, **wrong},
            data={"csrf": ""},
            follow_redirects=False,
        )
        assert form.status_code in (401, 403)
        _is_page(form, "Not signed in" if form.status_code == 401 else "Refused")


def test_too_many_refused_sign_ins_are_a_page_too(web_copy: dict[str, Any]) -> None:
    wrong = _basic(USER, "guess")
    with _client(web_copy, FLEETWATCH_WEB_READ_AUTH="true") as c:
        for _ in range(MAX_FAILURES):
            c.get("/", headers={**BROWSER, **wrong})
        page = c.get("/", headers={**BROWSER, **wrong})
        assert page.status_code == 429 and page.headers["retry-after"]
        _is_page(page, "Too many failed sign-ins")
        assert "try again in 60 s" in page.text and "Wait until" in page.text
        assert c.get("/api/incidents", headers=wrong).json()["detail"].startswith("too many failed sign-ins")
