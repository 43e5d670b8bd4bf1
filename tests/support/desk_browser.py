"""The desk page in Debian's chromium, driven by Playwright: every request and console error it makes, recorded."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Playwright, Request

# Debian's build, from apt: Playwright's own browser download cannot reach its
# host from here, and a second copy of a browser is not worth keeping.
CHROMIUM = Path(os.environ.get("TRADING_ORDERS_CHROMIUM", "/usr/bin/chromium"))


def chromium_path() -> Path | None:
    """Where the chromium binary is, or None when it is not installed."""
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def launch_chromium(playwright: Playwright, executable: Path) -> Browser:
    """A headless chromium; without a sandbox, which it refuses to set up when run as root."""
    return playwright.chromium.launch(executable_path=str(executable), args=["--no-sandbox"])


@dataclass
class DeskPage:
    """One tab showing /desk, with every URL it asked for and every error it logged."""

    page: Page
    base_url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Browser, base_url: str, path: str = "/desk", width: int = 1280) -> DeskPage:
        """Open ``base_url``/desk (or another page) in a fresh browser context (no cookies) and wait for its load."""
        context = browser.new_context(viewport={"width": width, "height": 900})
        desk = cls(context.new_page(), base_url)
        desk.page.on("request", desk._record_request)
        desk.page.on("console", desk._record_console)
        desk.page.on("pageerror", lambda error: desk.errors.append(f"pageerror: {error}"))
        desk.page.goto(f"{base_url}{path}", wait_until="load")
        return desk

    def _record_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _record_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def requests_elsewhere(self) -> list[str]:
        """The URLs the page asked for that are not on the service's origin."""
        # A blob: URL of the service's origin is data the page made itself (ReDoc's search worker).
        return [url for url in self.requests if not url.removeprefix("blob:").startswith(f"{self.base_url}/")]

    def row(self, sequence: int) -> Locator:
        """The blotter's row of the order with this sequence."""
        return self.page.locator(f'#blotter tbody tr[data-sequence="{sequence}"]')

    def rows(self) -> Locator:
        """Every row of the blotter."""
        return self.page.locator("#blotter tbody tr")

    def sequences(self) -> list[int]:
        """The sequences in the blotter, top to bottom."""
        return [int(s) for s in self.rows().evaluate_all("rows => rows.map(r => r.dataset.sequence)")]

    def decision(self, sequence: int, user: str) -> Locator:
        """The line of ``user``'s decision in the row of ``sequence``."""
        return self.row(sequence).locator(f'li[data-user="{user}"]')

    def positions(self, user: str, strategy: str) -> Locator:
        """The open-positions row of ``user`` in ``strategy``."""
        return self.page.locator(f'#positions tbody tr[data-user="{user}"][data-strategy="{strategy}"]')

    def close(self) -> None:
        """Close the tab and its context."""
        self.page.context.close()
