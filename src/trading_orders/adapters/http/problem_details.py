"""RFC 9457 problem details: the one shape of every 4xx and 5xx body the service sends.

Every error answer is built here, by ``problem_response``: ``type`` (a URI
naming the kind of problem), ``title`` (the same for every problem of that
kind), ``status`` (the HTTP status, repeated), ``detail`` (what is wrong with
this request, in words), and extension members such as ``errors`` (the
fields of a malformed request) or ``incident`` (the id of the log line with
the cause). docs/api.md, "Errors", lists the kinds.
"""

from __future__ import annotations

import http
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Stable names, not addresses: .invalid never resolves (RFC 6761), so no
# client fetches them and nobody else can ever own them.
PROBLEM_TYPE_BASE = "https://trading-orders.invalid/problems/"
# RFC 9457 section 4.2.1: no more to say than the status says.
BLANK_TYPE = "about:blank"

# The members every problem has; extensions may not replace them.
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})


@dataclass(frozen=True, slots=True)
class ProblemType:
    """A kind of problem: the type URI a client switches on, its title and its HTTP status."""

    name: str | None
    title: str
    status: int

    @property
    def uri(self) -> str:
        """The ``type`` member: the kind's URI, or about:blank for a bare HTTP status."""
        return BLANK_TYPE if self.name is None else PROBLEM_TYPE_BASE + self.name


VALIDATION = ProblemType("validation", "Request not valid", 422)
IDEMPOTENCY_KEY_REUSED = ProblemType("idempotency-key-reused", "Idempotency-Key used for another order", 422)
UNKNOWN_NAME = ProblemType("unknown-name", "No such user or strategy", 422)
CONTROL_FORBIDDEN = ProblemType(
    "control-forbidden", "Controls are changed only with the API key or from this machine", 403
)
INVALID_CURSOR = ProblemType("invalid-cursor", "Cursor not valid", 422)
PROFILE_INVALID = ProblemType("profile-invalid", "Profile file not valid", 422)
UNSUPPORTED_MEDIA_TYPE = ProblemType("unsupported-media-type", "Unsupported Media Type", 415)
CONTENT_TOO_LARGE = ProblemType("content-too-large", "Content Too Large", 413)
REPEATED_HEADER = ProblemType("repeated-header", "Header sent more than once", 400)
API_KEY_REFUSED = ProblemType("api-key", "API key missing or wrong", 401)
TOO_MANY_WRONG_KEYS = ProblemType("too-many-wrong-keys", "Too many wrong API keys", 429)
ORDER_NOT_FOUND = ProblemType("order-not-found", "No such order", 404)
USER_NOT_FOUND = ProblemType("user-not-found", "No such user", 404)
RESUME_POINT_AHEAD = ProblemType("resume-point-ahead", "Resume point beyond the order log", 409)
DESK_KEY_REFUSED = ProblemType("desk-key", "Not the API key", 401)
STORE_UNAVAILABLE = ProblemType("store-unavailable", "Store unavailable", 503)
STORE_BUSY = ProblemType("store-busy", "Store busy", 503)
ORDER_IN_DOUBT = ProblemType("order-in-doubt", "Order in doubt", 503)
DAMAGED_LOG_ENTRY = ProblemType("damaged-log-entry", "Order log entry damaged", 503)
NOT_READY = ProblemType("not-ready", "Service not ready", 503)
BUSY = ProblemType("busy", "Too many reads at once", 503)
TOO_MANY_FOLLOWERS = ProblemType("too-many-followers", "Too many followers of the decision stream", 503)
INTERNAL = ProblemType("internal", "Internal Server Error", 500)


def bare_status(status: int) -> ProblemType:
    """The about:blank kind for ``status``, titled with its reason phrase (an unknown path, a method not allowed)."""
    try:
        title = http.HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return ProblemType(None, title, status)


def problem_response(
    kind: ProblemType, detail: str, headers: Mapping[str, str] | None = None, **extensions: object
) -> JSONResponse:
    """The answer for a problem of ``kind``: its status, problem+json, and ``detail`` saying what is wrong."""
    clash = _STANDARD_MEMBERS.intersection(extensions)
    if clash:
        raise ValueError(f"extension members may not replace {sorted(clash)}")
    body = {"type": kind.uri, "title": kind.title, "status": kind.status, "detail": detail, **extensions}
    return JSONResponse(body, status_code=kind.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)
