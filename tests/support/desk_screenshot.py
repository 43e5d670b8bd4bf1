"""`make desk-screenshot`: a real service and chromium, some orders over half a minute, and a picture of /desk."""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import expect, sync_playwright

from tests.support.desk_browser import DeskPage, chromium_path, launch_chromium
from tests.support.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
# The README's users, with a universe wide enough for some of everything.
PROFILE = {
    "Holland Proctor": {"STRATEGY_A": ["BIRLASOFT", "GRASIM", "EICHER"], "STRATEGY_B": ["MINDA"]},
    "Oaklee Wagner": {"STRATEGY_A": ["GRASIM", "EICHER"], "STRATEGY_D": ["ACC"]},
    "Jamie Rivera": {"STRATEGY_B": ["MINDA", "INFY"], "STRATEGY_D": ["ACC", "INFY"]},
}
# Mostly orders inside some user's universe, as a strategy sends them, and a few outside it.
ORDERS = sorted({(s, i) for strategies in PROFILE.values() for s, universe in strategies.items() for i in universe})
ORDERS += [("STRATEGY_A", "INFY"), ("STRATEGY_C", "ACC")]


def main(argv: list[str] | None = None) -> int:
    """Write the screenshot to the path given; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to place orders for")
    args = parser.parse_args(argv)
    executable = chromium_path()
    if executable is None:
        print("needs chromium: apt-get install -y chromium", file=sys.stderr)
        return 1
    draw = random.Random(20261207)
    with tempfile.TemporaryDirectory(prefix="trading-orders-desk-") as scratch:
        data = Path(scratch)
        (data / "profile.json").write_text(json.dumps(PROFILE))
        environment = {
            "TRADING_ORDERS_DATA_DIR": str(data),
            "TRADING_ORDERS_PROFILE_PATH": str(data / "profile.json"),
            "TRADING_ORDERS_LOG_DIR": str(data / "logs"),
        }
        with ServiceProcess(ROOT / "Scripts", environment, data / "service.out") as service, sync_playwright() as p:
            browser = launch_chromium(p, executable)
            desk = DeskPage.open(browser, service.base_url)
            deadline = time.monotonic() + args.seconds
            last = 0
            while time.monotonic() < deadline:
                strategy, instrument = draw.choice(ORDERS)
                body = {"STRATEGY": strategy, "INSTRUMENT": instrument, "POSITION": draw.choice(["BUY", "SELL"])}
                requests.post(f"{service.base_url}/create_order", json=body, timeout=5).raise_for_status()
                last += 1
                time.sleep(draw.uniform(0.05, 0.6))
            expect(desk.row(last)).to_be_visible()
            time.sleep(1.0)  # the debounced positions and the chart's next frame
            args.output.parent.mkdir(parents=True, exist_ok=True)
            desk.page.screenshot(path=str(args.output), full_page=False)
            browser.close()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
