"""The Prometheus metrics adapter: what each kind of order adds to which counter."""

from datetime import UTC, datetime

from trading_orders.adapters.prometheus_metrics import PrometheusOrderMetrics
from trading_orders.domain.model import (
    Order,
    OrderDecision,
    OrderLogEntry,
    OrderStatus,
    RejectReason,
    Side,
    UserDecision,
)

T0 = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)


def record(
    metrics: PrometheusOrderMetrics,
    sequence: int,
    strategy: str,
    *decisions: UserDecision,
    reason: RejectReason | None = None,
) -> None:
    decision = OrderDecision(f"o{sequence}", T0, Order(strategy, "ACC", Side.BUY), decisions, reason)
    metrics.order_recorded(OrderLogEntry(sequence, decision), 0.001)


def samples(metrics: PrometheusOrderMetrics) -> set[str]:
    return {line for line in metrics.render().body.decode().splitlines() if not line.startswith("#")}


def test_an_order_rejected_as_a_whole_counts_in_orders_with_its_reason_and_adds_no_decision() -> None:
    metrics = PrometheusOrderMetrics()
    record(metrics, 1, "S9", reason=RejectReason.UNKNOWN_STRATEGY)
    lines = samples(metrics)
    assert 'trading_orders_orders_total{reason="UNKNOWN_STRATEGY",status="REJECTED"} 1.0' in lines
    assert not [line for line in lines if line.startswith("trading_orders_decisions_total")], lines


def test_per_user_decisions_count_in_decisions_and_their_order_has_no_reason() -> None:
    metrics = PrometheusOrderMetrics()
    accepted = UserDecision("U1", OrderStatus.ACCEPTED)
    holding = UserDecision("U2", OrderStatus.REJECTED, RejectReason.ALREADY_HOLDING)
    record(metrics, 1, "S1", accepted, holding)
    record(metrics, 2, "S1", UserDecision("U1", OrderStatus.REJECTED, RejectReason.ALREADY_HOLDING))
    lines = samples(metrics)
    assert 'trading_orders_orders_total{reason="",status="ACCEPTED"} 1.0' in lines
    assert 'trading_orders_orders_total{reason="",status="REJECTED"} 1.0' in lines
    assert 'trading_orders_decisions_total{reason="",status="ACCEPTED"} 1.0' in lines
    assert 'trading_orders_decisions_total{reason="ALREADY_HOLDING",status="REJECTED"} 2.0' in lines
    assert "trading_orders_decide_and_record_seconds_count 2.0" in lines


def test_the_exposition_names_the_text_format_it_is_written_in() -> None:
    text = PrometheusOrderMetrics().render()
    assert text.media_type.startswith("text/plain; version="), "a scraper picks its parser by this version"
    assert b"# TYPE trading_orders_orders_total counter" in text.body
