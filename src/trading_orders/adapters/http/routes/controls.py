"""Operator controls: trading states, limits and flatten (SPEC.md, "Operator controls"; docs/controls.md)."""

# No `from __future__ import annotations` here: dependency-injector reads the
# Provide markers from the evaluated signatures of the endpoints.

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse

from trading_orders.adapters.http.control_schemas import (
    ControlChangeBody,
    ControlsAnswer,
    FlattenRequest,
    LimitRequest,
    StateRequest,
)
from trading_orders.adapters.http.middleware import client_address
from trading_orders.adapters.http.parameters import idempotency_key_errors
from trading_orders.adapters.http.problem_details import (
    CONTROL_FORBIDDEN,
    UNKNOWN_NAME,
    VALIDATION,
    problem_response,
)
from trading_orders.adapters.http.problems import require_json
from trading_orders.adapters.http.schemas import Problem
from trading_orders.application.errors import UnknownName
from trading_orders.application.operator_controls import OperatorControls, RecordedControl
from trading_orders.container import Container
from trading_orders.domain.controls import ControlScope, RateLimit
from trading_orders.domain.model import DomainError

logger = logging.getLogger(__name__)

router = APIRouter()

# What the command line sends as its User-Agent, so the log says a change came from it.
CLI_USER_AGENT = "trading-orders-cli"

_CHANGE_ANSWERS: dict[int | str, dict[str, object]] = {
    400: {"model": Problem, "description": "The body cannot be read (it is not UTF-8), or a header is repeated."},
    401: {"model": Problem, "description": "An API key is configured and the request lacks it (or the desk's token)."},
    403: {"model": Problem, "description": "No API key is configured and the request is not from this machine."},
    413: {"model": Problem, "description": "The body is over the size any request may have."},
    415: {"model": Problem, "description": "The request is not sent as application/json."},
    422: {"model": Problem, "description": "The request is not valid, or names a user or strategy nobody knows."},
    503: {"model": Problem, "description": "The store could not record the change; nothing was changed."},
}
IdempotencyKeyHeader = Annotated[
    str | None, Header(alias="Idempotency-Key", description="A retry with the same key is answered from the log.")
]


@router.get("/controls", response_model=ControlsAnswer, summary="The trading states and limits in force")
@inject
def list_controls(
    controls: Annotated[OperatorControls, Depends(Provide[Container.operator_controls])],
) -> ControlsAnswer:
    """Every scope that is not ACTIVE, and every limit."""
    return ControlsAnswer.of(controls.in_force())


@router.put(
    "/controls/state",
    response_model=ControlChangeBody,
    summary="Set a scope's trading state (ACTIVE, REDUCING, HALTED)",
    description="The state latches: it holds, across restarts, until an operator sets it again.",
    responses=_CHANGE_ANSWERS,
)
@inject
async def set_state(
    body: StateRequest,
    request: Request,
    response: Response,
    controls: Annotated[OperatorControls, Depends(Provide[Container.operator_controls])],
    idempotency_key: IdempotencyKeyHeader = None,
) -> ControlChangeBody | JSONResponse:
    """Record the state change; orders sequenced after it are decided under it."""
    scope = ControlScope(body.user, body.strategy)
    return await _change(
        request,
        response,
        idempotency_key,
        lambda operator, key: controls.set_state(scope, body.state, body.reason, operator, key),
    )


@router.put(
    "/controls/limits",
    response_model=ControlChangeBody,
    summary="Set or remove a limit: open positions of a user (or user's strategy), or a strategy's order rate",
    responses=_CHANGE_ANSWERS,
)
@inject
async def set_limit(
    body: LimitRequest,
    request: Request,
    response: Response,
    controls: Annotated[OperatorControls, Depends(Provide[Container.operator_controls])],
    idempotency_key: IdempotencyKeyHeader = None,
) -> ControlChangeBody | JSONResponse:
    """Record the limit; a null value removes it."""

    async def record(operator: str, key: str | None) -> RecordedControl:
        if "max_open_positions" in body.model_fields_set:
            scope = ControlScope(body.user, body.strategy)
            return await controls.set_position_limit(scope, body.max_open_positions, body.reason, operator, key)
        assert body.strategy is not None  # LimitRequest checked it
        rate = None
        if body.max_orders_per_second is not None and body.burst is not None:
            rate = RateLimit(body.max_orders_per_second, body.burst)
        return await controls.set_rate_limit(body.strategy, rate, body.reason, operator, key)

    return await _change(request, response, idempotency_key, record)


@router.post(
    "/controls/flatten",
    response_model=ControlChangeBody,
    summary="Close every open position in a scope, and set its state in the same step if asked",
    description="Each position is closed as a SELL would close it: a trade is recorded for each.",
    responses=_CHANGE_ANSWERS,
)
@inject
async def flatten(
    body: FlattenRequest,
    request: Request,
    response: Response,
    controls: Annotated[OperatorControls, Depends(Provide[Container.operator_controls])],
    idempotency_key: IdempotencyKeyHeader = None,
) -> ControlChangeBody | JSONResponse:
    """Record the flatten: the positions it closed, their trades, and the state if one was given."""
    scope = ControlScope(body.user, body.strategy)
    return await _change(
        request,
        response,
        idempotency_key,
        lambda operator, key: controls.flatten(scope, body.state, body.reason, operator, key),
    )


async def _change(
    request: Request,
    response: Response,
    idempotency_key: str | None,
    record: Callable[[str, str | None], Awaitable[RecordedControl]],
) -> ControlChangeBody | JSONResponse:
    """Refuse a change this request may not make; else ``record`` it (by operator and key) and answer the entry."""
    refusal = _refusal(request, idempotency_key)
    if refusal is not None:
        return refusal
    try:
        recorded = await record(_operator(request), _key(request, idempotency_key))
    except (UnknownName, DomainError) as error:
        return problem_response(UNKNOWN_NAME if isinstance(error, UnknownName) else VALIDATION, str(error))
    return _answer(recorded, response)


def _refusal(request: Request, idempotency_key: str | None) -> JSONResponse | None:
    """Why a change cannot be taken from this request, if it cannot: JSON only; no key configured: this machine only."""
    # JSON only, as for the profile reload: a foreign page cannot send it without asking first.
    require_json(request)
    if idempotency_key is not None:
        problems = idempotency_key_errors(idempotency_key)
        if problems:
            return problem_response(VALIDATION, problems[0]["msg"], errors=problems)
    if request.app.state.api_key_operator is None and not _is_loopback(client_address(request.scope)):
        logger.warning("control change refused from %s: no API key is configured", client_address(request.scope))
        return problem_response(
            CONTROL_FORBIDDEN,
            "with no API key configured, controls are changed only from this machine; configure TRADING_ORDERS_API_KEY",
        )
    return None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _operator(request: Request) -> str:
    """Who is changing a control: the API key's digest, else the command line or the browser on this machine."""
    by_key: str | None = request.app.state.api_key_operator
    if by_key is not None:
        return by_key
    return "cli" if request.headers.get("user-agent", "").startswith(CLI_USER_AGENT) else "loopback"


def _key(request: Request, idempotency_key: str | None) -> str | None:
    scoped: str | None = request.app.state.idempotency_scope.recorded(idempotency_key)
    return scoped


def _answer(recorded: RecordedControl, response: Response) -> ControlChangeBody:
    if recorded.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return ControlChangeBody.of(recorded.entry)
