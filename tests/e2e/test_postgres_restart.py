"""PostgreSQL crashing and coming back in the middle of a stream of orders: nothing lost, nothing doubled."""

import threading
import time

import pytest
import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.postgres_server import ThrowawayPostgres
from tests.support.service_process import all_pages

CLIENTS = 4
INSTRUMENTS = [f"I{n}" for n in range(CLIENTS)]
PROFILE = {"U1": {"S1": INSTRUMENTS}, "U2": {"S1": INSTRUMENTS[::2]}}


def _order(instrument: str, n: int) -> dict[str, str]:
    return {"STRATEGY": "S1", "INSTRUMENT": instrument, "POSITION": "BUY" if n % 2 == 0 else "SELL"}


def _post(base_url: str, body: dict[str, str], key: str) -> requests.Response:
    return requests.post(f"{base_url}/create_order", json=body, headers={"Idempotency-Key": key}, timeout=60)


@pytest.mark.slow
def test_a_crash_and_restart_of_postgres_mid_stream_loses_or_doubles_nothing(
    service_factory: ServiceFactory, own_server: ThrowawayPostgres
) -> None:
    url = own_server.new_database()
    sent: dict[str, dict[str, str]] = {}
    answered: dict[str, str] = {}  # key -> order id of a 200
    refused: list[str] = []
    stop = threading.Event()

    def stream(client: int, base_url: str) -> None:
        n = 0
        while not stop.is_set():
            key, body = f"c{client}-{n}", _order(INSTRUMENTS[client], n)
            sent[key] = body
            try:
                answer = _post(base_url, body, key)
            except requests.RequestException:
                answer = None
            if answer is not None and answer.status_code == 200:
                answered[key] = answer.json()["order_id"]
            else:
                assert answer is None or answer.status_code == 503, answer.text
                refused.append(key)
                time.sleep(0.05)
            n += 1

    with service_factory(PROFILE, store="postgres", database_url=url) as service:
        pid = service.pid
        clients = [threading.Thread(target=stream, args=(c, service.base_url)) for c in range(CLIENTS)]
        for client in clients:
            client.start()
        try:
            time.sleep(1.5)
            before_crash = len(answered)
            own_server.crash()
            time.sleep(1.0)
            own_server.start_again()
            # The service reconnects on its own: orders are answered 200 again, by the same process.
            deadline = time.monotonic() + 20
            after_restart = len(answered)
            while len(answered) < after_restart + 20 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            for client in clients:
                client.join()
        assert before_crash > 0, "orders were answered before the crash"
        # The crash met orders in flight: either they were refused (503, in doubt
        # or not recorded), or their connections broke and the service found out
        # on its own whether they were recorded, answering 200 once the server was back.
        assert refused or "discarding closed connection" in service.output(), (
            "the crash fell in the middle of the stream"
        )
        assert len(answered) >= after_restart + 20, "orders are answered again after the server restarts"
        assert service.pid == pid
        # Each refused order retried with its key: recorded ones replay, the others are decided now.
        for key in refused:
            retry = _post(service.base_url, sent[key], key)
            assert retry.status_code == 200, retry.text
            answered[key] = retry.json()["order_id"]
        logged = [row["order_id"] for row in all_pages(service.base_url, "orders")]
    # Every order sent is in the log exactly once, as the order id its client was answered.
    assert sorted(logged) == sorted(answered.values())
    assert len(set(logged)) == len(logged) == len(sent)
