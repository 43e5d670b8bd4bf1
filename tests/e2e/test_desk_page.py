"""The /desk page in a real browser (Debian's chromium under Playwright) against the real service over HTTP."""

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import ServiceFactory
from tests.support.desk_browser import DeskPage

pytestmark = pytest.mark.slow

HOLLAND = "Holland Proctor"
OAKLEE = "Oaklee Wagner"
PROFILE = {
    HOLLAND: {"STRATEGY_A": ["BIRLASOFT", "GRASIM", "EICHER"], "STRATEGY_B": ["MINDA"]},
    OAKLEE: {"STRATEGY_A": ["GRASIM"], "STRATEGY_D": ["ACC"]},
}
# The brief's promise for a desk: an order shows within 2 s of its answer.
SHOWN_WITHIN_MS = 2000


def place(base_url: str, strategy: str, instrument: str, side: str, api_key: str | None = None) -> dict[str, Any]:
    headers = {"X-API-Key": api_key} if api_key else {}
    body = {"STRATEGY": strategy, "INSTRUMENT": instrument, "POSITION": side}
    answer = requests.post(f"{base_url}/create_order", json=body, headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    order: dict[str, Any] = requests.get(
        f"{base_url}/orders/{answer.json()['order_id']}", headers=headers, timeout=5
    ).json()
    return order


@pytest.fixture
def pages(browser: Browser) -> Iterator[list[DeskPage]]:
    opened: list[DeskPage] = []
    yield opened
    for page in opened:
        page.close()


def test_the_desk_loads_from_the_service_alone_and_shows_a_new_order_within_two_seconds(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage]
) -> None:
    with service_factory(PROFILE) as service:
        earlier = place(service.base_url, "STRATEGY_A", "GRASIM", "SELL")
        desk = DeskPage.open(browser, service.base_url)
        pages.append(desk)
        expect(desk.row(earlier["sequence"])).to_be_visible()
        expect(desk.page.locator("#health")).to_have_text("ok")
        expect(desk.page.locator("#stream")).to_have_text("live")

        order = place(service.base_url, "STRATEGY_A", "GRASIM", "BUY")
        row = desk.row(order["sequence"])
        expect(row).to_be_visible(timeout=SHOWN_WITHIN_MS)
        expect(row).to_contain_text("STRATEGY_A")
        expect(row).to_contain_text("GRASIM")
        expect(row).to_contain_text("BUY")
        expect(row).to_contain_text("ACCEPTED")
        for user in (HOLLAND, OAKLEE):
            # Text beside the colour: the status is written out.
            expect(desk.decision(order["sequence"], user)).to_have_text(f"{user}: ✓ ACCEPTED")
        rejected = place(service.base_url, "STRATEGY_A", "EICHER", "SELL")
        expect(desk.decision(rejected["sequence"], HOLLAND)).to_have_text(f"{HOLLAND}: ✗ REJECTED NO_OPEN_POSITION")
        expect(desk.decision(rejected["sequence"], OAKLEE)).to_contain_text("INSTRUMENT_NOT_IN_STRATEGY")
        expect(desk.page.locator("#last-sequence")).to_have_text(str(rejected["sequence"]))
        assert desk.sequences() == [rejected["sequence"], order["sequence"], earlier["sequence"]]
        # Orders, not decisions: the first SELL (Holland's and Oaklee's) and the second (Holland's);
        # Oaklee does not trade EICHER.
        expect(desk.page.locator('#reasons tr[data-reason="NO_OPEN_POSITION"] td.number')).to_have_text("2")
        expect(desk.page.locator('#reasons tr[data-reason="INSTRUMENT_NOT_IN_STRATEGY"] td.number')).to_have_text("1")
        expect(desk.page.locator("#rate-summary")).to_contain_text("3 orders")
        expect(desk.page.locator("#announcer")).to_contain_text(f"{rejected['sequence']}")

        assert desk.errors == []
        assert desk.requests_elsewhere() == []
        assert any(url.startswith(f"{service.base_url}/events?") for url in desk.requests)


def test_open_positions_follow_a_buy_and_a_sell(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage]
) -> None:
    with service_factory(PROFILE) as service:
        desk = DeskPage.open(browser, service.base_url)
        pages.append(desk)
        expect(desk.page.locator("#positions-empty")).to_be_visible()
        place(service.base_url, "STRATEGY_A", "GRASIM", "BUY")
        place(service.base_url, "STRATEGY_A", "EICHER", "BUY")
        holland = desk.positions(HOLLAND, "STRATEGY_A")
        expect(holland).to_have_text(f"{HOLLAND}STRATEGY_A2EICHER, GRASIM", timeout=SHOWN_WITHIN_MS)
        expect(desk.positions(OAKLEE, "STRATEGY_A")).to_have_text(f"{OAKLEE}STRATEGY_A1GRASIM")

        place(service.base_url, "STRATEGY_A", "GRASIM", "SELL")
        expect(holland).to_have_text(f"{HOLLAND}STRATEGY_A1EICHER", timeout=SHOWN_WITHIN_MS)
        expect(desk.positions(OAKLEE, "STRATEGY_A")).to_have_count(0)
        assert desk.errors == []


def test_a_filter_reopens_the_stream_with_only_the_orders_it_keeps(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage]
) -> None:
    with service_factory(PROFILE) as service:
        minda = place(service.base_url, "STRATEGY_B", "MINDA", "BUY")
        acc = place(service.base_url, "STRATEGY_D", "ACC", "BUY")
        desk = DeskPage.open(browser, service.base_url)
        pages.append(desk)
        expect(desk.rows()).to_have_count(2)

        desk.page.select_option("#filter-user", OAKLEE)
        expect(desk.rows()).to_have_count(1)
        expect(desk.row(acc["sequence"])).to_be_visible()
        expect(desk.positions(HOLLAND, "STRATEGY_B")).to_have_count(0)
        expect(desk.positions(OAKLEE, "STRATEGY_D")).to_be_visible()
        place(service.base_url, "STRATEGY_B", "MINDA", "SELL")  # Holland's alone: filtered out
        kept = place(service.base_url, "STRATEGY_D", "ACC", "SELL")
        expect(desk.row(kept["sequence"])).to_be_visible(timeout=SHOWN_WITHIN_MS)
        assert desk.sequences() == [kept["sequence"], acc["sequence"]]
        assert any(f"user={OAKLEE.replace(' ', '+')}" in url for url in desk.requests if "/events?" in url)

        desk.page.select_option("#filter-user", "")
        expect(desk.rows()).to_have_count(4)
        assert minda["sequence"] in desk.sequences()
        assert desk.errors == []


def reasons_shown(desk: DeskPage) -> dict[str, int]:
    rows = desk.page.locator("#reasons tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.reason, r.cells[1].textContent])"
    )
    return {reason: int(count) for reason, count in rows}


def test_at_800_pixels_the_blotter_fits_and_every_reason_is_counted_per_order(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage]
) -> None:
    with service_factory(PROFILE) as service:
        place(service.base_url, "STRATEGY_A", "GRASIM", "SELL")  # NO_OPEN_POSITION for both users
        place(service.base_url, "STRATEGY_A", "BIRLASOFT", "BUY")  # Oaklee: INSTRUMENT_NOT_IN_STRATEGY
        place(service.base_url, "STRATEGY_A", "EICHER", "SELL")  # both reasons, one user each
        last = place(service.base_url, "STRATEGY_Z", "ACC", "BUY")  # UNKNOWN_STRATEGY: the order itself
        desk = DeskPage.open(browser, service.base_url, width=800)
        pages.append(desk)
        expect(desk.row(last["sequence"])).to_be_visible()
        expect(desk.rows()).to_have_count(4)
        frame = desk.page.locator("#blotter").locator("..")
        width, visible = frame.evaluate("frame => [frame.scrollWidth, frame.clientWidth]")
        assert width <= visible, f"the blotter is {width} px wide in {visible} px"
        page_width, window_width = desk.page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert page_width <= window_width
        assert reasons_shown(desk) == {"NO_OPEN_POSITION": 2, "INSTRUMENT_NOT_IN_STRATEGY": 2, "UNKNOWN_STRATEGY": 1}
        expect(desk.page.locator("#reasons-counted")).to_contain_text("an order counts once per reason")
        assert desk.errors == []


# Orders seen at whole seconds after a point of the clock's 10 s, the chart drawn at ``now`` seconds after it.
DRAW_AT = """([seen, now]) => {
    const at = 1_800_000_000_000;
    desk.recent = seen.map(([second, accepted]) => ({ at: at + second * 1000, accepted }));
    drawChart(at + now * 1000);
    const figures = chartFigures(desk.recent, at + now * 1000);
    return [document.getElementById("rate-scale").textContent, document.getElementById("rate-summary").textContent,
            figures.dots.length, figures.joined.length];
}"""


def test_the_charts_figures_say_what_they_are_and_stay_put_for_the_same_orders(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage]
) -> None:
    with service_factory(PROFILE) as service:
        desk = DeskPage.open(browser, service.base_url)
        pages.append(desk)
        expect(desk.page.locator("#stream")).to_have_text("live")
        # Three orders 1 s apart in one 10 s bar, one accepted; and a lone order a minute later.
        seen = [[2, True], [3, False], [4, False], [64, False]]
        drawn = [desk.page.evaluate(DRAW_AT, [seen, now]) for now in (65, 65.5, 69.9, 70.1, 75, 120)]
        scale, summary, dots, joined = drawn[0]
        assert {tuple(d) for d in drawn} == {(scale, summary, dots, joined)}, drawn
        assert scale == "0.5 orders/s"  # the round number above the busiest bar's 0.3 orders/s
        assert summary == (
            "Last 5 minutes: 4 orders, 0.01 orders/s on average, 0.30 orders/s in the busiest 10 s, 25% accepted."
        )
        # Two bars far apart: two dots of their share accepted, no stroke between them.
        assert (dots, joined) == (2, 0)
        assert desk.page.evaluate(DRAW_AT, [[[2, True], [12, False]], 20])[2:] == [2, 1]
        assert desk.errors == []


@pytest.mark.parametrize("restart", ["kill", "stop"])
def test_after_a_restart_the_desk_shows_the_orders_placed_meanwhile_exactly_once(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage], restart: str
) -> None:
    service = service_factory(PROFILE).start()
    desk = DeskPage.open(browser, service.base_url)
    pages.append(desk)
    first = place(service.base_url, "STRATEGY_A", "GRASIM", "BUY")
    expect(desk.row(first["sequence"])).to_be_visible(timeout=SHOWN_WITHIN_MS)

    if restart == "kill":
        service.kill()
    else:
        service.stop()
    expect(desk.page.locator("#stream")).to_have_text("reconnecting…")
    expect(desk.page.locator("#health")).to_have_text("unreachable", timeout=10_000)
    # Back on the same port over the same data: the page's own origin.
    service.start(same_port=True)
    meanwhile = [
        place(service.base_url, "STRATEGY_A", "GRASIM", "SELL"),
        place(service.base_url, "STRATEGY_B", "MINDA", "BUY"),
        place(service.base_url, "STRATEGY_D", "ACC", "BUY"),
    ]
    expect(desk.page.locator("#stream")).to_have_text("live", timeout=10_000)
    for order in meanwhile:
        expect(desk.row(order["sequence"])).to_be_visible()
    after = place(service.base_url, "STRATEGY_B", "MINDA", "SELL")
    expect(desk.row(after["sequence"])).to_be_visible(timeout=SHOWN_WITHIN_MS)

    expected = [after["sequence"], *[o["sequence"] for o in reversed(meanwhile)], first["sequence"]]
    assert expected == [5, 4, 3, 2, 1]
    assert desk.sequences() == expected
    expect(desk.positions(OAKLEE, "STRATEGY_D")).to_be_visible()
    expect(desk.positions(HOLLAND, "STRATEGY_B")).to_have_count(0)
    service.stop()


def test_with_an_api_key_the_desk_asks_for_it_and_shows_no_data_until_it_is_given(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage]
) -> None:
    key = "desk-key-7f3a"
    with service_factory(PROFILE, api_key=key) as service:
        earlier = place(service.base_url, "STRATEGY_A", "GRASIM", "BUY", api_key=key)
        desk = DeskPage.open(browser, service.base_url)
        pages.append(desk)
        expect(desk.page.locator("#login")).to_be_visible()
        expect(desk.page.locator("#desk")).to_be_hidden()
        expect(desk.page.locator("#health")).to_have_text("ok")
        assert desk.rows().count() == 0
        data_paths = ("/orders", "/events", "/positions", "/users", "/strategies", "/trades")
        asked = [url.removeprefix(service.base_url) for url in desk.requests]
        assert not [path for path in asked if path.startswith(data_paths)], asked

        desk.page.fill("#api-key", "not-the-key")
        desk.page.click("#login-form button[type=submit]")
        expect(desk.page.locator("#login-error")).to_have_text("That is not the API key.")
        expect(desk.page.locator("#desk")).to_be_hidden()
        assert desk.page.context.cookies() == []

        desk.page.fill("#api-key", key)
        desk.page.click("#login-form button[type=submit]")
        expect(desk.row(earlier["sequence"])).to_be_visible()
        expect(desk.page.locator("#login")).to_be_hidden()
        expect(desk.positions(HOLLAND, "STRATEGY_A")).to_be_visible()
        later = place(service.base_url, "STRATEGY_A", "GRASIM", "SELL", api_key=key)
        expect(desk.row(later["sequence"])).to_be_visible(timeout=SHOWN_WITHIN_MS)
        (cookie,) = desk.page.context.cookies()
        assert (cookie["httpOnly"], cookie.get("sameSite"), cookie["secure"]) == (True, "Strict", False)
        assert key not in cookie["value"]
        # The key never travels in a URL, where access logs and history keep it.
        assert not [url for url in desk.requests if key in url]

        desk.page.click("#logout")
        expect(desk.page.locator("#login")).to_be_visible()
        assert desk.rows().count() == 0
        assert desk.page.context.cookies() == []
        assert desk.requests_elsewhere() == []


@pytest.mark.parametrize(("path", "drawn"), [("/docs", ".swagger-ui .info .title"), ("/redoc", ".api-content h1")])
def test_the_api_pages_load_and_draw_from_the_service_alone(
    service_factory: ServiceFactory, browser: Browser, pages: list[DeskPage], path: str, drawn: str
) -> None:
    with service_factory(PROFILE) as service:
        page = DeskPage.open(browser, service.base_url, path)
        pages.append(page)
        expect(page.page.locator(drawn)).to_contain_text("trading-orders")
        # What the page fetches once drawn (ReDoc's sidebar, its logo among it) is asked for by now.
        page.page.wait_for_load_state("networkidle")
        assert page.requests_elsewhere() == []
        assert page.errors == []
        assert f"{service.base_url}/openapi.json" in page.requests
