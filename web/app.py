"""The FastAPI application: server-rendered pages (Jinja2, autoescaped) and the same data as JSON
under /api. It reads the store through read-only connections and writes only acknowledgements
and silences, each as the signed-in user (see web/auth.py)."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerts import pagerduty
from alerts.messages import clean
from alerts.store import AlertStore
from fleetwatch.accounts import ACCOUNT_KINDS, account_names, configured
from fleetwatch.config.rules import quote
from fleetwatch.store import Store, open_store
from fleetwatch.store.dialect import is_url
from web import data
from web.api import Ack, Health, IncidentDetail, IncidentOut, Page, ResourceDetail, SeriesOut, SilenceIn, SilenceOut
from web.auth import CSRF_COOKIE, Auth
from web.charts import chart, evidence_charts, evidence_range, fact, fmt, metric_unit
from web.security import SecurityHeaders

STATIC = Path(__file__).parent / "static"
NAMES_TTL = 60.0  # seconds between reads of the account names (aliases change at discovery, hours apart)
# Row ids as SQLite stores them: a larger number is refused with a 422, not an overflow.
Id = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
DURATIONS = {"1h": 3600, "4h": 4 * 3600, "1d": 86400, "1w": 7 * 86400}
ERRORS = {
    401: "Not signed in",
    403: "Refused",
    404: "Not found",
    413: "Too large",
    422: "Not understood",
    429: "Too many failed sign-ins",
}
# What a person can do next, under the error's own words.
HINTS = {
    401: "Go back and try again, signing in with the user name and password set as web.username and web.password "
    "(ask whoever runs fleetwatch).",
    403: "Go back, reload the page and try again from this dashboard.",
    429: "Wait until the time above has passed, then reload this page and sign in with the right password.",
}


def _when(ts: Any) -> str:
    # time.strftime on a struct from gmtime: a twentieth of the cost of datetime's strftime, and
    # the overview shows two times on each of up to 50 incidents.
    if not ts:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(ts)))


def _at(ts: Any) -> Markup:
    """A time for people: UTC on the server, rewritten in the viewer's time zone by charts.js."""
    if not ts:
        return Markup("–")
    t = time.gmtime(int(ts))
    # Only digits and the format's own characters: nothing to escape.
    return Markup(
        f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", t)}" data-ts="{int(ts)}">'
        f"{time.strftime('%Y-%m-%d %H:%M UTC', t)}</time>"
    )


def _sev(s: Any) -> Markup:
    """A severity as the pages mark it up (web/static/app.css colours it by class)."""
    return Markup(f'<span class="sev sev-{escape(s)}">{escape(s)}</span>')


def _state(s: Any) -> Markup:
    return Markup(f'<span class="state state-{escape(s)}">{escape(s)}</span>')


_BREAKABLE = re.compile(r"\S*[-/:(\u2013\u2014]\S*")


def _nobreak(text: Any) -> Markup:
    """Text whose words never split across lines: each word a browser could break inside (at a
    hyphen, a slash, a colon: "orders-db", "us-east-1") is kept whole; lines still wrap between words."""
    if type(text) is str:  # not Markup (already escaped), which must not share the plain text's entry
        return _nobreak_text(text)
    return _whole_words(str(escape(text)))


@functools.lru_cache(maxsize=4096)
def _nobreak_text(text: str) -> Markup:
    """_nobreak of plain text, kept: the pages show the same Regions, names and titles on many
    rows and again on every refresh."""
    return _whole_words(str(escape(text)))


def _whole_words(escaped: str) -> Markup:
    return Markup(_BREAKABLE.sub(lambda m: f'<span class="nowrap">{m.group(0)}</span>', escaped))


def _ago(ts: Any, now: float) -> str:
    if not ts:
        return "never"
    s = int(now - int(ts))
    if s < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def _num(v: Any) -> str:
    if v is None:
        return "–"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return clean(v, 40)
    return f"{f:,.0f}" if abs(f) >= 100 else f"{f:.3g}"


def silence_matchers(inc: dict[str, Any]) -> str:
    """What the Silence button of an incident mutes: its resource and detector."""
    return f"resource={quote(inc['resource'])} detector={quote(inc['detector'])}" if inc["resource"] else ""


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Pages(Environment):
    """Jinja's environment, reading a dict's keys first: the pages' rows are dicts, and Jinja
    asks for `row.field` as an attribute before a key, so each field read raised and caught an
    AttributeError (some 1,500 on one overview). A name dict itself has (items, get, …) is still
    its attribute, as in Jinja."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


class Dashboard:
    """The state the routes share: the store, the read connections, the auth, the clock."""

    def __init__(
        self, cfg: Any, store_path: Path | str, clock: Any, auth: Auth | None = None, cache_ttl: float | None = None
    ) -> None:
        self.cfg, self.clock = cfg, clock
        self.store: Store = open_store(store_path)  # migrates a new store, so the reads below find their tables
        self.alerts = AlertStore(self.store)
        self.reader = data.Reader(store_path)
        self.auth = auth or Auth.from_config(cfg)
        self.write_lock = threading.Lock()
        self.cache_ttl = float(cfg["web.cache"] if cache_ttl is None else cache_ttl)
        self._cache: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._names: tuple[float, dict[str, str]] = (float("-inf"), {})
        self._accounts: dict[Any, Markup] = {}

    def now(self) -> int:
        return int(self.clock.now())

    def account_names(self) -> dict[str, str]:
        """aws.account_names over the IAM aliases discovery stored (fleetwatch.accounts), read
        again at most once a minute."""
        at, names = self._names
        if time.monotonic() - at > NAMES_TTL:
            names = account_names(self.reader.conn(), configured(self.cfg))
            self._names = (time.monotonic(), names)
            self._accounts = {}
        return names

    def account(self, a: Any) -> Markup:
        """An account as the pages show it: its name with the id beside it, or the id alone.
        Kept per id until the names are read again: a page names the same few accounts on
        every row."""
        names = self.account_names()
        shown = self._accounts.get(a)
        if shown is None:
            name = names.get(str(a), "")
            shown = (
                Markup(
                    f'<span class="nowrap" title="account {escape(a)}">{escape(name)} '
                    f'<span class="muted">({escape(a)})</span></span>'
                )
                if name
                else escape(a)
            )
            self._accounts[a] = shown
        return shown

    async def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """Pages that every client opens at once (the overview, the incident list) are computed at
        most once per cache_ttl seconds, off the event loop, by one request while the others
        wait for it; a change made here clears the cache."""
        if self.cache_ttl <= 0:
            return await run_in_threadpool(make)
        hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < self.cache_ttl:
            return hit[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            if hit and time.monotonic() - hit[0] < self.cache_ttl:
                return hit[1]
            t = time.monotonic()
            value = await run_in_threadpool(make)
            if len(self._cache) > 256:  # filters make keys; keep the cache and its locks small
                self._cache.clear()
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            self._cache[key] = (t, value)
        return value

    def changed(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self.store.close()


def create_app(
    cfg: Any,
    store_path: str | Path,
    clock: Any,
    auth: Auth | None = None,
    cache_ttl: float | None = None,
    stopped: str = "",
) -> FastAPI:
    """`stopped`: the agent that filled the store is no longer running (the demo once its polls
    are done); every page says so in these words."""
    dash = Dashboard(cfg, store_path if is_url(store_path) else Path(store_path), clock, auth, cache_ttl)
    app = FastAPI(
        title="fleetwatch",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        description="What is hurting users now, why, and what to do. Reads are open unless web.read_auth is "
        "set; changes need a bearer token, basic credentials or a trusted proxy's user header.",
    )
    app.state.dash = dash
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    env = _Pages(
        loader=PackageLoader("web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        when=_when,
        at=_at,
        num=_num,
        fmt=fmt,
        clean=clean,
        fact=lambda k, v: clean(fact(str(k), v), 800),
        account_name=lambda a: dash.account_names().get(str(a), ""),
        account=dash.account,
        sev=_sev,
        state=_state,
        # an account-wide resource by what it is ("SES sending"), not its discovery name "account"
        shown_name=lambda kind, name: ACCOUNT_KINDS.get(str(kind), name),
    )
    env.globals["stopped"] = stopped
    env.filters["nobreak"] = _nobreak
    templates = Jinja2Templates(env=env)

    def view_of(request: Request, csrf: str, view: dict[str, Any]) -> dict[str, Any]:
        now = dash.now()
        return {
            **view,
            "request": request,
            "csrf": csrf,
            "now": now,
            "ago": lambda ts: _ago(ts, now),
            "refresh": dash.cfg["web.refresh"],
            "can_change": dash.auth.configured,
        }

    def page(request: Request, name: str, status: int = 200, **view: Any) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE, "")
        fresh = not dash.auth.csrf_valid(token)
        if fresh:
            token = dash.auth.new_csrf()
        response = templates.TemplateResponse(request, name, view_of(request, token, view), status_code=status)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE, token, httponly=True, samesite="strict", path="/", secure=request.url.scheme == "https"
            )
        return response

    async def shared_page(request: Request, key: str, name: str, make: Callable[[], dict[str, Any]]) -> HTMLResponse:
        """A page with no form that changes anything, so no CSRF token: the rendered HTML is
        shared by everyone who asks within web.cache."""

        def render() -> str:
            return env.get_template(name).render(view_of(request, "", make()))

        return HTMLResponse(await dash.cached(key, render))

    def conn() -> Any:
        return dash.reader.conn()

    def incident_or_404(incident_id: int) -> dict[str, Any]:
        inc = data.incident(conn(), incident_id)
        if inc is None:
            raise HTTPException(404, f"there is no incident #{incident_id}")
        return inc

    def resource_or_404(resource_id: str) -> dict[str, Any]:
        r = data.resource(conn(), resource_id)
        if r is None:
            raise HTTPException(404, "there is no such resource")
        return r

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route whose path matched; list every method of the path.
            headers["Allow"] = ", ".join(_methods_for(app, request))
        if (
            request.url.path.startswith("/api")
            or request.url.path == "/healthz"
            or "text/html" not in request.headers.get("accept", "")
        ):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        response = page(
            request,
            "error.html",
            status=exc.status_code,
            title=ERRORS.get(exc.status_code, "Error"),
            detail=str(exc.detail),
            hint=HINTS.get(exc.status_code, ""),
        )
        response.headers.update(headers)
        return response

    # -- pages ---------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def overview_page(request: Request) -> Response:
        dash.auth.require_reader(request)
        return await shared_page(request, "overview", "overview.html", lambda: {"o": data.overview(conn(), dash.now())})

    @app.get("/incidents", response_class=HTMLResponse, include_in_schema=False)
    async def incidents_page(
        request: Request,
        state: str = Query("open", max_length=40),
        severity: str = Query("", max_length=40),
        service: str = Query("", max_length=200),
        account: str = Query("", max_length=40),
        detector: str = Query("", max_length=80),
    ) -> Response:
        dash.auth.require_reader(request)
        filters = {"state": state, "severity": severity, "service": service, "account": account, "detector": detector}
        return await shared_page(
            request,
            "incidents?" + urlencode(filters),
            "incidents.html",
            lambda: {
                "incidents": data.incidents(conn(), filters),
                "filters": filters,
                "facets": data.incident_facets(conn()),
            },
        )

    @app.get("/incidents/{incident_id}", response_class=HTMLResponse, include_in_schema=False)
    def incident_page(request: Request, incident_id: Id) -> Response:
        dash.auth.require_reader(request)
        inc = incident_or_404(incident_id)
        now = dash.now()
        window = (inc["started_at"], inc["resolved_at"] or now)
        x_range = evidence_range([a["evidence"] for a in inc["alerts"]], window[0], window[1])
        charts = [(a, evidence_charts(a["evidence"], window=window, now=now, x_range=x_range)) for a in inc["alerts"]]
        paged = any(str(n["target"]).startswith("pagerduty") for n in inc["notifications"])
        return page(
            request,
            "incident.html",
            inc=inc,
            charts=charts,
            silence=silence_matchers(inc),
            durations=DURATIONS,
            paged=paged,
        )

    @app.post("/incidents/{incident_id}/ack", include_in_schema=False)
    def incident_ack_form(request: Request, incident_id: Id, csrf: str = Form("")) -> Response:
        who = dash.auth.require_writer(request, csrf)
        _acknowledge(incident_id, who.user)
        return RedirectResponse(f"/incidents/{incident_id}", status_code=303)

    @app.post("/incidents/{incident_id}/silence", include_in_schema=False)
    def incident_silence_form(
        request: Request, incident_id: Id, csrf: str = Form(""), duration: str = Form("1h"), comment: str = Form("")
    ) -> Response:
        who = dash.auth.require_writer(request, csrf)
        matchers = silence_matchers(incident_or_404(incident_id))
        if not matchers:
            raise HTTPException(404, f"incident #{incident_id} names no resource to silence")
        _silence(matchers, DURATIONS.get(duration, 3600), who.user, comment or f"from incident #{incident_id}")
        return RedirectResponse(f"/incidents/{incident_id}", status_code=303)

    @app.get("/resources", response_class=HTMLResponse, include_in_schema=False)
    def resources_page(
        request: Request,
        kind: str = "",
        q: str = Query("", max_length=200),
        page_no: int = Query(0, alias="page", ge=0),
    ) -> Response:
        dash.auth.require_reader(request)
        rows, total = data.resources(conn(), kind, q, page_no)
        kinds = data.resource_kinds(conn())
        return page(
            request,
            "resources.html",
            resources=rows,
            total=total,
            kind=kind,
            q=q,
            page_no=page_no,
            kinds=kinds,
            per_page=data.PAGE,
        )

    @app.get("/resources/{resource_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def resource_page(request: Request, resource_id: str, hours: int = Query(24, ge=1, le=24 * 90)) -> Response:
        dash.auth.require_reader(request)
        r = resource_or_404(resource_id)
        now = dash.now()
        start = now - hours * 3600
        window = data.incident_window(r["incidents"], start, now)
        charts = [
            chart(
                f"{s['metric']} ({s['stat']})",
                data.series_points(conn(), s["id"], start, now + 1),
                metric_unit(s["metric"], s["stat"]),
                x_range=(start, now),
                now=now,
                window=window,
                limit=data.limit_of(r, s["metric"]),
            )
            for s in r["series"][:24]
        ]
        return page(request, "resource.html", r=r, charts=charts, hours=hours)

    @app.get("/silences", response_class=HTMLResponse, include_in_schema=False)
    def silences_page(request: Request, error: str = "") -> Response:
        dash.auth.require_reader(request)
        return page(
            request,
            "silences.html",
            silences=data.silences(conn(), dash.now(), include_expired=True),
            durations=DURATIONS,
            error=error,
        )

    @app.post("/silences", include_in_schema=False)
    def silence_form(
        request: Request,
        csrf: str = Form(""),
        matchers: str = Form(..., max_length=2000),
        duration: str = Form("1h"),
        comment: str = Form("", max_length=2000),
    ) -> Response:
        who = dash.auth.require_writer(request, csrf)
        try:
            _silence(matchers, DURATIONS.get(duration, 3600), who.user, comment)
        except ValueError as exc:
            return page(
                request,
                "silences.html",
                status=422,
                silences=data.silences(conn(), dash.now(), include_expired=True),
                durations=DURATIONS,
                error=str(exc),
            )
        return RedirectResponse("/silences", status_code=303)

    @app.post("/silences/{silence_id}/expire", include_in_schema=False)
    def silence_expire_form(request: Request, silence_id: Id, csrf: str = Form("")) -> Response:
        dash.auth.require_writer(request, csrf)
        _expire(silence_id)
        return RedirectResponse("/silences", status_code=303)

    @app.get("/digest", response_class=HTMLResponse, include_in_schema=False)
    def digest_page(request: Request) -> Response:
        dash.auth.require_reader(request)
        from alerts.digest import due_at

        period, when = due_at(dash.now(), dash.cfg["digest.day"], dash.cfg["digest.hour"], dash.cfg["digest.timezone"])
        return page(request, "digest.html", last=data.last_digest(conn()), next_at=when + 7 * 86400)

    @app.get("/digest/preview", response_class=HTMLResponse, include_in_schema=False)
    def digest_preview(request: Request) -> Response:
        dash.auth.require_reader(request)
        from alerts.digest import gather, render_html

        with dash.write_lock:  # gather reads through the store's one connection, which writes share
            digest = gather(dash.store, dash.now(), names=configured(dash.cfg), url=dash.cfg["web.public_url"])
        html = render_html(digest)
        # The digest's own HTML is mail HTML: inline styles, no scripts at all.
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"
            },
        )

    @app.get("/settings", response_class=HTMLResponse, include_in_schema=False)
    def settings_page(request: Request) -> Response:
        dash.auth.require_reader(request)
        return page(request, "settings.html", text=dash.cfg.render(), path=dash.cfg.path)

    # -- API -----------------------------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    def healthz(ready: bool = False) -> Response:
        """Liveness: the store answers. With `ready=true`, also that a poll finished recently
        (within three slow-poll intervals); 503 when not."""
        now = dash.now()
        try:
            last = conn().execute("SELECT MAX(finished_at) FROM poll_log").fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - any failure to read is "store unreachable"
            body = Health(live=False, ready=False, store=f"unreachable: {type(exc).__name__}", last_poll_age=None)
            return JSONResponse(body.model_dump(), status_code=503)
        # A poll stamped after the dashboard's clock (the agent's clock ran ahead, a restored store)
        # is "just now", never a negative age.
        age = max(0, now - int(last)) if last else None
        is_ready = age is not None and age <= 3 * int(dash.cfg["poll.slow_interval"])
        body = Health(live=True, ready=is_ready, store="ok", last_poll_age=age)
        return JSONResponse(body.model_dump(), status_code=503 if ready and not is_ready else 200)

    @app.get("/api/incidents", response_model=list[IncidentOut], tags=["incidents"])
    def api_incidents(
        request: Request,
        state: str = Query("", max_length=40),
        severity: str = Query("", max_length=40),
        service: str = Query("", max_length=200),
        account: str = Query("", max_length=40),
        detector: str = Query("", max_length=80),
        limit: int = Query(200, ge=1, le=1000),
    ) -> Any:
        """Incidents, newest open first. `state=open` for every incident not yet resolved."""
        dash.auth.require_reader(request)
        filters = {"state": state, "severity": severity, "service": service, "account": account, "detector": detector}
        return data.incidents(conn(), filters, limit)

    @app.get(
        "/api/incidents/{incident_id}",
        response_model=IncidentDetail,
        tags=["incidents"],
        responses={404: {"description": "no such incident"}},
    )
    def api_incident(request: Request, incident_id: Id) -> Any:
        dash.auth.require_reader(request)
        return incident_or_404(incident_id)

    @app.post("/api/incidents/{incident_id}/ack", response_model=Ack, tags=["incidents"], responses=_WRITE_ERRORS)
    def api_ack(request: Request, incident_id: Id) -> Any:
        """Acknowledge an open incident: repeats stop. Needs authentication."""
        who = dash.auth.require_writer(request)
        incident_or_404(incident_id)
        return Ack(incident_id=incident_id, acknowledged=_acknowledge(incident_id, who.user), by=who.user)

    @app.get("/api/findings", tags=["findings"])
    def api_findings(request: Request, limit: int = Query(200, ge=1, le=1000)) -> list[dict[str, Any]]:
        """The findings of the latest detection pass, most severe first."""
        dash.auth.require_reader(request)
        return data.findings(conn(), limit)

    @app.get("/api/resources", response_model=Page, tags=["resources"])
    def api_resources(
        request: Request,
        kind: str = Query("", max_length=40),
        q: str = Query("", max_length=200),
        page_no: int = Query(0, alias="page", ge=0, le=100000),
    ) -> Any:
        dash.auth.require_reader(request)
        rows, total = data.resources(conn(), kind, q, page_no)
        return {"total": total, "page": page_no, "per_page": data.PAGE, "items": rows}

    @app.get(
        "/api/resources/{resource_id:path}",
        response_model=ResourceDetail,
        tags=["resources"],
        responses={404: {"description": "no such resource"}},
    )
    def api_resource(request: Request, resource_id: str) -> Any:
        dash.auth.require_reader(request)
        return resource_or_404(resource_id)

    @app.get("/api/series", response_model=list[SeriesOut], tags=["resources"])
    def api_series(
        request: Request,
        resource: str = Query(..., max_length=600),
        metric: str = Query("", max_length=200),
        hours: int = Query(24, ge=1, le=24 * 90),
    ) -> Any:
        """The samples of a resource's series over the last `hours`."""
        dash.auth.require_reader(request)
        now = dash.now()
        return [
            {**s, "points": data.series_points(conn(), s["id"], now - hours * 3600, now + 1)}
            for s in data.series_of(conn(), resource, metric)
        ]

    @app.get("/api/silences", response_model=list[SilenceOut], tags=["silences"])
    def api_silences(request: Request, expired: bool = False) -> Any:
        dash.auth.require_reader(request)
        return data.silences(conn(), dash.now(), include_expired=expired)

    @app.post("/api/silences", response_model=SilenceOut, status_code=201, tags=["silences"], responses=_WRITE_ERRORS)
    def api_add_silence(request: Request, body: SilenceIn) -> Any:
        """Mute every incident whose labels match, for `duration_seconds`. Needs authentication."""
        who = dash.auth.require_writer(request)
        try:
            sid = _silence(body.matchers, body.duration_seconds, who.user, body.comment)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return next(s for s in data.silences(conn(), dash.now(), include_expired=True) if s["id"] == sid)

    @app.delete("/api/silences/{silence_id}", tags=["silences"], status_code=204, responses=_WRITE_ERRORS)
    def api_expire_silence(request: Request, silence_id: Id) -> Response:
        """Expire an active silence now. Needs authentication."""
        dash.auth.require_writer(request)
        if not _expire(silence_id):
            raise HTTPException(404, f"silence #{silence_id} is not active")
        return Response(status_code=204)

    # PagerDuty's to call, not a reader's: kept out of the API's schema. Answers: 200 acknowledged
    # (or already was), 202 understood but not ours or not an acknowledgement, 400 no signature or
    # no JSON, 403 a signature that does not match, 404 pagerduty.webhook_secret not set.
    @app.post("/hooks/pagerduty", include_in_schema=False)
    async def pagerduty_webhook(request: Request) -> Any:
        """A PagerDuty V3 webhook (subscribe it to incident.acknowledged): an incident fleetwatch
        opened in PagerDuty and acknowledged there is acknowledged here, by "NAME (PagerDuty)".
        Authenticated by its X-PagerDuty-Signature (HMAC-SHA256 with pagerduty.webhook_secret),
        not by the dashboard's sign-in."""
        secret = dash.cfg["pagerduty.webhook_secret"]
        if not secret:
            raise HTTPException(
                404,
                "the PagerDuty webhook is off: set pagerduty.webhook_secret "
                "(FLEETWATCH_PAGERDUTY_WEBHOOK_SECRET) to the subscription's signing secret",
            )
        body = await request.body()
        header = request.headers.get("x-pagerduty-signature", "")
        if not header:
            raise HTTPException(400, "no X-PagerDuty-Signature header")
        if not pagerduty.signature_valid(body, header, secret):
            raise HTTPException(403, "the X-PagerDuty-Signature does not match: check pagerduty.webhook_secret")
        try:
            got = pagerduty.acknowledgement(json.loads(body))
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if got is None:
            return JSONResponse(
                {"acknowledged": False, "reason": "not an incident.acknowledged event"}, status_code=202
            )
        key, who = got
        incident_id = pagerduty.incident_of(key, pagerduty.installation_id(dash.store, dash.cfg["web.public_url"]))
        if incident_id is None:
            return JSONResponse(
                {"acknowledged": False, "reason": "not an incident of this fleetwatch"}, status_code=202
            )
        done = await run_in_threadpool(_acknowledge, incident_id, who)
        return {"acknowledged": done, "incident_id": incident_id, "by": who}

    # -- writes --------------------------------------------------------------------------------

    def _acknowledge(incident_id: Id, who: str) -> bool:
        with dash.write_lock:
            done = dash.alerts.acknowledge(incident_id, who, dash.now())
        dash.changed()
        return done

    def _silence(matchers: str, seconds: int, who: str, comment: str) -> int:
        now = dash.now()
        with dash.write_lock:
            sid = dash.alerts.add_silence(matchers, now, now + seconds, who, clean(comment, 2000), now)
        dash.changed()
        return sid

    def _expire(silence_id: Id) -> bool:
        with dash.write_lock:
            done = dash.alerts.expire_silence(silence_id, dash.now())
        dash.changed()
        return done

    return app


def _methods_for(app: FastAPI, request: Request) -> list[str]:
    from starlette.routing import Match

    methods: set[str] = set()
    for route in app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE:  # PARTIAL: the path matched, the method did not
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a body that cannot be parsed"},
    413: {"description": "a body over 64 KiB"},
    401: {"description": "not signed in"},
    403: {"description": "cross-site, or missing CSRF token"},
    404: {"description": "no such incident or silence"},
    422: {"description": "invalid input"},
}
