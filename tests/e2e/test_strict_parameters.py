"""Every numeric, cursor and name parameter parsed strictly, on every store: Unicode digits answer 422, never 500."""

import pytest
import requests

from tests.e2e.conftest import ServiceFactory

PROFILE = {"U1": {"S1": ["ACC"]}}

# Characters str.isdigit() or int() take for digits although they are not 0-9:
# superscript two, Arabic-Indic one, mathematical double-struck zero, and
# full-width three.
UNICODE_DIGITS = ["²", "\u0661", "\U0001d7d8", "\uff13"]

# The reproductions first (500 at commit 5eb20ca), then each Unicode
# digit alone and in the place of either half of a "<offset>.<index>" cursor.
BAD_NUMBERS = ["0.²", "²", *UNICODE_DIGITS, *(f"0.{d}" for d in UNICODE_DIGITS), *(f"{d}.0" for d in UNICODE_DIGITS)]

# A NUL in a name answered 500 on PostgreSQL, which refuses it in a query.
BAD_NAMES = [
    ("/orders/%00", "order_id"),
    ("/users/%00", "user"),
    ("/users/a%00b", "user"),
    ("/positions?user=%00", "user"),
    ("/orders?strategy=S1%00", "strategy"),
    ("/trades?instrument=%0A", "instrument"),
]


@pytest.mark.parametrize("store", ["tinydb", "memory", "sqlite", "postgres"])
def test_unicode_digits_and_control_characters_answer_422_naming_the_parameter(
    service_factory: ServiceFactory, store: str, request: pytest.FixtureRequest
) -> None:
    database = {"database_url": request.getfixturevalue("postgres_url")()} if store == "postgres" else {}
    with service_factory(PROFILE, store=store, **database) as service:
        # A trade and two orders, so every cursor has something to page over.
        for side in ("BUY", "SELL"):
            body = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": side}
            assert requests.post(f"{service.base_url}/create_order", json=body, timeout=5).status_code == 200
        for path in ("/orders", "/trades"):
            for parameter in ("cursor", "limit"):
                for value in BAD_NUMBERS:
                    answer = requests.get(f"{service.base_url}{path}", params={parameter: value}, timeout=5)
                    assert answer.status_code == 422, (path, parameter, value, answer.status_code, answer.text)
                    assert answer.json()["message"].startswith(f"{parameter}: "), answer.text
        for parameter in ("since", "until"):
            for digit in UNICODE_DIGITS:
                moment = f"2026-11-2{digit}T00:00:00Z"
                answer = requests.get(f"{service.base_url}/orders", params={parameter: moment}, timeout=5)
                assert answer.status_code == 422 and answer.json()["message"].startswith(f"{parameter}: ")
        long_key = {"Idempotency-Key": "k" * 256}
        answer = requests.post(f"{service.base_url}/create_order", json=body, headers=long_key, timeout=5)
        assert answer.status_code == 422 and answer.json()["message"].startswith("Idempotency-Key: ")
        for target, parameter in BAD_NAMES:
            answer = requests.get(f"{service.base_url}{target}", timeout=5)
            assert answer.status_code == 422, (target, answer.status_code, answer.text)
            assert answer.json()["message"].startswith(f"{parameter}: "), answer.text
        # The well-formed requests still answer.
        orders = requests.get(f"{service.base_url}/orders", params={"limit": "1"}, timeout=5).json()
        assert len(orders["orders"]) == 1 and orders["next_cursor"] is not None
        older = requests.get(f"{service.base_url}/orders", params={"cursor": orders["next_cursor"]}, timeout=5)
        assert older.status_code == 200 and [o["position"] for o in older.json()["orders"]] == ["BUY"]
        assert "Traceback" not in service.output()
