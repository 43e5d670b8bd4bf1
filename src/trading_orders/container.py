"""The composition root: the only place that knows which adapter serves which port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from trading_orders.adapters.json_profile_source import JsonProfileSource
from trading_orders.adapters.prometheus_metrics import PrometheusOrderMetrics
from trading_orders.adapters.random_order_ids import RandomOrderIds
from trading_orders.adapters.storage.sql.sqlite import SqliteOrderStore
from trading_orders.adapters.storage.sql.store import SqlTradeReader, open_export_view
from trading_orders.adapters.storage.tinydb_store.backoff import Backoff
from trading_orders.adapters.storage.tinydb_store.checkpoints import CheckpointPolicy
from trading_orders.adapters.storage.tinydb_store.import_directory import import_directory
from trading_orders.adapters.storage.tinydb_store.resources import (
    open_memory_store,
    open_read_only_files,
    open_tinydb_store,
)
from trading_orders.adapters.storage.tinydb_store.verification import verify_directory
from trading_orders.adapters.system_clock import SystemClock
from trading_orders.application.decision_feed import DecisionFeed
from trading_orders.application.desk_overview import DeskOverview
from trading_orders.application.operator_controls import OperatorControls
from trading_orders.application.order_history import OrderHistory
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import PositionScope

if TYPE_CHECKING:
    from trading_orders.adapters.storage.sql.postgres import PostgresOrderStore


def open_postgres_store(url: str, scope: PositionScope, lock_wait_seconds: float) -> Iterator[PostgresOrderStore]:
    """The PostgreSQL store, as sql.postgres.open_postgres_store opens and closes it."""
    # Imported when chosen: psycopg and its pool take about 0.13 s of CPU to
    # import, a fifth of a service's start, which no other store should pay.
    from trading_orders.adapters.storage.sql import postgres

    yield from postgres.open_postgres_store(url, scope, lock_wait_seconds)


class Container(containers.DeclarativeContainer):
    """Wires the order service to the adapters the configuration selects."""

    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    order_ids = providers.Singleton(RandomOrderIds)
    profile_source = providers.Singleton(JsonProfileSource, path=config.profile_path)

    metrics = providers.Singleton(PrometheusOrderMetrics)

    checkpoint_policy = providers.Singleton(
        CheckpointPolicy, every_orders=config.snapshot_every_orders, every_seconds=config.snapshot_every_seconds
    )
    # How long the TinyDB store waits before retrying a failed rebuild or
    # restarting a thread that failed: 0.1 s, doubling up to 5 s.
    restarts = providers.Singleton(Backoff)
    # Resources are opened on first use and closed by shutdown_resources(), so
    # only the selected store ever takes its files' locks. The TinyDB store
    # owns its files, so it closes them after its last checkpoint.
    tinydb_store = providers.Resource(
        open_tinydb_store,
        directory=config.data_dir,
        scope=config.position_scope,
        policy=checkpoint_policy,
        restarts=restarts,
    )
    memory_store = providers.Resource(
        open_memory_store, scope=config.position_scope, policy=checkpoint_policy, restarts=restarts
    )
    sqlite_store = providers.Singleton(
        SqliteOrderStore,
        directory=config.data_dir,
        scope=config.position_scope,
        lock_wait_seconds=config.lock_wait_seconds,
    )
    postgres_store = providers.Resource(
        open_postgres_store,
        url=config.database_url,
        scope=config.position_scope,
        lock_wait_seconds=config.lock_wait_seconds,
    )
    order_store = providers.Selector(
        config.store, tinydb=tinydb_store, memory=memory_store, sqlite=sqlite_store, postgres=postgres_store
    )

    order_log_reader = providers.Selector(
        config.store,
        tinydb=tinydb_store.provided.order_log,
        memory=memory_store.provided.order_log,
        sqlite=sqlite_store,
        postgres=postgres_store,
    )
    trade_log_reader = providers.Selector(
        config.store,
        tinydb=tinydb_store.provided.trade_log,
        memory=memory_store.provided.trade_log,
        sqlite=providers.Singleton(SqlTradeReader, sqlite_store),
        postgres=providers.Singleton(SqlTradeReader, postgres_store),
    )

    decision_feed = providers.Singleton(
        DecisionFeed,
        order_log=order_log_reader,
        store=order_store,
        poll_seconds=config.events_poll_seconds,
        buffer=config.events_buffer,
        max_followers=config.events_max_followers,
    )
    order_service = providers.Singleton(
        OrderService,
        profile_source=profile_source,
        store=order_store,
        clock=clock,
        order_ids=order_ids,
        scope=config.position_scope,
        metrics=metrics,
        followers=decision_feed,
    )
    operator_controls = providers.Singleton(
        OperatorControls,
        store=order_store,
        clock=clock,
        ids=order_ids,
        profile=order_service.provided.profile,
        followers=decision_feed,
    )
    order_history = providers.Singleton(
        OrderHistory, order_log=order_log_reader, trade_log=trade_log_reader, scan_budget=config.read_scan_budget
    )
    desk_overview = providers.Singleton(DeskOverview, service=order_service, history=order_history)

    # For the command line: what `export` reads (the TinyDB files read-only,
    # safe beside a running service), and `verify` of the TinyDB files.
    export_view = providers.Selector(
        config.store,
        tinydb=providers.Resource(open_read_only_files, directory=config.data_dir, scope=config.position_scope),
        sqlite=providers.Resource(open_export_view, sqlite_store),
        postgres=providers.Resource(open_export_view, postgres_store),
    )
    verification = providers.Factory(verify_directory, directory=config.data_dir, scope=config.position_scope)
    # The data directory `import` fills, as a context: the TinyDB files are
    # built in a new directory renamed into place once the import completes;
    # a SQL store takes the import in place, through its own transactions.
    import_destination = providers.Selector(
        config.store,
        tinydb=providers.Factory(import_directory, config.data_dir),
        sqlite=providers.Factory(nullcontext, config.data_dir),
        postgres=providers.Factory(nullcontext, config.data_dir),
    )
