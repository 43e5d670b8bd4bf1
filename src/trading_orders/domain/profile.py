"""Who runs which strategy on which instruments, indexed for the order path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from trading_orders.domain.model import DomainError


class InvalidProfile(DomainError):
    """The profile breaks one of its invariants; the message says which and where."""


def _check_name(kind: str, value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidProfile(f"{where}: {kind} must be a string, got {type(value).__name__} {value!r}")
    if not value or value != value.strip():
        raise InvalidProfile(f"{where}: {kind} must be a non-empty name without surrounding spaces, got {value!r}")
    return value


class Profile:
    """User -> strategy -> universe, answered per strategy in time proportional to its users."""

    __slots__ = ("_by_strategy", "_by_user")

    def __init__(self, universes: Mapping[str, Mapping[str, Iterable[str]]]) -> None:
        """Build a profile from {user: {strategy: [instruments]}}, checking every name."""
        by_user: dict[str, Mapping[str, frozenset[str]]] = {}
        by_strategy: dict[str, dict[str, frozenset[str]]] = {}
        for user, strategies in universes.items():
            _check_name("user name", user, "profile")
            if not isinstance(strategies, Mapping):
                raise InvalidProfile(f"user {user!r}: strategies must be an object, got {type(strategies).__name__}")
            if not strategies:
                raise InvalidProfile(f"user {user!r}: runs no strategy")
            user_universes: dict[str, frozenset[str]] = {}
            for strategy, instruments in strategies.items():
                where = f"user {user!r}, strategy {strategy!r}"
                _check_name("strategy name", strategy, f"user {user!r}")
                if isinstance(instruments, str | bytes) or not isinstance(instruments, Iterable):
                    raise InvalidProfile(f"{where}: universe must be a list of symbols, got {instruments!r}")
                symbols = [_check_name("instrument symbol", symbol, where) for symbol in instruments]
                if not symbols:
                    raise InvalidProfile(f"{where}: universe is empty")
                repeated = sorted({s for s in symbols if symbols.count(s) > 1})
                if repeated:
                    raise InvalidProfile(f"{where}: universe lists {', '.join(repeated)} more than once")
                universe = frozenset(symbols)
                user_universes[strategy] = universe
                by_strategy.setdefault(strategy, {})[user] = universe
            by_user[user] = MappingProxyType(user_universes)
        self._by_user: Mapping[str, Mapping[str, frozenset[str]]] = MappingProxyType(by_user)
        self._by_strategy: Mapping[str, Mapping[str, frozenset[str]]] = MappingProxyType(
            {strategy: MappingProxyType(users) for strategy, users in by_strategy.items()}
        )

    def runners_of(self, strategy: str) -> Mapping[str, frozenset[str]]:
        """The users who run ``strategy``, each with their universe for it (empty if none)."""
        return self._by_strategy.get(strategy, MappingProxyType({}))

    @property
    def users(self) -> Mapping[str, Mapping[str, frozenset[str]]]:
        """Every user with their strategies and universes."""
        return self._by_user

    @property
    def strategies(self) -> frozenset[str]:
        """Every strategy that at least one user runs."""
        return frozenset(self._by_strategy)
