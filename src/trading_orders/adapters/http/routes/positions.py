"""Open positions."""

# No `from __future__ import annotations` here: dependency-injector reads the
# Provide markers from the evaluated signatures of the endpoints.

from typing import Annotated

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends

from trading_orders.adapters.http.parameters import Filter
from trading_orders.adapters.http.schemas import MALFORMED_PARAMETER, PositionBody, PositionsAnswer
from trading_orders.application.order_service import OrderService
from trading_orders.container import Container

router = APIRouter()


@router.get("/positions", response_model=PositionsAnswer, summary="List open positions", responses=MALFORMED_PARAMETER)
@inject
def list_positions(
    service: Annotated[OrderService, Depends(Provide[Container.order_service])],
    user: Filter = None,
    strategy: Filter = None,
    instrument: Filter = None,
) -> PositionsAnswer:
    """The open positions matching every filter given."""
    positions = service.open_positions(user=user, strategy=strategy, instrument=instrument)
    return PositionsAnswer(positions=[PositionBody.from_position(p) for p in positions])
