"""The README and docs/: every relative link points at a file that exists (the README was cut to
what a user needs and the rest moved to docs/, so a moved section must not leave a dead link), and
the documentation site (mkdocs.yml) builds with MkDocs in strict mode."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"(https?:|mailto:|#)", target):
            continue
        if not (page.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert broken == [], f"{page.name} links to files that do not exist: {broken}"


def test_the_readme_stays_a_readme() -> None:
    # About 12 KB of what someone running fleetwatch needs; reference material lives in docs/.
    assert len((ROOT / "README.md").read_bytes()) <= 12_288


# The documentation site: `make test` builds it (`make docs-site`) before pytest; these keep the
# check honest: the real docs build in strict mode, and the same configuration refuses a link to
# a page or an anchor that does not exist.


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(root / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return tmp_path


def test_the_docs_site_builds_in_strict_mode(docs_copy: Path) -> None:
    done = _build(docs_copy, docs_copy / "site")
    assert done.returncode == 0, done.stderr
    assert (docs_copy / "site" / "troubleshooting" / "index.html").is_file()


def test_every_docs_page_is_in_the_navigation(docs_copy: Path) -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if p.name not in nav]
    assert not missing, f"docs pages not in mkdocs.yml's nav: {missing}"


@pytest.mark.parametrize("link", ["[gone](no-such-page.md)", "[gone](running.md#no-such-heading)"])
def test_a_broken_link_fails_the_build(docs_copy: Path, link: str) -> None:
    page = docs_copy / "docs" / "troubleshooting.md"
    page.write_text(page.read_text() + f"\nSee {link}.\n")
    done = _build(docs_copy, docs_copy / "site")
    assert done.returncode != 0
    assert "troubleshooting.md" in done.stderr and ("no-such" in done.stderr)
