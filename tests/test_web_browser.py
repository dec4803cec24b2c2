"""The dashboard end to end in real headless Chromium (Debian's chromium, driven by Playwright):
every page renders the emulated fleet's data with no console errors, an incident is acknowledged
and silenced through the UI, a change without credentials is refused, hostile names show as
text, and an open page refreshes itself. Screenshots of every page are kept in
test-artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from fleetwatch.clock import FakeClock
from tests.web_kit import HOSTILE, HOSTILE_ID, PASSWORD, TOKEN, USER, web_config
from web.server import DashboardServer

CHROMIUM = os.environ.get("FLEETWATCH_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
# As root, without a sandbox; and without the background traffic a closed network refuses.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def server(web_store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    path = tmp_path_factory.mktemp("browser") / "web.db"
    with sqlite3.connect(web_store["path"]) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    cfg = web_config(path)
    with DashboardServer(cfg, path, FakeClock(web_store["now"]), host="127.0.0.1", port=0, cache_ttl=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium), "
            "or point FLEETWATCH_CHROMIUM at a Chromium binary"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Browser, server: DashboardServer) -> Iterator[Page]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def watch(pg: Page) -> list[str]:
    problems: list[str] = []

    def on_console(m: ConsoleMessage) -> None:
        if m.type == "error":
            problems.append(f"console: {m.text}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    return problems


def shot(pg: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_every_page_renders_the_fleet_without_console_errors(page: Page, web_store: dict[str, Any]) -> None:
    problems = watch(page)
    storm, hostile = web_store["storm"], web_store["hostile"]
    db = "rds/123456789012/us-east-1/orders-db"
    pages = [
        ("overview", "/", "What users feel now", ["checkout-api", "orders-db", "account concurrency"]),
        ("incidents", "/incidents", "Incidents", ["checkout-api"]),
        ("incidents-all", "/incidents?state=", "Incidents", ["checkout-api", "firing"]),
        ("incident", f"/incidents/{storm}", "checkout-api", ["orders-db", "RDS Proxy", "Acknowledge", "C0WEB"]),
        ("incident-hostile", f"/incidents/{hostile}", HOSTILE, []),
        ("resources", "/resources", "Resources", ["orders-fn"]),
        ("resources-lambda", "/resources?kind=lambda&q=orders", "Resources", ["orders-fn"]),
        ("resource", "/resources/" + quote(db, safe=""), "orders-db", ["max_connections", "DatabaseConnections"]),
        ("silences", "/silences", "Silences", ["Add silence"]),
        ("digest", "/digest", "Weekly health digest", ["Preview"]),
        ("settings", "/settings", "Settings", ["[web]", "********"]),
    ]
    for name, path, heading, texts in pages:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        expect(page.locator("h1")).to_contain_text(heading)
        for text in texts:
            expect(page.locator("main")).to_contain_text(text)
        shot(page, name)
    page.goto(f"/incidents/{storm}")
    assert page.locator("figure.chart .uplot canvas").count() >= 3, "uPlot drew the evidence"
    specs = {
        s["label"]: s
        for s in page.eval_on_selector_all("figure.chart", "fs => fs.map(f => JSON.parse(f.dataset.chart))")
    }
    # Each limit in its series' unit, on that series only: 500 connections, a 1 % error rate.
    assert [m["label"] for m in specs["connections"]["marks"]] == ["limit 500"] and specs["connections"][
        "unit"
    ] == "count"
    assert specs["error rate"]["unit"] == "ratio" and "limit 1%" in [m["label"] for m in specs["error rate"]["marks"]]
    assert specs["requests"]["marks"] == [], "no limit on the request count"
    assert all(s["window"] and s["now"] == web_store["now"] for s in specs.values()), "incident window and now on each"
    assert len({tuple(s["x"]) for s in specs.values()}) == 1, "one time range for every chart of the page"
    expect(page.locator("figure.chart", has_text="connections")).to_contain_text("limit 500")
    page.goto("/resources/" + quote(db, safe=""))
    assert page.locator("figure.chart .uplot canvas").count() >= 1
    conns = page.locator("figure.chart", has_text="DatabaseConnections (Maximum)")
    expect(conns).to_contain_text("limit 500"), "max_connections drawn on the database's chart"
    page.goto("/digest")
    expect(page.frame_locator("iframe.digest").locator("h1")).to_contain_text("Weekly health digest")
    assert problems == []


def test_acknowledge_and_silence_through_the_ui(
    browser: Browser, server: DashboardServer, web_store: dict[str, Any]
) -> None:
    context = browser.new_context(base_url=server.url, http_credentials={"username": USER, "password": PASSWORD})
    pg = context.new_page()
    problems = watch(pg)
    inc = web_store["hostile"]
    pg.goto(f"/incidents/{inc}")
    pg.click("#ack")
    expect(pg.locator("#acked")).to_contain_text(f"acknowledged by {USER}")
    pg.select_option("select[name=duration]", "4h")
    pg.fill("input[name=comment]", "fixing the <b>API</b>")
    pg.click("#silence")
    pg.goto("/silences")
    row = pg.locator("tbody tr", has_text=HOSTILE)
    expect(row).to_contain_text(USER)
    expect(row).to_contain_text("fixing the <b>API</b>")
    shot(pg, "silenced")
    api = httpx.get(f"{server.url}/api/incidents/{inc}").json()
    assert api["acked_by"] == USER
    (silence,) = [s for s in httpx.get(f"{server.url}/api/silences").json() if HOSTILE in s["matchers"]]
    assert silence["ends_at"] - silence["starts_at"] == 4 * 3600 and silence["author"] == USER
    pg.click(f"form[action='/silences/{silence['id']}/expire'] button")
    expect(pg.locator("tbody tr", has_text=HOSTILE).locator("button")).to_have_count(0)
    assert not [s for s in httpx.get(f"{server.url}/api/silences").json() if HOSTILE in s["matchers"]]
    context.close()
    assert problems == []


def test_a_change_without_credentials_is_refused(
    page: Page, server: DashboardServer, web_store: dict[str, Any]
) -> None:
    # With no credentials to give, the browser answers the Basic challenge with nothing: the
    # server's 401 is what refuses the change, and the store is unchanged.
    inc = web_store["storm"]
    page.goto(f"/incidents/{inc}")
    with page.expect_response(lambda r: r.url.endswith(f"/incidents/{inc}/ack")) as answer:
        page.click("#ack")
    assert answer.value.status == 401 and answer.value.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{server.url}/api/incidents/{inc}").json()["acked_by"] is None
    page.goto("/silences")
    page.fill("#matchers", 'service="checkout"')
    with page.expect_response(lambda r: r.url.endswith("/silences") and r.request.method == "POST") as answer:
        page.click("#add-silence")
    assert answer.value.status == 401
    assert httpx.get(f"{server.url}/api/silences").json() == []


def test_a_refused_sign_in_leaves_a_page_for_people(
    browser: Browser, server: DashboardServer, web_store: dict[str, Any]
) -> None:
    # The browser answers the challenge with a wrong password: the server refuses the sign-in,
    # and what the person is left looking at is a page that says so, not raw JSON or nothing.
    context = browser.new_context(
        base_url=server.url, http_credentials={"username": USER, "password": "not the password"}
    )
    pg = context.new_page()
    inc = web_store["storm"]
    pg.goto(f"/incidents/{inc}")
    with pg.expect_response(lambda r: r.url.endswith(f"/incidents/{inc}/ack")) as answer:
        pg.click("#ack")
    assert answer.value.status == 401
    expect(pg.locator("h1")).to_have_text("Not signed in")
    expect(pg.locator("#error-hint")).to_contain_text("try again, signing in")
    shot(pg, "refused")
    context.close()
    assert httpx.get(f"{server.url}/api/incidents/{inc}").json()["acked_by"] is None


def test_hostile_names_render_as_text(page: Page, web_store: dict[str, Any]) -> None:
    problems = watch(page)
    for path in (
        f"/incidents/{web_store['hostile']}",
        "/resources/" + quote(HOSTILE_ID, safe=""),
        "/resources?kind=api",
        "/",
    ):
        page.goto(path)
        expect(page.locator("main")).to_contain_text(HOSTILE)
        assert page.locator("main script").count() == 0, path
    page.goto("/resources/" + quote(HOSTILE_ID, safe=""))
    expect(page.locator("h1")).to_contain_text(HOSTILE)
    shot(page, "hostile")
    assert problems == [], "no script ran and no dialog opened"


def test_an_open_page_refreshes_itself(page: Page, server: DashboardServer, web_store: dict[str, Any]) -> None:
    inc = web_store["storm"]
    page.clock.install()  # the page's timers run on Playwright's clock, moved below, not on the wall clock
    page.goto(f"/incidents/{inc}")
    expect(page.locator("#acked")).to_have_count(0)
    r = httpx.post(f"{server.url}/api/incidents/{inc}/ack", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    page.clock.run_for(6_000)  # web.refresh is 5 s in these tests
    expect(page.locator("#acked")).to_contain_text("acknowledged by api-token")
    assert page.evaluate("document.body.getAttribute('data-refreshed')") is not None


WIDTHS = (390, 768, 1400)
AXE = Path(__file__).resolve().parent.parent / "build" / "test-assets" / "axe.min.js"
# Every word of a table cell on one line: a Range over the word has one box per line it covers.
BROKEN_WORDS = """() => {
  const out = [];
  for (const cell of document.querySelectorAll("main td, main th")) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const re = /\\S+/g; let m;
      while ((m = re.exec(node.data)) !== null) {
        const r = document.createRange(); r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
        const tops = new Set([...r.getClientRects()].filter(b => b.width > 0).map(b => Math.round(b.top)));
        if (tops.size > 1) out.push(m[0]);
      }
    }
  }
  return out;
}"""


def every_page(web_store: dict[str, Any]) -> list[tuple[str, str]]:
    db = "rds/123456789012/us-east-1/orders-db"
    return [
        ("overview", "/"),
        ("incidents", "/incidents?state="),
        ("incident", f"/incidents/{web_store['storm']}"),
        ("resources", "/resources"),
        ("resource", "/resources/" + quote(db, safe="")),
        ("resource-fn", "/resources/" + quote("lambda/123456789012/us-east-1/orders-fn", safe="")),
        ("silences", "/silences"),
        ("digest", "/digest"),
        ("settings", "/settings"),
        ("missing", "/incidents/999999"),
    ]


def axe_violations(pg: Page) -> list[str]:
    """axe-core (fetched from the npm registry by web/assets.py, never committed or served by the
    agent) run in the page: the serious and critical violations, with where they are."""
    if not AXE.exists():
        from web.assets import fetch

        fetch("axe-core")
    pg.evaluate(AXE.read_text())  # through the DevTools protocol, so the page's CSP does not apply
    result = pg.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_the_screen_reads_whole_words_and_passes_axe(
    browser: Browser, server: DashboardServer, web_store: dict[str, Any], width: int
) -> None:
    context = browser.new_context(base_url=server.url, viewport={"width": width, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    problems = watch(pg)
    found = []
    for name, path in every_page(web_store):
        pg.goto(path)
        pg.wait_for_load_state("load")
        shot(pg, f"{name}-{width}")
        overflow = pg.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            found.append(f"{path}: {overflow} px wider than the screen")
        if broken := pg.evaluate(BROKEN_WORDS):
            found.append(f"{path}: words broken across lines: {broken[:8]}")
        found += [f"{path}: {v}" for v in axe_violations(pg)]
    context.close()
    # The missing incident's 404 is the one error the browser logs.
    found += [p for p in problems if "404" not in p]
    assert found == [], f"at {width} px:\n" + "\n".join(found)
