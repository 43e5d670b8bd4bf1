"""The desk's controls panel in a real browser: review, halt a user, every open desk sees it, the blotter shows it."""

from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import ServiceFactory
from tests.e2e.test_desk_page import HOLLAND, OAKLEE, PROFILE, place
from tests.support.desk_browser import DeskPage

pytestmark = pytest.mark.slow

KEY = "desk-controls-key"
# A change made anywhere shows on every open desk within a second (issue 25).
SHOWN_WITHIN_MS = 1000


@pytest.fixture
def pages() -> Iterator[list[DeskPage]]:
    opened: list[DeskPage] = []
    yield opened
    for page in opened:
        page.close()


def logged_in(browser: Browser, base_url: str, pages: list[DeskPage]) -> DeskPage:
    desk = DeskPage.open(browser, base_url)
    pages.append(desk)
    desk.page.fill("#api-key", KEY)
    desk.page.click("#login-form button[type=submit]")
    expect(desk.page.locator("#stream")).to_have_text("live")
    return desk


def test_halt_a_user_from_the_page_and_the_next_order_shows_trading_halted(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage]
) -> None:
    with service_factory(PROFILE, api_key=KEY) as service:
        desk = logged_in(browser, service.base_url, pages)
        other = logged_in(browser, service.base_url, pages)
        expect(desk.page.locator("#control-states-empty")).to_be_visible()

        desk.page.select_option("#control-user", HOLLAND)
        desk.page.select_option("#control-action", "HALTED")
        desk.page.fill("#control-reason", "margin call")
        desk.page.click("#control-form button[type=submit]")
        review = desk.page.locator("#control-review-text")
        expect(review).to_contain_text(f"Halt user {HOLLAND}")
        expect(review).to_contain_text("A halt closes no position")
        # Nothing is sent before Confirm.
        assert (
            requests.get(f"{service.base_url}/controls", headers={"X-API-Key": KEY}, timeout=5).json()["states"] == []
        )
        desk.page.click("#control-confirm")
        expect(desk.page.locator("#control-result")).to_contain_text("Recorded as #")

        for page in (desk, other):
            halted = page.page.locator("#control-states tbody tr")
            expect(halted).to_have_count(1, timeout=SHOWN_WITHIN_MS)
            expect(halted).to_contain_text(f"user {HOLLAND}")
            expect(halted).to_contain_text("HALTED")
            expect(halted).to_contain_text("margin call")

        order = place(service.base_url, "STRATEGY_A", "GRASIM", "BUY", api_key=KEY)
        expect(desk.decision(order["sequence"], HOLLAND)).to_have_text(f"{HOLLAND}: ✗ REJECTED TRADING_HALTED")
        expect(desk.decision(order["sequence"], OAKLEE)).to_have_text(f"{OAKLEE}: ✓ ACCEPTED")
        (recorded,) = requests.get(f"{service.base_url}/controls", headers={"X-API-Key": KEY}, timeout=5).json()[
            "states"
        ]
        assert (recorded["user"], recorded["state"], recorded["reason"]) == (HOLLAND, "HALTED", "margin call")
        assert desk.errors == [] and other.errors == []
        assert desk.requests_elsewhere() == []


def test_the_review_says_what_a_flatten_and_a_resume_do_not_do(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage]
) -> None:
    with service_factory(PROFILE, api_key=KEY) as service:
        place(service.base_url, "STRATEGY_A", "GRASIM", "BUY", api_key=KEY)
        desk = logged_in(browser, service.base_url, pages)
        desk.page.select_option("#control-strategy", "STRATEGY_A")
        desk.page.select_option("#control-action", "flatten")
        desk.page.fill("#control-reason", "feed gone wrong")
        desk.page.click("#control-form button[type=submit]")
        expect(desk.page.locator("#control-review-text")).to_contain_text("a flatten does not halt")
        desk.page.click("#control-cancel")
        expect(desk.page.locator("#control-review")).to_be_hidden()
        desk.page.select_option("#control-action", "ACTIVE")
        desk.page.click("#control-form button[type=submit]")
        expect(desk.page.locator("#control-review-text")).to_contain_text("Resuming reopens nothing")
        desk.page.select_option("#control-action", "flatten-HALTED")
        desk.page.click("#control-form button[type=submit]")
        expect(desk.page.locator("#control-review-text")).to_contain_text("becomes HALTED")
        desk.page.click("#control-confirm")
        expect(desk.page.locator("#control-result")).to_contain_text("2 position(s) closed")
        positions = requests.get(f"{service.base_url}/positions", headers={"X-API-Key": KEY}, timeout=5).json()
        assert positions["positions"] == []
