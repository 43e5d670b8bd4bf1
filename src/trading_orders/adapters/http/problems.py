"""The answers to failures: each exception the application raises, mapped to its status and problem."""

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from trading_orders.adapters.http.lanes import RETRY_AFTER_SECONDS
from trading_orders.adapters.http.parameters import is_json_media_type
from trading_orders.adapters.http.problem_details import (
    DAMAGED_LOG_ENTRY,
    IDEMPOTENCY_KEY_REUSED,
    INTERNAL,
    INVALID_CURSOR,
    NOT_READY,
    ORDER_IN_DOUBT,
    STORE_BUSY,
    STORE_UNAVAILABLE,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION,
    bare_status,
    problem_response,
)
from trading_orders.application.errors import (
    DamagedLogEntry,
    IdempotencyKeyReused,
    InvalidCursor,
    OrderInDoubt,
    ServiceNotStarted,
    StorageUnavailable,
    StoreBusy,
)

logger = logging.getLogger(__name__)


def _field_name(location: tuple[object, ...]) -> str:
    # ("body", "STRATEGY") -> "STRATEGY"; ("query", "user") -> "user"; ("body",) -> "body"
    names = [str(part) for part in location[1:]] if len(location) > 1 else [str(p) for p in location]
    return ".".join(names) or "request"


def _describe_problem(problem: Mapping[str, Any]) -> str:
    if problem["type"] == "json_invalid":
        position = problem["loc"][-1]
        return f"body: invalid JSON at character {position}: {problem.get('ctx', {}).get('error', problem['msg'])}"
    return f"{_field_name(tuple(problem['loc']))}: {problem['msg']}"


class UnsupportedMediaType(Exception):
    """A request body the service does not read: its Content-Type is not application/json."""

    def __init__(self, content_type: str | None) -> None:
        """The request said ``content_type`` (None: it said nothing)."""
        super().__init__(f"Content-Type: expected application/json, got {content_type or 'none'}")


def require_json(request: Request) -> None:
    """Raise UnsupportedMediaType unless ``request`` says its body is application/json."""
    content_type = request.headers.get("content-type")
    if not is_json_media_type(content_type):
        raise UnsupportedMediaType(content_type)


async def _answer_unsupported_media_type(request: Request, error: Exception) -> JSONResponse:
    logger.info("%s %s refused: %s", request.method, request.url.path, error)
    return problem_response(UNSUPPORTED_MEDIA_TYPE, str(error))


async def _answer_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    content_type = request.headers.get("content-type")
    if request.method == "POST" and not is_json_media_type(content_type):
        # FastAPI hands a non-JSON body to the model as bytes, which reads as
        # "not a dictionary"; the real problem is the content type.
        return await _answer_unsupported_media_type(request, UnsupportedMediaType(content_type))
    # Each problem without its input: the client has it, and echoing it back
    # can fail (JSON has no NaN) or reflect 16 KiB of someone's payload.
    problems = [{k: v for k, v in p.items() if k != "input"} for p in error.errors()]
    message = "; ".join(_describe_problem(p) for p in problems)
    logger.info("%s %s refused: %s", request.method, request.url.path, message)
    return problem_response(VALIDATION, message, message=message, errors=jsonable_encoder(problems))


async def _answer_key_reused(request: Request, error: Exception) -> JSONResponse:
    logger.info("%s %s refused: %s", request.method, request.url.path, error)
    problem = {"loc": ["header", "Idempotency-Key"], "msg": str(error), "type": "idempotency_key_reused"}
    return problem_response(IDEMPOTENCY_KEY_REUSED, str(error), message=str(error), errors=[problem])


def _incident() -> str:
    """A short random id that ties a client's 5xx to the log line with its detail."""
    return secrets.token_hex(6)


async def _answer_store_failure(request: Request, error: Exception) -> JSONResponse:
    # The store's message names files, hosts and OS errors: for the log, not
    # for whoever sent the request. The client gets what to do and an id the
    # operator can find in the log.
    incident = _incident()
    logger.error("%s %s not served (incident %s): %s", request.method, request.url.path, incident, error)
    kind = STORE_UNAVAILABLE
    if isinstance(error, DamagedLogEntry):
        # Retrying will not help until the operator repairs the line, so say
        # which entry it is: the operator finds it, a follower may resume after it.
        detail = f"{damaged_entry_text(error)}; the operator can look up incident {incident}"
        return problem_response(DAMAGED_LOG_ENTRY, detail, incident=incident, sequence=error.sequence)
    headers = None
    if isinstance(error, StoreBusy):
        # The bound is part of the answer: the client learns how long it was
        # held, that nothing was kept, and when to try again.
        kind = STORE_BUSY
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        detail = (
            f"the order was not recorded: what it needs stayed held by another process for {error.waited_seconds:g} s; "
            "retry with the same Idempotency-Key"
        )
    elif isinstance(error, OrderInDoubt):
        kind = ORDER_IN_DOUBT
        detail = (
            "the order may have been recorded: the store could not confirm it; retry with the same "
            "Idempotency-Key to get its answer without placing it twice"
        )
    elif request.method == "POST":
        detail = "the order was not recorded: the store is unavailable; retry with the same Idempotency-Key"
    else:
        detail = "the store is unavailable; retry shortly"
    return problem_response(kind, f"{detail} (incident {incident})", headers=headers, incident=incident)


def damaged_entry_text(error: DamagedLogEntry) -> str:
    """What a client is told of a damaged order-log entry: which one, and that it waits for a repair; no path."""
    named = f"order log entry {error.sequence}" if error.sequence is not None else "an order log entry"
    return f"{named} cannot be read: it is damaged on disk and stays unreadable until the operator repairs it"


async def _answer_invalid_cursor(request: Request, error: Exception) -> JSONResponse:
    problem = {"loc": ["query", "cursor"], "msg": str(error), "type": "invalid_cursor"}
    message = f"cursor: {error}"
    return problem_response(INVALID_CURSOR, message, message=message, errors=[problem])


async def _answer_not_started(request: Request, error: Exception) -> JSONResponse:
    incident = _incident()
    logger.warning("%s %s not served (incident %s): not ready: %s", request.method, request.url.path, incident, error)
    detail = f"not ready: the service is starting or recovering its store; retry shortly (incident {incident})"
    return problem_response(NOT_READY, detail, incident=incident)


# The longest piece of the client's path an answer repeats.
_PATH_SHOWN = 200


async def _answer_http_status(request: Request, error: Exception) -> Response:
    # Starlette's and FastAPI's own refusals: an unknown path, a method the
    # path does not take, a body that is not UTF-8.
    assert isinstance(error, StarletteHTTPException)
    headers = dict(error.headers or {})
    if error.status_code < 400:
        return Response(status_code=error.status_code, headers=headers)
    kind = bare_status(error.status_code)
    path = request.url.path[:_PATH_SHOWN]
    detail = error.detail
    if detail == kind.title and error.status_code == 404:
        detail = f"nothing is served at {path}"
    elif detail == kind.title and error.status_code == 405:
        detail = f"{request.method} is not allowed on {path}; allowed: {headers.get('Allow', 'none')}"
    return problem_response(kind, detail, headers=headers)


# Set on the request that an unexpected failure was answered and logged: the
# exception itself, so the layers outside FastAPI know this one has been dealt with.
_ANSWERED_FAILURE_STATE = "answered_failure"


async def answer_unexpected(request: Request, error: Exception) -> JSONResponse:
    """500 for a failure nothing else answers: the traceback to the log under an incident id, the id to the client."""
    incident = _incident()
    logger.error(
        "%s %s failed (incident %s): %s",
        request.method,
        request.url.path,
        incident,
        type(error).__name__,
        exc_info=error,
    )
    setattr(request.state, _ANSWERED_FAILURE_STATE, error)
    return problem_response(
        INTERNAL, f"the service failed to answer; the operator can look up incident {incident}", incident=incident
    )


def is_answered(scope: Scope, error: Exception) -> bool:
    """Whether answer_unexpected has answered and logged ``error`` for the request of ``scope``."""
    return scope.get("state", {}).get(_ANSWERED_FAILURE_STATE) is error


def answer_failures(app: FastAPI) -> None:
    """Register the answer to every failure the application reports."""
    app.add_exception_handler(RequestValidationError, _answer_validation_error)
    app.add_exception_handler(UnsupportedMediaType, _answer_unsupported_media_type)
    app.add_exception_handler(IdempotencyKeyReused, _answer_key_reused)
    app.add_exception_handler(StorageUnavailable, _answer_store_failure)
    app.add_exception_handler(ServiceNotStarted, _answer_not_started)
    app.add_exception_handler(InvalidCursor, _answer_invalid_cursor)
    app.add_exception_handler(StarletteHTTPException, _answer_http_status)
    app.add_exception_handler(Exception, answer_unexpected)
