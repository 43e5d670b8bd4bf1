"""The profile: users, strategies, and reloading it without a restart."""

# No `from __future__ import annotations` here: dependency-injector reads the
# Provide markers from the evaluated signatures of the endpoints.

import logging
from typing import Annotated

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from trading_orders.adapters.http.injection import AwaitedProvide
from trading_orders.adapters.http.lanes import Lane
from trading_orders.adapters.http.parameters import UserName
from trading_orders.adapters.http.problem_details import PROFILE_INVALID, USER_NOT_FOUND, problem_response
from trading_orders.adapters.http.problems import require_json
from trading_orders.adapters.http.routes.orders import BUSY
from trading_orders.adapters.http.schemas import (
    LoggedOrderBody,
    PositionBody,
    Problem,
    ProfileProblem,
    ReloadAnswer,
    StrategiesAnswer,
    StrategySummary,
    UserDetail,
    UsersAnswer,
    UserSummary,
)
from trading_orders.application import desk_overview
from trading_orders.application.desk_overview import DeskOverview
from trading_orders.application.errors import ProfileUnavailable
from trading_orders.application.order_service import OrderService
from trading_orders.container import Container

logger = logging.getLogger(__name__)

router = APIRouter()


def _summary(summary: desk_overview.UserSummary) -> UserSummary:
    return UserSummary(user=summary.user, strategies=summary.strategies, open_positions=summary.open_positions)


@router.get("/users", response_model=UsersAnswer, summary="Users with strategies and open positions")
@inject
def list_users(overview: Annotated[DeskOverview, Depends(Provide[Container.desk_overview])]) -> UsersAnswer:
    """Every user with their strategies, universes and open-position count."""
    return UsersAnswer(users=[_summary(s) for s in overview.users()])


@router.get(
    "/users/{user}",
    response_model=UserDetail,
    summary="One user's profile, positions and recent orders",
    description="recent_orders are searched within a bounded number of log entries; "
    "recent_orders_scan_limited says the search stopped there.",
    responses={404: {"model": Problem, "description": "No user has this name."}, **BUSY},
)
@inject
async def get_user(
    request: Request,
    user: UserName,
    overview: Annotated[DeskOverview, Depends(AwaitedProvide[Container.desk_overview])],
) -> UserDetail | JSONResponse:
    """One user's profile, open positions and latest 20 orders with a decision for them, or 404."""
    lane: Lane = request.app.state.read_lane
    detail = await lane.run(lambda: overview.user(user))
    if detail is None:
        return problem_response(USER_NOT_FOUND, f"no user is named {user!r}")
    return UserDetail(
        **_summary(detail.summary).model_dump(),
        positions=[PositionBody.from_position(p) for p in detail.positions],
        recent_orders=[LoggedOrderBody.from_logged(e) for e in detail.recent_orders],
        recent_orders_scan_limited=detail.recent_orders_scan_limited,
        recent_orders_next_cursor=detail.recent_orders_next_cursor,
    )


@router.get("/strategies", response_model=StrategiesAnswer, summary="Strategies with users and universe")
@inject
def list_strategies(
    overview: Annotated[DeskOverview, Depends(Provide[Container.desk_overview])],
) -> StrategiesAnswer:
    """Every strategy with the users who run it and its universe."""
    return StrategiesAnswer(
        strategies=[
            StrategySummary(strategy=s.strategy, users=s.users, universe=s.universe) for s in overview.strategies()
        ]
    )


@router.post(
    "/admin/reload-profile",
    response_model=ReloadAnswer,
    summary="Re-read the profile file",
    description="The new profile is checked first; on any error the old one stays and the answer says why.",
    responses={
        413: {"model": Problem, "description": "The body is over the size any request may have."},
        415: {"model": Problem, "description": "The request is not sent as application/json."},
        422: {"model": ProfileProblem, "description": "The file is invalid; the old profile stays."},
    },
)
@inject
def reload_profile(
    request: Request,
    service: Annotated[OrderService, Depends(Provide[Container.order_service])],
) -> ReloadAnswer | JSONResponse:
    """Re-read the profile file; on error keep the old one and say why. Only for a request sent as JSON."""
    # A browser sends a cross-site form without asking (text/plain,
    # form-urlencoded, multipart) but asks the service before sending
    # JSON, and this service allows no other origin: JSON only, so no web
    # page a desk's browser opens can trigger a reload.
    require_json(request)
    try:
        outside = service.reload_profile()
    except ProfileUnavailable as error:
        logger.warning("profile reload refused, the old profile stays: %s", error)
        # The log names the file and any OS error; the answer, what is wrong with it.
        return problem_response(PROFILE_INVALID, f"{error.problem}; the previous profile stays in use", reloaded=False)
    profile = service.profile()
    return ReloadAnswer(
        reloaded=True,
        detail=f"{len(profile.users)} users, {len(profile.strategies)} strategies",
        positions_outside_profile=[PositionBody.from_position(p) for p in outside],
    )
