"""The service's metrics in Prometheus form, via prometheus-client."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from trading_orders.application.ports import MetricsText
from trading_orders.domain.controls import Controls, TradingState
from trading_orders.domain.model import OrderLogEntry

# fsync dominates: ~0.2 ms on this class of machine, up to tens of ms on a busy disk.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class PrometheusOrderMetrics:
    """Order counts, decision counts, decide-and-record latency, open positions and log length; shown to Prometheus."""

    def __init__(self) -> None:
        """Register the metrics in a registry of their own (one per service, none global)."""
        self.registry = CollectorRegistry()
        self._orders = Counter(
            "trading_orders_orders",
            "Orders decided, by overall status and the reason of an order rejected as a whole ('' otherwise); "
            "the control reasons (TRADING_HALTED, REDUCE_ONLY, RATE_LIMITED) count the orders controls refused.",
            ["status", "reason"],
            registry=self.registry,
        )
        self._decisions = Counter(
            "trading_orders_decisions",
            "Per-user decisions, by status and reject reason ('' when accepted).",
            ["status", "reason"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "trading_orders_decide_and_record_seconds",
            "Time to decide an order and make it durable, lock wait included.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._open_positions = Gauge(
            "trading_orders_open_positions", "Open positions across all users.", registry=self.registry
        )
        self._log_length = Gauge("trading_orders_order_log_length", "Orders in the order log.", registry=self.registry)
        self._scopes = Gauge(
            "trading_orders_control_scopes",
            "Scopes (the desk, strategies, users, users' strategies) in each trading state other than ACTIVE.",
            ["state"],
            registry=self.registry,
        )
        self._limits = Gauge(
            "trading_orders_control_limits",
            "Limits in force, by kind (max_open_positions, max_orders_per_second).",
            ["kind"],
            registry=self.registry,
        )

    def order_recorded(self, entry: OrderLogEntry, seconds: float) -> None:
        """Count the order (with its own reason, if any) and its per-user decisions, and time it."""
        decision = entry.decision
        order_reason = decision.reason.value if decision.reason else ""
        self._orders.labels(status=decision.status.value, reason=order_reason).inc()
        for user_decision in decision.decisions:
            reason = user_decision.reason.value if user_decision.reason else ""
            self._decisions.labels(status=user_decision.status.value, reason=reason).inc()
        self._latency.observe(seconds)

    def state(self, open_positions: int, last_sequence: int) -> None:
        """Set the open-position and order-log gauges."""
        self._open_positions.set(open_positions)
        self._log_length.set(last_sequence)

    def controls_in_force(self, controls: Controls) -> None:
        """Set the gauges of scopes per state and limits per kind."""
        states = [s.state for s in controls.states()]
        for state in (TradingState.REDUCING, TradingState.HALTED):
            self._scopes.labels(state=state.value).set(states.count(state))
        self._limits.labels(kind="max_open_positions").set(len(controls.position_limits()))
        self._limits.labels(kind="max_orders_per_second").set(len(controls.rate_limits()))

    def render(self) -> MetricsText:
        """Every metric in the Prometheus text format."""
        return MetricsText(generate_latest(self.registry), CONTENT_TYPE_LATEST)
