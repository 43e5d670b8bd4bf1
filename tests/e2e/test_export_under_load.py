"""`export` while a service takes orders: each export is the desk at one moment, so it always imports."""

import asyncio
import json
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import pytest
import requests

from tests.e2e.conftest import ServiceFactory
from tests.e2e.test_command_line import cli
from trading_orders.bootstrap import build_container
from trading_orders.settings import Settings
from trading_orders.tools.transfer import import_orders

# Seconds of load each: scheduled first (tests/conftest.py).
pytestmark = pytest.mark.slow

INSTRUMENTS = ["ACC", "INFY", "TCS", "WIPRO"]
PROFILE = {f"U{number}": {"S1": INSTRUMENTS, "S2": INSTRUMENTS} for number in range(1, 4)}
# Enough orders before the first export that reading them takes many statements (SQL) or blocks (files).
ORDERS_BEFORE = 800
EXPORTS = 3


def random_order(rng: random.Random) -> dict[str, str]:
    """A BUY or SELL of a random strategy and instrument: positions open and close all the time."""
    return {
        "STRATEGY": rng.choice(["S1", "S2"]),
        "INSTRUMENT": rng.choice(INSTRUMENTS),
        "POSITION": rng.choice(["BUY", "SELL"]),
    }


class OrderStream:
    """Client threads posting random orders to the service until the block ends."""

    def __init__(self, base_url: str, clients: int = 3) -> None:
        self._url = f"{base_url}/create_order"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(seed,)) for seed in range(clients)]
        self.failures: list[str] = []

    def _post(self, seed: int) -> None:
        rng = random.Random(seed)
        with requests.Session() as session:
            while not self._stop.is_set():
                answer = session.post(self._url, json=random_order(rng), timeout=30)
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text}")
                    return

    def __enter__(self) -> "OrderStream":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def place_many(base_url: str, count: int) -> None:
    """Place ``count`` random orders, four at a time."""
    rng = random.Random(99)
    bodies = [random_order(rng) for _ in range(count)]
    with ThreadPoolExecutor(4) as pool, requests.Session() as session:
        for answer in pool.map(lambda body: session.post(f"{base_url}/create_order", json=body, timeout=30), bodies):
            assert answer.status_code == 200, answer.text


def exported_counts(output: Path) -> tuple[list[int], int]:
    """The sequences of the orders an export holds, and how many positions it lists."""
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    return [row["sequence"] for row in rows if row["kind"] == "order"], sum(row["kind"] == "position" for row in rows)


def import_into_a_fresh_store(export: Path, root: Path) -> tuple[int, int]:
    """Import ``export`` into an empty memory store: import_orders refuses an export that does not hold together."""
    container = build_container(Settings(project_root=root, store="memory"))
    try:
        moved = asyncio.run(import_orders(export, container.order_store()))
        return moved.orders, moved.positions
    finally:
        container.shutdown_resources()


@pytest.mark.slow
@pytest.mark.parametrize(("store", "workers"), [("tinydb", 1), ("sqlite", 2), ("postgres", 2)])
def test_every_export_taken_under_load_imports_and_its_summary_counts_its_lines(
    service_factory: ServiceFactory,
    data_dir: Path,
    tmp_path: Path,
    store: str,
    workers: int,
    request: pytest.FixtureRequest,
) -> None:
    settings = {"store": store, "data_dir": str(data_dir)}
    if store == "postgres":
        settings["database_url"] = request.getfixturevalue("postgres_url")()
    exports = [tmp_path / f"export-{number}.jsonl" for number in range(EXPORTS)]
    with service_factory(PROFILE, workers=workers, **settings) as service:
        place_many(service.base_url, ORDERS_BEFORE)
        with OrderStream(service.base_url) as stream:
            summaries = [cli("export", str(export), settings=settings) for export in exports]
        assert not stream.failures, stream.failures[:3]
    lengths = []
    for export, summary in zip(exports, summaries, strict=True):
        assert summary.returncode == 0, summary.stderr
        sequences, positions = exported_counts(export)
        assert sequences == list(range(1, len(sequences) + 1)), f"{export.name} skips or repeats an order"
        said = re.search(r"exported (\d+) orders and (\d+) open positions", summary.stdout)
        assert said is not None, summary.stdout
        assert (int(said[1]), int(said[2])) == (len(sequences), positions), f"{export.name}: {summary.stdout}"
        assert import_into_a_fresh_store(export, tmp_path) == (len(sequences), positions), export.name
        lengths.append(len(sequences))
    # The service took orders while the exports ran: each export saw more of them than the one before.
    assert lengths == sorted(set(lengths)) and lengths[0] >= ORDERS_BEFORE, lengths
