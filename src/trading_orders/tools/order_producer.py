"""Sends random orders to the service the way the brief's producer does, and sums up the answers."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import requests
from rich.console import Console
from rich.progress import Progress

from trading_orders.tools.desk_client import refusal
from trading_orders.tools.raw_details import RawDetails, RawDetailsError, show_warnings_on_stderr

DEFAULT_URL = "http://127.0.0.1:8080/create_order"
SIDES = ("BUY", "SELL")
# The shell's status for a command stopped by SIGINT (128 + 2).
INTERRUPTED = 130


def orders_from_raw_details(details: RawDetails, rng: random.Random) -> Callable[[], dict[str, str]]:
    """Orders as the brief draws them: any strategy, any instrument, any side."""

    def draw() -> dict[str, str]:
        return {
            "STRATEGY": rng.choice(details.strategies),
            "INSTRUMENT": rng.choice(details.instruments),
            "POSITION": rng.choice(SIDES),
        }

    return draw


def orders_among_traded_instruments(
    details: RawDetails, profile_path: Path, rng: random.Random
) -> Callable[[], dict[str, str]]:
    """Orders as the brief draws them, any strategy and side, among the instruments the profile trades.

    The brief draws its profile's universes and its orders from one small pool
    (14 symbols), so about 1 order in 10 is accepted; ours ships over 100, where
    the brief's draw is accepted about 1 in 50. Every reason still occurs: a
    strategy nobody runs, an instrument outside the strategy's universe.
    """
    traded = sorted({instrument for instruments in _universes(profile_path).values() for instrument in instruments})
    if not traded:
        raise ValueError(f"{profile_path} gives no user an instrument")

    def draw() -> dict[str, str]:
        return {
            "STRATEGY": rng.choice(details.strategies),
            "INSTRUMENT": rng.choice(traded),
            "POSITION": rng.choice(SIDES),
        }

    return draw


def _universes(profile_path: Path) -> dict[str, set[str]]:
    """Each strategy of the profile file with every instrument any user trades in it."""
    profile = json.loads(profile_path.read_bytes())
    universes: dict[str, set[str]] = {}
    for strategies in profile.values():
        for strategy, instruments in strategies.items():
            universes.setdefault(strategy, set()).update(instruments)
    return universes


def orders_from_profile(profile_path: Path, rng: random.Random) -> Callable[[], dict[str, str]]:
    """Orders drawn from the strategies and universes in the profile, so most reach a user."""
    choices = sorted((strategy, sorted(instruments)) for strategy, instruments in _universes(profile_path).items())

    def draw() -> dict[str, str]:
        strategy, instruments = rng.choice(choices)
        return {"STRATEGY": strategy, "INSTRUMENT": rng.choice(instruments), "POSITION": rng.choice(SIDES)}

    return draw


def _draw(
    profile: Path | None, brief: bool, raw_details: Path, profile_path: Path | None, rng: random.Random
) -> Callable[[], dict[str, str]]:
    """The stream the options ask for; says on stderr which one it is, stdout keeping the brief's lines."""
    if profile is not None:
        return orders_from_profile(profile, rng)
    details = RawDetails.load(raw_details)
    if not brief and profile_path is not None and profile_path.exists():
        print(
            f"orders: any strategy of {raw_details.name}, an instrument {profile_path} trades (--brief: any of "
            f"its {len(details.instruments)} instruments)",
            file=sys.stderr,
        )
        return orders_among_traded_instruments(details, profile_path, rng)
    if not brief:
        print(
            f"orders: no profile at {profile_path}, so any of the {len(details.instruments)} instruments of "
            f"{raw_details.name}, as the brief's producer draws them: nearly all will be rejected",
            file=sys.stderr,
        )
    return orders_from_raw_details(details, rng)


def main(argv: list[str] | None, raw_details: Path, profile_path: Path | None = None) -> int:
    """Command line: send the orders, print each answer and a summary; exit 1 if any failed, 130 on Ctrl-C.

    By default the orders are drawn among the instruments ``profile_path`` trades,
    when it exists; else, or with --brief, among every instrument of the raw details.
    """
    parser = argparse.ArgumentParser(
        description="Send random orders to the order service: any strategy of the raw details, any side, "
        "and an instrument the profile trades (--brief: any instrument of the raw details)."
    )
    parser.add_argument("--count", type=int, default=300, help="orders to send (default 300)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between orders (default 1)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"create_order URL (default {DEFAULT_URL})")
    parser.add_argument("--raw-details", type=Path, default=raw_details, help=f"default {raw_details}")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="draw only this profile's strategies and universes: most reach a user",
    )
    parser.add_argument(
        "--brief",
        action="store_true",
        help="draw any instrument of the raw details, as the brief's producer does: nearly all are rejected",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible stream")
    args = parser.parse_args(argv)
    show_warnings_on_stderr()
    if args.count < 0 or args.interval < 0:
        parser.error("--count and --interval must not be negative")
    rng = random.Random(args.seed)
    try:
        draw = _draw(args.profile, args.brief, args.raw_details, profile_path, rng)
    except (RawDetailsError, OSError, ValueError, AttributeError) as error:
        parser.error(f"cannot draw orders: {error}")
    tally: Counter[str] = Counter()
    # stdout keeps exactly the brief's one line per order. When it goes to a
    # terminal those lines are the progress; when it is piped, a bar on stderr
    # (drawn only if stderr is a terminal) shows it instead, never redirecting stdout.
    # A disabled bar also keeps rich from ending a piped stderr with a blank line.
    stderr = Console(stderr=True)
    progress = Progress(
        console=stderr, transient=True, redirect_stdout=False, disable=sys.stdout.isatty() or not stderr.is_terminal
    )
    task = progress.add_task("sending orders", total=args.count)
    sent = 0
    try:
        with requests.Session() as session, progress:
            for number in range(1, args.count + 1):
                order = draw()
                label = f"{number:>4} {order['STRATEGY']} {order['INSTRUMENT']} {order['POSITION']}"
                sent += 1
                try:
                    response = session.post(args.url, json=order, timeout=10)
                    if response.status_code == 200:
                        answer = response.json()
                        status = str(answer["RESPONSE"])
                        detail = ", ".join(
                            f"{d['user']}: {d['reason'] or d['status']}" for d in answer.get("decisions", [])
                        ) or str(answer.get("reason"))
                        print(f"{label} -> {status} ({detail})", flush=True)
                        tally[status] += 1
                    else:
                        # The problem's detail says what to do (retry, fix the order), not just the status.
                        print(f"{label} -> ERROR {refusal(response)}", flush=True)
                        tally["ERROR"] += 1
                except (requests.RequestException, ValueError, KeyError) as error:
                    print(f"{label} -> ERROR {error}", flush=True)
                    tally["ERROR"] += 1
                progress.advance(task)
                if number < args.count and args.interval:
                    time.sleep(args.interval)
    except KeyboardInterrupt:
        # Ctrl-C is how a person stops a long stream: say what happened, no traceback.
        unanswered = sent - sum(tally.values())
        print(
            f"interrupted after {sent} of {args.count} orders: {tally['ACCEPTED']} accepted, "
            f"{tally['REJECTED']} rejected, {tally['ERROR']} errors, {unanswered} unanswered",
            file=sys.stderr,
            flush=True,
        )
        return INTERRUPTED
    print(
        f"sent {args.count}: {tally['ACCEPTED']} accepted, {tally['REJECTED']} rejected, {tally['ERROR']} errors",
        flush=True,
    )
    return 1 if tally["ERROR"] else 0
