"""The FastAPI application: the routers of every resource, the failure answers, the middleware."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import ModuleType
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp

from trading_orders.adapters.http.desk_session import DeskSessions
from trading_orders.adapters.http.lanes import LaneBusy, answer_busy, health_lane, read_lane
from trading_orders.adapters.http.middleware import ApiKeyGuard, BodySizeLimit, RequestLog, SingleHeaders
from trading_orders.adapters.http.order_ingress import IdempotencyScope, OrderIngress
from trading_orders.adapters.http.problem_details import PROBLEM_MEDIA_TYPE
from trading_orders.adapters.http.problems import answer_failures
from trading_orders.adapters.http.routes import (
    api_pages,
    controls,
    desk,
    events,
    operations,
    orders,
    positions,
    profiles,
    trades,
)
from trading_orders.adapters.http.schemas import PROBLEM_MODELS, Problem
from trading_orders.adapters.http.wrong_keys import WrongKeyLimit
from trading_orders.application.order_service import OrderService

# The modules whose endpoints the container wires.
ROUTE_MODULES: tuple[ModuleType, ...] = (orders, events, positions, trades, profiles, controls, operations, desk)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

_PROBLEM_REFS = frozenset(f"#/components/schemas/{model.__name__}" for model in PROBLEM_MODELS)


def _document_problem_media_type(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI schema say application/problem+json wherever a problem model is answered."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # FastAPI documents a response's model under the route's media
            # type (application/json, text/plain for /metrics); a problem is
            # sent as problem+json whatever the route.
            for operation in (op for path in generate()["paths"].values() for op in path.values()):
                for answer in operation.get("responses", {}).values():
                    content = answer.get("content", {})
                    for media_type in [
                        m for m, c in content.items() if c.get("schema", {}).get("$ref") in _PROBLEM_REFS
                    ]:
                        content[PROBLEM_MEDIA_TYPE] = content.pop(media_type)
        assert app.openapi_schema is not None
        return app.openapi_schema

    # FastAPI's documented way to change its schema ("Extending OpenAPI"); it
    # is built on the first request for it, not at start-up (about 90 ms).
    app.openapi = openapi  # type: ignore[method-assign]


def build_api(lifespan: Lifespan, service: OrderService, api_key: str | None, wrong_keys: WrongKeyLimit) -> ASGIApp:
    """The HTTP application: every route of the contract, orders placed on ``service``.

    ``api_key``, if given, guards every path but /health and the desk's page
    (its reads take the desk's session cookie too); ``wrong_keys`` limits the
    wrong keys an address may send, to it and to the desk's session. The layers,
    outermost first: the access log (which answers a failure nothing
    answered), the refusal of a repeated single header, the key guard, the
    body-size limit, the order ingress (which serves every POST
    /create_order), FastAPI.
    """
    # /docs and /redoc with their scripts and styles served by the service, not
    # a CDN: a desk's network often reaches nothing outside it. /redoc is
    # api_pages' (ReDoc's script asks a CDN for a logo); Swagger UI's validator
    # badge would send the schema's address to validator.swagger.io.
    app = FastAPIOffline(
        redoc_url=None,
        swagger_ui_parameters={"validatorUrl": None},
        title="trading-orders",
        summary="Decides strategy orders for every user who runs the strategy, and records them durably.",
        version="0.1.0",
        lifespan=lifespan,
        responses={500: {"model": Problem, "description": "The service failed; incident names its log line."}},
    )
    answer_failures(app)
    _document_problem_media_type(app)
    app.state.read_lane = read_lane()
    app.state.health_lane = health_lane()
    app.add_exception_handler(LaneBusy, answer_busy)
    for module in ROUTE_MODULES:
        app.include_router(module.router)
    app.include_router(api_pages.router)
    # The one path of POST /create_order: FastAPI's route for it only documents it.
    keys = IdempotencyScope(api_key or None)
    # The control routes record keys as orders do, and who changed what by the key's digest.
    app.state.idempotency_scope = keys
    app.state.api_key_operator = keys.operator
    served: ASGIApp = OrderIngress(app, service, app.exception_handlers, orders.MAX_BODY_BYTES, keys)
    # One plain ASGI layer rather than FastAPI's max_body_size, which wraps
    # every request in three and cost the order path a fifth of its time.
    served = BodySizeLimit(served, max_bytes=orders.MAX_BODY_BYTES)
    sessions = DeskSessions(api_key) if api_key else None
    app.state.desk_sessions = sessions
    app.state.wrong_keys = wrong_keys
    if sessions is not None and api_key:
        served = ApiKeyGuard(served, api_key=api_key, sessions=sessions, wrong_keys=wrong_keys)
    # Outside the key guard, which reads X-API-Key, and everything that reads a header once.
    served = SingleHeaders(served)
    # Outermost, so it logs refusals by the key guard too.
    return RequestLog(served)
