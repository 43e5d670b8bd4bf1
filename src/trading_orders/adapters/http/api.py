"""The FastAPI application: parse, call the order service, map the answer or the failure to HTTP."""

# No `from __future__ import annotations` here: dependency-injector reads the
# Provide markers from the evaluated signatures of the endpoints.

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from dependency_injector.wiring import Provide, inject
from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from trading_orders.adapters.http.middleware import ORDER_ID_STATE, ApiKeyGuard, RequestLog
from trading_orders.adapters.http.schemas import (
    NAME_MAX_LENGTH,
    CreateOrderRequest,
    ErrorAnswer,
    HealthAnswer,
    IsoTime,
    LoggedOrderBody,
    OrderAnswer,
    OrdersPage,
    PositionBody,
    PositionsAnswer,
    ReloadAnswer,
    StrategiesAnswer,
    StrategySummary,
    TradeBody,
    TradesPage,
    UserDetail,
    UsersAnswer,
    UserSummary,
    ValidationErrorAnswer,
)
from trading_orders.adapters.prometheus_metrics import CONTENT_TYPE, PrometheusOrderMetrics
from trading_orders.application.errors import (
    IdempotencyKeyReused,
    InvalidCursor,
    ProfileUnavailable,
    ServiceNotStarted,
    StorageUnavailable,
)
from trading_orders.application.order_history import DEFAULT_PAGE, MAX_PAGE, HistoryFilter, OrderHistory
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import Order, OrderStatus

logger = logging.getLogger(__name__)

# The container provides these by name, so this ring never imports the composition root.
ORDER_SERVICE = "order_service"


async def _marker_itself(marker: object) -> object:
    """The marker itself, which @inject replaces with the provided object."""
    return marker


# A Provide marker that FastAPI awaits on the event loop. FastAPI runs a plain
# callable dependency, such as Provide, on its thread pool: for POST
# /create_order that hop cost as much as the order. Built with type() because
# the stubs declare Provide as a value, which a class statement cannot extend.
AwaitedProvide: Any = type("AwaitedProvide", (cast(type, Provide),), {"__call__": _marker_itself})


ORDER_HISTORY = "order_history"
METRICS = "metrics"

# An order is under 300 bytes; anything near this limit is not an order.
MAX_BODY_BYTES = 16 * 1024

Filter = Annotated[str | None, Query(min_length=1, max_length=200)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description=(
            "1-255 printable ASCII characters naming this order for retries: a repeat with the same key "
            "and order answers the recorded answer (header Idempotent-Replayed: true) and changes nothing."
        ),
    ),
]


def _field_name(location: tuple[object, ...]) -> str:
    # ("body", "STRATEGY") -> "STRATEGY"; ("query", "user") -> "user"; ("body",) -> "body"
    names = [str(part) for part in location[1:]] if len(location) > 1 else [str(p) for p in location]
    return ".".join(names) or "request"


def _describe_problem(problem: Mapping[str, Any]) -> str:
    if problem["type"] == "json_invalid":
        position = problem["loc"][-1]
        return f"body: invalid JSON at character {position}: {problem.get('ctx', {}).get('error', problem['msg'])}"
    return f"{_field_name(tuple(problem['loc']))}: {problem['msg']}"


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _answer_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    content_type = request.headers.get("content-type")
    if request.method == "POST" and not _is_json(content_type):
        # FastAPI hands a non-JSON body to the model as bytes, which reads as
        # "not a dictionary"; the real problem is the content type.
        message = f"Content-Type: expected application/json, got {content_type or 'none'}"
        logger.info("%s %s refused: %s", request.method, request.url.path, message)
        return JSONResponse(status_code=415, content={"detail": message})
    # Each problem without its input: the client has it, and echoing it back
    # can fail (JSON has no NaN) or reflect 16 KiB of someone's payload.
    problems = [{k: v for k, v in p.items() if k != "input"} for p in error.errors()]
    message = "; ".join(_describe_problem(p) for p in problems)
    logger.info("%s %s refused: %s", request.method, request.url.path, message)
    return JSONResponse(status_code=422, content={"message": message, "detail": jsonable_encoder(problems)})


async def _answer_key_reused(request: Request, error: Exception) -> JSONResponse:
    logger.info("%s %s refused: %s", request.method, request.url.path, error)
    problem = {"type": "idempotency_key_reused", "loc": ["header", "Idempotency-Key"], "msg": str(error)}
    return JSONResponse(status_code=422, content={"message": str(error), "detail": [problem]})


async def _answer_store_failure(request: Request, error: Exception) -> JSONResponse:
    logger.error("%s %s not served: %s", request.method, request.url.path, error)
    return JSONResponse(status_code=503, content={"detail": f"the order was not recorded: {error}"})


async def _answer_invalid_cursor(request: Request, error: Exception) -> JSONResponse:
    problem = {"type": "invalid_cursor", "loc": ["query", "cursor"], "msg": str(error)}
    return JSONResponse(status_code=422, content={"message": f"cursor: {error}", "detail": [problem]})


async def _answer_not_started(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": f"not ready: {error}"})


def build_api(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]], api_key: str | None = None) -> FastAPI:
    """The FastAPI application with every route of the HTTP contract; ``api_key`` guards all but /health."""
    app = FastAPI(
        title="trading-orders",
        summary="Decides strategy orders for every user who runs the strategy, and records them durably.",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    if api_key:
        app.add_middleware(ApiKeyGuard, api_key=api_key)
    # Added last, so it runs outermost and logs refusals by the key guard too.
    app.add_middleware(RequestLog)
    app.add_exception_handler(RequestValidationError, _answer_validation_error)
    app.add_exception_handler(IdempotencyKeyReused, _answer_key_reused)
    app.add_exception_handler(StorageUnavailable, _answer_store_failure)
    app.add_exception_handler(ServiceNotStarted, _answer_not_started)
    app.add_exception_handler(InvalidCursor, _answer_invalid_cursor)
    app.post(
        "/create_order",
        response_model=OrderAnswer,
        summary="Place an order",
        description=(
            "Decides the order for every user who runs its strategy. The answer is sent only once the "
            f"order is durable on disk. STRATEGY and INSTRUMENT are 1-{NAME_MAX_LENGTH} characters."
        ),
        responses={
            400: {"model": ErrorAnswer, "description": "The body cannot be read (it is not UTF-8)."},
            413: {"model": ErrorAnswer, "description": f"The body is over {MAX_BODY_BYTES} bytes."},
            415: {"model": ErrorAnswer, "description": "The body is not sent as application/json."},
            422: {
                "model": ValidationErrorAnswer,
                "description": "The body or a header is malformed, or the Idempotency-Key names another order; "
                "the message names the field.",
            },
            503: {"model": ErrorAnswer, "description": "The order could not be recorded; nothing was kept."},
        },
    )(create_order)
    app.get("/positions", response_model=PositionsAnswer, summary="List open positions")(list_positions)
    app.get("/orders", response_model=OrdersPage, summary="The order log, newest first")(list_orders)
    app.get(
        "/orders/{order_id}",
        response_model=LoggedOrderBody,
        summary="One order from the log",
        responses={404: {"model": ErrorAnswer, "description": "No order has this id."}},
    )(get_order)
    app.get("/trades", response_model=TradesPage, summary="Closed trades, newest first")(list_trades)
    app.get("/users", response_model=UsersAnswer, summary="Users with strategies and open positions")(list_users)
    app.get(
        "/users/{user}",
        response_model=UserDetail,
        summary="One user's profile, positions and recent orders",
        responses={404: {"model": ErrorAnswer, "description": "No user has this name."}},
    )(get_user)
    app.get("/strategies", response_model=StrategiesAnswer, summary="Strategies with users and universe")(
        list_strategies
    )
    app.post(
        "/admin/reload-profile",
        response_model=ReloadAnswer,
        summary="Re-read the profile file",
        description="The new profile is checked first; on any error the old one stays and the answer says why.",
        responses={422: {"model": ReloadAnswer, "description": "The file is invalid; the old profile stays."}},
    )(reload_profile)
    app.get(
        "/health",
        response_model=HealthAnswer,
        summary="Is the service taking orders?",
        responses={503: {"model": HealthAnswer, "description": "The order log cannot take orders."}},
    )(health)
    app.get(
        "/metrics",
        summary="Metrics in the Prometheus text format",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text exposition."}},
    )(metrics)
    return app


@inject
async def create_order(
    body: CreateOrderRequest,
    request: Request,
    response: Response,
    service: Annotated[OrderService, Depends(AwaitedProvide[ORDER_SERVICE])],
    idempotency_key: IdempotencyKey = None,
) -> OrderAnswer:
    """Place an order and answer its decision once it is durable."""
    order = Order(body.strategy, body.instrument, body.side)
    if service.decides_in_memory:
        # Decided on the event loop in microseconds; the wait for the disk is
        # shared with every order that arrives meanwhile.
        placed = await service.place_order_async(order, idempotency_key)
    else:
        placed = await run_in_threadpool(service.place_order, order, idempotency_key)
    setattr(request.state, ORDER_ID_STATE, placed.entry.decision.order_id)
    if placed.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return OrderAnswer.from_entry(placed.entry)


@inject
def list_positions(
    service: Annotated[OrderService, Depends(Provide[ORDER_SERVICE])],
    user: Filter = None,
    strategy: Filter = None,
    instrument: Filter = None,
) -> PositionsAnswer:
    """The open positions matching every filter given."""
    positions = service.open_positions(user=user, strategy=strategy, instrument=instrument)
    return PositionsAnswer(positions=[PositionBody.from_position(p) for p in positions])


class HistoryQuery:
    """The filters and paging of GET /orders and GET /trades."""

    def __init__(
        self,
        strategy: Filter = None,
        instrument: Filter = None,
        user: Filter = None,
        since: Annotated[IsoTime | None, Query(description="ISO-8601; only what happened at or after it.")] = None,
        until: Annotated[IsoTime | None, Query(description="ISO-8601; only what happened at or before it.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = DEFAULT_PAGE,
        cursor: Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page.")] = None,
    ) -> None:
        """Collect the query parameters."""
        self.filter = HistoryFilter(
            strategy=strategy, instrument=instrument, user=user, since=_utc(since), until=_utc(until)
        )
        self.limit = limit
        self.cursor = cursor


def _utc(moment: datetime | None) -> datetime | None:
    # A time without a zone is taken as UTC, the only zone on the wire.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@inject
def list_orders(
    query: Annotated[HistoryQuery, Depends()],
    history: Annotated[OrderHistory, Depends(Provide[ORDER_HISTORY])],
    status: Annotated[OrderStatus | None, Query(description="ACCEPTED or REJECTED.")] = None,
) -> OrdersPage:
    """The order log newest first, filtered; user keeps orders that had a decision for that user."""
    order_filter = dataclasses.replace(query.filter, status=status)
    page = history.orders(order_filter, query.limit, query.cursor)
    return OrdersPage(orders=[LoggedOrderBody.from_logged(e) for e in page.items], next_cursor=page.next_cursor)


@inject
def get_order(
    order_id: Annotated[str, Path(min_length=1, max_length=64)],
    history: Annotated[OrderHistory, Depends(Provide[ORDER_HISTORY])],
) -> LoggedOrderBody | JSONResponse:
    """One order with its per-user decisions, or 404."""
    entry = history.order(order_id)
    if entry is None:
        return JSONResponse(status_code=404, content={"detail": f"no order has id {order_id!r}"})
    return LoggedOrderBody.from_logged(entry)


@inject
def list_trades(
    query: Annotated[HistoryQuery, Depends()],
    history: Annotated[OrderHistory, Depends(Provide[ORDER_HISTORY])],
) -> TradesPage:
    """Closed trades newest first by SELL, filtered by strategy, instrument, user and time."""
    page = history.trades(query.filter, query.limit, query.cursor)
    return TradesPage(trades=[TradeBody.from_trade(t) for t in page.items], next_cursor=page.next_cursor)


def _summary(user: str, strategies: Mapping[str, frozenset[str]], held: int) -> UserSummary:
    universes = {strategy: sorted(universe) for strategy, universe in strategies.items()}
    return UserSummary(user=user, strategies=universes, open_positions=held)


@inject
def list_users(service: Annotated[OrderService, Depends(Provide[ORDER_SERVICE])]) -> UsersAnswer:
    """Every user with their strategies, universes and open-position count."""
    held = Counter(p.user for p in service.open_positions())
    return UsersAnswer(
        users=[_summary(user, strategies, held[user]) for user, strategies in service.profile().users.items()]
    )


@inject
def get_user(
    user: Annotated[str, Path(min_length=1, max_length=200)],
    service: Annotated[OrderService, Depends(Provide[ORDER_SERVICE])],
    history: Annotated[OrderHistory, Depends(Provide[ORDER_HISTORY])],
) -> UserDetail | JSONResponse:
    """One user's profile, open positions and latest 20 orders with a decision for them, or 404."""
    strategies = service.profile().users.get(user)
    positions = service.open_positions(user=user)
    if strategies is None and not positions:
        return JSONResponse(status_code=404, content={"detail": f"no user is named {user!r}"})
    recent = history.orders(HistoryFilter(user=user), limit=20).items
    return UserDetail(
        **_summary(user, strategies or {}, len(positions)).model_dump(),
        positions=[PositionBody.from_position(p) for p in positions],
        recent_orders=[LoggedOrderBody.from_logged(e) for e in recent],
    )


@inject
def list_strategies(service: Annotated[OrderService, Depends(Provide[ORDER_SERVICE])]) -> StrategiesAnswer:
    """Every strategy with the users who run it and its universe."""
    profile = service.profile()
    return StrategiesAnswer(
        strategies=[
            StrategySummary(
                strategy=strategy,
                users=list(profile.runners_of(strategy)),
                universe=sorted(set().union(*profile.runners_of(strategy).values())),
            )
            for strategy in sorted(profile.strategies)
        ]
    )


@inject
def reload_profile(
    service: Annotated[OrderService, Depends(Provide[ORDER_SERVICE])],
) -> ReloadAnswer | JSONResponse:
    """Re-read the profile file; on error keep the old one and say why."""
    try:
        outside = service.reload_profile()
    except ProfileUnavailable as error:
        logger.warning("profile reload refused, the old profile stays: %s", error)
        refused = ReloadAnswer(reloaded=False, detail=f"{error}; the previous profile stays in use")
        return JSONResponse(status_code=422, content=refused.model_dump())
    profile = service.profile()
    return ReloadAnswer(
        reloaded=True,
        detail=f"{len(profile.users)} users, {len(profile.strategies)} strategies",
        positions_outside_profile=[PositionBody.from_position(p) for p in outside],
    )


@inject
def health(response: Response, service: Annotated[OrderService, Depends(Provide[ORDER_SERVICE])]) -> HealthAnswer:
    """Answers ok once the service has recovered its state and its order log can take orders."""
    state = service.health()
    ok = state.ready and state.store_reachable
    if not ok:
        response.status_code = 503
    return HealthAnswer(
        status="ok" if ok else "unavailable",
        store_reachable=state.store_reachable,
        last_sequence=state.last_sequence,
        open_positions=state.open_positions,
    )


@inject
def metrics(
    exporter: Annotated[PrometheusOrderMetrics, Depends(Provide[METRICS])],
    service: Annotated[OrderService, Depends(Provide[ORDER_SERVICE])],
) -> PlainTextResponse:
    """Order and decision counts, decide-and-record latency, open positions and order-log length."""
    service.refresh_metrics()
    return PlainTextResponse(exporter.render(), media_type=CONTENT_TYPE)
