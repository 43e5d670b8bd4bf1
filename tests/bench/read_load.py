"""Worst-case reads beside orders: /health and POST /create_order latency while 45 clients read rare filters.

    .venv/bin/python -m tests.bench.read_load [--history 300000] [--seconds 20] [--readers 45] [--orders-per-second 50]

Writes (with tests/bench/preload.py) a default-store data set whose order log
holds --history entries, starts the real service (one uvicorn worker) on
loopback, and runs --readers clients in a loop over the reads that match
rarely (GET /orders?user=nobody, GET /orders?until=<before the log>,
GET /users/P0000, whose orders are the oldest 100), while one client asks
/health every 50 ms and another sends a steady stream of orders. Prints a
markdown table. Not part of make test.
"""

import argparse
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from tests.bench import preload
from tests.support.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
READS = [
    ("/orders", {"user": "nobody"}),
    ("/orders", {"until": "2026-11-24T03:00:00Z"}),
    ("/users/P0000", {}),
]


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Recorder:
    """Latencies in ms and answer statuses of one kind of request, from several threads."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()

    def timed(self, session: requests.Session, method: str, url: str, **kwargs: object) -> None:
        """Send one request and note how long it took and how it was answered (0: no answer)."""
        began = time.perf_counter()
        try:
            status = session.request(method, url, timeout=120, **kwargs).status_code  # type: ignore[arg-type]
        except requests.RequestException:
            status = 0
        with self._lock:
            self.latencies.append((time.perf_counter() - began) * 1000)
            self.statuses[status] = self.statuses.get(status, 0) + 1


def main() -> None:
    """Build the data set, drive the service, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=300_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--readers", type=int, default=45)
    parser.add_argument("--orders-per-second", type=float, default=50.0)
    parser.add_argument("--budget", type=int, default=None, help="TRADING_ORDERS_READ_SCAN_BUDGET for the service")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="read-load-") as scratch_name:
        scratch = Path(scratch_name)
        data = scratch / "data"
        began = time.monotonic()
        past = preload.history(scratch, args.history, len(preload.PRE_INSTRUMENTS) + 1)
        preload.write_data_set(data, 1, past)
        print(
            f"data set: {args.history + len(preload.PRE_INSTRUMENTS)} log entries in {time.monotonic() - began:.0f} s"
        )
        (scratch / "profile.json").write_text(json.dumps(preload.profile(1)))
        environment = {
            "TRADING_ORDERS_DATA_DIR": str(data),
            "TRADING_ORDERS_PROFILE_PATH": str(scratch / "profile.json"),
            "TRADING_ORDERS_LOG_DIR": str(scratch / "logs"),
            "TRADING_ORDERS_LOG_LEVEL": "WARNING",
        }
        if args.budget is not None:
            environment["TRADING_ORDERS_READ_SCAN_BUDGET"] = str(args.budget)
        with ServiceProcess(ROOT / "Scripts", environment, scratch / "service.out") as service:
            print(drive(service.base_url, args.seconds, args.readers, args.orders_per_second))


Measured = tuple[list[float], dict[int, int]]


def _run_for(seconds: float, stop: threading.Event, threads: list[threading.Thread]) -> None:
    """Run ``threads`` for ``seconds``, then set ``stop`` and wait for them to end."""
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()


def _read_for(url: str, seconds: float, readers: int, results: "multiprocessing.Queue[Measured]") -> None:
    """Run ``readers`` reading clients for ``seconds`` and put what they measured on ``results``."""
    stop = threading.Event()
    reads = Recorder()

    def read(number: int) -> None:
        session = requests.Session()
        turn = number
        while not stop.is_set():
            path, params = READS[turn % len(READS)]
            reads.timed(session, "GET", url + path, params=params)
            turn += 1

    _run_for(seconds, stop, [threading.Thread(target=read, args=(n,)) for n in range(readers)])
    # A Recorder holds a lock, which does not cross processes: its figures do.
    results.put((reads.latencies, reads.statuses))


def drive(url: str, seconds: float, readers: int, orders_per_second: float) -> str:
    """Run the load for ``seconds`` and answer the markdown table."""
    stop = threading.Event()
    health, orders = Recorder(), Recorder()
    # The readers in a process of their own: decoding 45 clients' answers
    # under this process's interpreter lock would delay the /health and
    # order clients' own timing, and charge the client's wait to the service.
    results: multiprocessing.Queue[Measured] = multiprocessing.Queue()
    reading = multiprocessing.Process(target=_read_for, args=(url, seconds, readers, results))
    reading.start()

    def ask_health() -> None:
        session = requests.Session()
        while not stop.is_set():
            health.timed(session, "GET", url + "/health")
            time.sleep(0.05)

    def order() -> None:
        session = requests.Session()
        gap, number, due = 1 / orders_per_second, 0, time.monotonic()
        while not stop.is_set():
            strategy = preload.LOAD_STRATEGIES[number % len(preload.LOAD_STRATEGIES)]
            instrument = preload.INSTRUMENTS[number % len(preload.INSTRUMENTS)]
            body = {"STRATEGY": strategy, "INSTRUMENT": instrument, "POSITION": "BUY" if number % 2 else "SELL"}
            orders.timed(session, "POST", url + "/create_order", json=body)
            number += 1
            due += gap
            time.sleep(max(0.0, due - time.monotonic()))

    _run_for(seconds, stop, [threading.Thread(target=ask_health), threading.Thread(target=order)])
    reads = Recorder()
    reads.latencies, reads.statuses = results.get(timeout=300)
    reading.join()
    return "\n".join(
        [
            "| measure | value |",
            "|---|---|",
            f"| /health max / p99 | {max(health.latencies):.1f} ms / {_percentile(health.latencies, 0.99):.1f} ms |",
            f"| /health answers | {health.statuses} |",
            f"| create_order p50 / p99 | {statistics.median(orders.latencies):.1f} ms / "
            f"{_percentile(orders.latencies, 0.99):.1f} ms |",
            f"| create_order answers | {orders.statuses} |",
            f"| read p50 / p99 | {statistics.median(reads.latencies):.1f} ms / "
            f"{_percentile(reads.latencies, 0.99):.1f} ms |",
            f"| reads/s | {len(reads.latencies) / seconds:.1f} |",
            f"| read answers | {reads.statuses} |",
        ]
    )


if __name__ == "__main__":
    main()
