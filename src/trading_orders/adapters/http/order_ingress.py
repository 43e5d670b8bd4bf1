"""POST /create_order: the one code path that reads, places and answers every order, in front of FastAPI.

FastAPI's per-request machinery (routing, dependency solving, request and
response objects, a second validation of the answer) cost more than the
order itself: about 95 µs of CPU per request against the order's 55 µs on
the memory store (docs/performance.md). So every request to POST
/create_order, well-formed or not, is served here, and nowhere else: its
headers and body are read by one set of rules, the order is placed by one
call, and a refusal is answered by the handlers every route's failures go
to (problems.py). The FastAPI route of the same path only documents the
operation in the OpenAPI schema; its endpoint never runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from trading_orders.adapters.http.middleware import ORDER_ID_STATE
from trading_orders.adapters.http.parameters import idempotency_key_errors, is_json_media_type
from trading_orders.adapters.http.problems import UnsupportedMediaType
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
        # Who a control change is recorded as coming from, when made with the key.
        self.operator = None if digest is None else f"api-key-{digest}"

    def recorded(self, key: str | None) -> str | None:
        """The key the store records for the client's Idempotency-Key ``key`` (None stays None)."""
        if key is None or self._prefix is None:
            return key
        return self._prefix + key


class OrderIngress:
    """Serves every POST /create_order, placing the order on ``service``; passes every other request to ``app``."""

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
        """Place the order of a POST /create_order and answer it, or answer why not; hand any other request on."""
        if scope["type"] != "http" or scope["method"] != "POST" or not _is_order_path(scope):
            await self._app(scope, receive, send)
            return
        body = await self._read_body(receive)
        if body is None:
            return  # the client left, or sent more than any order: BodySizeLimit has answered
        try:
            order, key = read_order(scope["headers"], body)
            placed = await self._service.place_order(order, self._keys.recorded(key))
        except Exception as error:
            await self._answer_failure(scope, receive, send, error)
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

    async def _answer_failure(self, scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
        handler = next((self._handlers[kind] for kind in type(error).__mro__ if kind in self._handlers), None)
        if handler is None:
            raise error
        response = handler(Request(scope, receive), error)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


def _is_order_path(scope: Scope) -> bool:
    # Behind a proxy's prefix (uvicorn --root-path) the path carries the prefix, as FastAPI's routing expects.
    path: str = scope["path"]
    return path == ORDER_PATH or path == scope.get("root_path", "") + ORDER_PATH


def read_order(headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[Order, str | None]:
    """The order and the Idempotency-Key of a POST /create_order; raises what problems.py answers if it is not one.

    UnsupportedMediaType (415) for a body not sent as application/json;
    RequestValidationError (422) naming each malformed field or header;
    HTTPException (400) for a body that is not UTF-8.
    """
    content_type, key = _order_headers(headers)
    if not is_json_media_type(content_type):
        raise UnsupportedMediaType(content_type)
    quick = None if key is not None and idempotency_key_errors(key) else _read_quickly(body)
    request = quick if quick is not None else _read_exactly(body, key)
    return Order(request.strategy, request.instrument, request.side), key


def _order_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The Content-Type and the Idempotency-Key sent; SingleHeaders, outside, has refused either sent twice."""
    content_type: str | None = None
    key: str | None = None
    for name, value in headers:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"idempotency-key":
            key = value.decode("latin-1")
    return content_type, key


def _read_quickly(body: bytes) -> CreateOrderRequest | None:
    """The order in a well-formed body, read by pydantic's JSON parser in one step; None for any other body."""
    try:
        return CreateOrderRequest.model_validate_json(body)
    except ValidationError:
        return None


def _read_exactly(body: bytes, key: str | None) -> CreateOrderRequest:
    """The order in ``body``, or every problem with it and with ``key``: the answer of a request read quickly in vain.

    pydantic's JSON parser, which reads the well-formed order, words a broken
    body its own way; this reads the body as the contract's 422s describe it:
    the JSON parser's position and message, then the header's problems and the
    fields', all in one answer. Only refused requests pay for the second reading.
    """
    data: object = None
    if body:
        try:
            data = json.loads(body.decode("utf-8"))
        except json.JSONDecodeError as error:
            problem = {"type": "json_invalid", "loc": ("body", error.pos), "msg": "JSON decode error", "input": {}}
            raise RequestValidationError([{**problem, "ctx": {"error": error.msg}}]) from error
        except (UnicodeDecodeError, RecursionError) as error:
            raise HTTPException(400, "There was an error parsing the body") from error
    problems = [] if key is None else idempotency_key_errors(key)
    if not body:
        raise RequestValidationError([*problems, {"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        # As FastAPI validates a body model: a list or null is "not a dictionary or object".
        request = CreateOrderRequest.model_validate(data, from_attributes=True)
    except ValidationError as error:
        fields = [{**p, "loc": ("body", *p["loc"])} for p in error.errors(include_url=False)]
        raise RequestValidationError(problems + fields) from error
    if problems:
        raise RequestValidationError(problems)
    return request


async def _answer(scope: Scope, send: Send, placed: PlacedOrder) -> None:
    scope.setdefault("state", {})[ORDER_ID_STATE] = placed.entry.decision.order_id
    body = OrderAnswer.from_entry(placed.entry).model_dump_json(by_alias=True).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if placed.replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
