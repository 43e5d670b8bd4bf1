"""Closed trades."""

# No `from __future__ import annotations` here: dependency-injector reads the
# Provide markers from the evaluated signatures of the endpoints.

from typing import Annotated

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends

from trading_orders.adapters.http.parameters import HistoryQuery
from trading_orders.adapters.http.schemas import TradeBody, TradesPage
from trading_orders.application.order_history import OrderHistory
from trading_orders.container import Container

router = APIRouter()


@router.get("/trades", response_model=TradesPage, summary="Closed trades, newest first")
@inject
def list_trades(
    query: Annotated[HistoryQuery, Depends()],
    history: Annotated[OrderHistory, Depends(Provide[Container.order_history])],
) -> TradesPage:
    """Closed trades newest first by SELL, filtered by strategy, instrument, user and time."""
    page = history.trades(query.filter, query.limit, query.cursor)
    return TradesPage(trades=[TradeBody.from_trade(t) for t in page.items], next_cursor=page.next_cursor)
