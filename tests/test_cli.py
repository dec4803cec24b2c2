"""The emulator commands' error paths and listing, and `store info`."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwatch import cli
from fleetwatch.store import SCHEMA_VERSION


def test_list_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["emulate", "--list-scenarios"], environ={}) == 0
    out = capsys.readouterr().out
    assert "connection-storm" in out and "tour" in out and "healthy" in out


def test_unknown_scenario_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["emulate", "--scenario", "nope", "--port", "0"], environ={}) == 2
    err = capsys.readouterr().err
    assert "no scenario 'nope'" in err and "connection-storm" in err and "Traceback" not in err


def test_bad_anchor(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["emulate", "--anchor", "yesterday"], environ={}) == 2
    assert "not an ISO-8601 time" in capsys.readouterr().err


def test_store_info_creates_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "fw.db"
    assert cli.main(["store", "info"], environ={"FLEETWATCH_STORE_PATH": str(db)}) == 0
    out = capsys.readouterr().out
    assert f"schema {SCHEMA_VERSION}" in out and "samples: 0 rows" in out and db.exists()
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    assert cli.main(["store", "info"], environ={"FLEETWATCH_STORE_PATH": str(bogus)}) == 2
    assert "not a SQLite database" in capsys.readouterr().err
