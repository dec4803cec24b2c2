"""Configuration fuzzing: random and truncated TOML, random bytes, wrong types, unknown keys and
absurd values, through `fleetwatch config check` (and `fleetwatch run` for a sample) each give a
clear message naming the key or the line, and never a traceback. 2,000 cases in `make test`,
20,000 in `make chaos`, from a fixed seed."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.cli import main
from fleetwatch.config.settings import SETTINGS, format_duration
from tests import chaos_kit

ROOT = Path(__file__).resolve().parent.parent
BY_KEY = {s.key: s for s in SETTINGS}


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    return str(v)  # a TOML date-time written as itself


def document(values: dict[str, Any]) -> str:
    sections: dict[str, list[str]] = {}
    for key, v in values.items():
        section, _, name = key.rpartition(".")
        sections.setdefault(section, []).append(f"{json.dumps(name)} = {toml_value(v)}")
    header = lambda section: ".".join(json.dumps(part, ensure_ascii=False) for part in section.split("."))  # noqa: E731
    return "\n".join(f"[{header(s)}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items() if s) + "\n".join(
        sections.get("", [])
    )


def valid(tmp: Path) -> dict[str, Any]:
    """Every setting at its default, except what must point somewhere real."""
    values = {
        s.key: format_duration(s.default) if s.kind == "duration" else s.default
        for s in SETTINGS
        if not s.secret and s.default not in ("", None)
    }
    values["store.path"] = str(tmp / "fw.db")
    return values


WRONG = [
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    True,
    "",
    "x" * 5000,
    "\u202e\u0000evil",
    "0",
    "5 fortnights",
    [],
    ["a", 1],
    [[1]],
    {"a": 1},
    "1979-05-27T07:32:00Z",
    "1000000000d",
    "0s",
    "-5m",
]
ABSURD = [
    ("objectives.api_error_rate", math.nan),
    ("poll.fast_interval", 0),
    ("poll.fast_interval", "0s"),
    ("store.raw_retention", "365000000000d"),
    ("store.history_retention", 10**18),
    ("store.incident_retention", "1000000y"),
    ("web.port", 70000),
    ("web.port", -1),
    ("aws.max_attempts", 0),
    ("aws.read_timeout", 10**9),
    ("alerts.for", -60),
]


def check(path: Path) -> tuple[int | str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str = main(["config", "check", str(path)], environ={})
        except SystemExit as exc:
            code = f"SystemExit({exc.code})"
        except Exception as exc:  # noqa: BLE001 - exactly what the fuzzing looks for
            code = f"crash {type(exc).__name__}: {exc}"
    return code, err.getvalue()


def cases(rng: random.Random, n: int, tmp: Path) -> list[tuple[str, str, str]]:
    """(kind, document, what the message must name: a key, 'TOML' or '' for a valid document)."""
    base = document(valid(tmp))
    keys = [k for k, s in BY_KEY.items() if not s.secret]
    out: list[tuple[str, str, str]] = []
    for i in range(n):
        kind = ("truncated", "bytes", "wrong type", "unknown key", "absurd")[i % 5]
        if kind == "truncated":
            out.append((kind, base[: rng.randrange(len(base))], "?"))
        elif kind == "bytes":
            text = list(base)
            for _ in range(rng.randint(1, 8)):
                text.insert(
                    rng.randrange(len(text)),
                    rng.choice(["\x00", "\x1b", "=", "[", "]", '"', "\n", "\ufffd", "{", "'''"]),
                )
            out.append((kind, "".join(text), "?"))
        elif kind == "wrong type":
            key, value = rng.choice(keys), rng.choice(WRONG)
            s = BY_KEY[key]
            values = {**valid(tmp), key: value}
            ok = _acceptable(s, value)
            out.append((kind, document(values), "" if ok else key))
        elif kind == "unknown key":
            key = rng.choice(
                [
                    "aws.regoins",
                    "poll.fast",
                    "nonsense.key",
                    "web.port.extra",
                    "slack",
                    "a.b.c.d.e",
                    "store.path2",
                    "\u00e9t\u00e9.x",
                    "alerts.routes.x",
                ]
            )
            # A key under an existing value ([web.port] extra) is a TOML error: the message names the line.
            clash = key.rpartition(".")[0] in BY_KEY
            out.append((kind, document({**valid(tmp), key: rng.choice(WRONG)}), "line" if clash else key))
        else:
            key, value = rng.choice(ABSURD)
            out.append((kind, document({**valid(tmp), key: value}), key))
    return out


def _acceptable(s: Any, value: Any) -> bool:
    """Whether a value of the wrong-type list happens to be a valid value for the setting."""
    from fleetwatch.config.loader import _coerce

    try:
        _coerce(s, value, from_env=False)
        return True
    except ValueError:
        return False


@pytest.mark.slow
def test_fuzzed_configurations_give_a_clear_message_and_never_a_traceback(tmp_path: Path) -> None:
    rng = random.Random(8)
    tried = chaos_kit.size(2000, 20000)
    failures: list[str] = []
    kinds: dict[str, int] = {}
    for n, (kind, text, names) in enumerate(cases(rng, tried, tmp_path)):
        path = tmp_path / "fuzz.toml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        code, err = check(path)
        kinds[kind] = kinds.get(kind, 0) + 1
        if isinstance(code, str) or "Traceback" in err:
            failures.append(f"{kind} #{n}: {code} {err[-300:]}")
        elif code == 0:
            if names not in ("", "?"):
                failures.append(f"{kind} #{n}: accepted, but {names} was not valid:\n{text[:400]}")
        elif code != 2 or "configuration is not valid" not in err and "is not valid TOML" not in err:
            failures.append(f"{kind} #{n}: exit {code}, unclear message: {err[-300:]}")
        elif names not in ("", "?") and names not in err:
            failures.append(f"{kind} #{n}: the message does not name {names}: {err[-300:]}")
        elif names == "":
            failures.append(f"{kind} #{n}: a valid document refused: {err[-300:]}")
    assert not failures, f"{len(failures)} of {tried}:\n" + "\n".join(failures[:10])
    chaos_kit.record("configuration fuzzing", bad_inputs_tried=tried, handled=tried - len(failures), by_kind=kinds)


def test_fleetwatch_run_with_a_broken_configuration_says_what_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[poll]\nfast_interval = 0\n[store]\nraw_retention = "365000000000d"\n[web\nport = 1\n')
    proc = subprocess.run(
        [sys.executable, "-m", "fleetwatch.cli", "run", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is not valid TOML" in proc.stderr and "line 5" in proc.stderr
    bad.write_text('[poll]\nfast_interval = 0\n[store]\nraw_retention = "365000000000d"\npath = 7\n')
    proc = subprocess.run(
        [sys.executable, "-m", "fleetwatch.cli", "run", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for key in ("poll.fast_interval", "store.raw_retention", "store.path"):
        assert key in proc.stderr, proc.stderr
