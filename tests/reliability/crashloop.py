"""Kill -9 the service at random instants, cycle after cycle, and check it never loses or doubles an order.

.venv/bin/python -m tests.reliability.crashloop --cycles 1000 [--store sqlite | --store postgres [--database-url URL]]

`--store postgres` without a URL runs on a throwaway PostgreSQL server of its own (fsync on).
`make soak` runs 20 cycles on each durable store.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.support.crash_loop import CrashLoop, CrashLoopResult
from tests.support.postgres_server import ThrowawayPostgres

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    """Run the crash loop and print a summary table; exit status 1 on any mismatch."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20, help="kill-restart-check cycles (default 20)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="seed (default: the time)")
    parser.add_argument("--clients", type=int, default=4, help="client threads sending orders (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--store", default="tinydb", choices=["tinydb", "sqlite", "postgres"])
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database for --store postgres (default: a throwaway server)"
    )
    args = parser.parse_args()
    if args.store == "postgres" and not args.database_url:
        server = ThrowawayPostgres(durable=True)
        try:
            args.database_url = server.start().new_database()
            return _run(args)
        finally:
            server.stop()
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="trading-orders-crashloop-"))
    print(f"store {args.store}, seed {args.seed}, scratch {scratch}", flush=True)

    def progress(cycle: int, result: CrashLoopResult) -> None:
        print(
            f"cycle {cycle:>5}: sent {result.orders_sent:>7}, answered {result.orders_answered:>7}, "
            f"start-up kills {result.kills_during_start_up:>4}, mismatches {len(result.mismatches)}",
            flush=True,
        )

    started = time.monotonic()
    result = CrashLoop(
        ROOT / "Scripts", scratch, args.seed, args.clients, store=args.store, database_url=args.database_url
    ).run(args.cycles, progress)
    seconds = time.monotonic() - started
    for mismatch in result.mismatches:
        print(f"MISMATCH {mismatch}")
    print()
    print(
        "| cycles | kills during start-up | orders sent | orders answered | retried after restart | mismatches | time |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {result.cycles} | {result.kills_during_start_up} | {result.orders_sent} | {result.orders_answered} "
        f"| {result.retries_after_restart} | {len(result.mismatches)} | {seconds:.0f} s |"
    )
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if result.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
