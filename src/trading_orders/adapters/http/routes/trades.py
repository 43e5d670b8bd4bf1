"""Closed trades."""

# No `from __future__ import annotations` here: dependency-injector reads the
# Provide markers from the evaluated signatures of the endpoints.

from typing import Annotated

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, Request

from trading_orders.adapters.http.injection import AwaitedProvide
from trading_orders.adapters.http.lanes import Lane
from trading_orders.adapters.http.parameters import HistoryQuery
from trading_orders.adapters.http.routes.orders import BUSY
from trading_orders.adapters.http.schemas import TradeBody, TradesPage
from trading_orders.application.order_history import OrderHistory
from trading_orders.container import Container

router = APIRouter()


@router.get(
    "/trades",
    response_model=TradesPage,
    summary="Closed trades, newest first",
    description="One page reads a bounded number of trades; scan_limited says it stopped there.",
    responses=BUSY,
)
@inject
async def list_trades(
    request: Request,
    query: Annotated[HistoryQuery, Depends()],
    history: Annotated[OrderHistory, Depends(AwaitedProvide[Container.order_history])],
) -> TradesPage:
    """Closed trades newest first by SELL, filtered by strategy, instrument, user and time."""
    lane: Lane = request.app.state.read_lane
    page = await lane.run(lambda: history.trades(query.filter, query.limit, query.cursor))
    return TradesPage(
        trades=[TradeBody.from_trade(t) for t in page.items],
        next_cursor=page.next_cursor,
        scan_limited=page.scan_limited,
    )
