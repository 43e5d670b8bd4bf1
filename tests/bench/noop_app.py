"""The ceiling: an endpoint of the same shape as POST /create_order that decides and records nothing.

It parses the same request model and answers a body of the same shape from
an async endpoint, as the service's is, on the same uvicorn settings, so the
service's figures can be read as a share of what the HTTP stack alone can do.
"""

from datetime import UTC, datetime

from fastapi import FastAPI

from trading_orders.adapters.http.schemas import CreateOrderRequest, OrderAnswer, UserDecisionBody
from trading_orders.domain.model import OrderStatus

app = FastAPI()


@app.post("/create_order", response_model=OrderAnswer)
async def create_order(body: CreateOrderRequest) -> OrderAnswer:
    """Answer an order without deciding or recording it."""
    return OrderAnswer(
        response=OrderStatus.ACCEPTED,
        order_id="0" * 32,
        received_at=datetime.now(UTC),
        strategy=body.strategy,
        instrument=body.instrument,
        position=body.side,
        reason=None,
        decisions=[UserDecisionBody(user="U1", status=OrderStatus.ACCEPTED, reason=None)],
    )


@app.get("/health")
def health() -> dict[str, str]:
    """Answer that the no-op app is up."""
    return {"status": "ok"}
