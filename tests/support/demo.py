"""`make demo`: start the service on a scratch data directory, send 30 orders, show the open positions."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import requests

from tests.support.service_process import ServiceProcess
from trading_orders.tools.order_producer import main as produce


def main(argv: list[str] | None = None) -> int:
    """Run the demo against the project at --project-root; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    parser.add_argument("--count", type=int, default=30)
    args = parser.parse_args(argv)
    root: Path = args.project_root.resolve()
    profile = root / "Jsons" / "user_profile.json"
    with tempfile.TemporaryDirectory(prefix="trading-orders-demo-") as scratch:
        data = Path(scratch)
        environment = {
            "TRADING_ORDERS_DATA_DIR": str(data),
            "TRADING_ORDERS_PROFILE_PATH": str(profile),
            "TRADING_ORDERS_LOG_DIR": str(data / "logs"),
        }
        service = ServiceProcess(root / "Scripts", environment, data / "service.out")
        with service:
            print(f"service on {service.base_url}, data in {data}, profile {profile}\n")
            status = produce(
                [
                    "--count",
                    str(args.count),
                    "--interval",
                    "0.1",
                    "--profile",
                    str(profile),
                    "--seed",
                    "7",
                    "--url",
                    f"{service.base_url}/create_order",
                ],
                raw_details=root / "Jsons" / "raw_details.json",
            )
            positions = requests.get(f"{service.base_url}/positions", timeout=5).json()["positions"]
            print(f"\nopen positions ({len(positions)}):")
            print(f"  {'user':<22} {'strategy':<12} {'instrument':<12} opened_at")
            for p in positions:
                print(f"  {p['user']:<22} {p['strategy']:<12} {p['instrument']:<12} {p['opened_at']}")
        print("\nservice stopped")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
