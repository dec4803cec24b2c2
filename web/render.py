"""What the page templates are given besides the data: the Jinja environment (web/app.py builds
it) and the cells written in Python rather than as template code, because they are on every row
(severity, state, times, an entry point's signals): a macro or a loop in the template costs several
times more on the overview's hundred rows."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from typing import Any

from jinja2 import Environment
from jinja2.runtime import Context
from markupsafe import Markup, escape

from alerts.messages import clean
from web.charts import fmt


def when(ts: Any) -> str:
    # time.strftime on a struct from gmtime: a twentieth of the cost of datetime's strftime, and
    # the overview shows two times on each of up to 50 incidents.
    if not ts:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(ts)))


def at(ts: Any) -> Markup:
    """A time for people: UTC on the server, rewritten in the viewer's time zone by charts.js."""
    if not ts:
        return Markup("–")
    t = time.gmtime(int(ts))
    # Only digits and the format's own characters: nothing to escape.
    return Markup(
        f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", t)}" data-ts="{int(ts)}">'
        f"{time.strftime('%Y-%m-%d %H:%M UTC', t)}</time>"
    )


def sev(s: Any) -> Markup:
    """A severity as the pages mark it up (web/static/app.css colours it by class)."""
    return Markup(f'<span class="sev sev-{escape(s)}">{escape(s)}</span>')


def signals(signals: list[dict[str, Any]]) -> Markup:
    """An entry point's last 30 minutes (web/data.entries): each signal's label and value, each
    kept on one line. Python, not the template's loop: fifty rows of it on the overview."""
    return Markup(
        " · ".join(
            f'<span class="nowrap">{escape(s["label"])} <b>{escape(fmt(s["value"], s["unit"]))}</b></span>'
            for s in signals
        )
    )


def state(s: Any) -> Markup:
    return Markup(f'<span class="state state-{escape(s)}">{escape(s)}</span>')


_BREAKABLE = re.compile(r"\S*[-/:(\u2013\u2014]\S*")


def nobreak(text: Any) -> Markup:
    """Text whose words never split across lines: each word a browser could break inside (at a
    hyphen, a slash, a colon: "orders-db", "us-east-1") is kept whole; lines still wrap between words."""
    if type(text) is str:  # not Markup (already escaped), which must not share the plain text's entry
        return _nobreak_text(text)
    return _whole_words(str(escape(text)))


@functools.lru_cache(maxsize=4096)
def _nobreak_text(text: str) -> Markup:
    """nobreak of plain text, kept: the pages show the same Regions, names and titles on many
    rows and again on every refresh."""
    return _whole_words(str(escape(text)))


def _whole_words(escaped: str) -> Markup:
    return Markup(_BREAKABLE.sub(lambda m: f'<span class="nowrap">{m.group(0)}</span>', escaped))


def ago(ts: Any, now: float) -> str:
    if not ts:
        return "never"
    s = int(now - int(ts))
    if s < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def num(v: Any) -> str:
    if v is None:
        return "–"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return clean(v, 40)
    return f"{f:,.0f}" if abs(f) >= 100 else f"{f:.3g}"


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Call(Context):
    """Jinja's context, calling the pages' own functions (Pages.plain) straight away: Jinja asks
    each callable, on every call, whether it wants the context, the evaluation context or the
    environment passed in (three attribute lookups and a pop of its loop variables), some 600
    times on one overview. Anything else (macros, Jinja's own) is called as Jinja calls it."""

    def call(__self, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's own signature
        if id(__obj) in __self.environment.plain:  # type: ignore[attr-defined]
            kwargs.pop("_loop_vars", None)
            kwargs.pop("_block_vars", None)
            return __obj(*args, **kwargs)
        return super().call(__obj, *args, **kwargs)


class Pages(Environment):
    """Jinja's environment, reading a dict's keys first: the pages' rows are dicts, and Jinja
    asks for `row.field` as an attribute before a key, so each field read raised and caught an
    AttributeError (some 1,500 on one overview). A name dict itself has (items, get, …) is still
    its attribute, as in Jinja."""

    context_class = _Call

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # id -> function: the functions here hold no Jinja marker (pass_context and the like); the
        # dict keeps each alive, so no other object takes its id.
        self.plain: dict[int, Callable[..., Any]] = {}

    def add_functions(self, **functions: Callable[..., Any]) -> None:
        """Globals the pages call that need no context (plain Python functions)."""
        self.globals.update(functions)
        self.plain.update((id(f), f) for f in functions.values())

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)
