"""Generates Jsons/user_profile.json the way the brief's generator does, reproducibly with a seed."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from trading_orders.atomic_file import write_atomically
from trading_orders.tools.raw_details import RawDetails, RawDetailsError, show_warnings_on_stderr

UNIVERSE_SIZES = (1, 10)
STRATEGIES_PER_USER = (1, 7)


def generate_profile(details: RawDetails, users: int, rng: random.Random) -> dict[str, dict[str, list[str]]]:
    """Pick ``users`` users; every strategy gets one shared universe; each user runs 1-7 strategies."""
    if not 1 <= users <= len(details.users):
        raise ValueError(f"--users must be between 1 and {len(details.users)} (the users in raw details)")
    universes = {
        strategy: rng.sample(details.instruments, rng.randint(*_bounded(UNIVERSE_SIZES, details.instruments)))
        for strategy in details.strategies
    }
    profile: dict[str, dict[str, list[str]]] = {}
    for user in rng.sample(details.users, users):
        strategies = rng.sample(details.strategies, rng.randint(*_bounded(STRATEGIES_PER_USER, details.strategies)))
        profile[user] = {strategy: list(universes[strategy]) for strategy in strategies}
    return profile


def _bounded(sizes: tuple[int, int], pool: tuple[str, ...]) -> tuple[int, int]:
    return sizes[0], min(sizes[1], len(pool))


def main(argv: list[str] | None, raw_details: Path, profile_path: Path) -> int:
    """Command line: write a generated profile; returns the exit status."""
    parser = argparse.ArgumentParser(description="Generate the user profile file from the raw details.")
    parser.add_argument("--users", type=int, default=3, help="how many users to pick (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible profile")
    parser.add_argument("--raw-details", type=Path, default=raw_details, help=f"default {raw_details}")
    parser.add_argument("--output", type=Path, default=profile_path, help=f"default {profile_path}")
    args = parser.parse_args(argv)
    show_warnings_on_stderr()
    try:
        details = RawDetails.load(args.raw_details)
        profile = generate_profile(details, args.users, random.Random(args.seed))
    except (RawDetailsError, ValueError) as error:
        parser.error(str(error))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(args.output, (json.dumps(profile, indent=4) + "\n").encode())
    strategies = sum(len(s) for s in profile.values())
    print(f"wrote {args.output}: {len(profile)} users, {strategies} user strategies")
    return 0
