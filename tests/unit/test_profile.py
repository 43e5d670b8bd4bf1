"""The profile: who runs which strategy on which universe, and what makes one invalid."""

import pytest

from trading_orders.domain.profile import InvalidProfile, Profile


def test_runners_of_a_strategy_are_its_users_with_their_universes() -> None:
    profile = Profile({"U1": {"S": ["A", "B"], "T": ["C"]}, "U2": {"S": ["A"]}})
    assert dict(profile.runners_of("S")) == {"U1": frozenset({"A", "B"}), "U2": frozenset({"A"})}
    assert dict(profile.runners_of("T")) == {"U1": frozenset({"C"})}
    assert dict(profile.runners_of("NOBODY")) == {}
    assert profile.strategies == {"S", "T"}


@pytest.mark.parametrize(
    ("universes", "message"),
    [
        ({"U": {"S": []}}, "user 'U', strategy 'S': universe is empty"),
        ({"U": {"S": ["A", 7]}}, "instrument symbol must be a string, got int 7"),
        ({"U": {"S": ["A", "A"]}}, "universe lists A more than once"),
        ({"U": {"S": "ABC"}}, "universe must be a list of symbols"),
        ({"U": {}}, "user 'U': runs no strategy"),
        ({"U": ["S"]}, "strategies must be an object"),
        ({"": {"S": ["A"]}}, "user name must be a non-empty name"),
        ({"U": {" S": ["A"]}}, "strategy name must be a non-empty name"),
    ],
)
def test_an_invalid_profile_is_refused_with_a_message_naming_the_place(universes: object, message: str) -> None:
    with pytest.raises(InvalidProfile, match=message):
        Profile(universes)  # type: ignore[arg-type]
