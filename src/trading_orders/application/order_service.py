"""The order service: the one place that sequences decide -> record -> answer."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from trading_orders.application.errors import IdempotencyKeyReused, ServiceNotStarted, StartupError, StorageUnavailable
from trading_orders.application.ports import (
    Clock,
    OrderFollowers,
    OrderIds,
    OrderMetrics,
    OrderStore,
    OrderTransaction,
    ProfileSource,
)
from trading_orders.domain.controls import ControlLogEntry, LogEntry
from trading_orders.domain.model import Order, OrderLogEntry, OrderStatus, Position, PositionScope
from trading_orders.domain.profile import Profile

logger = logging.getLogger(__name__)

# The order log keeps every order durably; the log file gets one line per
# order only at DEBUG, and at INFO a summary this often (on the next order).
SUMMARY_EVERY_SECONDS = 60.0


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
    # Why orders cannot be taken, in words a client may read, when the store says.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """An order's log entry, and whether it was answered from the log for a retried idempotency key."""

    entry: OrderLogEntry
    replayed: bool = False


class OrderService:
    """Decides orders against the profile and the positions they could meet, and records them durably.

    Each order runs in one store transaction over the positions it could meet
    (its strategy and instrument). The store makes the transactions of orders
    that could meet the same position serial, so no two see it as free.
    """

    def __init__(
        self,
        profile_source: ProfileSource,
        store: OrderStore,
        clock: Clock,
        order_ids: OrderIds,
        scope: PositionScope,
        metrics: OrderMetrics | None = None,
        followers: OrderFollowers | None = None,
    ) -> None:
        """Wire the service to its ports; nothing is read until start()."""
        self._profile_source = profile_source
        self._store = store
        self._clock = clock
        self._order_ids = order_ids
        self._scope = scope
        self._metrics = metrics
        self._followers = followers
        # Replaced whole by reload_profile(); each order reads it once.
        self._profile: Profile | None = None
        self._summary = _OrderSummary()

    def start(self) -> RecoveryReport:
        """Load the profile, let the store recover, and get ready."""
        profile = self._profile_source.load()
        try:
            replayed = self._store.recover()
        except StorageUnavailable as error:
            raise StartupError(f"cannot bring the stores up to date from the order log: {error}") from error
        self._profile = profile
        outside = _outside(profile, self._store.positions())
        if outside:
            # One line however many: a newly drawn profile can orphan dozens, and a
            # line each buried the start-up (issue 26). Each is at DEBUG.
            logger.warning(
                "%d open %s to strategies the profile no longer gives their users (%s); "
                "kept: list them with `trading-orders positions --user U --strategy S`",
                len(outside),
                "position belongs" if len(outside) == 1 else "positions belong",
                _by_user_and_strategy(outside),
            )
        for position in outside:
            logger.debug(
                "open position %s %s/%s (order %s) belongs to a strategy the profile no longer gives this user",
                position.user,
                position.strategy,
                position.instrument,
                position.order_id,
            )
        state = self._store.state()
        report = RecoveryReport(state.open_positions, state.last_sequence, replayed, outside)
        if self._metrics is not None:
            self._metrics.state(state.open_positions, state.last_sequence)
        logger.info(
            "ready: %d open positions, order log at sequence %d, %d orders replayed, scope %s",
            report.open_positions,
            report.last_sequence,
            report.replayed_orders,
            self._scope.value,
        )
        return report

    async def place_order(self, order: Order, idempotency_key: str | None = None) -> PlacedOrder:
        """Decide ``order`` for every user who runs its strategy; returns once it is durable.

        One store transaction: it hands out the positions the order can meet,
        the domain decides and applies once, the transaction saves what
        changed. An order with an ``idempotency_key`` already in the log is
        not decided again: its recorded entry is returned, marked replayed
        (looked up inside the transaction, so a retry racing its first attempt
        waits for it). The same key with a different order raises
        IdempotencyKeyReused.
        """
        started = time.perf_counter()
        profile = self._ready()
        runners = profile.runners_of(order.strategy)
        async with self._store.transaction(order.strategy, order.instrument, runners, idempotency_key) as transaction:
            if transaction.recorded is not None:
                return _replay(transaction.recorded, order)
            portfolio = transaction.portfolio
            portfolio.apply(portfolio.decide(order, profile, self._order_ids.next_id(), self._received_at(transaction)))
            entry = await transaction.commit()
        return self._placed(entry, started)

    def _received_at(self, transaction: OrderTransaction) -> datetime:
        now = self._clock.now()
        last = transaction.last_received_at
        # Times only grow along the log, even if the wall clock steps back,
        # so readers can stop at the first entry older than what they want.
        return last if last is not None and now < last else now

    def _placed(self, entry: OrderLogEntry, started: float) -> PlacedOrder:
        if self._metrics is not None:
            # The open-position and log-length gauges are refreshed when metrics
            # are read (refresh_metrics): counting positions in a SQL store per
            # order would cost more than the order.
            self._metrics.order_recorded(entry, time.perf_counter() - started)
        if self._followers is not None:
            # Followers in this process get the entry now, not on the next
            # read of the log: no lag, and no second read and decode of it.
            self._followers.recorded(entry)
        if logger.isEnabledFor(logging.DEBUG):
            _log_decision(entry)
        self._summary.count(entry)
        return PlacedOrder(entry)

    def profile(self) -> Profile:
        """The profile orders are decided against now."""
        return self._ready()

    def reload_profile(self) -> tuple[Position, ...]:
        """Read the profile again and use it from the next order; returns positions it no longer covers.

        The new profile is checked in full before it replaces the old one: on
        ProfileUnavailable the old one stays. No position is ever dropped.
        """
        self._ready()
        profile = self._profile_source.load()
        self._profile = profile
        outside = _outside(profile, self._store.positions())
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
        self._ready()
        return self._store.positions(user=user, strategy=strategy, instrument=instrument)

    def refresh_metrics(self) -> None:
        """Bring the gauges (open positions, order-log length, controls) up to date, before metrics are read."""
        if self._metrics is not None:
            state = self._store.state()
            self._metrics.state(state.open_positions, state.last_sequence)
            if state.reachable:
                self._metrics.controls_in_force(self._store.controls())

    def health(self) -> Health:
        """Whether the service takes orders, its store is reachable, and where the log stands."""
        state = self._store.state()
        return Health(
            ready=self._profile is not None,
            store_reachable=state.reachable,
            last_sequence=state.last_sequence,
            open_positions=state.open_positions,
            reason=state.reason,
        )

    def _ready(self) -> Profile:
        if self._profile is None:
            raise ServiceNotStarted("the order service has not been started")
        return self._profile


def _outside(profile: Profile, positions: list[Position]) -> tuple[Position, ...]:
    return tuple(p for p in positions if p.strategy not in profile.users.get(p.user, {}))


# How many (user, strategy) pairs the start-up line names before it says "and N more".
NAMED_PAIRS = 3


def _by_user_and_strategy(positions: tuple[Position, ...]) -> str:
    """``positions`` counted per user and strategy, the largest first: "U1 S1: 3, U2 S4: 1"."""
    counts = Counter((p.user, p.strategy) for p in positions)
    pairs = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    named = ", ".join(f"{user} {strategy}: {count}" for (user, strategy), count in pairs[:NAMED_PAIRS])
    rest = len(pairs) - NAMED_PAIRS
    return f"{named} and {rest} more" if rest > 0 else named


def _replay(recorded: LogEntry, order: Order) -> PlacedOrder:
    if isinstance(recorded, ControlLogEntry):
        logger.info(
            "idempotency key reused: control change #%d was recorded under it, an order refused", recorded.sequence
        )
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a control change; a retry must repeat its request exactly, "
            "or send a new key"
        )
    if recorded.decision.order != order:
        # The recorded order may be another client's: its id and content go
        # to the log, never into the answer.
        first = recorded.decision.order
        logger.info(
            "idempotency key reused: order %s (%s %s %s) was recorded under it, %s %s %s refused",
            recorded.decision.order_id,
            first.strategy,
            first.instrument,
            first.side.value,
            order.strategy,
            order.instrument,
            order.side.value,
        )
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different order; "
            "a retry must repeat its order exactly, or send a new key"
        )
    logger.info("order %s replayed for a retry with its idempotency key", recorded.decision.order_id)
    return PlacedOrder(recorded, replayed=True)


class _OrderSummary:
    """Counts the orders decided, and logs how many at INFO once a summary period has passed."""

    def __init__(self) -> None:
        self._since = time.monotonic()
        self._accepted = 0
        self._rejected = 0

    def count(self, entry: OrderLogEntry) -> None:
        if entry.decision.status is OrderStatus.ACCEPTED:
            self._accepted += 1
        else:
            self._rejected += 1
        now = time.monotonic()
        if now - self._since >= SUMMARY_EVERY_SECONDS:
            logger.info(
                "%d orders in the last %.0f s: %d accepted, %d rejected; order log at #%d",
                self._accepted + self._rejected,
                now - self._since,
                self._accepted,
                self._rejected,
                entry.sequence,
            )
            self._since, self._accepted, self._rejected = now, 0, 0


def _log_decision(entry: OrderLogEntry) -> None:
    decision = entry.decision
    order = decision.order
    details = ", ".join(
        f"{d.user}: {d.status.value}" + (f" {d.reason.value}" if d.reason else "") for d in decision.decisions
    )
    logger.debug(
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
