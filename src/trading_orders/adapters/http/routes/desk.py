"""The desk: its page and assets (package data under ../desk), and the session that lets it read with an API key."""

import logging
from datetime import UTC, datetime
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from trading_orders.adapters.http.desk_session import DeskSessions, cleared_cookie, cookie_header
from trading_orders.adapters.http.middleware import API_KEY_STATE, client_address, too_many_wrong_keys
from trading_orders.adapters.http.problem_details import DESK_KEY_REFUSED, bare_status, problem_response
from trading_orders.adapters.http.problems import require_json
from trading_orders.adapters.http.schemas import MALFORMED_PARAMETER, DeskSessionAnswer, DeskSessionRequest, Problem
from trading_orders.adapters.http.wrong_keys import WrongKeyLimit

logger = logging.getLogger(__name__)

# Out of the OpenAPI schema: the desk page's own plumbing, described in
# docs/desk.md. (Its three methods on one path are three routes, and the 405
# a fourth method gets lists only the first's: the schema would promise more.)
router = APIRouter(include_in_schema=False)

# The files under desk/, read once: a handful of small files, and a fixed list
# means no path a client sends ever reaches the file system.
_MEDIA_TYPES = {
    "desk.js": "text/javascript; charset=utf-8",
    "controls.js": "text/javascript; charset=utf-8",
    "desk.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_DESK = resources.files("trading_orders.adapters.http") / "desk"
ASSETS = {name: _DESK.joinpath(name).read_bytes() for name in _MEDIA_TYPES}
PAGE = _DESK.joinpath("index.html").read_bytes()

# The browser itself refuses anything from another origin: no CDN, no font,
# no beacon, even if a future edit of the page asked for one.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new release's page and scripts are fetched again, never mixed with an old one's.
    "Cache-Control": "no-cache",
}


@router.get("/")
def front_door() -> RedirectResponse:
    """Send a person who opens the service's address to the desk (307: the next visit asks again)."""
    return RedirectResponse("/desk", status_code=307)


@router.get("/desk")
def desk_page() -> Response:
    """The desk's page; without a session it only asks for the API key."""
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.get(
    "/desk/static/{name}",
    responses={404: {"model": Problem, "description": "The desk has no asset of this name."}, **MALFORMED_PARAMETER},
)
def desk_asset(name: str) -> Response:
    """One of the desk's scripts, styles or icons; 404 for any other name."""
    if name not in ASSETS:
        return problem_response(bare_status(404), f"the desk has no asset named {name[:100]!r}")
    return Response(ASSETS[name], media_type=_MEDIA_TYPES[name], headers=_PAGE_HEADERS)


def _sessions(request: Request) -> DeskSessions | None:
    sessions: DeskSessions | None = request.app.state.desk_sessions
    return sessions


def _answer(request: Request, expires: int | None, token: str | None = None) -> DeskSessionAnswer:
    sessions = _sessions(request)
    key_required = sessions is not None
    return DeskSessionAnswer(
        key_required=key_required,
        active=not key_required or expires is not None or getattr(request.state, API_KEY_STATE, False),
        expires_at=None if expires is None else datetime.fromtimestamp(expires, UTC),
        change_token=None if sessions is None or token is None else sessions.change_token(token),
    )


@router.get("/desk/session", response_model=DeskSessionAnswer, summary="May this browser read? (the desk asks)")
def desk_session(request: Request) -> DeskSessionAnswer:
    """Whether a key is needed and whether this request has it or a session; never 401, so the desk can ask."""
    sessions = _sessions(request)
    cookies = cookie_header(request.scope["headers"])
    expires = None if sessions is None else sessions.expiry_in(cookies)
    token = None if sessions is None else sessions.session_token(cookies)
    return _answer(request, expires, token)


@router.post(
    "/desk/session",
    response_model=DeskSessionAnswer,
    summary="Trade the API key for the desk's session cookie",
    description=(
        "For the right key, sets a signed session cookie (HttpOnly, SameSite=Strict, a few hours) that "
        "GET requests (the reads, /events) take in place of the X-API-Key header; POST /create_order and "
        "/admin never do. Without a configured key, sets nothing: every client may read."
    ),
    responses={
        400: {"model": Problem, "description": "The body cannot be read (it is not UTF-8)."},
        401: {"model": Problem, "description": "Not the API key; nothing is set."},
        429: {"model": Problem, "description": "Too many wrong keys from this address; with Retry-After."},
        415: {"model": Problem, "description": "The request is not sent as application/json."},
        **MALFORMED_PARAMETER,
    },
)
def open_desk_session(
    body: DeskSessionRequest, request: Request, response: Response
) -> DeskSessionAnswer | JSONResponse:
    """Set the session cookie for the right API key; 401 and nothing set for any other."""
    # FastAPI reads an application/*+json body as JSON too; the service's one rule does not.
    require_json(request)
    sessions = _sessions(request)
    if sessions is None:
        return _answer(request, None)
    if not sessions.opened_by(body.api_key):
        client = client_address(request.scope)
        wrong_keys: WrongKeyLimit = request.app.state.wrong_keys
        wait = wrong_keys.wrong_key(client)
        if wait is not None:
            return too_many_wrong_keys(wait)
        logger.warning("refused a desk session from %s: wrong API key", client)
        return problem_response(DESK_KEY_REFUSED, "not the service's API key; no session cookie was set")
    token, expires = sessions.issue()
    response.headers["Set-Cookie"] = sessions.cookie(token, expires, secure=request.url.scheme == "https")
    return _answer(request, expires, token)


@router.delete("/desk/session", response_model=DeskSessionAnswer, summary="End the desk's session (log out)")
def close_desk_session(request: Request, response: Response) -> DeskSessionAnswer:
    """Make the browser forget its session cookie."""
    response.headers["Set-Cookie"] = cleared_cookie(secure=request.url.scheme == "https")
    key_required = _sessions(request) is not None
    return DeskSessionAnswer(key_required=key_required, active=not key_required, expires_at=None)
