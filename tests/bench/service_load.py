"""Orders per second and latency of the real service under load, beside the HTTP stack's own ceiling.

    .venv/bin/python -m tests.bench.service_load [--full [--quick]] [--seconds 8] [--history 1000000]

By default (`make bench`, about 2 minutes) it runs the headline the README and
docs/performance.md quote: the no-op, the default store with one worker and
the SQL stores with two, on 100 positions and an empty log, and the domain
core; it prints the table the docs hold. --full (`make bench-full`) runs the
whole matrix below. Progress and the time left go to stderr, the tables to stdout.

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
core. --full --quick runs only the empty-log data sets. --cpu runs instead, for each of --stores (memory
too; the SQL stores with each of --workers), one wrk thread at 64 connections on 100 positions, and
prints orders/s, p99 and the service's CPU time (user and system, every worker's) per order, naming
the package it served: run it with another checkout's
Python to measure that checkout's code under the same load. --paced 1000,2000 (the default with --full) also offers
those orders/s over 64 connections, each pausing after every answer, to the no-op and to each
store on 100 positions, and prints offered, delivered and latency. --workers 1,2 (the default) runs
the SQL stores with one and with two uvicorn worker processes (the TinyDB store serves one
process by design). Not part of make test.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import trading_orders
from tests.bench import preload
from tests.bench.countdown import Countdown
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
    # The headline's rounds: orders/s in each, and the share of the no-op of the same round.
    rounds: list[float] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)


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
    countdown: Countdown,
    paced: tuple[int, ...] = (),
    paced_rows: list[tuple[str, int, Run]] | None = None,
) -> list[Row]:
    """Load, drive, kill and restart the service on one data set; paced runs go to ``paced_rows``."""
    paced_rows = paced_rows if paced_rows is not None else []
    data = scratch / "data"
    countdown.step(f"{scenario.label}: writing the data set, starting", start_up_estimate(scenario))
    environment = prepare(scenario, scratch, past, postgres)
    rows = []
    service = ServiceProcess(ROOT / "Scripts", environment, scratch / f"{scenario.store}.out", workers=scenario.workers)
    start_up = started_within(service)
    try:
        for connections in CONNECTIONS:
            countdown.step(f"{scenario.label}: {connections} connections", 1 + seconds)
            run, rss = measure(service, connections, seconds, use_wrk)
            rows.append(Row(scenario.label, connections, run, rss, start_up))
        if use_wrk and scenario.holders == 1 and not scenario.history:
            for offered in paced:
                countdown.step(f"{scenario.label}: {offered:,} orders/s paced", 1 + seconds)
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
    countdown.step(f"{scenario.label}: restart after kill -9", start_up_estimate(scenario))
    restarted = ServiceProcess(ROOT / "Scripts", environment, scratch / f"{scenario.store}.restart.out")
    rows[-1].restart = started_within(restarted)
    restarted.stop()
    shutil.rmtree(data, ignore_errors=True)
    return rows


CONNECTIONS = (4, 64)
# The headline drives every service at 64 connections this many times, in turn.
ROUNDS = 3


def run_headline(
    scenarios: list[Scenario],
    scratch: Path,
    seconds: float,
    use_wrk: bool,
    postgres: ThrowawayPostgres | None,
    countdown: Countdown,
) -> tuple[list[Row], dict[int, float]]:
    """The no-op and each scenario served side by side, driven in turn: once at 4 connections, ROUNDS times at 64.

    On a machine other work shares, load changes from one minute to the next;
    driving each service in turn, round after round, puts the same load on
    every comparison a round makes (a store against the no-op, a store against
    another), and the rounds' spread shows how much the load moved.
    """
    countdown.step("starting the no-op and every store side by side", sum(start_up_estimate(s) for s in scenarios))
    services: list[tuple[str, ServiceProcess, float | None]] = []
    environments = {}
    try:
        noop = ServiceProcess(BENCH, {}, scratch / "noop.out", app="noop_app:app")
        noop.start()
        services.append(("no-op ceiling", noop, None))
        for scenario in scenarios:
            own = scratch / scenario.service.replace(", ", "-").replace(" ", "-")
            own.mkdir()
            environments[scenario.label] = prepare(scenario, own, None, postgres)
            service = ServiceProcess(ROOT / "Scripts", environments[scenario.label], own / "service.out",
                                     workers=scenario.workers)  # fmt: skip
            services.append((scenario.label, service, started_within(service)))
        rows: list[Row] = []
        for name, service, start_up in services:
            countdown.step(f"{name}: 4 connections", 1 + seconds)
            run, rss = measure(service, 4, seconds, use_wrk)
            rows.append(Row(name, 4, run, rss, start_up))
        runs: dict[str, list[Run]] = {name: [] for name, _, _ in services}
        peaks: dict[str, float] = {}
        for number in range(ROUNDS):
            # Each round starts one service later, so no service always follows the same one.
            turn = services[number % len(services) :] + services[: number % len(services)]
            for name, service, _ in turn:
                countdown.step(f"round {number + 1} of {ROUNDS}: {name}, 64 connections", 1 + seconds)
                run, peaks[name] = measure(service, 64, seconds, use_wrk)
                runs[name].append(run)
        busy = {}
        noop_rounds = [run.per_second for run in runs["no-op ceiling"]]
        for name, _, start_up in services:
            # The round of the median orders/s gives the row its latencies; errors are every round's.
            median = sorted(runs[name], key=lambda run: run.per_second)[len(runs[name]) // 2]
            row = Row(name, 64, median, peaks[name], start_up)
            row.rounds = [run.per_second for run in runs[name]]
            row.shares = [mine / noop for mine, noop in zip(row.rounds, noop_rounds, strict=True)]
            row.run.errors = sum(run.errors for run in runs[name])
            busy[name] = row
        rows += busy.values()
        ceiling = {4: rows[0].run.per_second, 64: busy["no-op ceiling"].run.per_second}
    finally:
        for name, service, _ in services:
            if "workers" in name:
                service.stop()  # a kill -9 of uvicorn's supervisor would leave its workers running
            else:
                service.kill()
    for scenario in scenarios:
        if scenario.workers == 1:
            countdown.step(f"{scenario.label}: restart after kill -9", start_up_estimate(scenario))
            own = scratch / scenario.service.replace(", ", "-").replace(" ", "-")
            restarted = ServiceProcess(ROOT / "Scripts", environments[scenario.label], own / "restart.out")
            busy[scenario.label].restart = started_within(restarted)
            restarted.stop()
    return rows, ceiling


def start_up_estimate(scenario: Scenario) -> float:
    """Seconds the plan allows to write a data set and start the service on it (2 cores, 2026-12)."""
    return 2.0 + 2.0 * scenario.holders / 1000 + 3.0 * scenario.history / 1_000_000


def scenarios_to_run(stores: list[str], full: bool, quick: bool, workers: list[int], history: int) -> list[Scenario]:
    """The headline (one data set, the SQL stores with their largest worker count) or the whole matrix."""
    if not full:
        return [Scenario(s, 1, 0, 1 if s == "tinydb" else max(workers)) for s in stores]
    histories = (0,) if quick else (0, history)
    return [
        Scenario(s, h, n, w)
        for s in stores
        for w in (workers if s != "tinydb" else [1])
        for n in histories
        for h in (1, 100, 1000)
    ]


def plan_seconds(
    scenarios: list[Scenario], seconds: float, paced: int, history: int, users: tuple[int, ...], full: bool
) -> float:
    """What the run should take: the no-op, each scenario, the history to write, the domain core."""
    per_run = 1 + seconds
    domain = sum(DOMAIN_SECONDS[count] for count in users)
    restarts = sum(start_up_estimate(scenario) for scenario in scenarios if scenario.workers == 1)
    if not full:
        starts = 2.0 + sum(start_up_estimate(scenario) for scenario in scenarios)
        return 5.0 + starts + (1 + len(scenarios)) * (1 + ROUNDS) * per_run + restarts + domain
    total = 5.0 + (len(CONNECTIONS) + paced) * per_run  # PostgreSQL's start, the no-op
    for scenario in scenarios:
        total += start_up_estimate(scenario) + len(CONNECTIONS) * per_run
        if scenario.holders == 1 and not scenario.history:
            total += paced * per_run
    if any(scenario.history for scenario in scenarios):
        total += 60.0 * history / 1_000_000
    return total + restarts + domain


# Seconds the domain-core measurement takes per strategy size on this machine: 300 users decide slowly.
DOMAIN_SECONDS = {3: 5.0, 300: 130.0}


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
    """Run the headline (or with --full every scenario) and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seconds", type=float, default=None, help="seconds each load runs (default 6 for the headline, 8 with --full)"
    )
    parser.add_argument("--full", action="store_true", help="every store, data set and worker count (~25 minutes)")
    parser.add_argument("--history", type=int, default=1_000_000, help="orders in the long log (--full)")
    parser.add_argument("--quick", action="store_true", help="with --full: only the empty-log data sets")
    parser.add_argument("--stores", default="tinydb,sqlite,postgres")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="uvicorn worker processes for the SQL stores (tinydb serves one process); the headline runs the largest",
    )
    parser.add_argument(
        "--paced",
        default=None,
        help="orders/s to offer in the paced runs (wrk only; empty: none; default 1000,2000 with --full, else none)",
    )
    parser.add_argument(
        "--cpu", action="store_true", help="only orders/s and CPU per order of each of --stores (wrk, 1 thread)"
    )
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 8.0 if args.full or args.cpu else 6.0
    if args.cpu:
        print_cpu_per_order(args.stores.split(","), [int(count) for count in args.workers.split(",")], args.seconds)
        return
    paced_given = args.paced if args.paced is not None else ("1000,2000" if args.full else "")
    paced = tuple(int(rate) for rate in paced_given.split(",") if rate)
    paced_rows: list[tuple[str, int, Run]] = []
    use_wrk = shutil.which("wrk") is not None
    if not use_wrk:
        paced = ()
    machine = describe_machine()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}, load generator: {'wrk' if use_wrk else 'asyncio client'}, "
        f"load average {os.getloadavg()[0]:.1f} before"
    )
    print(flush=True)
    stores = args.stores.split(",")
    workers = [int(count) for count in args.workers.split(",")]
    domain_users = (3, 300) if args.full else (3,)
    scenarios = scenarios_to_run(stores, args.full, args.quick, workers, args.history)
    countdown = Countdown(
        plan_seconds(scenarios, args.seconds, len(paced), args.history, domain_users, args.full), sys.stderr
    )
    postgres = None
    if "postgres" in stores:
        countdown.step("starting a throwaway PostgreSQL", 5.0)
        postgres = start_postgres()
        if postgres is None:
            scenarios = [scenario for scenario in scenarios if scenario.store != "postgres"]
    try:
        with tempfile.TemporaryDirectory(prefix="trading-orders-load-") as temporary:
            scratch = Path(temporary)
            if args.full:
                rows, ceiling = run_matrix(scenarios, scratch, args, use_wrk, postgres, countdown, paced, paced_rows)
            else:
                rows, ceiling = run_headline(scenarios, scratch, args.seconds, use_wrk, postgres, countdown)
        domain_rows = []
        for users in domain_users:
            countdown.step(f"domain core, strategy with {users} users", DOMAIN_SECONDS[users])
            domain_decisions_per_second(users, 20_000)  # warm-up, discarded: the first run is slower
            domain_rows.append((users, statistics.median(domain_decisions_per_second(users, 50_000) for _ in range(5))))
    finally:
        countdown.finish()
        if postgres is not None:
            postgres.stop()
    print_tables(rows, ceiling, paced_rows, domain_rows)
    if not args.full:
        print()
        print(headline(rows))
    # Above the cores' count, other work shared the machine and every figure above is low and noisy.
    print(f"load average {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")


def headline(rows: list[Row]) -> str:
    """The README's sentence, from the rounds at 64 connections: each compared with the no-op or the default store."""
    # A label is "<service>, <positions> positions, <entries>-entry log"; the service may name its workers.
    busy = {row.name.rsplit(", ", 2)[0]: row for row in rows if row.rounds and row.name != "no-op ceiling"}
    default = busy.get("tinydb")
    if default is None:
        return "At 64 connections: the default store was not run."

    def spread(shares: list[float]) -> str:
        return f"{statistics.median(shares):.0%} ({min(shares):.0%}-{max(shares):.0%})"

    others = "; ".join(
        f"{name} {spread([mine / ours for mine, ours in zip(row.rounds, default.rounds, strict=True)])} of it"
        for name, row in busy.items()
        if name != "tinydb"
    )
    return (
        f"At 64 connections, median (range) of {len(default.rounds)} rounds: the default store served "
        f"{spread(default.shares)} of the no-op (the HTTP stack alone); {others}."
    )


def run_matrix(
    scenarios: list[Scenario],
    scratch: Path,
    args: argparse.Namespace,
    use_wrk: bool,
    postgres: ThrowawayPostgres | None,
    countdown: Countdown,
    paced: tuple[int, ...],
    paced_rows: list[tuple[str, int, Run]],
) -> tuple[list[Row], dict[int, float]]:
    """The no-op, then each scenario one after the other on its own: the rows and the no-op's orders/s."""
    rows: list[Row] = []
    ceiling: dict[int, float] = {}
    with ServiceProcess(BENCH, {}, scratch / "noop.out", app="noop_app:app") as noop:
        for connections in CONNECTIONS:
            countdown.step(f"no-op ceiling: {connections} connections", 1 + args.seconds)
            run, rss = measure(noop, connections, args.seconds, use_wrk)
            ceiling[connections] = run.per_second
            rows.append(Row("no-op ceiling", connections, run, rss))
        for rate in paced:
            countdown.step(f"no-op: {rate:,} orders/s paced", 1 + args.seconds)
            paced_rows.append(("no-op", rate, measure_paced(noop, rate, args.seconds)))
    past: preload.History | None = None
    for scenario in scenarios:
        if scenario.history and past is None:
            countdown.step(f"writing a {args.history:,}-order history", 60.0 * args.history / 1_000_000)
            past = preload.history(scratch, args.history, len(preload.PRE_INSTRUMENTS) + 1)
        history = past if scenario.history else None
        rows += run_scenario(scenario, scratch, history, args.seconds, use_wrk, postgres, countdown, paced, paced_rows)
    return rows, ceiling


def describe_machine() -> str:
    """The cores, the CPU model and the Python: what a reader needs to compare a table with their own."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def print_tables(
    rows: list[Row],
    ceiling: dict[int, float],
    paced_rows: list[tuple[str, int, Run]],
    domain_rows: list[tuple[int, float]],
) -> None:
    """The load table, the paced table when there were paced runs, and the domain core's."""
    print(
        "| service | connections | orders/s | share of ceiling | p50 ms | p99 ms | p99.9 ms | peak RSS MB "
        "| start-up s | restart after kill -9 s | errors |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        run = row.run
        rate = f"{run.per_second:,.0f}"
        share = f"{run.per_second / ceiling[row.connections]:.0%}"
        if row.rounds:
            # The median of the rounds, and their spread.
            rate = f"{statistics.median(row.rounds):,.0f} ({min(row.rounds):,.0f}-{max(row.rounds):,.0f})"
            share = f"{statistics.median(row.shares):.0%} ({min(row.shares):.0%}-{max(row.shares):.0%})"
        start_up = "" if row.start_up is None else f"{row.start_up:.2f}"
        restart = "" if row.restart is None else f"{row.restart:.2f}"
        print(
            f"| {row.name} | {row.connections} | {rate} | {share} | {run.percentile(0.5):.2f} "
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
    for users, decisions in domain_rows:
        print(f"| strategy with {users} users | {decisions:,.0f} |")


if __name__ == "__main__":
    main()
