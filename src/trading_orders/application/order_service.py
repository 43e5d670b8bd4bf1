"""The order service: the one place that sequences decide -> record -> answer."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from trading_orders.application.errors import CorruptStore, IdempotencyKeyReused, StartupError, StorageUnavailable
from trading_orders.application.ports import (
    Clock,
    OrderIds,
    OrderLog,
    OrderMetrics,
    PositionStore,
    ProfileSource,
    TradeLog,
)
from trading_orders.domain.model import (
    DomainError,
    Order,
    OrderLogEntry,
    Position,
    PositionChange,
    PositionScope,
)
from trading_orders.domain.portfolio import ConflictingPositions, Portfolio
from trading_orders.domain.profile import Profile

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What start-up found and did."""

    open_positions: int
    last_sequence: int
    replayed_orders: int
    positions_outside_profile: tuple[Position, ...]


@dataclass(frozen=True, slots=True)
class Health:
    """Whether the service takes orders, and where its order log stands."""

    ready: bool
    store_reachable: bool
    last_sequence: int
    open_positions: int


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """An order's log entry, and whether it was answered from the log for a retried idempotency key."""

    entry: OrderLogEntry
    replayed: bool = False


class ServiceNotStarted(RuntimeError):
    """The service was asked to work before start() recovered its state."""


class OrderService:
    """Decides orders against the profile and open positions, and records them durably.

    The order log is the source of truth. For each order, under one lock:
    decide in memory, append the log entry (durable: the commit point), then
    record what it derived, trades first and positions last, the position
    store stamped with the entry's sequence. Start-up replays the log entries
    the position store has not applied; trades a replayed SELL made are
    recorded unless the trade log already has them. If a derived write
    fails, the same replay runs again on the next order.
    """

    def __init__(
        self,
        profile_source: ProfileSource,
        position_store: PositionStore,
        order_log: OrderLog,
        trade_log: TradeLog,
        clock: Clock,
        order_ids: OrderIds,
        scope: PositionScope,
        metrics: OrderMetrics | None = None,
    ) -> None:
        """Wire the service to its ports; nothing is read until start()."""
        self._profile_source = profile_source
        self._position_store = position_store
        self._order_log = order_log
        self._trade_log = trade_log
        self._clock = clock
        self._order_ids = order_ids
        self._scope = scope
        self._metrics = metrics
        # One lock serializes every decision against the same store: the
        # check "already holding?" and the write that opens the position must
        # not interleave with another order's, or two BUYs could both pass.
        self._lock = threading.Lock()
        self._profile: Profile | None = None
        self._portfolio: Portfolio | None = None
        # Set when trades or positions could not be written after the log
        # took an order: the next order replays the log tail into them.
        self._derived_behind = False
        # Times only grow along the log, even if the wall clock steps back, so
        # readers can stop at the first entry older than what they want.
        self._last_received_at: datetime | None = None

    def start(self) -> RecoveryReport:
        """Load the profile and positions, replay the order log's unapplied tail, and get ready."""
        with self._lock:
            profile = self._profile_source.load()
            last_sequence = self._order_log.last_sequence()
            try:
                portfolio, replayed = self._replay_log_tail()
            except StorageUnavailable as error:
                raise StartupError(f"cannot bring the stores up to date from the order log: {error}") from error
            newest = next(self._order_log.newest_first(), None)
            self._last_received_at = newest[1].decision.received_at if newest else None
            self._profile = profile
            self._portfolio = portfolio
            outside = _outside(profile, portfolio)
        for position in outside:
            logger.warning(
                "open position %s %s/%s (order %s) belongs to a strategy the profile no longer gives "
                "this user; it is kept and can still be listed",
                position.user,
                position.strategy,
                position.instrument,
                position.order_id,
            )
        report = RecoveryReport(len(portfolio), last_sequence, replayed, outside)
        if self._metrics is not None:
            self._metrics.state(len(portfolio), last_sequence)
        logger.info(
            "ready: %d open positions, order log at sequence %d, %d orders replayed, scope %s",
            report.open_positions,
            report.last_sequence,
            report.replayed_orders,
            self._scope.value,
        )
        return report

    def _replay_log_tail(self) -> tuple[Portfolio, int]:
        return replay_log_tail(self._position_store, self._order_log, self._trade_log, self._scope)

    def _record_derived(self, change: PositionChange, sequence: int) -> None:
        record_derived(self._trade_log, self._position_store, change, sequence)

    def place_order(self, order: Order, idempotency_key: str | None = None) -> PlacedOrder:
        """Decide ``order`` for every user who runs its strategy; returns once it is durable.

        An order with an ``idempotency_key`` already in the log is not decided
        again: its recorded entry is returned, marked replayed. The same key
        with a different order raises IdempotencyKeyReused.
        """
        with self._lock:
            started = time.perf_counter()
            profile, portfolio = self._ready()
            if idempotency_key is not None:
                # Under the lock, so a retry racing its first attempt waits for
                # it and then finds its entry: an order is never decided twice.
                recorded = self._order_log.find_by_idempotency_key(idempotency_key)
                if recorded is not None:
                    return _replay(recorded, order, idempotency_key)
            now = self._clock.now()
            if self._last_received_at is not None and now < self._last_received_at:
                now = self._last_received_at
            decision = portfolio.decide(order, profile, self._order_ids.next_id(), now)
            entry = OrderLogEntry(self._order_log.last_sequence() + 1, decision, idempotency_key)
            # The log entry is the commit point: once it is durable the order
            # happened, whatever befalls the position store afterwards.
            self._order_log.append(entry)
            self._last_received_at = now
            change = portfolio.apply(decision)
            if not change.is_empty or self._derived_behind:
                self._bring_derived_level(change, entry)
            if self._metrics is not None:
                self._metrics.order_recorded(entry, time.perf_counter() - started)
                self._metrics.state(len(portfolio), entry.sequence)
        _log_decision(entry)
        return PlacedOrder(entry)

    def profile(self) -> Profile:
        """The profile orders are decided against now."""
        with self._lock:
            profile, _ = self._ready()
            return profile

    def reload_profile(self) -> tuple[Position, ...]:
        """Read the profile again and use it from the next order; returns positions it no longer covers.

        The new profile is checked in full before it replaces the old one: on
        ProfileUnavailable the old one stays. No position is ever dropped.
        """
        profile = self._profile_source.load()
        with self._lock:
            _, portfolio = self._ready()
            self._profile = profile
            outside = _outside(profile, portfolio)
        logger.info(
            "profile reloaded: %d users, %d strategies; %d open positions outside it",
            len(profile.users),
            len(profile.strategies),
            len(outside),
        )
        return outside

    def open_positions(
        self, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, in the order they were opened."""
        with self._lock:
            _, portfolio = self._ready()
            return [
                p
                for p in portfolio
                if (user is None or p.user == user)
                and (strategy is None or p.strategy == strategy)
                and (instrument is None or p.instrument == instrument)
            ]

    def health(self) -> Health:
        """Whether the service takes orders, its store is reachable, and where the log stands."""
        with self._lock:
            open_positions = len(self._portfolio) if self._portfolio is not None else 0
            return Health(
                ready=self._portfolio is not None,
                store_reachable=self._order_log.reachable(),
                last_sequence=self._order_log.last_sequence(),
                open_positions=open_positions,
            )

    def _ready(self) -> tuple[Profile, Portfolio]:
        if self._profile is None or self._portfolio is None:
            raise ServiceNotStarted("the order service has not been started")
        return self._profile, self._portfolio

    def _bring_derived_level(self, change: PositionChange, entry: OrderLogEntry) -> None:
        try:
            if self._derived_behind:
                # A previous write failed, so the stores miss a change: replay
                # the log into them from where the position store stands.
                self._replay_log_tail()
            else:
                self._record_derived(change, entry.sequence)
            self._derived_behind = False
        except StorageUnavailable as error:
            # The order is already durable in the log, so its answer stands;
            # the stores catch up on the next order or the next start-up.
            self._derived_behind = True
            logger.error(
                "order %s is in the order log but its trades or positions could not be written (%s); "
                "they will be brought up to date from the log",
                entry.decision.order_id,
                error,
            )


def replay_log_tail(
    position_store: PositionStore, order_log: OrderLog, trade_log: TradeLog, scope: PositionScope
) -> tuple[Portfolio, int]:
    """Rebuild the portfolio from the position store and replay the log entries it has not applied.

    Returns the portfolio and how many entries were replayed; the trade log
    and position store are level with the order log afterwards.
    """
    stored = position_store.load()
    last_sequence = order_log.last_sequence()
    if stored.applied_sequence > last_sequence:
        raise CorruptStore(
            f"the position store has applied order-log sequence {stored.applied_sequence} but the "
            f"order log ends at {last_sequence}: the order log was truncated or replaced; restore it "
            "from a backup (it is the source of truth)"
        )
    try:
        portfolio = Portfolio(scope, stored.positions)
    except ConflictingPositions as error:
        raise StartupError(
            f"the stored positions do not fit position scope {scope.value!r}: {error}; "
            "start with the scope they were opened under"
        ) from error
    replayed, last_replayed = 0, stored.applied_sequence
    try:
        for entry in order_log.entries_after(stored.applied_sequence):
            change = portfolio.apply(entry.decision)
            if change.trades and entry.sequence > trade_log.last_sequence():
                trade_log.append(change.trades, entry.sequence)
            replayed, last_replayed = replayed + 1, entry.sequence
    except DomainError as error:
        raise CorruptStore(f"stored positions and the order log disagree: {error}") from error
    if replayed:
        # One write for the whole tail, after its trades: the net change
        # between the stored positions and the replayed ones.
        before, after = set(stored.positions), set(portfolio)
        net = PositionChange(opened=tuple(p for p in portfolio if p not in before), closed=tuple(before - after))
        position_store.apply(net, last_replayed)
    return portfolio, replayed


def record_derived(trade_log: TradeLog, position_store: PositionStore, change: PositionChange, sequence: int) -> None:
    """Record what order ``sequence`` changed: its trades first, then the positions stamped with it."""
    # Trades before positions: positions stamped with a sequence promise that
    # everything up to it is recorded, so a replay never starts past a SELL
    # whose trades are missing.
    if change.trades and sequence > trade_log.last_sequence():
        trade_log.append(change.trades, sequence)
    position_store.apply(change, sequence)


def _outside(profile: Profile, portfolio: Portfolio) -> tuple[Position, ...]:
    return tuple(p for p in portfolio if p.strategy not in profile.users.get(p.user, {}))


def _replay(recorded: OrderLogEntry, order: Order, key: str) -> PlacedOrder:
    if recorded.decision.order != order:
        first = recorded.decision.order
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was first used for order {recorded.decision.order_id} "
            f"({first.strategy} {first.instrument} {first.side.value}); a retry must repeat that order"
        )
    logger.info("order %s replayed for a retry with its idempotency key", recorded.decision.order_id)
    return PlacedOrder(recorded, replayed=True)


def _log_decision(entry: OrderLogEntry) -> None:
    decision = entry.decision
    order = decision.order
    details = ", ".join(
        f"{d.user}: {d.status.value}" + (f" {d.reason.value}" if d.reason else "") for d in decision.decisions
    )
    logger.info(
        "order %s #%d %s %s %s -> %s%s%s",
        decision.order_id,
        entry.sequence,
        order.strategy,
        order.instrument,
        order.side.value,
        decision.status.value,
        f" {decision.reason.value}" if decision.reason else "",
        f" [{details}]" if details else "",
    )
