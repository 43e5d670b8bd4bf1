"""The composition root: the only place that knows which adapter serves which port."""

from __future__ import annotations

from dependency_injector import containers, providers

from trading_orders.adapters.json_profile_source import JsonProfileSource
from trading_orders.adapters.prometheus_metrics import PrometheusOrderMetrics
from trading_orders.adapters.random_order_ids import RandomOrderIds
from trading_orders.adapters.storage.embedded_store import EmbeddedOrderStore
from trading_orders.adapters.storage.jsonl_order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.jsonl_trade_log import JsonLinesTradeLog
from trading_orders.adapters.storage.memory import InMemoryOrderLog, InMemoryPositionStore, InMemoryTradeLog
from trading_orders.adapters.storage.sql_order_store import SqlTradeReader
from trading_orders.adapters.storage.sqlite_store import SqliteOrderStore
from trading_orders.adapters.storage.store_resources import open_postgres_store, open_store
from trading_orders.adapters.storage.tinydb_position_store import TinyDBPositionStore
from trading_orders.adapters.system_clock import SystemClock
from trading_orders.application.order_history import OrderHistory
from trading_orders.application.order_service import OrderService


class Container(containers.DeclarativeContainer):
    """Wires the order service to the adapters the configuration selects."""

    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    order_ids = providers.Singleton(RandomOrderIds)
    profile_source = providers.Singleton(JsonProfileSource, path=config.profile_path)

    # Resources are opened on first use and closed by shutdown_resources(), so
    # only the selected store ever takes its files' locks.
    position_store = providers.Selector(
        config.store,
        tinydb=providers.Resource(open_store, TinyDBPositionStore, config.data_dir),
        memory=providers.Singleton(InMemoryPositionStore),
    )
    order_log = providers.Selector(
        config.store,
        tinydb=providers.Resource(open_store, JsonLinesOrderLog, config.data_dir),
        memory=providers.Singleton(InMemoryOrderLog),
    )
    trade_log = providers.Selector(
        config.store,
        tinydb=providers.Resource(open_store, JsonLinesTradeLog, config.data_dir),
        memory=providers.Singleton(InMemoryTradeLog),
    )

    metrics = providers.Singleton(PrometheusOrderMetrics)

    embedded_store = providers.Singleton(
        EmbeddedOrderStore,
        position_store=position_store,
        order_log=order_log,
        trade_log=trade_log,
        scope=config.position_scope,
    )
    sqlite_store = providers.Singleton(SqliteOrderStore, directory=config.data_dir, scope=config.position_scope)
    postgres_store = providers.Resource(open_postgres_store, url=config.database_url, scope=config.position_scope)
    order_store = providers.Selector(
        config.store, tinydb=embedded_store, memory=embedded_store, sqlite=sqlite_store, postgres=postgres_store
    )

    order_log_reader = providers.Selector(
        config.store, tinydb=order_log, memory=order_log, sqlite=sqlite_store, postgres=postgres_store
    )
    trade_log_reader = providers.Selector(
        config.store,
        tinydb=trade_log,
        memory=trade_log,
        sqlite=providers.Singleton(SqlTradeReader, sqlite_store),
        postgres=providers.Singleton(SqlTradeReader, postgres_store),
    )
    order_history = providers.Singleton(OrderHistory, order_log=order_log_reader, trade_log=trade_log_reader)

    order_service = providers.Singleton(
        OrderService,
        profile_source=profile_source,
        store=order_store,
        clock=clock,
        order_ids=order_ids,
        scope=config.position_scope,
        metrics=metrics,
    )
