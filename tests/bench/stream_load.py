"""Orders beside followers of GET /events: what followers cost the order path, and how late events arrive.

    .venv/bin/python -m tests.bench.stream_load [--seconds 8] [--followers 0,1,20] [--stalled] [--paced 1000]

Starts the real service (default store, one uvicorn worker) on loopback and,
for each count of followers, connects that many GET /events streams (read by
threads of a separate process, so their decoding does not share the load
generator's or the service's interpreter lock), then drives POST
/create_order with wrk at 64 connections. Prints orders/s and p99 of the
orders, and for the followers: whether each received every order once and
in order, and the lag from an order's received_at to its event's arrival.
``--stalled`` adds one follower that never reads its socket: the buffer
limit cuts it off and the orders must not notice. Not part of make test.
"""

import argparse
import json
import multiprocessing
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import requests

from tests.bench import preload
from tests.bench.service_load import ROOT, _wrk, cpu_seconds
from tests.support.event_stream import EventStreamReader
from tests.support.service_process import LOOPBACK, ServiceProcess

Followed = tuple[bool, list[float]]
ANY_ORDER = {"STRATEGY": preload.LOAD_STRATEGIES[0], "INSTRUMENT": preload.INSTRUMENTS[0], "POSITION": "SELL"}


def _follow(url: str, followers: int, after: int, final: "Synchronized[int]", results: "Queue[Followed]") -> None:
    """Read ``followers`` streams after ``after`` up to sequence ``final`` (once set); put (complete, lags ms) each."""

    def read(stream: EventStreamReader) -> None:
        sequences: list[int] = []
        lags: list[float] = []
        while not (final.value and sequences and sequences[-1] >= final.value):
            event = stream.next_event()
            if event is None:
                break  # cut off: incomplete
            if event.event == "order":
                body = event.json()
                received = datetime.fromisoformat(body["received_at"])
                lags.append((datetime.now(UTC) - received).total_seconds() * 1000)
                sequences.append(body["sequence"])
        complete = bool(sequences) and sequences == list(range(after + 1, after + 1 + len(sequences)))
        results.put((complete, lags))
        stream.close()

    streams = [EventStreamReader(url, {"after": after}) for _ in range(followers)]
    threads = [threading.Thread(target=read, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _stalled(port: int) -> socket.socket:
    """A follower that asks for the stream and never reads it."""
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((LOOPBACK, port))
    stalled.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    return stalled


def newest_sequence(url: str) -> int:
    """The sequence of the newest order in the log, 0 when it is empty."""
    newest = requests.get(f"{url}/orders", params={"limit": 1}, timeout=10).json()["orders"]
    return int(newest[0]["sequence"]) if newest else 0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main() -> None:
    """Run each follower count and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--followers", default="0,1,20")
    parser.add_argument("--stalled", action="store_true", help="add a follower that never reads")
    parser.add_argument(
        "--paced", type=int, default=0, help="offer about this many orders/s (wrk pauses), 0: as fast as it goes"
    )
    parser.add_argument("--poll", type=float, default=None, help="TRADING_ORDERS_EVENTS_POLL_SECONDS for the service")
    args = parser.parse_args()
    rows = [
        "| followers | orders/s | order p99 ms | service CPU µs per order | every order, once, in order "
        "| event lag p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="stream-load-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "profile.json").write_text(json.dumps(preload.profile(1)))
        environment = {
            "TRADING_ORDERS_DATA_DIR": str(scratch / "data"),
            "TRADING_ORDERS_PROFILE_PATH": str(scratch / "profile.json"),
            "TRADING_ORDERS_LOG_DIR": str(scratch / "logs"),
            "TRADING_ORDERS_LOG_LEVEL": "WARNING",
        }
        if args.poll is not None:
            environment["TRADING_ORDERS_EVENTS_POLL_SECONDS"] = str(args.poll)
        with ServiceProcess(ROOT / "Scripts", environment, scratch / "service.out") as service:
            for count in [int(n) for n in args.followers.split(",")]:
                _wrk(service.port, 64, 1.0)  # warm up, and move the log on
                after = newest_sequence(service.base_url)
                results: Queue[Followed] = multiprocessing.Queue()
                final: Synchronized[int] = multiprocessing.Value("q", 0)
                reading = multiprocessing.Process(target=_follow, args=(service.base_url, count, after, final, results))
                reading.start()
                stalled = _stalled(service.port) if args.stalled else None
                time.sleep(1.0)
                # Each of the 64 connections pauses 64,000 / rate ms on average between orders.
                used = cpu_seconds(service.pid)
                run = _wrk(service.port, 64, args.seconds, 64_000 / args.paced if args.paced else 0)
                cpu_per_order = (cpu_seconds(service.pid) - used) / run.orders * 1e6
                final.value = newest_sequence(service.base_url)
                # One more order wakes a follower that has read everything and waits for the next.
                requests.post(f"{service.base_url}/create_order", json=ANY_ORDER, timeout=10)
                followed = [results.get(timeout=60) for _ in range(count)]
                reading.join()
                if stalled is not None:
                    stalled.close()
                lags = [lag for _, stream_lags in followed for lag in stream_lags]
                whole = "yes" if all(complete for complete, _ in followed) else "NO"
                label = f"{count}{' + 1 stalled' if stalled is not None else ''}"
                rows.append(
                    f"| {label} | {run.per_second:,.0f} | {run.percentile(0.99):.1f} | {cpu_per_order:.0f} | "
                    f"{whole if count else '-'} | {_percentile(lags, 0.5):.1f} / {_percentile(lags, 0.99):.1f} |"
                )
                print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
