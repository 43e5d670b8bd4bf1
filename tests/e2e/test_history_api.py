"""GET /orders, GET /orders/{id} and GET /trades over real HTTP."""

import requests

from tests.e2e.conftest import ServiceFactory

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}, "U2": {"S1": ["ACC"]}}


def place(base_url: str, instrument: str, side: str) -> dict[str, object]:
    body = {"STRATEGY": "S1", "INSTRUMENT": instrument, "POSITION": side}
    answer: dict[str, object] = requests.post(f"{base_url}/create_order", json=body, timeout=5).json()
    return answer


def test_the_order_log_pages_newest_first_and_finds_one_order(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        placed = [place(service.base_url, ["ACC", "INFY"][n % 2], ["BUY", "SELL"][n // 2 % 2]) for n in range(9)]
        placed.append(place(service.base_url, "ACC", "BUY"))  # both users hold ACC: rejected
        first = requests.get(f"{service.base_url}/orders", params={"limit": 4}, timeout=5).json()
        assert [o["sequence"] for o in first["orders"]] == [10, 9, 8, 7]
        assert first["orders"][1] == {**placed[8], "sequence": 9}, "each entry is the answer plus its sequence"
        rest = requests.get(
            f"{service.base_url}/orders", params={"limit": 100, "cursor": first["next_cursor"]}, timeout=5
        ).json()
        assert [o["sequence"] for o in rest["orders"]] == [6, 5, 4, 3, 2, 1] and rest["next_cursor"] is None
        rejected = requests.get(f"{service.base_url}/orders", params={"status": "REJECTED"}, timeout=5).json()
        assert [o["sequence"] for o in rejected["orders"]] == [10]
        one = requests.get(f"{service.base_url}/orders/{placed[3]['order_id']}", timeout=5)
        assert one.status_code == 200 and one.json()["sequence"] == 4
        missing = requests.get(f"{service.base_url}/orders/does-not-exist", timeout=5)
        assert missing.status_code == 404 and "does-not-exist" in missing.json()["detail"]


def test_bad_paging_answers_422_naming_the_parameter(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        place(service.base_url, "ACC", "BUY")
        cases: list[tuple[dict[str, str | int], str]] = [
            ({"cursor": "not-a-cursor"}, "cursor: String should match pattern"),
            ({"cursor": "ffff"}, "cursor: cursor 'ffff' was not handed out"),
            ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
            ({"limit": 1001}, "limit: Input should be less than or equal to 1000"),
            ({"since": "yesterday"}, "since: Input should be a valid datetime"),
            ({"until": "0.5"}, "until: Value error, expected an ISO-8601 time"),
            ({"status": "MAYBE"}, "status: Input should be 'ACCEPTED' or 'REJECTED'"),
        ]
        for params, says in cases:
            answer = requests.get(f"{service.base_url}/orders", params=params, timeout=5)
            assert answer.status_code == 422 and says in answer.json()["message"], (params, answer.text)


def test_a_cursor_of_the_right_shape_that_was_never_handed_out_is_refused_on_every_paged_endpoint(
    service_factory: ServiceFactory,
) -> None:
    with service_factory(PROFILE) as service:
        place(service.base_url, "ACC", "BUY")
        place(service.base_url, "ACC", "SELL")
        # The trades of the first line are "0.0" and "0.1": index 999999999 names none of them.
        for path, cursor in [("trades", "0.999999999"), ("trades", "0.2"), ("orders", "00"), ("orders", "1")]:
            answer = requests.get(f"{service.base_url}/{path}", params={"cursor": cursor}, timeout=5)
            assert answer.status_code == 422, (path, cursor, answer.text)
            assert answer.json()["type"].endswith("/invalid-cursor"), answer.text
            assert f"cursor: cursor '{cursor}' was not handed out" in answer.json()["detail"]


def test_trades_record_each_round_trip_with_its_holding_time(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        buy = place(service.base_url, "ACC", "BUY")
        sell = place(service.base_url, "ACC", "SELL")
        trades = requests.get(f"{service.base_url}/trades", timeout=5).json()
        assert trades["next_cursor"] is None
        assert {t["user"] for t in trades["trades"]} == {"U1", "U2"}
        for trade in trades["trades"]:
            assert (trade["buy_order_id"], trade["sell_order_id"]) == (buy["order_id"], sell["order_id"])
            assert (trade["bought_at"], trade["sold_at"]) == (buy["received_at"], sell["received_at"])
            assert trade["holding_seconds"] >= 0
        only_u2 = requests.get(f"{service.base_url}/trades", params={"user": "U2", "limit": "1"}, timeout=5).json()
        assert [t["user"] for t in only_u2["trades"]] == ["U2"]
