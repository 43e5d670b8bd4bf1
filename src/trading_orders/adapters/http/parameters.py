"""Every query parameter, path parameter and header the service reads, each parsed strictly before an endpoint runs.

The one place that says what a client may send besides the order body:

- a number is 1-18 ASCII digits ``0-9`` (``trading_orders.ascii_numbers``): never ``str.isdigit()`` or a bare
  ``int()``, which take "²", Arabic-Indic or mathematical digits (and " 5", "+5", "1_0") for digits;
- every string has a bounded length, and a name (filter, user, order id)
  holds no control character: PostgreSQL refuses a NUL in a query, which
  would answer 500 rather than "no such thing";
- a cursor has the one shape every store hands out (hex digits, an optional
  dot and decimal digits); the store still checks it names a place it knows.

A value that breaks a rule answers 422 naming the parameter.
"""

import hmac
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Header, Path, Query
from pydantic import BeforeValidator, TypeAdapter, ValidationError

from trading_orders.adapters.http.schemas import IsoTime
from trading_orders.application.order_history import DEFAULT_PAGE, MAX_PAGE, HistoryFilter
from trading_orders.ascii_case import ascii_lower
from trading_orders.ascii_numbers import ascii_number
from trading_orders.domain.model import OrderStatus


def _number(value: object) -> object:
    # Query parameters arrive as text: take only ASCII digits, before pydantic's
    # lax int parsing (which reads " 5", "+5", "5.0" and "1_0") sees them.
    if isinstance(value, str):
        number = ascii_number(value)
        if number is None:
            raise ValueError("expected a whole number written with the ASCII digits 0-9")
        return number
    return value


NAME_MAX_LENGTH = 200
# No C0 control character and no DEL: the rule the order body's names follow.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"

Filter = Annotated[str | None, Query(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
UserName = Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
OrderId = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_PATTERN)]

# Hex digits (a byte offset or a sequence), then perhaps "." and a position
# inside that entry: the shape of every cursor a store hands out.
CURSOR_PATTERN = r"^[0-9a-f]{1,18}(\.[0-9]{1,9})?$"
CURSOR_MAX_LENGTH = 28
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=CURSOR_MAX_LENGTH,
        pattern=CURSOR_PATTERN,
        description="next_cursor of the previous page, as it was handed out.",
    ),
]

Limit = Annotated[
    int,
    BeforeValidator(_number),
    Query(ge=1, le=MAX_PAGE, description=f"Page size, 1-{MAX_PAGE} in ASCII digits."),
]

# The longest ISO-8601 time with microseconds and an offset is 32 characters.
_TIME_MAX_LENGTH = 40


def _short_ascii_time(value: object) -> object:
    if isinstance(value, str) and (len(value) > _TIME_MAX_LENGTH or not value.isascii()):
        raise ValueError(f"expected an ISO-8601 time in ASCII, at most {_TIME_MAX_LENGTH} characters")
    return value


Moment = Annotated[IsoTime | None, BeforeValidator(_short_ascii_time)]

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_KEY_HEADER,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "1-255 printable ASCII characters naming this order for retries: a repeat with the same key "
            "and order answers the recorded answer (header Idempotent-Replayed: true) and changes nothing."
        ),
    ),
]

# The documented header itself checks a key: the schema and the check cannot part.
_IDEMPOTENCY_KEY_RULES: TypeAdapter[str | None] = TypeAdapter(IdempotencyKey)


def idempotency_key_errors(value: str) -> list[dict[str, Any]]:
    """What is wrong with ``value`` as an Idempotency-Key header, each problem as a 422 lists it; empty if nothing."""
    try:
        _IDEMPOTENCY_KEY_RULES.validate_python(value)
    except ValidationError as error:
        return [{**problem, "loc": ("header", IDEMPOTENCY_KEY_HEADER)} for problem in error.errors(include_url=False)]
    return []


JSON_MEDIA_TYPE = "application/json"


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a Content-Type header says application/json: in any letter case, with any parameters, spaces around."""
    # RFC 8259 defines no parameter for application/json ("adding one really has
    # no effect"): charset=utf-8, or any other, changes nothing; a body is read
    # as UTF-8 JSON. application/*+json names another kind of document (a JSON
    # Patch, a merge patch, a problem), not an order: refused, not guessed at.
    return content_type is not None and ascii_lower(content_type.partition(";")[0].strip(" \t")) == JSON_MEDIA_TYPE


# A key longer than this is wrong without comparing it.
API_KEY_MAX_BYTES = 1024


def api_key_matches(given: bytes | None, expected: bytes) -> bool:
    """Whether the X-API-Key header ``given`` is ``expected``, compared in a time that tells nothing of a guess."""
    if given is None or len(given) > API_KEY_MAX_BYTES:
        return False
    return hmac.compare_digest(given, expected)


class HistoryQuery:
    """The filters and paging of GET /orders and GET /trades."""

    def __init__(
        self,
        strategy: Filter = None,
        instrument: Filter = None,
        user: Filter = None,
        since: Annotated[Moment, Query(description="ISO-8601; only what happened at or after it.")] = None,
        until: Annotated[Moment, Query(description="ISO-8601; only what happened at or before it.")] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> None:
        """Collect the query parameters."""
        self.filter = HistoryFilter(
            strategy=strategy, instrument=instrument, user=user, since=_utc(since), until=_utc(until)
        )
        self.limit = limit
        self.cursor = cursor


def _utc(moment: datetime | None) -> datetime | None:
    # A time without a zone is taken as UTC, the only zone on the wire.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


Sequence = Annotated[
    int | None,
    BeforeValidator(_number),
    Query(ge=0, description="Replay the orders after this sequence, then follow; Last-Event-ID wins over it."),
]
LastEventId = Annotated[
    int | None,
    BeforeValidator(_number),
    Header(
        alias="Last-Event-ID",
        ge=0,
        description="The id of the last event received: the stream resumes after it (what EventSource sends).",
    ),
]


class StreamQuery:
    """Where GET /events starts, and which orders it keeps."""

    def __init__(
        self,
        strategy: Filter = None,
        instrument: Filter = None,
        user: Filter = None,
        status: Annotated[OrderStatus | None, Query(description="ACCEPTED or REJECTED.")] = None,
        after: Sequence = None,
        last_event_id: LastEventId = None,
    ) -> None:
        """Collect the query parameters and the resume header."""
        self.filter = HistoryFilter(strategy=strategy, instrument=instrument, user=user, status=status)
        # A browser's EventSource reconnects to the same URL, ?after and all,
        # with the id it last saw in the header: the header is the later news.
        self.after = last_event_id if last_event_id is not None else after
