"""How long a page of the order log takes at the top and 990,000 entries deep, in a 1,000,000-entry log.

    .venv/bin/python -m tests.bench.order_log_pages [--orders 1000000] [--depth 990000]

Prints a table: for the first page and the deep page, the time of
OrderHistory.orders in process and of GET /orders over HTTP against the real
service (best and median of several runs). Not part of make test.
"""

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from tests.support.service_process import ServiceProcess
from trading_orders.adapters.storage.tinydb_store.order_log import ORDER_LOG_FILE, JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.trade_log import JsonLinesTradeLog
from trading_orders.application.order_history import HistoryFilter, OrderHistory
from trading_orders.domain.model import (
    Order,
    OrderDecision,
    OrderLogEntry,
    OrderStatus,
    RejectReason,
    Side,
    UserDecision,
)
from trading_orders.json_records import entry_to_dict

ROOT = Path(__file__).resolve().parents[2]
PROFILE = {"U1": {"S1": ["ACC"]}, "U2": {"S1": ["ACC"]}}


def write_log(directory: Path, orders: int) -> None:
    """A log of ``orders`` rejected orders, written in bulk (no fsync per line: this is a fixture)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    decisions = (
        UserDecision("U1", OrderStatus.REJECTED, RejectReason.NO_OPEN_POSITION),
        UserDecision("U2", OrderStatus.REJECTED, RejectReason.NO_OPEN_POSITION),
    )
    with (directory / ORDER_LOG_FILE).open("w") as handle:
        for sequence in range(1, orders + 1):
            decision = OrderDecision(
                f"order-{sequence}", start + timedelta(milliseconds=sequence), Order("S1", "ACC", Side.SELL), decisions
            )
            handle.write(json.dumps(entry_to_dict(OrderLogEntry(sequence, decision)), separators=(",", ":")) + "\n")


def timed(action: Callable[[], object], runs: int = 15) -> tuple[float, float]:
    """Best and median milliseconds of ``runs`` runs."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return min(samples), statistics.median(samples)


def main() -> None:
    """Build the log, time the pages, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--depth", type=int, default=990_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trading-orders-bench-") as scratch:
        data = Path(scratch) / "data"
        data.mkdir()
        started = time.perf_counter()
        write_log(data, args.orders)
        print(f"wrote {args.orders:,} orders in {time.perf_counter() - started:.1f} s", flush=True)

        started = time.perf_counter()
        order_log, trade_log = JsonLinesOrderLog(data), JsonLinesTradeLog(data)
        print(f"opened and checked the log in {time.perf_counter() - started:.1f} s", flush=True)
        history = OrderHistory(order_log, trade_log)
        # Reach the depth as a client would: page down with the cursors handed out.
        started = time.perf_counter()
        cursor: str | None = None
        for _ in range(args.depth // 1000):
            cursor = history.orders(HistoryFilter(), 1000, cursor).next_cursor
        print(f"paged down {args.depth:,} entries in {time.perf_counter() - started:.1f} s", flush=True)
        first = timed(lambda: history.orders(HistoryFilter(), 100))
        deep = timed(lambda: history.orders(HistoryFilter(), 100, cursor))
        deep_page = history.orders(HistoryFilter(), 100, cursor).items
        assert deep_page[0].sequence == args.orders - args.depth, deep_page[0].sequence
        order_log.close()
        trade_log.close()

        (Path(scratch) / "profile.json").write_text(json.dumps(PROFILE))
        environment = {
            "TRADING_ORDERS_DATA_DIR": str(data),
            "TRADING_ORDERS_PROFILE_PATH": str(Path(scratch) / "profile.json"),
            "TRADING_ORDERS_LOG_DIR": str(Path(scratch) / "logs"),
            "TRADING_ORDERS_LOG_LEVEL": "WARNING",
        }
        service = ServiceProcess(ROOT / "Scripts", environment, Path(scratch) / "service.out")
        started = time.perf_counter()
        service.start(timeout=600)
        print(f"service started on the log in {time.perf_counter() - started:.1f} s", flush=True)
        with requests.Session() as session:
            url = f"{service.base_url}/orders"
            http_first = timed(lambda: session.get(url, params={"limit": "100"}, timeout=60).raise_for_status())
            http_deep = timed(
                lambda: session.get(url, params={"limit": "100", "cursor": str(cursor)}, timeout=60).raise_for_status()
            )
        service.stop()

    print()
    print(f"| page of 100 ({args.orders:,}-entry log) | in process, best / median | GET /orders, best / median |")
    print("| --- | --- | --- |")
    print(f"| first page | {first[0]:.2f} / {first[1]:.2f} ms | {http_first[0]:.2f} / {http_first[1]:.2f} ms |")
    print(f"| {args.depth:,} deep | {deep[0]:.2f} / {deep[1]:.2f} ms | {http_deep[0]:.2f} / {http_deep[1]:.2f} ms |")


if __name__ == "__main__":
    main()
