"""The decision stream: GET /events, every logged order as a Server-Sent Event, resumable by sequence."""

# No `from __future__ import annotations` here: dependency-injector reads the
# Provide markers from the evaluated signatures of the endpoints.

import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated, Any

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from trading_orders.adapters.http.control_schemas import ControlChangeBody
from trading_orders.adapters.http.injection import AwaitedProvide
from trading_orders.adapters.http.lanes import Lane, LaneBusy
from trading_orders.adapters.http.parameters import StreamQuery
from trading_orders.adapters.http.problem_details import RESUME_POINT_AHEAD, TOO_MANY_FOLLOWERS, problem_response
from trading_orders.adapters.http.problems import damaged_entry_text
from trading_orders.adapters.http.schemas import MALFORMED_PARAMETER, LoggedOrderBody, Problem
from trading_orders.application.decision_feed import (
    DecisionFeed,
    FellBehind,
    FollowerPlace,
    Progress,
    ResumePointAhead,
    TooManyFollowers,
)
from trading_orders.application.errors import DamagedLogEntry, StorageUnavailable
from trading_orders.application.order_history import HistoryFilter
from trading_orders.container import Container
from trading_orders.domain.controls import ControlLogEntry, LogEntry, entry_id

logger = logging.getLogger(__name__)

router = APIRouter()

# Comments this often keep proxies and load balancers from closing a quiet stream.
HEARTBEAT_SECONDS = 15
# What EventSource waits before reconnecting after the stream ends or breaks.
RETRY_MILLISECONDS = 1000
# A follower whose socket takes no bytes for this long is disconnected: its
# kernel buffers are full and it is not reading.
SEND_TIMEOUT_SECONDS = 30.0
# When a follower refused for want of a place may ask again: followers come and go by the second.
FOLLOWER_RETRY_AFTER_SECONDS = 5

STREAM_DESCRIPTION = """\
Server-Sent Events (`text/event-stream`), one per logged order, oldest first:
`event: order`, `id:` the order's sequence, `data:` the order as `GET /orders/{order_id}` shows it.
Resume with the `Last-Event-ID` header (what a browser's EventSource sends on reconnecting) or
`?after=SEQ`: the stream replays from the log every order after that sequence, then follows live,
with no gap and no duplicate, across restarts of the service too.

Every control change is an event too, in the same sequence: `event: control`, `data:` the change as
`PUT /controls/...` answers it (docs/controls.md); every follower gets them, whatever its filter.

Other events: `progress` (`id:` the last sequence read, when a filter kept none of many orders),
and `resume` (`data: {"after": N, "reason": ...}`, the last event of a stream whose reader fell
behind, or that met an order log it could not read: reconnect with `after=N`).
`: ping` comments every 15 s keep proxies from closing it.
"""


class _EncodedOrders:
    """Each entry's event (an order's, a control change's), encoded once however many followers send it."""

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._encoded: OrderedDict[int, tuple[str, bytes]] = OrderedDict()

    def events(self, entries: list[LogEntry]) -> bytes:
        """The ``order`` and ``control`` events of ``entries``, in one piece for one write."""
        return b"".join(self._event(entry) for entry in entries)

    def _event(self, entry: LogEntry) -> bytes:
        order_id = entry_id(entry)
        cached = self._encoded.get(entry.sequence)
        # A sequence names one durable entry for good; the order id guards the cache anyway.
        if cached is not None and cached[0] == order_id:
            return cached[1]
        if isinstance(entry, ControlLogEntry):
            data = ControlChangeBody.of(entry).model_dump_json()
            event = ServerSentEvent(data, event="control", id=str(entry.sequence))
        else:
            body = LoggedOrderBody.from_logged(entry)
            # by_alias: the body GET /orders/{id} answers, RESPONSE and all.
            event = ServerSentEvent(body.model_dump_json(by_alias=True), event="order", id=str(entry.sequence))
        encoded = event.encode()
        self._encoded[entry.sequence] = (order_id, encoded)
        if len(self._encoded) > self._size:
            self._encoded.popitem(last=False)
        return encoded


_ENCODED = _EncodedOrders()


class _FollowerStream(EventSourceResponse):
    """One follower's stream, which gives its place back however it ends: finished, cut off or disconnected."""

    def __init__(self, place: FollowerPlace, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._place = place

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream, then free the place."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._place.give_back()


def _resume_event(after: int, reason: str) -> ServerSentEvent:
    return ServerSentEvent(json.dumps({"after": after, "reason": reason}), event="resume", id=str(after))


async def _events(
    feed: DecisionFeed, after: int, keeps: HistoryFilter, lane: Lane
) -> AsyncIterator[ServerSentEvent | bytes]:
    """The stream's events, ending with a resume event when it cannot go on."""
    last = after
    yield ServerSentEvent(comment="trading-orders decision stream", retry=RETRY_MILLISECONDS)
    try:
        async for item in feed.follow(after, keeps, lane.run):
            if isinstance(item, FellBehind):
                logger.info("a follower of /events fell behind at sequence %d: %s", item.after, item.reason)
                yield _resume_event(item.after, item.reason)
                return
            if isinstance(item, Progress):
                last = item.sequence
                yield ServerSentEvent(json.dumps({"sequence": last}), event="progress", id=str(last))
                continue
            last = item[-1].sequence
            yield _ENCODED.events(item)
    except (LaneBusy, StorageUnavailable) as error:
        # The headers are sent: the answer can no longer be a 503. The
        # follower learns where to resume and its EventSource retries.
        logger.warning("/events stopped at sequence %d: %s", last, error)
        yield _resume_event(last, _why_stopped(error))


def _why_stopped(error: Exception) -> str:
    if isinstance(error, DamagedLogEntry):
        return f"{damaged_entry_text(error)}; resume from here"
    return "the order log cannot be read now; retry shortly"


@router.get(
    "/events",
    summary="Follow the decisions as they are logged",
    description=STREAM_DESCRIPTION,
    response_class=EventSourceResponse,
    response_model=None,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The stream of logged orders."},
        409: {
            "model": Problem,
            "description": "The resume point is beyond the log's last sequence, given as last_sequence.",
        },
        503: {
            "model": Problem,
            "description": "The order log cannot be read now, or every place for a follower is taken "
            "(too-many-followers, with Retry-After).",
        },
        **MALFORMED_PARAMETER,
    },
)
@inject
async def events(
    request: Request,
    query: Annotated[StreamQuery, Depends()],
    feed: Annotated[DecisionFeed, Depends(AwaitedProvide[Container.decision_feed])],
) -> EventSourceResponse | JSONResponse:
    """Every logged order after the resume point, then each one as it is logged."""
    lane: Lane = request.app.state.read_lane
    after = query.after or 0
    # Taken first, so a follower past the most costs no read of the log.
    try:
        place = feed.take_place()
    except TooManyFollowers as error:
        logger.info("GET /events refused: %s", error)
        retry = {"Retry-After": str(FOLLOWER_RETRY_AFTER_SECONDS)}
        return problem_response(TOO_MANY_FOLLOWERS, str(error), headers=retry)
    try:
        await feed.check_resume_point(after, lane.run)
    except ResumePointAhead as error:
        place.give_back()
        return problem_response(RESUME_POINT_AHEAD, str(error), last_sequence=error.last_sequence)
    except BaseException:
        place.give_back()
        raise
    return _FollowerStream(
        place,
        _events(feed, after, query.filter, lane),
        ping=HEARTBEAT_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
        # Proxies such as nginx buffer a response unless told not to.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
