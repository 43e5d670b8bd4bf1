"""The ports the application drives, named in its own words; adapters implement them."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from trading_orders.domain.controls import ControlChange, ControlLogEntry, Controls, ControlScope, LogEntry
from trading_orders.domain.model import OrderLogEntry, Position, Trade
from trading_orders.domain.portfolio import PortfolioSlice
from trading_orders.domain.profile import Profile


class Clock(Protocol):
    """Tells the time."""

    def now(self) -> datetime:
        """The current time, time-zone aware, in UTC."""
        ...


class OrderIds(Protocol):
    """Hands out order ids."""

    def next_id(self) -> str:
        """A new opaque id, never handed out before."""
        ...


class ProfileSource(Protocol):
    """Where the user profiles come from."""

    def load(self) -> Profile:
        """The current profile; raises ProfileUnavailable with a clear message when it cannot."""
        ...


class OrderMetrics(Protocol):
    """Counts and times what the service does, for monitoring."""

    def order_recorded(self, entry: OrderLogEntry, seconds: float) -> None:
        """One order decided and made durable in ``seconds``."""
        ...

    def state(self, open_positions: int, last_sequence: int) -> None:
        """The current number of open positions and length of the order log."""
        ...

    def controls_in_force(self, controls: Controls) -> None:
        """The states and limits in force now."""
        ...


@dataclass(frozen=True, slots=True)
class MetricsText:
    """The metrics as a monitoring system reads them: the text, and the media type that names its format."""

    body: bytes
    media_type: str


class MetricsExposition(Protocol):
    """Shows what OrderMetrics counted to a monitoring system that asks."""

    def render(self) -> MetricsText:
        """Every metric as it stands now."""
        ...


class OrderFollowers(Protocol):
    """Whoever follows the order log as it grows: told of each entry (an order, a control change) made durable here."""

    def recorded(self, entry: LogEntry) -> None:
        """``entry`` is durable in the log; it must not block or raise."""
        ...


@dataclass(frozen=True, slots=True)
class StoreState:
    """Where a store stands: its log's length, its open positions, and whether it can take orders."""

    last_sequence: int
    open_positions: int
    reachable: bool
    # Why it cannot take orders, in words a client may read (no paths, no hosts), when it can say.
    reason: str | None = None


class OrderTransaction(Protocol):
    """One order's unit of work: what it hands out, no other order changes until it ends.

    ``portfolio`` holds the open positions the order can meet (its users,
    strategy and instrument, under the position scope); the application
    decides on it and applies the decision once. commit() saves what the portfolio says was
    applied. Leaving the block without commit() keeps nothing.
    """

    @property
    def recorded(self) -> LogEntry | None:
        """The entry already recorded with this transaction's idempotency key, if any."""
        ...

    @property
    def portfolio(self) -> PortfolioSlice:
        """The open positions this order can meet and the controls in force, to decide on and apply to."""
        ...

    @property
    def last_received_at(self) -> datetime | None:
        """When the newest recorded order was received, None when there is none."""
        ...

    async def commit(self) -> OrderLogEntry:
        """Record the decision applied to ``portfolio`` (the next sequence), its trades and positions.

        Returns once all of it is durable; raises StorageUnavailable, and keeps
        nothing, when it cannot be.
        """
        ...


class ControlTransaction(Protocol):
    """One control change's unit of work: no order is sequenced while it is open.

    Orders sequenced after its commit are decided under the change; orders
    sequenced before it were not. Leaving the block without commit() keeps nothing.
    """

    @property
    def recorded(self) -> LogEntry | None:
        """The entry already recorded with this transaction's idempotency key, if any."""
        ...

    @property
    def controls(self) -> Controls:
        """The states and limits in force."""
        ...

    @property
    def last_received_at(self) -> datetime | None:
        """When the newest entry of the log was made, None when there is none."""
        ...

    async def positions_in(self, scope: ControlScope) -> list[Position]:
        """The open positions in ``scope``, as a flatten would close them."""
        ...

    async def commit(self, change: ControlChange) -> ControlLogEntry:
        """Record ``change`` (the next sequence), close what a flatten closes with its trades; returns once durable."""
        ...


class OrderStore(Protocol):
    """Keeps the order log, trades, positions and idempotency keys, and serializes orders over them."""

    def recover(self) -> int:
        """Make the store ready after a start or a crash; returns how many logged orders were replayed."""
        ...

    def transaction(
        self, strategy: str, instrument: str, users: Collection[str], idempotency_key: str | None = None
    ) -> AbstractAsyncContextManager[OrderTransaction]:
        """A unit of work for one order in ``strategy`` for ``instrument``, for the ``users`` who run it."""
        ...

    def control_transaction(
        self, idempotency_key: str | None = None
    ) -> AbstractAsyncContextManager[ControlTransaction]:
        """A unit of work for one control change, serialized with every order."""
        ...

    def controls(self) -> Controls:
        """The states and limits in force now (durable)."""
        ...

    def positions(
        self, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, in the order they were opened; all durable."""
        ...

    def state(self) -> StoreState:
        """Where the store stands now."""
        ...


class OrderLogReader(Protocol):
    """Reads the order log, for the read side."""

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, LogEntry]]:
        """(cursor, entry) newest first, control changes among the orders; from an entry's cursor, the older ones.

        Raises InvalidCursor for a cursor this log did not hand out. Costs the
        entries read, however deep the cursor.
        """
        ...

    def find_by_order_id(self, order_id: str) -> LogEntry | None:
        """The entry of order (or control change) ``order_id``, if any."""
        ...

    def entries_after(self, sequence: int) -> Iterator[LogEntry]:
        """The entries (orders and control changes) with a sequence above ``sequence``, oldest first."""
        ...


class TradeLogReader(Protocol):
    """Reads the trades newest first, for the read side."""

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first; from a trade's cursor, the trades older than it (InvalidCursor if unknown)."""
        ...
