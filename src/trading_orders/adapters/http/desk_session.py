"""The desk's session: a short-lived token, signed with a key derived from the API key, carried in a cookie.

A browser's EventSource cannot send an X-API-Key header, and a key in a URL
ends up in access logs and browser history. So the desk trades the key once
(POST /desk/session) for a cookie the browser sends by itself.

The token is ``<expiry>.<signature>``: the expiry in Unix seconds and
HMAC-SHA256 over it, keyed with HMAC-SHA256(API key, a fixed label). Nothing
is stored: any process that knows the API key checks a token, so it survives
a restart and works across worker processes; changing the API key ends every
session. A session cannot be revoked one by one before it expires; that is
what the short lifetime is for.

A change (an operator control) made with the session needs more than the
cookie, which the browser would attach to a request any page sent: the
request must also carry the session's change token in a header. The token
is HMAC-SHA256 over the session token, so it too is checked without being
stored; the desk reads it from GET /desk/session, which a page of another
origin cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from starlette.requests import cookie_parser

from trading_orders.adapters.http.parameters import api_key_matches

COOKIE_NAME = "trading_orders_desk"
# A desk's shift, not a week: a stolen cookie is worth little for long.
LIFETIME_SECONDS = 4 * 60 * 60
# Derived, so the API key itself never signs anything a browser holds.
_KEY_LABEL = b"trading-orders desk session v1"
# "<10-12 digits>.<64 hex digits>": anything longer is not one of ours.
_TOKEN_MAX_LENGTH = 100


class DeskSessions:
    """Issues and checks the desk's session tokens for one API key."""

    def __init__(self, api_key: str, clock: Callable[[], float] = time.time) -> None:
        """Sign with a key derived from ``api_key``; ``clock`` gives Unix seconds."""
        self._api_key = api_key.encode()
        self._key = hmac.new(self._api_key, _KEY_LABEL, hashlib.sha256).digest()
        self._clock = clock

    def opened_by(self, given: str) -> bool:
        """Whether ``given`` is the API key, so a session may be issued for it."""
        return api_key_matches(given.encode(), self._api_key)

    def _signature(self, expires: int) -> str:
        return hmac.new(self._key, f"desk-session:{expires}".encode(), hashlib.sha256).hexdigest()

    def issue(self) -> tuple[str, int]:
        """A new token and its expiry in Unix seconds."""
        expires = int(self._clock()) + LIFETIME_SECONDS
        return f"{expires}.{self._signature(expires)}", expires

    def expiry(self, token: str | None) -> int | None:
        """The expiry of ``token`` if it is ours and not yet expired, else None."""
        if token is None or len(token) > _TOKEN_MAX_LENGTH:
            return None
        expires_text, _, signature = token.partition(".")
        if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12:
            return None
        expires = int(expires_text)
        # Compared in constant time: a guess learns nothing from how long the refusal took.
        if not hmac.compare_digest(signature.encode(), self._signature(expires).encode()):
            return None
        if expires <= self._clock() or expires > self._clock() + LIFETIME_SECONDS:
            return None
        return expires

    def expiry_in(self, cookie_header: bytes | None) -> int | None:
        """The expiry of the valid session token in a Cookie header, or None."""
        if cookie_header is None:
            return None
        return self.expiry(cookie_parser(cookie_header.decode("latin-1")).get(COOKIE_NAME))

    def change_token(self, token: str) -> str:
        """The token a change made with session ``token`` must carry in its X-Desk-Token header."""
        return hmac.new(self._key, f"desk-change:{token}".encode(), hashlib.sha256).hexdigest()

    def session_token(self, cookie_header: bytes | None) -> str | None:
        """The valid, unexpired session token in a Cookie header, or None."""
        if cookie_header is None:
            return None
        token = cookie_parser(cookie_header.decode("latin-1")).get(COOKIE_NAME)
        return token if self.expiry(token) is not None else None

    def allows_change(self, cookie_header: bytes | None, given: bytes | None) -> bool:
        """Whether a request with this Cookie header and X-Desk-Token ``given`` may make a change."""
        token = self.session_token(cookie_header)
        if token is None or given is None:
            return False
        return hmac.compare_digest(given, self.change_token(token).encode())

    def cookie(self, token: str, expires: int, secure: bool) -> str:
        """The Set-Cookie value that hands ``token`` to the browser."""
        max_age = max(0, expires - int(self._clock()))
        return _cookie(token, max_age, secure)


def cookie_header(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """Every Cookie header of a request as one, or None without any."""
    # HTTP/2 may send one Cookie header as several (RFC 9113, 8.2.3): the session may be in any of them.
    cookies = [value for name, value in headers if name == b"cookie"]
    return b"; ".join(cookies) if cookies else None


def cleared_cookie(secure: bool) -> str:
    """The Set-Cookie value that makes the browser forget the session."""
    return _cookie("", 0, secure)


def _cookie(value: str, max_age: int, secure: bool) -> str:
    # HttpOnly: no script reads it; SameSite=Strict: no other site's page makes the browser send it.
    attributes = [f"{COOKIE_NAME}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)
