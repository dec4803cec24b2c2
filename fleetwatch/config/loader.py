"""Load, validate and print configuration.

Precedence: defaults < the TOML file < FLEETWATCH_* environment variables. Every problem is
collected (not just the first) and reported with the file, the key, what was expected and, where
it can be guessed, the fix.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fleetwatch.config.settings import SETTINGS, Setting, all_keys, format_duration, parse_duration

REDACTED = "********"


@dataclass(frozen=True)
class Problem:
    source: str
    key: str
    message: str
    suggestion: str = ""

    def __str__(self) -> str:
        text = f"{self.source}: {self.key}: {self.message}" if self.key else f"{self.source}: {self.message}"
        return text + (f" ({self.suggestion})" if self.suggestion else "")


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [f"configuration is not valid ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class Config:
    """The effective configuration: a value and its source for every setting."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str], path: Path | None) -> None:
        self._values = values
        self.sources = sources
        self.path = path

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise KeyError(f"{key!r} is not a fleetwatch setting; add it to fleetwatch/config/settings.py")
        return self._values[key]

    def redacted(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in SETTINGS:
            value = self._values[s.key]
            out[s.key] = REDACTED if (s.secret and value) else value
        return out

    def render(self) -> str:
        """The effective configuration as TOML, secrets redacted, each line marked with its source."""
        lines: list[str] = []
        section = None
        redacted = self.redacted()
        for s in SETTINGS:
            head, _, leaf = s.key.rpartition(".")
            if head != section:
                if lines:
                    lines.append("")
                lines.append(f"[{head}]")
                section = head
            value = redacted[s.key]
            if s.kind == "duration":
                value = format_duration(value)
            lines.append(f"{leaf} = {_toml_value(value)}  # {self.sources[s.key]}")
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not any(s.key == key for s in SETTINGS):
            if not v:
                out[key] = v
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _suggest(key: str) -> str:
    keys = all_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not close:
        leaf = key.rpartition(".")[2]
        close = [k for k in keys if k.rpartition(".")[2] == leaf]
    if close:
        return f"did you mean '{close[0]}'?"
    sections = sorted({k.partition(".")[0] for k in keys})
    return "known sections are " + ", ".join(f"[{s}]" for s in sections)


def _coerce(s: Setting, raw: Any, from_env: bool) -> Any:
    """Return the typed value or raise ValueError with a message naming what was expected."""
    kind = s.kind
    if from_env and isinstance(raw, str):
        raw = _from_env_text(s, raw)
    if kind == "str" or kind == "choice":
        if not isinstance(raw, str):
            raise ValueError(f"got {_describe(raw)}")
        if kind == "choice" and raw not in s.choices:
            upper = raw.upper()
            if upper in s.choices:
                return upper
            raise ValueError(f"got {raw!r}")
        if s.pattern and not re.match(s.pattern, raw):
            raise ValueError(f"got {raw!r}")
        if s.check and raw:
            s.check(raw)
        return raw
    value: float  # an int for int and duration settings
    if kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"got {_describe(raw)}")
        value = raw
    elif kind == "float":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValueError(f"got {_describe(raw)}")
        value = float(raw)
        if math.isnan(value):
            raise ValueError("got nan")
    elif kind == "duration":
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            unitless = "has no unit" in str(exc)
            raise ValueError(f"got {_describe(raw)}" + (", which has no unit" if unitless else "")) from None
    elif kind == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"got {_describe(raw)}")
        return raw
    elif kind == "list[str]":
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise ValueError(f"got {_describe(raw)}")
        if s.pattern:
            bad = [v for v in raw if not re.match(s.pattern, v)]
            if bad:
                raise ValueError(f"{bad[0]!r} is not valid")
        if s.check:
            for item in raw:
                s.check(item)
        return list(raw)
    else:  # pragma: no cover - the settings table is checked by a test
        raise ValueError(f"unknown setting kind {kind}")
    if s.minimum is not None and value < s.minimum:
        raise ValueError(f"{_show(s, value)} is below the minimum {_show(s, s.minimum)}")
    if s.maximum is not None and value > s.maximum:
        raise ValueError(f"{_show(s, value)} is above the maximum {_show(s, s.maximum)}")
    return value


def _show(s: Setting, value: float) -> str:
    return format_duration(int(value)) if s.kind == "duration" else f"{value:g}"


def _from_env_text(s: Setting, text: str) -> Any:
    if s.kind in ("int", "float"):
        try:
            return (int if s.kind == "int" else float)(text.strip())
        except ValueError:
            return text
    if s.kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return text
    if s.kind == "list[str]":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _describe(raw: Any) -> str:
    if isinstance(raw, bool):
        return f"a boolean ({str(raw).lower()})"
    if isinstance(raw, (int, float)):
        return f"a number ({raw})"
    if isinstance(raw, str):
        return f"a string ({raw!r})"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, dict):
        return "a table"
    return type(raw).__name__


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(str(path), "", "file not found", "check the path, or run without --config to use the defaults")]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(str(path), "", "is not UTF-8 text", "save the file as UTF-8")]) from None
    except OSError as exc:
        raise ConfigError(
            [Problem(str(path), "", f"cannot be read: {exc.strerror}", "check its permissions")]
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_problem(path, text, exc)]) from None


def _toml_problem(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> Problem:
    """tomllib's message ends "(at line L, column C)", or "(at end of document)" for what runs
    to the end (an unclosed string or array): then the line and column are the file's end."""
    message = str(exc)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        line, column = int(found.group(1)), int(found.group(2))
        what, hint = message[: found.start()], "fix the syntax there"
    else:
        lines = text.rstrip().split("\n")  # the end is where the last line with anything on it ends
        line, column = len(lines), len(lines[-1]) + 1
        what = re.sub(r"\s*\(at end of document\)$", "", message)
        hint = (
            "something opened earlier (a string, an array, an inline "
            "table) is never closed, or the last line is cut short"
        )
    source = text.split("\n")[line - 1] if 0 < line <= text.count("\n") + 1 else ""
    shown = f": {source.strip()[:80]!r}" if source.strip() else ""
    return Problem(str(path), "", f"is not valid TOML: line {line}, column {column}{shown}: {what}", hint)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the effective configuration, or raise ConfigError listing every problem."""
    environ = environ if environ is not None else {}
    file_path = Path(path) if path is not None else None
    source_name = str(file_path) if file_path else "configuration"
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources: dict[str, str] = {s.key: "default" for s in SETTINGS}
    problems: list[Problem] = []

    if file_path is not None:
        flat = _flatten(_read_toml(file_path))
        by_key = {s.key: s for s in SETTINGS}
        for key, raw in flat.items():
            s = by_key.get(key)
            if s is None:
                problems.append(Problem(source_name, key, "unknown setting", _suggest(key)))
                continue
            try:
                values[key] = _coerce(s, raw, from_env=False)
                sources[key] = "file"
            except ValueError as exc:
                problems.append(Problem(source_name, key, f"{exc}; expected {s.expected()}", _example(s, raw)))

    known_env = {s.env: s for s in SETTINGS}
    for name, raw in environ.items():
        if not name.startswith("FLEETWATCH_"):
            continue
        s = known_env.get(name)
        if s is None:
            close = difflib.get_close_matches(name, list(known_env), n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]}?"
                if close
                else "environment overrides are FLEETWATCH_<SECTION>_<KEY>, e.g. FLEETWATCH_STORE_PATH"
            )
            problems.append(Problem("environment", name, "unknown setting", hint))
            continue
        try:
            values[s.key] = _coerce(s, raw, from_env=True)
            sources[s.key] = f"env {name}"
        except ValueError as exc:
            problems.append(Problem("environment", name, f"{exc}; expected {s.expected()}", _example(s, raw, env=True)))

    if problems:
        # A secret pasted into the wrong setting would be echoed by that setting's message.
        secrets = {str(values[s.key]) for s in SETTINGS if s.secret and values[s.key]}
        secrets |= {raw for name, raw in environ.items() if name in known_env and known_env[name].secret and raw}
        raise ConfigError([_scrub(p, secrets) for p in problems])
    return Config(values, sources, file_path)


def config_warnings(cfg: Config) -> list[str]:
    """Secrets written in the file: accepted, with the environment variable to move each to (a
    file is copied, committed and backed up; the environment is set by whatever runs the agent)."""
    out = []
    for s in SETTINGS:
        value = cfg[s.key]
        if not (s.secret and value and cfg.sources[s.key] == "file"):
            continue
        if s.kind == "list[str]" and not any(_carries_secret(v) for v in value):
            continue  # webhook URLs with nothing secret in them (no token, no key, no password)
        form = f"{s.env}='NAME=URL,NAME=URL'" if s.kind == "list[str]" else f"{s.env}=..."
        out.append(
            f"{s.key} is written in {cfg.path}: secrets belong in the environment; remove it from the file "
            f"and set {form} where the agent runs"
        )
    return out


def _carries_secret(entry: str) -> bool:
    """Whether a NAME=URL entry carries a credential: a password, a query (token=..., key=...) or a
    long random path segment such as Slack's hooks.slack.com/services/T…/B…/SECRET."""
    url = urlsplit(entry.partition("=")[2].strip())
    segments = [seg for seg in url.path.split("/") if seg]
    return bool(
        url.password
        or url.query
        or any(len(seg) >= 16 and re.search(r"\d", seg) and re.search(r"[A-Za-z]", seg) for seg in segments)
    )


def _scrub(problem: Problem, secrets: set[str]) -> Problem:
    message = problem.message
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            message = message.replace(secret, REDACTED).replace(repr(secret)[1:-1], REDACTED)
    return Problem(problem.source, problem.key, message, problem.suggestion)


def _example(s: Setting, raw: Any = None, env: bool = False) -> str:
    leaf = s.key.rpartition(".")[2]
    if s.kind == "duration":
        number = str(raw).strip() if isinstance(raw, (int, str)) and not isinstance(raw, bool) else ""
        if number.isdigit() and int(number):  # a number with no unit: say which units it could have meant
            if env:
                return f"give it a unit: {s.env}={number}s, {number}m, {number}h or {number}d"
            return f'give it a unit: {leaf} = "{number}s", "{number}m", "{number}h" or "{number}d"'
        return f'for example {leaf} = "{format_duration(s.default)}"'
    if s.secret:
        return ""
    sample = s.default if s.default != [] else (list(s.examples[:1]) or ["..."])
    return f"for example {leaf} = {_toml_value(sample)}"


def reference_markdown() -> str:
    """The configuration reference, generated from the settings table (docs/configuration.md)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `fleetwatch/config/settings.py` by `fleetwatch config docs`; do not edit by hand.",
        "",
        "Settings live in one TOML file (`fleetwatch config check --config FILE` validates it and prints",
        "the effective values with secrets redacted). Each can be overridden by an environment variable.",
        "",
        '- Durations take a unit: `"90s"`, `"5m"`, `"2h"`, `"14d"` (`backfill = 3` is refused: 3 what?); only',
        "  `0` may go without one. The same in the environment: `FLEETWATCH_POLL_BACKFILL=3h`.",
        "- Secrets (tokens, passwords, the routing key, webhook URLs that carry a key) belong in the",
        "  environment, e.g. `FLEETWATCH_SLACK_BOT_TOKEN=xoxb-...`; written in the file they are accepted",
        "  with a warning. A list in the environment is comma-separated: `FLEETWATCH_WEBHOOK_URLS='a=https://...,b=https://...'`.",
        "",
        "| key | environment | default | expected | description |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = format_duration(s.default) if s.kind == "duration" else s.default
        shown = "(empty)" if default in ("", []) else f"`{_toml_value(default)}`"
        desc = s.help + (" **Secret.**" if s.secret else "")
        lines.append(f"| `{s.key}` | `{s.env}` | {shown} | {s.expected()} | {desc} |")
    return "\n".join(lines) + "\n"
