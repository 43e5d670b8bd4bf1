"""The FastAPI application: the routers of every resource, the failure answers, the middleware."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import ModuleType

from fastapi import FastAPI

from trading_orders.adapters.http.middleware import ApiKeyGuard, BodySizeLimit, RequestLog
from trading_orders.adapters.http.problems import answer_failures
from trading_orders.adapters.http.routes import operations, orders, positions, profiles, trades

# The modules whose endpoints the container wires.
ROUTE_MODULES: tuple[ModuleType, ...] = (orders, positions, trades, profiles, operations)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_api(lifespan: Lifespan, api_key: str | None = None) -> FastAPI:
    """The FastAPI application with every route of the HTTP contract; ``api_key`` guards all but /health."""
    app = FastAPI(
        title="trading-orders",
        summary="Decides strategy orders for every user who runs the strategy, and records them durably.",
        version="0.1.0",
        lifespan=lifespan,
    )
    # One plain ASGI layer rather than FastAPI's max_body_size, which wraps
    # every request in three and cost the order path a fifth of its time.
    app.add_middleware(BodySizeLimit, max_bytes=orders.MAX_BODY_BYTES)
    if api_key:
        app.add_middleware(ApiKeyGuard, api_key=api_key)
    # Added last, so it runs outermost and logs refusals by the key guard too.
    app.add_middleware(RequestLog)
    answer_failures(app)
    for module in ROUTE_MODULES:
        app.include_router(module.router)
    return app
