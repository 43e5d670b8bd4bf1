"""ASGI middleware around every request: the access log, single headers, the optional API key, the body-size limit."""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trading_orders.adapters.http.desk_session import DeskSessions, cookie_header
from trading_orders.adapters.http.parameters import api_key_matches
from trading_orders.adapters.http.problem_details import (
    API_KEY_REFUSED,
    CONTENT_TOO_LARGE,
    REPEATED_HEADER,
    TOO_MANY_WRONG_KEYS,
    problem_response,
)
from trading_orders.adapters.http.problems import answer_unexpected, is_answered
from trading_orders.adapters.http.wrong_keys import WrongKeyLimit
from trading_orders.ascii_numbers import ascii_number

logger = logging.getLogger(__name__)

ORDER_ID_STATE = "order_id"
# Set on a request to an open path when an API key is configured: whether it carried the key
# (or, for a read, the desk's session cookie).
API_KEY_STATE = "api_key_given"
# The desk's page, its scripts and styles hold no data: they are the prompt for the key;
# "/" only sends a person to the desk.
OPEN_PATHS = frozenset({"/", "/health", "/desk", "/desk/session"})
OPEN_PREFIXES = ("/desk/static/",)
# The desk's cookie is good for reads only: a cookie is sent by the browser on
# its own, and a read changes nothing, so there is no request to forge.
SESSION_METHODS = frozenset({"GET", "HEAD"})
# The changes a desk session may make, with its change token: the operator controls.
SESSION_CHANGE_METHODS = frozenset({"PUT", "POST"})
SESSION_CHANGE_PREFIX = "/controls/"


class RequestLog:
    """Logs every request once it is answered (method, path, status, duration, order id); answers 500 if nothing did.

    Starlette answers an unexpected exception with the handler registered for
    Exception (problems.answer_unexpected) and then raises it again, for
    uvicorn to log a second traceback; a layer outside FastAPI that fails
    would get uvicorn's text/plain 500. Outermost, this layer ends both: the
    failure is answered as a problem and logged once.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request and log it after its answer."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, noting_status)
        except Exception as error:
            if not is_answered(scope, error):
                if status is not None:
                    # Half an answer is out: only closing the connection tells the client.
                    raise
                response = await answer_unexpected(Request(scope, receive), error)
                await response(scope, receive, noting_status)
        finally:
            order_id = scope.get("state", {}).get(ORDER_ID_STATE, "-")
            # The path is the client's, percent-decoded: it may hold a line feed.
            # The log's formatter escapes every record (log_files.OneLineFormatter).
            logger.info(
                "%s %s %d %.2fms order=%s",
                scope["method"],
                scope["path"],
                500 if status is None else status,  # a failure that leaves no answer is uvicorn's 500
                (time.perf_counter() - started) * 1000,
                order_id,
            )


# The headers a request may send once, as ASGI servers hand them (lower case), with
# their names as documented. Sent twice, one reader takes the first and another
# the last (a proxy, a library, this service's own layers): refused, not guessed at.
# Cookie is not among them: HTTP/2 may split one Cookie header into several
# (RFC 9113, 8.2.3), so every Cookie header is read (desk_session.cookie_header).
SINGLE_HEADERS = {
    b"content-type": "Content-Type",
    b"content-length": "Content-Length",
    b"idempotency-key": "Idempotency-Key",
    b"x-api-key": "X-API-Key",
    b"last-event-id": "Last-Event-ID",
}


class SingleHeaders:
    """Answers 400 naming the header to a request that sends a header of SINGLE_HEADERS more than once."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 400 if it repeats a header it may send once."""
        if scope["type"] == "http":
            seen: list[bytes] = []
            for name, _ in scope["headers"]:
                if name in SINGLE_HEADERS:
                    if name in seen:
                        header = SINGLE_HEADERS[name]
                        logger.info("%s %s refused: %s sent more than once", scope["method"], scope["path"], header)
                        detail = f"{header}: sent more than once; send it once"
                        await problem_response(REPEATED_HEADER, detail, header=header)(scope, receive, send)
                        return
                    seen.append(name)
        await self._app(scope, receive, send)


class BodySizeLimit:
    """Answers 413 to a request whose body is over ``max_bytes``, announced or chunked, before the app reads it all.

    One plain ASGI layer: a body whose Content-Length is within the limit
    passes with its receive channel untouched.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        """Wrap ``app``, refusing bodies over ``max_bytes``."""
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 413 once its body is known to be too large."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        announced = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        length = None if announced is None else ascii_number(announced)
        if length is not None:
            if length > self._max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self._app(scope, receive, send)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_bytes:
                    # Answer now; the app sees the client leave and its answer goes nowhere.
                    refused = True
                    await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self._app(scope, counting_receive, unless_refused)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"a request body is at most {self._max_bytes} bytes"
        await problem_response(CONTENT_TOO_LARGE, detail)(scope, receive, send)


def client_address(scope: Scope) -> str:
    """The address the request came from, as the server saw it (behind a proxy: the proxy's, unless told)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def too_many_wrong_keys(wait_seconds: int) -> JSONResponse:
    """429 for an address past its wrong keys: when it may try again."""
    detail = f"too many wrong API keys from this address; retry in {wait_seconds} s"
    return problem_response(TOO_MANY_WRONG_KEYS, detail, headers={"Retry-After": str(wait_seconds)})


class ApiKeyGuard:
    """Answers 401 to a request without the configured X-API-Key header (all paths but the open ones).

    A read (GET, HEAD) may carry the desk's session cookie instead of the
    header; nothing under /admin takes it. A wrong key, on any path, counts
    against its address in ``wrong_keys``; past the limit it is answered 429.
    """

    def __init__(self, app: ASGIApp, api_key: str, sessions: DeskSessions, wrong_keys: WrongKeyLimit) -> None:
        """Wrap ``app``, requiring ``api_key`` or, for a read, a session of ``sessions``."""
        self._app = app
        self._api_key = api_key.encode()
        self._sessions = sessions
        self._wrong_keys = wrong_keys

    def _authorized(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key")
        if given is not None:
            # A wrong key is refused even beside a good cookie: the client meant the key.
            return api_key_matches(given, self._api_key)
        if scope["method"] in SESSION_CHANGE_METHODS and scope["path"].startswith(SESSION_CHANGE_PREFIX):
            # A control changed from the desk: the cookie and the session's change token,
            # which only a page of this origin can read (desk_session.py).
            return self._sessions.allows_change(cookie_header(scope["headers"]), headers.get(b"x-desk-token"))
        if scope["method"] not in SESSION_METHODS or scope["path"].startswith("/admin"):
            return False
        return self._sessions.expiry_in(cookie_header(scope["headers"])) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on if it carries the key (or a read, the session), else answer 401."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        # The key is checked first: the right key passes from any address, however many wrong ones it sent.
        authorized = self._authorized(scope, headers)
        given = headers.get(b"x-api-key")
        if given is not None and not authorized:
            wait = self._wrong_keys.wrong_key(client_address(scope))
            if wait is not None:
                await too_many_wrong_keys(wait)(scope, receive, send)
                return
        path: str = scope["path"]
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            # Served either way; the path tells a client without the key less.
            scope.setdefault("state", {})[API_KEY_STATE] = authorized
            await self._app(scope, receive, send)
            return
        if authorized:
            await self._app(scope, receive, send)
            return
        problem = "missing" if given is None else "wrong"
        # The key itself, right or wrong, never goes into the log.
        logger.warning("refused %s %s from %s: X-API-Key %s", scope["method"], path, client_address(scope), problem)
        refusal = problem_response(
            API_KEY_REFUSED, f"X-API-Key header {problem}", headers={"WWW-Authenticate": "X-API-Key"}
        )
        await refusal(scope, receive, send)
