"""POST /create_order on a short path: the one request a desk sends thousands of times a second.

FastAPI's per-request machinery (routing, dependency solving, request and
response objects, a second validation of the answer) cost more than the
order itself: about 95 µs of CPU per request against the order's 55 µs on
the memory store (docs/performance.md). The ingress serves the well-formed
order in front of FastAPI, with the same request model, the same answer
model and the same failure handlers. Whatever it cannot read (a malformed
body, another content type, a doubtful header) reaches the FastAPI route
untouched, which answers it as documented: the error answers have one author.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trading_orders.adapters.http.middleware import ORDER_ID_STATE
from trading_orders.adapters.http.parameters import is_idempotency_key
from trading_orders.adapters.http.schemas import CreateOrderRequest, OrderAnswer
from trading_orders.application.order_service import OrderService, PlacedOrder
from trading_orders.domain.model import Order

ORDER_PATH = "/create_order"

# As Starlette keeps them: by exception class (or status code), sync or async.
FailureHandler = Callable[[Request, Any], Response | Awaitable[Response]]


class IdempotencyScope:
    """Where a client's Idempotency-Key is recorded: under the API key it came with, so no key reaches another's."""

    def __init__(self, api_key: str | None) -> None:
        """Scope keys to ``api_key``; with none, a client's key is recorded as sent."""
        # A digest, not the API key: the order log, its backups and exports
        # hold the recorded keys, and must not hold a secret. Sixteen hex
        # digits tell API keys apart; nobody needs to find one from them.
        digest = None if api_key is None else hashlib.sha256(api_key.encode()).hexdigest()[:16]
        self._prefix = None if digest is None else f"api-key-{digest}:"

    def recorded(self, key: str | None) -> str | None:
        """The key the store records for the client's Idempotency-Key ``key`` (None stays None)."""
        if key is None or self._prefix is None:
            return key
        return self._prefix + key


class OrderIngress:
    """Serves a well-formed POST /create_order itself and passes every other request to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        service: OrderService,
        failure_handlers: Mapping[Any, FailureHandler],
        max_body_bytes: int,
        keys: IdempotencyScope,
    ) -> None:
        """Wrap ``app``; orders go to ``service``, keys scoped by ``keys``; failures by ``failure_handlers``."""
        self._app = app
        self._service = service
        self._keys = keys
        self._handlers = {kind: handler for kind, handler in failure_handlers.items() if isinstance(kind, type)}
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Place the order if the request is one this path reads; else hand the request on unchanged."""
        if scope["type"] != "http" or scope["path"] != ORDER_PATH or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        readable, key = _order_headers(scope["headers"])
        if not readable:
            await self._app(scope, receive, send)
            return
        body = await self._read_body(receive)
        if body is None:
            return  # the client left, or sent more than any order: BodySizeLimit has answered
        replay = _replaying(body, receive)
        try:
            request = CreateOrderRequest.model_validate_json(body)
        except ValidationError:
            await self._app(scope, replay, send)
            return
        try:
            order = Order(request.strategy, request.instrument, request.side)
            placed = await self._service.place_order(order, self._keys.recorded(key))
        except Exception as error:
            handler = self._handler_for(error)
            if handler is None:
                raise
            response = handler(Request(scope, replay), error)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, replay, send)
            return
        await _answer(scope, send, placed)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _handler_for(self, error: Exception) -> FailureHandler | None:
        for kind in type(error).__mro__:
            handler = self._handlers.get(kind)
            if handler is not None:
                return handler
        return None


def _order_headers(headers: list[tuple[bytes, bytes]]) -> tuple[bool, str | None]:
    """Whether this path reads the headers (else the FastAPI route judges them), and the Idempotency-Key."""
    content_type: bytes | None = None
    keys: list[bytes] = []
    for name, value in headers:
        if name == b"content-type":
            content_type = value
        elif name == b"idempotency-key":
            keys.append(value)
    if content_type != b"application/json" or len(keys) > 1:
        return False, None
    if not keys:
        return True, None
    key = keys[0].decode("latin-1")
    return is_idempotency_key(key), key


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands the body already read once, then listens to the client again."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(scope: Scope, send: Send, placed: PlacedOrder) -> None:
    scope.setdefault("state", {})[ORDER_ID_STATE] = placed.entry.decision.order_id
    body = OrderAnswer.from_entry(placed.entry).model_dump_json(by_alias=True).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if placed.replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
