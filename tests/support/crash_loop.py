"""The crash loop: kill -9 the real service at random instants and prove no order is lost or doubled.

On the TinyDB store it reads the data files themselves; on a SQL store the
order log comes from `trading-orders export` (the store's own reader, run as
the operator would) and the trades from GET /trades.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.service_process import ServiceProcess, all_pages

# Overlapping universes and few instruments, so most orders are accepted for
# someone and BUYs and SELLs keep meeting the same positions.
PROFILE = {
    "U1": {"S1": ["ACC", "INFY", "TCS"], "S2": ["ACC", "ITC"]},
    "U2": {"S1": ["ACC", "INFY", "TCS"]},
    "U3": {"S2": ["ACC", "ITC"], "S3": ["TCS"]},
}
UNIVERSES = {"S1": ["ACC", "INFY", "TCS"], "S2": ["ACC", "ITC"], "S3": ["TCS"]}
ORDER_LOG = "order_log.jsonl"
POSITIONS = "positions.json"
TRADES = "trades.jsonl"
PositionRow = tuple[str, str, str, str]
TradeRow = tuple[str, str, str, str, str]


@dataclass
class CrashLoopResult:
    """What the crash loop did and every mismatch it found (none, when the service keeps its promises)."""

    cycles: int = 0
    kills_during_start_up: int = 0
    orders_sent: int = 0
    orders_answered: int = 0
    retries_after_restart: int = 0
    mismatches: list[str] = field(default_factory=list)


@dataclass
class _Sent:
    """One order a client sent, with its key and the answer, if one came."""

    body: dict[str, str]
    key: str
    answer: dict[str, Any] | None = None


class CrashLoop:
    """Runs the service from ``scripts_dir`` on data in ``scratch``, killing and checking it cycle after cycle."""

    def __init__(
        self,
        scripts_dir: Path,
        scratch: Path,
        seed: int,
        clients: int = 4,
        store: str = "tinydb",
        database_url: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        """Prepare the scratch directory and its profile for ``store``; nothing runs until run().

        ``settings`` are further TRADING_ORDERS_* variables for the service, by name without the prefix.
        """
        self._scripts_dir = scripts_dir
        self._scratch = scratch
        self._data = scratch / "data"
        self._rng = random.Random(seed)
        self._clients = clients
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "user_profile.json").write_text(json.dumps(PROFILE, indent=4))
        self._environment = {
            "TRADING_ORDERS_DATA_DIR": str(self._data),
            "TRADING_ORDERS_PROFILE_PATH": str(scratch / "user_profile.json"),
            "TRADING_ORDERS_LOG_DIR": str(scratch / "logs"),
            "TRADING_ORDERS_STORE": store,
        }
        if database_url is not None:
            self._environment["TRADING_ORDERS_DATABASE_URL"] = database_url
        self._environment.update({f"TRADING_ORDERS_{name.upper()}": value for name, value in (settings or {}).items()})
        self._store = store
        self._answered: dict[str, dict[str, Any]] = {}
        self._launches = 0

    def run(
        self,
        cycles: int,
        report: Callable[[int, CrashLoopResult], None] | None = None,
        start_up_kills: Collection[int] | None = None,
    ) -> CrashLoopResult:
        """Run ``cycles`` kill-restart-check cycles; ``report`` is called after each.

        ``start_up_kills`` are the cycles (from 1) that first kill the service
        while it recovers; by default a quarter of the cycles, drawn at random.
        """
        result = CrashLoopResult()
        for cycle in range(1, cycles + 1):
            kill_start_up = self._rng.random() < 0.25 if start_up_kills is None else cycle in start_up_kills
            self._cycle(cycle, result, kill_start_up)
            result.cycles = cycle
            if report is not None:
                report(cycle, result)
        return result

    def _service(self) -> ServiceProcess:
        self._launches += 1
        output = self._scratch / f"service-{self._launches}.out"
        return ServiceProcess(self._scripts_dir, self._environment, output, forked=True)

    def _cycle(self, cycle: int, result: CrashLoopResult, kill_start_up: bool) -> None:
        if kill_start_up:
            # Die again while recovering from the last crash, before serving.
            dying = self._service()
            dying.launch()
            time.sleep(self._rng.uniform(0.0, 0.3))
            dying.kill()
            result.kills_during_start_up += 1
            self._check_files(cycle, result)
        service = self._service().start()
        sent = self._stream_until_killed(service)
        result.orders_sent += len(sent)
        result.orders_answered += sum(s.answer is not None for s in sent)
        self._answered.update({s.answer["order_id"]: s.answer for s in sent if s.answer is not None})
        self._check_files(cycle, result)
        restarted = self._service().start()
        try:
            self._check_recovered(cycle, restarted, result)
            self._retry_unanswered(cycle, restarted, [s for s in sent if s.answer is None], result)
        finally:
            restarted.kill()

    def _stream_until_killed(self, service: ServiceProcess) -> list[_Sent]:
        sent: list[_Sent] = []
        stop = threading.Event()
        seeds = [self._rng.random() for _ in range(self._clients)]

        def client(seed: float) -> None:
            rng = random.Random(seed)
            with requests.Session() as session:
                while not stop.is_set():
                    strategy = rng.choice(sorted(UNIVERSES))
                    body = {
                        "STRATEGY": strategy,
                        "INSTRUMENT": rng.choice(UNIVERSES[strategy]),
                        "POSITION": rng.choice(["BUY", "SELL"]),
                    }
                    order = _Sent(body, uuid.uuid4().hex)
                    sent.append(order)
                    try:
                        answer = session.post(
                            f"{service.base_url}/create_order",
                            json=body,
                            headers={"Idempotency-Key": order.key},
                            timeout=10,
                        )
                    except requests.RequestException:
                        return  # killed mid-request: this order has no answer
                    if answer.status_code == 200:
                        order.answer = answer.json()

        threads = [threading.Thread(target=client, args=(seed,)) for seed in seeds]
        for thread in threads:
            thread.start()
        time.sleep(self._rng.uniform(0.2, 1.2))
        service.kill()
        stop.set()
        for thread in threads:
            thread.join()
        return sent

    def _check_files(self, cycle: int, result: CrashLoopResult) -> None:
        """Every data file still parses: positions.json whole, the log whole but for a torn last line."""
        if self._store == "sqlite":
            self._check_sqlite_file(cycle, result)
        positions = self._data / POSITIONS
        if positions.exists():
            try:
                json.loads(positions.read_bytes())
            except ValueError as error:
                result.mismatches.append(f"cycle {cycle}: {POSITIONS} does not parse after kill -9: {error}")
        log = self._data / ORDER_LOG
        if log.exists():
            lines = log.read_bytes().split(b"\n")
            for number, line in enumerate(lines[:-1], start=1):  # the last piece is empty or torn
                try:
                    json.loads(line)
                except ValueError:
                    result.mismatches.append(f"cycle {cycle}: {ORDER_LOG} line {number} does not parse")

    def _check_sqlite_file(self, cycle: int, result: CrashLoopResult) -> None:
        """The SQLite database passes its own integrity check after the kill."""
        path = self._data / "trading_orders.sqlite3"
        if not path.exists():
            return
        with contextlib.closing(sqlite3.connect(path)) as connection:
            verdict = connection.execute("PRAGMA integrity_check").fetchone()
        if verdict != ("ok",):
            result.mismatches.append(f"cycle {cycle}: the SQLite database fails its integrity check: {verdict}")

    def _check_recovered(self, cycle: int, service: ServiceProcess, result: CrashLoopResult) -> None:
        log = self._read_log()
        problems = _compare_with_log(log, self._answered)
        expected, expected_trades, replay_problems = _replay(log)
        problems += replay_problems
        listed = requests.get(f"{service.base_url}/positions", timeout=10).json()["positions"]
        listed_rows = [(p["user"], p["strategy"], p["instrument"], p["order_id"]) for p in listed]
        if len({row[:3] for row in listed_rows}) != len(listed_rows):
            problems.append("GET /positions lists two open positions for one key")
        if set(listed_rows) != expected:
            problems.append(f"GET /positions differs from a replay of the log: {sorted(set(listed_rows) ^ expected)}")
        if self._store == "tinydb":
            problems += self._check_tinydb_files(log, expected_trades)
        else:
            # The SQL stores keep no snapshot; their trades are read through the API.
            listed_trades = [
                (t["user"], t["strategy"], t["instrument"], t["buy_order_id"], t["sell_order_id"])
                for t in all_pages(service.base_url, "trades")
            ]
            if sorted(listed_trades) != sorted(expected_trades):
                problems.append("GET /trades differs from the trades a replay of the log makes")
        result.mismatches.extend(f"cycle {cycle}: {problem}" for problem in problems)

    def _check_tinydb_files(self, log: list[dict[str, Any]], expected_trades: list[TradeRow]) -> list[str]:
        """positions.json equals the log replayed to its sequence, trades.jsonl the trades of the whole log."""
        problems = []
        # positions.json is a snapshot: it must be exactly the log replayed up to the sequence it names.
        stored = json.loads((self._data / POSITIONS).read_bytes()) if (self._data / POSITIONS).exists() else {}
        applied = stored["meta"]["1"]["applied_sequence"] if stored.get("meta") else 0
        if log and applied > log[-1]["sequence"]:
            problems.append(f"{POSITIONS} applied sequence {applied}, beyond the log's end at {log[-1]['sequence']}")
        at_snapshot, _, _ = _replay([entry for entry in log if entry["sequence"] <= applied])
        stored_rows = {
            (p["user"], p["strategy"], p["instrument"], p["order_id"]) for p in stored.get("positions", {}).values()
        }
        if stored_rows != at_snapshot:
            problems.append(
                f"{POSITIONS} differs from a replay of the log to #{applied}: {sorted(stored_rows ^ at_snapshot)}"
            )
        trades_path = self._data / TRADES
        recorded_trades = [
            (t["user"], t["strategy"], t["instrument"], t["buy_order_id"], t["sell_order_id"])
            for line in (trades_path.read_text().splitlines() if trades_path.exists() else [])
            for t in json.loads(line)["trades"]
        ]
        if recorded_trades != expected_trades:
            problems.append(f"{TRADES} differs from the trades a replay of the log makes")
        return problems

    def _retry_unanswered(
        self, cycle: int, service: ServiceProcess, unanswered: list[_Sent], result: CrashLoopResult
    ) -> None:
        """Retry each order that got no answer with its key: it must be decided at most once overall."""
        with requests.Session() as session:
            for order in unanswered:
                answer = session.post(
                    f"{service.base_url}/create_order",
                    json=order.body,
                    headers={"Idempotency-Key": order.key},
                    timeout=10,
                )
                result.retries_after_restart += 1
                if answer.status_code != 200:
                    result.mismatches.append(f"cycle {cycle}: retry of key {order.key} answered {answer.status_code}")
                    continue
                self._answered[answer.json()["order_id"]] = answer.json()
        keys = Counter(entry.get("idempotency_key") for entry in self._read_log())
        doubled = {key for key, times in keys.items() if key is not None and times > 1}
        if doubled:
            result.mismatches.append(f"cycle {cycle}: keys decided twice: {sorted(doubled)}")

    def _read_log(self) -> list[dict[str, Any]]:
        if self._store != "tinydb":
            return self._exported_log()
        path = self._data / ORDER_LOG
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def _exported_log(self) -> list[dict[str, Any]]:
        """The order log as `trading-orders export` writes it from the store, oldest first."""
        output = self._scratch / "export.jsonl"
        subprocess.run(
            [sys.executable, "-m", "trading_orders", "export", str(output)],
            env={**os.environ, **self._environment},
            capture_output=True,
            check=True,
            timeout=60,
        )
        records = [json.loads(line) for line in output.read_text().splitlines()]
        output.unlink()
        return [{k: v for k, v in record.items() if k != "kind"} for record in records if record["kind"] == "order"]


def _compare_with_log(log: list[dict[str, Any]], answered: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    sequences = [entry["sequence"] for entry in log]
    if sequences != list(range(1, len(log) + 1)):
        problems.append("the log's sequences are not 1..n without a gap")
    by_id = {entry["order_id"]: entry for entry in log}
    for order_id, answer in answered.items():
        entry = by_id.get(order_id)
        if entry is None:
            problems.append(f"answered order {order_id} is not in the order log")
        elif (entry["status"], entry["decisions"]) != (answer["RESPONSE"], answer["decisions"]):
            problems.append(f"order {order_id} was answered {answer['RESPONSE']} but logged {entry['status']}")
    return problems


def _replay(log: list[dict[str, Any]]) -> tuple[set[PositionRow], list[TradeRow], list[str]]:
    """The open positions and trades the log implies (scope strategy), worked out apart from the service's code."""
    open_by_key: dict[tuple[str, str, str], str] = {}
    trades: list[TradeRow] = []
    problems = []
    for entry in log:
        for decision in entry["decisions"]:
            if decision["status"] != "ACCEPTED":
                continue
            key = (decision["user"], entry["strategy"], entry["instrument"])
            if entry["position"] == "BUY":
                if key in open_by_key:
                    problems.append(f"order {entry['order_id']} opens {key}, already open")
                open_by_key[key] = entry["order_id"]
            elif (bought_by := open_by_key.pop(key, None)) is None:
                problems.append(f"order {entry['order_id']} closes {key}, which is not open")
            else:
                trades.append((*key, bought_by, entry["order_id"]))
    return {(*key, order_id) for key, order_id in open_by_key.items()}, trades, problems
