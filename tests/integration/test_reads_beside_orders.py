"""Issue 12, class C: reads that block every read thread leave /health and orders answering promptly."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from dependency_injector import providers

from tests.support.threaded_server import ThreadedServer
from trading_orders.application.order_history import HistoryFilter, Page
from trading_orders.bootstrap import build_container, create_app
from trading_orders.domain.model import OrderLogEntry
from trading_orders.settings import Settings

BUY = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}
# More than Starlette's shared pool of 40 threads, as in the review's reproduction.
READS = 45


class BlockedHistory:
    """A history whose reads wait for ``release``, as reads of a huge log would take their time."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def orders(self, history_filter: HistoryFilter, limit: int = 100, cursor: str | None = None) -> Page[OrderLogEntry]:
        """An empty page, once released."""
        self.started += 1
        self.release.wait(timeout=60)
        return Page([], None)


def test_health_and_an_order_answer_promptly_while_every_read_is_blocked(tmp_path: Path) -> None:
    (tmp_path / "Jsons").mkdir()
    (tmp_path / "Jsons" / "user_profile.json").write_text(json.dumps({"U1": {"S1": ["ACC"]}}))
    (tmp_path / "data").mkdir()
    settings = Settings.from_environment(tmp_path)
    history = BlockedHistory()
    container = build_container(settings)
    container.order_history.override(providers.Object(history))
    server = ThreadedServer(create_app(settings, container))
    clients = ThreadPoolExecutor(max_workers=READS)
    try:
        reads = [
            clients.submit(requests.get, f"{server.url}/orders", params={"user": "nobody"}, timeout=60)
            for _ in range(READS)
        ]
        deadline = time.monotonic() + 10
        while history.started == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert history.started > 0, "the reads reached the history"
        time.sleep(0.3)  # let every read arrive and take (or wait for) its thread

        began = time.monotonic()
        health = requests.get(f"{server.url}/health", timeout=5)
        order = requests.post(f"{server.url}/create_order", json=BUY, timeout=5)
        took = time.monotonic() - began
        assert health.status_code == 200 and order.status_code == 200
        assert took < 2.0, f"/health and an order took {took:.2f} s behind blocked reads"
        assert not any(read.done() for read in reads), "the reads were still blocked meanwhile"

        history.release.set()
        statuses = {read.result().status_code for read in reads}
        assert statuses <= {200, 503}
    finally:
        history.release.set()
        clients.shutdown(wait=True)
        server.stop()
        container.shutdown_resources()
