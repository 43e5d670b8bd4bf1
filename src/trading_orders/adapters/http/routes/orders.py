"""Orders: the description of placing one (OrderIngress places it), and the order log."""

# No `from __future__ import annotations` here: dependency-injector reads the
# Provide markers from the evaluated signatures of the endpoints.

import dataclasses
from typing import Annotated, Any

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from trading_orders.adapters.http.injection import AwaitedProvide
from trading_orders.adapters.http.lanes import RETRY_AFTER_SECONDS, Lane
from trading_orders.adapters.http.parameters import HistoryQuery, IdempotencyKey, OrderId
from trading_orders.adapters.http.problem_details import ORDER_NOT_FOUND, problem_response
from trading_orders.adapters.http.schemas import (
    MALFORMED_PARAMETER,
    NAME_MAX_LENGTH,
    CreateOrderRequest,
    LoggedOrderBody,
    OrderAnswer,
    OrdersPage,
    Problem,
    ValidationProblem,
)
from trading_orders.application.order_history import OrderHistory
from trading_orders.container import Container
from trading_orders.domain.model import OrderStatus

# An order is under 300 bytes; anything near this limit is not an order.
MAX_BODY_BYTES = 16 * 1024

router = APIRouter()


@router.post(
    "/create_order",
    response_model=OrderAnswer,
    summary="Place an order",
    description=(
        "Decides the order for every user who runs its strategy. The answer is sent only once the "
        f"order is durable on disk. STRATEGY and INSTRUMENT are 1-{NAME_MAX_LENGTH} characters."
    ),
    responses={
        400: {"model": Problem, "description": "The body cannot be read (it is not UTF-8)."},
        413: {"model": Problem, "description": f"The body is over {MAX_BODY_BYTES} bytes."},
        415: {"model": Problem, "description": "The body is not sent as application/json."},
        422: {
            "model": ValidationProblem,
            "description": "The body or a header is malformed, or the Idempotency-Key names another order; "
            "detail names the field.",
        },
        503: {
            "model": Problem,
            "description": "The order was not recorded (type store-unavailable, not-ready), or the store could not "
            "confirm it (order-in-doubt); retry with the same Idempotency-Key.",
        },
    },
)
async def create_order(body: CreateOrderRequest, idempotency_key: IdempotencyKey = None) -> OrderAnswer:
    """Documents POST /create_order in the OpenAPI schema; OrderIngress serves every request to it."""
    # The ingress in front of FastAPI answers every POST to this path, so this
    # body never runs; the signature and the decorator are what /docs shows.
    raise RuntimeError("POST /create_order is served by OrderIngress (order_ingress.py), not by this route")


# The read endpoints are async and run their store reads on the read lane,
# so they neither fill the shared thread pool nor wait in it.
BUSY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": Problem,
        "description": f"Every read thread stayed busy (type busy): retry after Retry-After ({RETRY_AFTER_SECONDS} s); "
        "or the store is unavailable or not ready.",
    },
    **MALFORMED_PARAMETER,
}


@router.get(
    "/orders",
    response_model=OrdersPage,
    summary="The order log, newest first",
    description="One page reads a bounded number of log entries; scan_limited says it stopped there.",
    responses=BUSY,
)
@inject
async def list_orders(
    request: Request,
    query: Annotated[HistoryQuery, Depends()],
    history: Annotated[OrderHistory, Depends(AwaitedProvide[Container.order_history])],
    status: Annotated[OrderStatus | None, Query(description="ACCEPTED or REJECTED.")] = None,
) -> OrdersPage:
    """The order log newest first, filtered; user keeps orders that had a decision for that user."""
    lane: Lane = request.app.state.read_lane
    history_filter = dataclasses.replace(query.filter, status=status)
    page = await lane.run(lambda: history.orders(history_filter, query.limit, query.cursor))
    return OrdersPage(
        orders=[LoggedOrderBody.from_logged(e) for e in page.items],
        next_cursor=page.next_cursor,
        scan_limited=page.scan_limited,
    )


@router.get(
    "/orders/{order_id}",
    response_model=LoggedOrderBody,
    summary="One order from the log",
    responses={404: {"model": Problem, "description": "No order has this id."}, **BUSY},
)
@inject
async def get_order(
    request: Request,
    order_id: OrderId,
    history: Annotated[OrderHistory, Depends(AwaitedProvide[Container.order_history])],
) -> LoggedOrderBody | JSONResponse:
    """One order with its per-user decisions, or 404."""
    lane: Lane = request.app.state.read_lane
    entry = await lane.run(lambda: history.order(order_id))
    if entry is None:
        return problem_response(ORDER_NOT_FOUND, f"no order has id {order_id!r}")
    return LoggedOrderBody.from_logged(entry)
