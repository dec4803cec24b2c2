"""The README and docs/: every relative link points at a file that exists (the README was cut to
what a user needs and the rest moved to docs/, so a moved section must not leave a dead link)."""

from __future__ import annotations

import re
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
    assert len((ROOT / "README.md").read_bytes()) <= 14_000
