"""The SPEC's worked example, shared by every tier that checks it."""

from trading_orders.domain.model import PositionScope

HOLLAND = "Holland Proctor"
OAKLEE = "Oaklee Wagner"

PROFILE: dict[str, dict[str, list[str]]] = {
    HOLLAND: {"STRATEGY_A": ["BIRLASOFT", "GRASIM", "EICHER"], "STRATEGY_B": ["MINDA"]},
    OAKLEE: {"STRATEGY_D": ["ACC"]},
}

# For each order, per scope: the overall answer and {user: reason, None when accepted}.
ORDERS: list[tuple[str, str, str]] = [
    ("STRATEGY_A", "GRASIM", "SELL"),
    ("STRATEGY_B", "MINDA", "BUY"),
    ("STRATEGY_D", "INFY", "BUY"),
    ("STRATEGY_A", "MINDA", "SELL"),
]

EXPECTED: dict[PositionScope, list[tuple[str, dict[str, str | None]]]] = {
    PositionScope.STRATEGY: [
        ("REJECTED", {HOLLAND: "NO_OPEN_POSITION"}),
        ("ACCEPTED", {HOLLAND: None}),
        ("REJECTED", {OAKLEE: "INSTRUMENT_NOT_IN_STRATEGY"}),
        ("REJECTED", {HOLLAND: "INSTRUMENT_NOT_IN_STRATEGY"}),
    ],
    # Netting reproduces the brief literally: order 2 opened MINDA for Holland,
    # and a SELL from any strategy Holland runs closes it.
    PositionScope.USER: [
        ("REJECTED", {HOLLAND: "NO_OPEN_POSITION"}),
        ("ACCEPTED", {HOLLAND: None}),
        ("REJECTED", {OAKLEE: "INSTRUMENT_NOT_IN_STRATEGY"}),
        ("ACCEPTED", {HOLLAND: None}),
    ],
}
