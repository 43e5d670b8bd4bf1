"""Orders per second and latency of the real service under load, beside the HTTP stack's own ceiling.

    .venv/bin/python -m tests.bench.service_load [--seconds 10] [--history 1000000] [--quick]

Starts the real service (one uvicorn worker) on loopback, and a no-op
endpoint of the same shape on the same settings, and drives each over
keep-alive connections (4 and 64 of them) with a mixed BUY/SELL stream: with
wrk (tests/bench/orders.lua) where it is installed, else with an asyncio HTTP/1.1
client, which saturates near 1,500 requests/s on 2 cores.

Each store (tinydb, sqlite, and postgres on a throwaway server with fsync on,
where PostgreSQL is installed) runs on data sets written by tests/bench/preload.py:
100, 10,000 and 100,000 open positions, each with an order log of 0 and of
--history entries. For each it prints orders/s (and as a share of the ceiling), p50,
p99 and p99.9 latency, the service's peak RSS, the start-up time on the data
set, and the restart time after a kill -9 at the end of the load (crash
recovery: replaying what the last snapshot lacks). Also times the pure domain
core. --quick runs only the empty-log data sets. --cpu runs instead, for each of --stores (memory
too; the SQL stores with each of --workers), one wrk thread at 64 connections on 100 positions, and
prints orders/s, p99 and the service's CPU time (user and system, every worker's) per order, naming
the package it served: run it with another checkout's
Python to measure that checkout's code under the same load. --paced 1000,2000 (the default) also offers
those orders/s over 64 connections, each pausing after every answer, to the no-op and to each
store on 100 positions, and prints offered, delivered and latency. --workers 1,2 (the default) runs
the SQL stores with one and with two uvicorn worker processes (the TinyDB store serves one
process by design). Not part of make test.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trading_orders
from tests.bench import preload
from tests.support.postgres_server import PostgresUnavailable, ThrowawayPostgres
from tests.support.service_process import LOOPBACK, ServiceProcess
from trading_orders.domain.model import Order, PositionScope, Side
from trading_orders.domain.portfolio import Portfolio
from trading_orders.domain.profile import Profile

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parents[1]
INSTRUMENTS = preload.INSTRUMENTS


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
    """The peak resident set size (VmHWM) of the process and its worker processes, in MB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            total += int(line.split()[1]) / 1024
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        total += peak_rss_mb(int(child))
    return total


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` and its worker processes have used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        total += cpu_seconds(int(child))
    return total


def _wrk(port: int, connections: int, seconds: float, pause_ms: float = 0, threads: int | None = None) -> Run:
    threads = min(2, connections) if threads is None else threads
    script = str(BENCH / "orders.lua")
    duration = f"{max(1, round(seconds))}s"
    result = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", duration, "-s", script,
         f"http://{LOOPBACK}:{port}/create_order", "--", str(round(pause_ms))],
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


PACED_CONNECTIONS = 64


def measure_paced(service: ServiceProcess, offered: int, seconds: float) -> Run:
    """Offer about ``offered`` orders/s over 64 connections, each pausing after every answer (an open-ish loop).

    A closed loop at 64 connections shows throughput, not latency (its mean
    is 64 / throughput); a paced load below the service's capacity does.
    """
    pause_ms = PACED_CONNECTIONS * 1000 / offered
    _wrk(service.port, PACED_CONNECTIONS, 1.0, pause_ms)
    return _wrk(service.port, PACED_CONNECTIONS, seconds, pause_ms)


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


@dataclass
class Scenario:
    """A store and a data set to drive."""

    store: str
    holders: int  # PRE users, 100 positions each
    history: int  # orders in the log before the run
    workers: int = 1  # uvicorn worker processes

    @property
    def service(self) -> str:
        """The store, and the worker processes when more than one."""
        return f"{self.store}, {self.workers} workers" if self.workers > 1 else self.store

    @property
    def label(self) -> str:
        """How the table names it."""
        return f"{self.service}, {self.holders * 100:,} positions, {self.history:,}-entry log"


def started_within(service: ServiceProcess) -> float:
    """Start ``service`` and return the seconds until /health answered."""
    began = time.perf_counter()
    service.start(timeout=120)
    return time.perf_counter() - began


@dataclass
class Row:
    """One line of the table."""

    name: str
    connections: int
    run: Run
    rss: float
    start_up: float | None = None
    restart: float | None = None


def prepare(
    scenario: Scenario, scratch: Path, past: preload.History | None, postgres: ThrowawayPostgres | None
) -> dict[str, str]:
    """Write the scenario's profile and data set under ``scratch``; the service's environment for them."""
    data = scratch / "data"
    shutil.rmtree(data, ignore_errors=True)
    (scratch / "profile.json").write_text(json.dumps(preload.profile(scenario.holders)))
    environment = {
        "TRADING_ORDERS_DATA_DIR": str(data),
        "TRADING_ORDERS_PROFILE_PATH": str(scratch / "profile.json"),
        "TRADING_ORDERS_LOG_DIR": str(scratch / "logs"),
        "TRADING_ORDERS_LOG_LEVEL": "WARNING",
        "TRADING_ORDERS_STORE": scenario.store,
    }
    if scenario.store == "tinydb":
        preload.write_data_set(data, scenario.holders, past)
    elif scenario.store == "sqlite":
        data.mkdir()
        preload.write_sqlite_data_set(data, scenario.holders, past)
    elif scenario.store == "postgres":
        assert postgres is not None
        url = postgres.new_database()
        preload.write_postgres_data_set(url, scenario.holders, past)
        environment["TRADING_ORDERS_DATABASE_URL"] = url
    # The memory store starts empty every time: there is no data set to write.
    return environment


def run_scenario(
    scenario: Scenario,
    scratch: Path,
    past: preload.History | None,
    seconds: float,
    use_wrk: bool,
    postgres: ThrowawayPostgres | None,
    paced: tuple[int, ...] = (),
    paced_rows: list[tuple[str, int, Run]] | None = None,
) -> list[Row]:
    """Load, drive, kill and restart the service on one data set; paced runs go to ``paced_rows``."""
    paced_rows = paced_rows if paced_rows is not None else []
    data = scratch / "data"
    environment = prepare(scenario, scratch, past, postgres)
    rows = []
    service = ServiceProcess(ROOT / "Scripts", environment, scratch / f"{scenario.store}.out", workers=scenario.workers)
    start_up = started_within(service)
    try:
        for connections in (4, 64):
            run, rss = measure(service, connections, seconds, use_wrk)
            rows.append(Row(scenario.label, connections, run, rss, start_up))
        if use_wrk and scenario.holders == 1 and not scenario.history:
            for offered in paced:
                paced_rows.append((scenario.service, offered, measure_paced(service, offered, seconds)))
    finally:
        if scenario.workers == 1:
            service.kill()
        else:
            # A kill -9 of uvicorn's supervisor would leave its workers running.
            service.stop()
    if scenario.workers > 1:
        shutil.rmtree(data, ignore_errors=True)
        return rows
    restarted = ServiceProcess(ROOT / "Scripts", environment, scratch / f"{scenario.store}.restart.out")
    rows[-1].restart = started_within(restarted)
    restarted.stop()
    shutil.rmtree(data, ignore_errors=True)
    return rows


def start_postgres() -> ThrowawayPostgres | None:
    """A throwaway PostgreSQL server with fsync on, or None (said why) where none can start."""
    try:
        return ThrowawayPostgres(durable=True).start()
    except PostgresUnavailable as error:
        print(f"postgres left out: {error}", flush=True)
        return None


CPU_CONNECTIONS = 64


def cpu_per_order(
    scenario: Scenario, scratch: Path, seconds: float, postgres: ThrowawayPostgres | None
) -> tuple[Run, float]:
    """Drive the scenario's store with one wrk thread at 64 connections; the run and CPU µs per order."""
    environment = prepare(scenario, scratch, None, postgres)
    output = scratch / f"{scenario.store}.out"
    with ServiceProcess(ROOT / "Scripts", environment, output, workers=scenario.workers) as service:
        _wrk(service.port, CPU_CONNECTIONS, 1.0, threads=1)  # warm-up, not counted
        used = cpu_seconds(service.pid)
        run = _wrk(service.port, CPU_CONNECTIONS, seconds, threads=1)
        return run, (cpu_seconds(service.pid) - used) / run.orders * 1e6


def print_cpu_per_order(stores: list[str], workers: list[int], seconds: float) -> None:
    """One row per store and worker count: orders/s and service CPU per order of the code this Python imports."""
    code = Path(trading_orders.__file__).parents[2]
    postgres = start_postgres() if "postgres" in stores else None
    try:
        with tempfile.TemporaryDirectory(prefix="trading-orders-cpu-") as temporary:
            for store in stores:
                if store == "postgres" and postgres is None:
                    continue
                # The TinyDB store serves one process by design, the memory store one process's orders.
                for count in workers if store in ("sqlite", "postgres") else [1]:
                    scenario = Scenario(store, 1, 0, count)
                    run, cpu = cpu_per_order(scenario, Path(temporary), seconds, postgres)
                    print(
                        f"| {code} | {scenario.service} | {run.per_second:,.0f} | {cpu:.0f} "
                        f"| {run.percentile(0.99):.1f} | {run.errors} |",
                        flush=True,
                    )
    finally:
        if postgres is not None:
            postgres.stop()


def main() -> None:
    """Run every scenario and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--history", type=int, default=1_000_000, help="orders in the long log")
    parser.add_argument("--quick", action="store_true", help="only the empty-log data sets")
    parser.add_argument("--stores", default="tinydb,sqlite,postgres")
    parser.add_argument(
        "--workers", default="1,2", help="uvicorn worker processes for the SQL stores (tinydb serves one process)"
    )
    parser.add_argument(
        "--paced", default="1000,2000", help="orders/s to offer in the paced runs (wrk only; empty: none)"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="only orders/s and CPU per order of each of --stores (wrk, 1 thread)"
    )
    args = parser.parse_args()
    if args.cpu:
        print_cpu_per_order(args.stores.split(","), [int(count) for count in args.workers.split(",")], args.seconds)
        return
    paced = tuple(int(rate) for rate in args.paced.split(",") if rate)
    paced_rows: list[tuple[str, int, Run]] = []
    use_wrk = shutil.which("wrk") is not None
    print(f"load generator: {'wrk' if use_wrk else 'asyncio client'}", flush=True)
    stores = args.stores.split(",")
    postgres = start_postgres() if "postgres" in stores else None
    if postgres is None and "postgres" in stores:
        stores.remove("postgres")
    histories = (0,) if args.quick else (0, args.history)
    workers = [int(count) for count in args.workers.split(",")]
    scenarios = [
        Scenario(s, h, n, w)
        for s in stores
        for w in (workers if s != "tinydb" else [1])
        for n in histories
        for h in (1, 100, 1000)
    ]
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="trading-orders-load-") as temporary:
            scratch = Path(temporary)
            ceiling: dict[int, float] = {}
            with ServiceProcess(BENCH, {}, scratch / "noop.out", app="noop_app:app") as noop:
                for connections in (4, 64):
                    run, rss = measure(noop, connections, args.seconds, use_wrk)
                    ceiling[connections] = run.per_second
                    rows.append(Row("no-op ceiling", connections, run, rss))
                if use_wrk:
                    paced_rows += [("no-op", rate, measure_paced(noop, rate, args.seconds)) for rate in paced]
            past: preload.History | None = None
            for scenario in scenarios:
                if scenario.history and past is None:
                    print(f"writing a {args.history:,}-order history", flush=True)
                    past = preload.history(scratch, args.history, len(preload.PRE_INSTRUMENTS) + 1)
                print(f"running {scenario.label}", flush=True)
                history = past if scenario.history else None
                rows += run_scenario(scenario, scratch, history, args.seconds, use_wrk, postgres, paced, paced_rows)
    finally:
        if postgres is not None:
            postgres.stop()
    print(
        "| service | connections | orders/s | share of ceiling | p50 ms | p99 ms | p99.9 ms | peak RSS MB "
        "| start-up s | restart after kill -9 s | errors |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        run = row.run
        share = run.per_second / ceiling[row.connections]
        start_up = "" if row.start_up is None else f"{row.start_up:.2f}"
        restart = "" if row.restart is None else f"{row.restart:.2f}"
        print(
            f"| {row.name} | {row.connections} | {run.per_second:,.0f} | {share:.0%} | {run.percentile(0.5):.2f} "
            f"| {run.percentile(0.99):.2f} | {run.percentile(0.999):.2f} | {row.rss:.0f} | {start_up} | {restart} "
            f"| {run.errors} |"
        )
    if paced_rows:
        print()
        print(f"Paced: {PACED_CONNECTIONS} connections, each pausing after every answer (100 positions, empty log)")
        print()
        print("| service | offered/s | delivered/s | p50 ms | p99 ms | p99.9 ms | errors |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, offered, run in paced_rows:
            print(
                f"| {name} | {offered:,} | {run.per_second:,.0f} | {run.percentile(0.5):.2f} "
                f"| {run.percentile(0.99):.2f} | {run.percentile(0.999):.2f} | {run.errors} |"
            )
    print()
    print("| domain core | decisions/s |")
    print("| --- | --- |")
    for users in (3, 300):
        domain_decisions_per_second(users, 20_000)  # warm-up, discarded: the first run is slower
        rate = statistics.median(domain_decisions_per_second(users, 50_000) for _ in range(5))
        print(f"| strategy with {users} users | {rate:,.0f} |")


if __name__ == "__main__":
    main()
