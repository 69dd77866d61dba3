"""Debian's Chromium driven by Playwright, for the dashboard's browser tests and
scripts/screenshots.py. Playwright cannot download its own browsers here, so it drives
/usr/bin/chromium (scripts/test.sh installs it when missing and it runs as root)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

CHROMIUM = Path(os.environ.get("KUBEMONITOR_CHROMIUM", "/usr/bin/chromium"))
# No sandbox: CI runs as root, where Chromium refuses its sandbox. No GPU and no background
# traffic: the machine has neither, and tests must not reach beyond 127.0.0.1.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[2]


def missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; "
            "scripts/test.sh does it when run as root)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    return None


def output_dir(name: str) -> Path:
    """Where screenshots go: $KUBEMONITOR_TEST_OUTPUT/<name> or test-output/<name> in the repo."""
    root = Path(os.environ.get("KUBEMONITOR_TEST_OUTPUT", REPO / "test-output"))
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class WatchedPage:
    """A page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, width: int = 1400, height: int = 900) -> None:
        # UTC, so a test can type datetime-local values it computed in UTC.
        self.page = browser.new_page(viewport={"width": width, "height": height}, timezone_id="UTC")
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def open(self, url: str) -> Any:
        """Load `url` and wait for the page's first refresh (charts drawn, tables filled)."""
        self.page.goto(url)
        self.wait_refreshed(1)
        return self.page

    def refreshes(self) -> int:
        return int(self.page.get_attribute("body", "data-refreshed") or 0)

    def wait_refreshed(self, count: int) -> None:
        # An attribute selector, not wait_for_function: the CSP forbids the eval that needs.
        self.page.wait_for_selector(
            ", ".join(f'body[data-refreshed="{n}"]' for n in range(count, count + 20)),
            state="attached", timeout=20000,
        )

    def charts(self) -> dict[str, dict[str, str]]:
        return {
            f"{i}:{c['chart']}": c
            for i, c in enumerate(self.page.eval_on_selector_all(
                "figure[data-chart]", "els => els.map(e => ({...e.dataset}))"
            ))
        }
