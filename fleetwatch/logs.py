"""Structured logs for `fleetwatch run`: one JSON object per line on stderr (or readable text),
each carrying the correlation ids in force where it was written: the poll it belongs to, the
incident it is about, and the OpenTelemetry trace and span, so a log line leads to its trace.

Correlation ids are context variables: `with correlated(poll_id=...)` tags everything logged
inside, on this thread and in the context copies handed to worker threads."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, TextIO

from opentelemetry import trace

# Read-only: correlated() sets a new mapping, never changes the one a caller may share.
_IDS: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "fleetwatch_log_ids", default=MappingProxyType({})
)
# Attributes a LogRecord always has; anything else was passed with extra= and is logged as a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
ROOT = "fleetwatch"


@contextlib.contextmanager
def correlated(**ids: Any) -> Iterator[None]:
    token = _IDS.set({**_IDS.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _IDS.reset(token)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = dict(_IDS.get())
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        out["trace_id"], out["span_id"] = f"{span.trace_id:032x}", f"{span.span_id:016x}"
    out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
    return out


class _Clocked(logging.Formatter):
    # Under --emulated-clock (the demo), lines carry the emulated time the agent is living in.
    clock: Any = None

    def when(self, record: logging.LogRecord) -> tuple[time.struct_time, int]:
        at = self.clock() if self.clock is not None else record.created
        return time.gmtime(at), int((at % 1) * 1000)


def follow_clock(now: Any) -> None:
    """Stamp the fleetwatch log lines with `now()` instead of the wall clock (an emulated clock)."""
    for handler in logging.getLogger(ROOT).handlers:
        if isinstance(handler.formatter, _Clocked):
            handler.formatter.clock = now


class JsonFormatter(_Clocked):
    def format(self, record: logging.LogRecord) -> str:
        at, ms = self.when(record)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", at) + f".{ms:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(_Clocked):
    """For a terminal: the message and the correlation ids, shortened; the JSON has the rest."""

    def format(self, record: logging.LogRecord) -> str:
        ids = {**_IDS.get(), **{k: getattr(record, k) for k in ("poll_id", "incident_id") if hasattr(record, k)}}
        tags = "".join(f" [{k.removesuffix('_id')} {str(v)[:8]}]" for k, v in ids.items())
        stamp = "%H:%M:%S" if self.clock is None else "%a %H:%M"  # emulated time: the minute is what moves
        text = time.strftime(stamp, self.when(record)[0]) + f" {record.levelname:7} {record.getMessage()}{tags}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """Send the fleetwatch loggers to `stream` (stderr). Returns the handler, to remove it again."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger = logging.getLogger(ROOT)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler


def teardown(handler: logging.Handler) -> None:
    logging.getLogger(ROOT).removeHandler(handler)
    handler.flush()
