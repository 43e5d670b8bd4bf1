"""Checks that the position store and the order log agree, and says what differs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from itertools import zip_longest
from pathlib import Path

from trading_orders.adapters.storage.tinydb_store.order_index import INDEX_FILE, newest_indexed
from trading_orders.adapters.storage.tinydb_store.order_log import (
    ORDER_LOG_FILE,
    JsonLinesOrderLog,
    last_sequence_on_disk,
)
from trading_orders.adapters.storage.tinydb_store.parts import OrderLog, StoredPositions
from trading_orders.adapters.storage.tinydb_store.position_snapshots import POSITIONS_FILE, TinyDBPositionStore
from trading_orders.adapters.storage.tinydb_store.trade_log import TRADE_LOG_FILE, JsonLinesTradeLog, trade_log_damage
from trading_orders.application.errors import CorruptStore, StartupError, StorageUnavailable
from trading_orders.domain.controls import NO_CONTROLS, ControlLogEntry
from trading_orders.domain.model import DomainError, Position, PositionScope, Trade
from trading_orders.domain.portfolio import Portfolio


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """What verify found: problems make the files disagree; notes are what start-up will heal."""

    orders_in_log: int
    open_positions: int
    applied_sequence: int
    problems: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())

    @property
    def agree(self) -> bool:
        """True when the store is exactly what the log implies up to the sequence it applied."""
        return not self.problems


@dataclass(frozen=True, slots=True)
class DirectoryVerification:
    """verify's findings on a data directory, with the files it read.

    ``damaged`` names each file derived from the log that cannot be used,
    and why: start-up sets it aside and rebuilds it from the log, unless
    the file is one of ``unseen_at_start_up``, whose lines all read as
    sound but differ from what the log makes (start-up checks each line,
    but compares none with the log): moved away, it is rebuilt.
    """

    report: VerificationReport
    order_log_path: Path
    positions_path: Path
    torn_tail: int
    damaged: tuple[tuple[Path, str], ...] = ()
    unseen_at_start_up: tuple[Path, ...] = ()


def verify_directory(
    directory: Path, scope: PositionScope, replayed: Callable[[int, int], None] | None = None
) -> DirectoryVerification:
    """Check the files in ``directory`` read-only (safe beside a running service); raises StartupError if unreadable.

    ``replayed`` is told each sequence as it is replayed, and the last one to come, for a progress display.
    """
    try:
        return _verify_files(directory, scope, replayed)
    except OSError as error:
        # The system refusing a file (a permission, a directory in its place): its name says which.
        raise StartupError(f"cannot read {error.filename or directory}: {error.strerror or error}") from error
    except StorageUnavailable as error:
        raise StartupError(str(error)) from error


def _verify_files(
    directory: Path, scope: PositionScope, replayed: Callable[[int, int], None] | None
) -> DirectoryVerification:
    # The snapshot first, then the log: a running service writes a snapshot
    # only after the log lines it covers, and the log only grows, so a log
    # opened after the snapshot holds every entry the snapshot applied. The
    # other order can pair an old log with a newer snapshot and call a
    # healthy service's log truncated.
    damaged: list[tuple[Path, str]] = []
    try:
        stored: StoredPositions | None = TinyDBPositionStore(directory, read_only=True).load()
    except CorruptStore as damage:
        stored = None
        damaged.append((directory / POSITIONS_FILE, str(damage).removeprefix(f"{directory / POSITIONS_FILE}: ")))
    order_log = JsonLinesOrderLog(directory, read_only=True)
    try:
        order_log.check()
        trade_damage = trade_log_damage(directory, None if stored is None else stored.trades_through)
        if trade_damage is not None:
            damaged.append((directory / TRADE_LOG_FILE, trade_damage))
        index_damage = order_log.index_damage()
        if index_damage is not None:
            damaged.append((directory / INDEX_FILE, index_damage))
        unseen: list[Path] = []
        if stored is None:
            # No snapshot to compare: the log's own check is all there is.
            report = VerificationReport(order_log.last_sequence(), 0, 0)
        elif trade_damage is None and stored.trades_through is not None:
            # Opened after the snapshot: the file then holds every trade the snapshot's orders made.
            with closing(JsonLinesTradeLog(directory, read_only=True).oldest_first()) as lines:
                trades = _TradeComparison(lines, stored.applied_sequence)
                report = verify(stored, order_log, scope, replayed, trades.made)
            difference = trades.difference()
            if difference is not None:
                damaged.append((directory / TRADE_LOG_FILE, difference))
                unseen.append(directory / TRADE_LOG_FILE)
        else:
            # Without the mark (an older snapshot), the trade log may lack trades start-up will write.
            report = verify(stored, order_log, scope, replayed)
        lost = _entries_only_the_index_holds(directory, order_log.last_sequence())
        if lost is not None:
            report = replace(report, problems=(lost, *report.problems))
        return DirectoryVerification(
            report,
            directory / ORDER_LOG_FILE,
            directory / POSITIONS_FILE,
            order_log.torn_tail,
            tuple(damaged),
            tuple(unseen),
        )
    finally:
        order_log.close()


class _TradeComparison:
    """The trades a replay of the order log makes, compared SELL by SELL with the trade log's lines up to ``through``.

    Told each replayed entry in turn, it reads the trade log alongside, so
    it holds one line at a time however long the logs are. The lines past
    ``through`` are not compared: a running service may have written them
    since the snapshot, for orders this replay does not reach.
    """

    def __init__(self, lines: Iterator[tuple[int, list[Trade]]], through: int) -> None:
        """Compare ``lines`` ((SELL sequence, trades), oldest first) up to SELL ``through``."""
        self._lines = lines
        self._through = through
        self._line = self._next_line()
        self._replayed = 0
        self._first: str | None = None
        self._differing = 0

    def _next_line(self) -> tuple[int, list[Trade]] | None:
        line = next(self._lines, None)
        return None if line is None or line[0] > self._through else line

    def made(self, sequence: int, trades: tuple[Trade, ...]) -> None:
        """Take the trades (often none) the replay made at entry ``sequence``; entries come in order."""
        self._replayed = sequence
        while self._line is not None and self._line[0] < sequence:
            self._differ(f"it holds trades of order {self._line[0]}, which made none in the order log")
            self._line = self._next_line()
        recorded: list[Trade] = []
        if self._line is not None and self._line[0] == sequence:
            recorded = self._line[1]
            self._line = self._next_line()
        if recorded == list(trades):
            return
        if not trades:
            self._differ(f"it holds trades of order {sequence}, which made none in the order log")
            return
        if not recorded:
            self._differ(f"it lacks the trades of order {sequence}, a SELL in the order log: a line was lost")
            return
        wrote, makes = next((w, m) for w, m in zip_longest(recorded, trades) if w != m)
        self._differ(
            f"its trades of order {sequence} differ from the order log's: it holds {_trade(wrote)} "
            f"where the log makes {_trade(makes)}"
        )

    def _differ(self, difference: str) -> None:
        self._differing += 1
        if self._first is None:
            self._first = difference

    def difference(self) -> str | None:
        """The first difference found, and how many more; None when none, or when the replay stopped short."""
        if self._first is None or self._replayed < self._through:
            # A replay that stopped short is reported as a problem of its own;
            # the trades it did not reach were not compared.
            return None
        more = f"; {self._differing - 1} more SELL(s) differ" if self._differing > 1 else ""
        return f"{self._first}{more}"


def _entries_only_the_index_holds(directory: Path, log_end: int) -> str | None:
    """The problem when the index holds entries past the order log's end (``log_end`` when it was opened)."""
    indexed = newest_indexed(directory)
    # A running service may have written and indexed entries since the log
    # was opened: only an index ahead of the log as it stands now is a loss.
    if indexed <= log_end or indexed <= (now := last_sequence_on_disk(directory)):
        return None
    return (
        f"{directory / INDEX_FILE} indexes order-log entry {indexed} but the order log ends at {now}: "
        "the log was truncated or replaced"
    )


def verify(
    stored: StoredPositions,
    order_log: OrderLog,
    scope: PositionScope,
    replayed: Callable[[int, int], None] | None = None,
    made_trades: Callable[[int, tuple[Trade, ...]], None] | None = None,
) -> VerificationReport:
    """Replay ``order_log`` up to the store's applied sequence and compare the result with ``stored``.

    ``replayed`` is told each sequence as it is replayed, and the last one to come, for a progress display;
    ``made_trades`` each sequence replayed and the trades its entry made.
    """
    last = order_log.last_sequence()
    notes: list[str] = []
    if stored.applied_sequence > last:
        problem = (
            f"the position store has applied sequence {stored.applied_sequence} but the order log ends at {last}: "
            "the log was truncated or replaced"
        )
        return VerificationReport(last, len(stored.positions), stored.applied_sequence, (problem,))
    portfolio = Portfolio(scope)
    controls = NO_CONTROLS
    try:
        for entry in order_log.entries_after(0):
            if entry.sequence > stored.applied_sequence:
                break
            if isinstance(entry, ControlLogEntry):
                controls = controls.with_entry(entry)
                change = portfolio.apply_control(entry.change)
            else:
                change = portfolio.apply(entry.decision)
            if made_trades is not None:
                made_trades(entry.sequence, change.trades)
            if replayed is not None:
                replayed(entry.sequence, stored.applied_sequence)
    except DomainError as error:
        problem = f"the order log does not replay under position scope {scope.value!r}: {error}"
        return VerificationReport(last, len(stored.positions), stored.applied_sequence, (problem,))
    if stored.applied_sequence < last:
        notes.append(
            f"the position store is {last - stored.applied_sequence} order(s) behind the log; start-up replays them"
        )
    expected, actual = set(portfolio), set(stored.positions)
    problems = (
        [] if controls == stored.controls else [f"the controls in the position store are not the log's: {controls!r}"]
    )
    problems += [f"missing from the position store: {_describe(p)}" for p in _in_order(expected - actual)]
    problems += [f"in the position store but not in the log: {_describe(p)}" for p in _in_order(actual - expected)]
    return VerificationReport(last, len(actual), stored.applied_sequence, tuple(problems), tuple(notes))


def _in_order(positions: set[Position]) -> list[Position]:
    return sorted(positions, key=lambda p: (p.opened_at, p.user, p.strategy, p.instrument))


def _describe(position: Position) -> str:
    return f"{position.user} {position.strategy}/{position.instrument} (order {position.order_id})"


def _trade(trade: Trade | None) -> str:
    if trade is None:
        return "no trade"
    return (
        f"{trade.user} {trade.strategy}/{trade.instrument} bought by {trade.buy_order_id} at "
        f"{trade.bought_at.isoformat()}, sold by {trade.sell_order_id} at {trade.sold_at.isoformat()}"
    )
