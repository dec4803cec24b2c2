"""Takes the README's pictures from a running dashboard, and prints a sample Slack page (one
incident's thread, as Markdown) from what the Slack stand-in received.

    make demo                  # leaves the dashboard on http://127.0.0.1:8000 and demo/slack-messages.json
    .venv/bin/python docs/screenshots.py [--url http://127.0.0.1:8000] [--out docs/img]

Chromium is Debian's (`make test` installs it), driven by Playwright with `executable_path`, as the
browser tests do; FLEETWATCH_CHROMIUM points elsewhere. The pictures are of the viewport only
(1,280 × 900 CSS pixels), so they stay a few hundred kilobytes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import ViewportSize, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("FLEETWATCH_CHROMIUM", "/usr/bin/chromium")
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


def shoot(url: str, out: Path, wait_for: str = "", wait_seconds: float = 900.0) -> list[Path]:
    """The overview and the first incident it lists (open incidents come most severe first), else
    the newest incident's page. With `wait_for`, first reloads the overview every 2 s until its
    text matches that regular expression (during `make demo`, to show an incident as it
    happens), for at most `wait_seconds`."""
    out.mkdir(parents=True, exist_ok=True)
    taken = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_context(base_url=url, viewport=VIEWPORT).new_page()
        page.set_default_timeout(20_000)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                page.goto("/")
            except PlaywrightError:  # the dashboard is not up yet (make demo is starting)
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
                continue
            page.wait_for_load_state("networkidle")
            if not wait_for or re.search(wait_for, page.inner_text("body")) or time.monotonic() > deadline:
                break
            page.wait_for_timeout(2_000)
        taken.append(out / "overview.png")
        page.screenshot(path=str(taken[-1]))
        link = page.locator("a[href^='/incidents/']").first
        if not link.count():
            page.goto("/incidents?state=")
            page.wait_for_load_state("networkidle")
            link = page.locator("a[href^='/incidents/']").first
        if link.count():
            link.click()
            page.wait_for_load_state("networkidle")
            taken.append(out / "incident.png")
            page.screenshot(path=str(taken[-1]))
        browser.close()
    return taken


def _text(block: dict[str, Any]) -> str:
    """The visible text of one Block Kit block (section, context, header, or actions as [Button])."""
    if isinstance(block.get("text"), dict):
        return str(block["text"].get("text", ""))
    if block.get("type") == "actions":
        return " ".join(
            f"[{e['text'].get('text', '')}]" for e in block.get("elements", []) if isinstance(e.get("text"), dict)
        )
    parts = [str(e.get("text", "")) for e in block.get("elements", []) if isinstance(e, dict)]
    parts += [str(f.get("text", "")) for f in block.get("fields", []) if isinstance(f, dict)]
    return " · ".join(p for p in parts if p)


def slack_sample(messages: list[dict[str, Any]], keyword: str = "") -> str:
    """One incident's thread as Markdown: the page that opened it and the replies in its thread,
    each as its blocks' text. Picks the first thread that ends RESOLVED (and names `keyword`)."""
    tops = [m for m in messages if not m.get("thread_ts")]
    for top in tops:
        ts = top.get("ts")
        replies = [m for m in messages if m.get("thread_ts") == ts]
        body = json.dumps(top)
        if not any("RESOLVED" in json.dumps(r) for r in replies) or keyword not in body:
            continue
        lines = []
        for msg in [top, *replies]:
            blocks = msg.get("blocks") or [{"text": {"text": msg.get("text", "")}}]
            text = "\n".join(t for t in (_text(b) for b in blocks) if t)
            text = re.sub(r"<([^|>]+)\|([^>]+)>", r"\2", text)  # Slack links: <url|label> -> label
            lines.append("\n".join("> " + line if line else ">" for line in text.splitlines()))
        return "\n>\n> ---\n>\n".join(lines) + "\n"
    raise SystemExit(f"no thread that ends RESOLVED{' and names ' + keyword if keyword else ''}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="the dashboard to photograph")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder for the PNG files")
    ap.add_argument(
        "--slack", type=Path, default=ROOT / "demo" / "slack-messages.json", help="what the Slack stand-in received"
    )
    ap.add_argument("--keyword", default="", help="pick the first resolved thread whose page names this")
    ap.add_argument(
        "--wait-for", default="", metavar="REGEX", help="wait (up to 15 min) until the overview's text matches this"
    )
    ap.add_argument("--slack-only", action="store_true", help="write the sample Slack page only")
    args = ap.parse_args(argv)
    for path in [] if args.slack_only else shoot(args.url, args.out, args.wait_for):
        print(
            f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({path.stat().st_size // 1024} KiB)"
        )
    if args.slack.exists():  # for the README, as Markdown
        print(slack_sample(json.loads(args.slack.read_text()), args.keyword))
    else:
        print(f"{args.slack} is missing: run `make demo` first for the sample Slack page", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
