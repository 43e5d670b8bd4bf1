"""Query parameters and headers shared by several routes, each checked before an endpoint runs."""

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Header, Query

from trading_orders.adapters.http.schemas import IsoTime
from trading_orders.application.order_history import DEFAULT_PAGE, MAX_PAGE, HistoryFilter

Filter = Annotated[str | None, Query(min_length=1, max_length=200)]

IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def is_idempotency_key(value: str) -> bool:
    """Whether ``value`` is a valid Idempotency-Key header, by the rules the documented header states."""
    return len(value) <= IDEMPOTENCY_KEY_MAX_LENGTH and _IDEMPOTENCY_KEY.fullmatch(value) is not None


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "1-255 printable ASCII characters naming this order for retries: a repeat with the same key "
            "and order answers the recorded answer (header Idempotent-Replayed: true) and changes nothing."
        ),
    ),
]


class HistoryQuery:
    """The filters and paging of GET /orders and GET /trades."""

    def __init__(
        self,
        strategy: Filter = None,
        instrument: Filter = None,
        user: Filter = None,
        since: Annotated[IsoTime | None, Query(description="ISO-8601; only what happened at or after it.")] = None,
        until: Annotated[IsoTime | None, Query(description="ISO-8601; only what happened at or before it.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = DEFAULT_PAGE,
        cursor: Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page.")] = None,
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
