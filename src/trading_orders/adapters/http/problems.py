"""The answers to failures: each exception the application raises, mapped to its status and body."""

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from trading_orders.application.errors import (
    IdempotencyKeyReused,
    InvalidCursor,
    OrderInDoubt,
    ServiceNotStarted,
    StorageUnavailable,
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


def _incident() -> str:
    """A short random id that ties a client's 503 to the log line with its detail."""
    return secrets.token_hex(6)


async def _answer_store_failure(request: Request, error: Exception) -> JSONResponse:
    # The store's message names files, hosts and OS errors: for the log, not
    # for whoever sent the request. The client gets what to do and an id the
    # operator can find in the log.
    incident = _incident()
    logger.error("%s %s not served (incident %s): %s", request.method, request.url.path, incident, error)
    if isinstance(error, OrderInDoubt):
        detail = (
            "the order may have been recorded: the store could not confirm it; retry with the same "
            "Idempotency-Key to get its answer without placing it twice"
        )
    elif request.method == "POST":
        detail = "the order was not recorded: the store is unavailable; retry with the same Idempotency-Key"
    else:
        detail = "the store is unavailable; retry shortly"
    return JSONResponse(status_code=503, content={"detail": f"{detail} (incident {incident})"})


async def _answer_invalid_cursor(request: Request, error: Exception) -> JSONResponse:
    problem = {"type": "invalid_cursor", "loc": ["query", "cursor"], "msg": str(error)}
    return JSONResponse(status_code=422, content={"message": f"cursor: {error}", "detail": [problem]})


async def _answer_not_started(request: Request, error: Exception) -> JSONResponse:
    incident = _incident()
    logger.warning("%s %s not served (incident %s): not ready: %s", request.method, request.url.path, incident, error)
    detail = f"not ready: the service is starting or recovering its store; retry shortly (incident {incident})"
    return JSONResponse(status_code=503, content={"detail": detail})


def answer_failures(app: FastAPI) -> None:
    """Register the answer to every failure the application reports."""
    app.add_exception_handler(RequestValidationError, _answer_validation_error)
    app.add_exception_handler(IdempotencyKeyReused, _answer_key_reused)
    app.add_exception_handler(StorageUnavailable, _answer_store_failure)
    app.add_exception_handler(ServiceNotStarted, _answer_not_started)
    app.add_exception_handler(InvalidCursor, _answer_invalid_cursor)
