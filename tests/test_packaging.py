"""`pip install .` builds a wheel that holds what fleetwatch reads at run time besides its code
(the dashboard's templates and static assets, uPlot included; the alert templates; the emulated
fleets and scenarios), and builds it without setuptools' "Package would be ignored" warnings:
the data folders were package data of packages that did not declare them, about 215 lines of
warnings on every install."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["fleetwatch", "collector", "detectors", "web", "alerts", "simulator"]


@pytest.mark.slow
def test_the_wheel_holds_the_data_folders_and_builds_without_warnings(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy, so the build's own files (build/, *.egg-info) stay out of the tree
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    # -v: pip shows the build backend's output (setuptools' warnings) only when asked.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--disable-pip-version-check",
            str(src),
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "Package would be ignored" not in output and "SetuptoolsDeprecationWarning" not in output, output[-3000:]
    (wheel,) = (tmp_path / "dist").glob("fleetwatch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    def shipped(folder: str, pattern: str = "*") -> None:
        files = [
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / folder).glob(pattern)
            if p.is_file() and not p.name.startswith(".")
        ]  # (.uplot.pinned: web.assets' own record)
        assert files, f"{folder} has no {pattern} in the source tree"
        assert set(files) <= names, f"missing from the wheel: {sorted(set(files) - names)}"

    for folder, pattern in [
        ("alerts/templates", "*"),
        ("web/templates", "*"),
        ("web/static", "*"),
        ("simulator/fleets", "*.toml"),
        ("simulator/scenarios", "*.toml"),
    ]:
        shipped(folder, pattern)
    if (ROOT / "web/static/vendor").is_dir():  # fetched by `make setup` (python -m web.assets uplot)
        shipped("web/static/vendor")
    assert (
        "fleetwatch/cli/__init__.py" in names
        and "fleetwatch/config/settings.py" in names
        and "fleetwatch/store/db.py" in names
    )
    assert not any("__pycache__" in n or n.startswith(("tests/", "bench/")) for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "fleetwatch = fleetwatch.cli:main" in entry_points
