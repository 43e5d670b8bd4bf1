"""Orders per second and latency of the real service under load, beside the HTTP stack's own ceiling.

    .venv/bin/python bench/service_load.py [--seconds 10] [--stores tinydb,sqlite]

Starts the real service (one uvicorn worker) on loopback for each store, and a
no-op endpoint of the same shape on the same settings, and drives each over
keep-alive connections (4 and 64 of them) with a mixed BUY/SELL stream: with
wrk (bench/orders.lua) where it is installed, else with an asyncio HTTP/1.1
client, which saturates near 1,500 requests/s on 2 cores. Prints a table: orders/s, p50, p99 and p99.9 latency,
the service's peak RSS, and orders/s as a share of the ceiling. Also times the
pure domain core. Not part of make test.
"""

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from trading_orders.domain.model import Order, PositionScope, Side
from trading_orders.domain.portfolio import Portfolio
from trading_orders.domain.profile import Profile
from trading_orders.tools.service_process import LOOPBACK, ServiceProcess

ROOT = Path(__file__).resolve().parent.parent
INSTRUMENTS = [f"SYM{n:03d}" for n in range(50)]
PROFILE = {f"U{u}": {f"S{s}": INSTRUMENTS for s in range(5)} for u in range(3)}


@dataclass
class Run:
    """What one load run measured."""

    orders: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    # wrk reports percentiles itself: (p50, p99, p99.9) in ms.
    reported: tuple[float, float, float] | None = None

    @property
    def per_second(self) -> float:
        """Answered orders per second."""
        return self.orders / self.seconds

    def percentile(self, share: float) -> float:
        """The latency below which ``share`` of the answers came, in ms."""
        if self.reported is not None:
            return dict(zip((0.5, 0.99, 0.999), self.reported, strict=True))[share]
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def _request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /create_order HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(port: int, deadline: float, seed: int, run: Run) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        while time.perf_counter() < deadline:
            body = json.dumps(
                {
                    "STRATEGY": f"S{rng.randrange(5)}",
                    "INSTRUMENT": rng.choice(INSTRUMENTS),
                    "POSITION": rng.choice(["BUY", "SELL"]),
                }
            ).encode()
            started = time.perf_counter()
            writer.write(_request(port, body))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                run.errors += 1
                continue
            run.latencies_ms.append((time.perf_counter() - started) * 1000)
            run.orders += 1
    finally:
        writer.close()


async def _drive(port: int, connections: int, seconds: float) -> Run:
    run = Run(0, seconds, [], 0)
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_connection(port, deadline, seed, run) for seed in range(connections)))
    return run


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wrk(port: int, connections: int, seconds: float) -> Run:
    threads = str(min(2, connections))
    script = str(ROOT / "bench" / "orders.lua")
    duration = f"{max(1, round(seconds))}s"
    result = subprocess.run(
        ["wrk", "-t", threads, "-c", str(connections), "-d", duration, "-s", script,
         f"http://{LOOPBACK}:{port}/create_order"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    latencies = (summary["p50_us"] / 1000, summary["p99_us"] / 1000, summary["p999_us"] / 1000)
    elapsed = summary["duration_us"] / 1e6
    return Run(summary["requests"] - summary["errors"], elapsed, [], summary["errors"], latencies)


def measure(service: ServiceProcess, connections: int, seconds: float, use_wrk: bool) -> tuple[Run, float]:
    """Warm up, then drive ``service`` for ``seconds``; returns the run and the peak RSS."""
    if use_wrk:
        _wrk(service.port, connections, 1.0)
        return _wrk(service.port, connections, seconds), peak_rss_mb(service.pid)
    asyncio.run(_drive(service.port, connections, 1.0))
    run = asyncio.run(_drive(service.port, connections, seconds))
    return run, peak_rss_mb(service.pid)


def domain_decisions_per_second(users: int, decisions: int = 100_000) -> float:
    """How many orders the pure core decides per second for a strategy run by ``users`` users."""
    profile = Profile({f"U{n}": {"S": INSTRUMENTS} for n in range(users)})
    portfolio = Portfolio(PositionScope.STRATEGY)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    orders = [Order("S", INSTRUMENTS[n % 50], Side.BUY if n % 2 else Side.SELL) for n in range(1000)]
    started = time.perf_counter()
    for n in range(decisions):
        portfolio.decide(orders[n % 1000], profile, "o", now)
    return decisions / (time.perf_counter() - started)


def main() -> None:
    """Run every scenario and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stores", default="tinydb,sqlite")
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None
    print(f"load generator: {'wrk' if use_wrk else 'asyncio client'}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="trading-orders-load-") as scratch:
        (Path(scratch) / "profile.json").write_text(json.dumps(PROFILE))
        ceiling: dict[int, float] = {}
        noop = ServiceProcess(ROOT / "bench", {}, Path(scratch) / "noop.out", app="noop_app:app")
        with noop:
            for connections in (4, 64):
                run, rss = measure(noop, connections, args.seconds, use_wrk)
                ceiling[connections] = run.per_second
                rows.append(("no-op ceiling", connections, run, rss))
        for store in args.stores.split(","):
            environment = {
                "TRADING_ORDERS_DATA_DIR": str(Path(scratch) / store),
                "TRADING_ORDERS_PROFILE_PATH": str(Path(scratch) / "profile.json"),
                "TRADING_ORDERS_LOG_DIR": str(Path(scratch) / "logs"),
                "TRADING_ORDERS_LOG_LEVEL": "WARNING",
                "TRADING_ORDERS_STORE": store,
            }
            with ServiceProcess(ROOT / "Scripts", environment, Path(scratch) / f"{store}.out") as service:
                for connections in (4, 64):
                    run, rss = measure(service, connections, args.seconds, use_wrk)
                    rows.append((store, connections, run, rss))
    print("| service | connections | orders/s | share of ceiling | p50 ms | p99 ms | p99.9 ms | peak RSS MB | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, connections, run, rss in rows:
        share = run.per_second / ceiling[connections]
        print(
            f"| {name} | {connections} | {run.per_second:,.0f} | {share:.0%} | {run.percentile(0.5):.2f} "
            f"| {run.percentile(0.99):.2f} | {run.percentile(0.999):.2f} | {rss:.0f} | {run.errors} |"
        )
    print()
    print("| domain core | decisions/s |")
    print("| --- | --- |")
    for users in (3, 300):
        rate = statistics.median(domain_decisions_per_second(users, 20_000) for _ in range(3))
        print(f"| strategy with {users} users | {rate:,.0f} |")


if __name__ == "__main__":
    main()
