"""Operations: health and metrics."""

# No `from __future__ import annotations` here: dependency-injector reads the
# Provide markers from the evaluated signatures of the endpoints.

from typing import Annotated

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from trading_orders.adapters.http.injection import AwaitedProvide
from trading_orders.adapters.http.lanes import Lane
from trading_orders.adapters.http.middleware import API_KEY_STATE
from trading_orders.adapters.http.schemas import HealthAnswer
from trading_orders.application.order_service import OrderService
from trading_orders.application.ports import MetricsExposition
from trading_orders.container import Container

router = APIRouter()


@router.get(
    "/health",
    response_model=HealthAnswer,
    summary="Is the service taking orders?",
    description=(
        "Open to every client. With an API key configured, a request without the key gets only "
        '`{"status": ...}`; with it, the store\'s state too.'
    ),
    responses={503: {"model": HealthAnswer, "description": "An order cannot be taken now."}},
    # "reason" only when there is one: an ok body stays as it always was.
    response_model_exclude_none=True,
)
@inject
async def health(
    request: Request,
    response: Response,
    service: Annotated[OrderService, Depends(AwaitedProvide[Container.order_service])],
) -> HealthAnswer | JSONResponse:
    """Answers ok exactly while an order could be taken now; 503 while the store refuses or heals."""
    # Async, on a lane of its own: as a sync endpoint it waited in the shared
    # thread pool behind every slow request (116 s behind 45 reads). A SQL
    # store's state() asks the database, so it still runs on a thread.
    lane: Lane = request.app.state.health_lane
    state = await lane.run(service.health)
    ok = state.ready and state.store_reachable
    status = "ok" if ok else "unavailable"
    if getattr(request.state, API_KEY_STATE, True) is False:
        # A key is configured and this client has none: ok or not, nothing of the store.
        return JSONResponse(status_code=200 if ok else 503, content={"status": status})
    if not ok:
        response.status_code = 503
    return HealthAnswer(
        status=status,
        store_reachable=state.store_reachable,
        last_sequence=state.last_sequence,
        open_positions=state.open_positions,
        reason=state.reason,
    )


@router.get(
    "/metrics",
    summary="Metrics in the Prometheus text format",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition."}},
)
@inject
def metrics(
    exposition: Annotated[MetricsExposition, Depends(Provide[Container.metrics])],
    service: Annotated[OrderService, Depends(Provide[Container.order_service])],
) -> PlainTextResponse:
    """Order and decision counts, decide-and-record latency, open positions and order-log length."""
    service.refresh_metrics()
    # The exposition names its own format (Prometheus' text/plain version), which this route need not know.
    text = exposition.render()
    return PlainTextResponse(text.body, media_type=text.media_type)
