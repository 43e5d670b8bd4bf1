"""How long each `trading-orders` command takes from launch to exit, and what it imports.

    .venv/bin/python -m tests.bench.command_start [--runs 15]

Starts the real service (memory store, a few orders placed) and runs each
command as a new process ``--runs`` times: the read commands against the
service, `follow` against a port nothing listens on (it imports all it needs,
tries once and exits 1), `verify` on an empty data directory. Prints a table
of the best and median wall time, the median CPU time (less swayed by
other work on a shared machine), the modules the command imported
(``python -X importtime``) and whether a web framework was among them. Not
part of make test. To measure another checkout's code with this venv, run it
with PYTHONPATH=<that checkout>/src.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.support.service_process import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
PROFILE = {"U1": {"S1": ["ACC", "INFY"]}, "U2": {"S1": ["ACC"]}}
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "pydantic", "dependency_injector")


def imported_modules(command: list[str]) -> list[str]:
    """The modules one run of ``command`` imports, from ``python -X importtime``."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trading_orders", *command],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")][1:]


def timed_runs(command: list[str], runs: int) -> tuple[list[float], list[float]]:
    """The wall and CPU (user + system) seconds of ``runs`` runs of ``command``, each a new process."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "trading_orders", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def main() -> None:
    """Start the service, time each command, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="command-start-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "profile.json").write_text(json.dumps(PROFILE))
        (scratch / "empty").mkdir()
        environment = {
            "TRADING_ORDERS_STORE": "memory",
            "TRADING_ORDERS_PROFILE_PATH": str(scratch / "profile.json"),
            "TRADING_ORDERS_LOG_DIR": str(scratch / "logs"),
            "TRADING_ORDERS_LOG_LEVEL": "WARNING",
        }
        with ServiceProcess(ROOT / "Scripts", environment, scratch / "service.out") as service:
            for instrument, side in [("ACC", "BUY"), ("INFY", "BUY"), ("ACC", "SELL")]:
                body = {"STRATEGY": "S1", "INSTRUMENT": instrument, "POSITION": side}
                requests.post(f"{service.base_url}/create_order", json=body, timeout=10).raise_for_status()
            url = service.base_url
            nobody = f"http://127.0.0.1:{free_port()}"
            commands = [
                ["--help"],
                ["positions", "--url", url],
                ["orders", "--url", url],
                ["trades", "--url", url],
                ["orders", "--url", url, "--json"],
                ["follow", "--url", nobody],
                ["serve", "--help"],
                ["verify", "--data-dir", str(scratch / "empty")],
            ]
            print(f"{args.runs} runs of each command, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
            print(f"load average at the start: {os.getloadavg()[0]:.1f}")
            print()
            print("| command | best s | median s | median CPU s | modules imported | web framework imported |")
            print("| --- | --- | --- | --- | --- | --- |")
            for command in commands:
                samples, cpus = timed_runs(command, args.runs)
                modules = imported_modules(command)
                frameworks = sorted({m.split(".")[0] for m in modules} & set(WEB_FRAMEWORKS))
                shown = " ".join(command).replace(url, "URL").replace(nobody, "NOBODY").replace(str(scratch), "SCRATCH")
                print(
                    f"| `{shown}` | {min(samples):.3f} | {statistics.median(samples):.3f} | "
                    f"{statistics.median(cpus):.3f} | {len(modules)} | {', '.join(frameworks) or 'none'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
