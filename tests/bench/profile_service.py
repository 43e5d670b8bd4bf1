"""Where the service's time goes under load: a py-spy profile of POST /create_order, summed by function.

    .venv/bin/pip install py-spy     # a profiler, not a dependency of the project
    .venv/bin/python -m tests.bench.profile_service [--store tinydb] [--connections 64] [--seconds 8]
        [--sampling gil|idle|busy] [--offered 1000] [--log-level INFO] [--rate 100]

--store postgres starts a throwaway PostgreSQL server (fsync on) for the run.

Starts the real service on loopback (one uvicorn worker, 100 open positions),
drives it with wrk (tests/bench/orders.lua), samples it with py-spy meanwhile, and
prints the share of busy samples (threads waiting on a lock, a queue or epoll
left out) spent in each function and what it calls, then in each function
alone.
"""

import argparse
import collections
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench import preload
from tests.bench.service_load import BENCH, ROOT
from tests.support.postgres_server import ThrowawayPostgres
from tests.support.service_process import ServiceProcess

WAITING = ("Condition.wait", "Queue.get", "EpollSelector.select", "Event.wait", "_wait_for_tstate_lock")
# Frames every sample of a thread starts with: they say nothing about the cost.
SCAFFOLDING = ("threading.py", "runpy", "click", "uvicorn/main.py", "uvicorn/server.py", "asyncio/runners.py")


def frame_name(frame: str) -> str:
    """'function (file)' from py-spy's 'function (path:line)'."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0].split('/')[-1]})" if where else function


def summarize(raw: Path, rows: int, keep_waiting: bool = False) -> str:
    """The inclusive and self tables of a py-spy raw (collapsed stacks) file, as Markdown."""
    inclusive: collections.Counter[str] = collections.Counter()
    alone: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not keep_waiting and any(frame.startswith(WAITING) for frame in frames[-3:]):
            continue
        busy += int(count)
        for name in {frame_name(f) for f in frames if not any(s in f for s in SCAFFOLDING)}:
            inclusive[name] += int(count)
        alone[frame_name(frames[-1])] += int(count)
    lines = [f"{busy} samples", "", "| with what it calls | function |", "| --- | --- |"]
    lines += [f"| {count / busy:.1%} | `{name}` |" for name, count in inclusive.most_common(rows)]
    lines += ["", "| alone | function |", "| --- | --- |"]
    lines += [f"| {count / busy:.1%} | `{name}` |" for name, count in alone.most_common(rows // 2)]
    return "\n".join(lines)


def main() -> None:
    """Profile the service under wrk and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="tinydb")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--offered", type=int, default=0, help="orders/s to offer, paced (default 0: a closed loop)")
    parser.add_argument("--log-level", default="INFO", help="the service's TRADING_ORDERS_LOG_LEVEL (default INFO)")
    parser.add_argument(
        "--sampling",
        choices=["gil", "idle", "busy"],
        default="gil",
        help="gil: the thread holding the GIL (where Python time goes); idle: every thread, waiting included; "
        "busy: every thread not waiting (default gil)",
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists() or shutil.which("wrk") is None:
        sys.exit("needs py-spy (.venv/bin/pip install py-spy) and wrk (apt-get install wrk)")
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trading-orders-profile-")))
        (scratch / "profile.json").write_text(json.dumps(preload.profile(1)))
        environment = {
            "TRADING_ORDERS_DATA_DIR": str(scratch / "data"),
            "TRADING_ORDERS_PROFILE_PATH": str(scratch / "profile.json"),
            "TRADING_ORDERS_LOG_DIR": str(scratch / "logs"),
            "TRADING_ORDERS_LOG_LEVEL": args.log_level,
            "TRADING_ORDERS_STORE": args.store,
        }
        if args.store == "postgres":
            # The benchmark's server: a throwaway one with fsync on, stopped at the end.
            server = ThrowawayPostgres(durable=True).start()
            stack.callback(server.stop)
            environment["TRADING_ORDERS_DATABASE_URL"] = server.new_database()
        raw = scratch / "profile.txt"
        with ServiceProcess(ROOT / "Scripts", environment, scratch / "service.out") as service:
            # --nonblocking: sampling must not pause the process it measures.
            mode = {"gil": ["--gil"], "idle": ["--idle"], "busy": []}[args.sampling]
            sampler = subprocess.Popen(
                [py_spy, "record", "-p", str(service.pid), "-d", str(args.seconds), "-r", str(args.rate),
                 "--nonblocking", *mode, "-f", "raw", "-o", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
            load = subprocess.run(
                ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds + 1}s",
                 "-s", str(BENCH / "orders.lua"), f"{service.base_url}/create_order",
                 "--", str(round(args.connections * 1000 / args.offered) if args.offered else 0)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            sampler.wait()
        print(f"wrk: {load.stdout.strip().splitlines()[-1]}")
        print(summarize(raw, args.rows, keep_waiting=args.sampling == "idle"))


if __name__ == "__main__":
    main()
