"""The desk's session tokens: signed over their expiry with a key derived from the API key, checked in constant time."""

from trading_orders.adapters.http.desk_session import COOKIE_NAME, LIFETIME_SECONDS, DeskSessions, cleared_cookie

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_a_token_is_good_until_it_expires_and_not_a_second_longer() -> None:
    clock = Clock()
    sessions = DeskSessions("key-1", clock)
    token, expires = sessions.issue()
    assert expires == NOW + LIFETIME_SECONDS
    assert sessions.expiry(token) == expires
    clock.now = expires - 1
    assert sessions.expiry(token) == expires
    clock.now = expires
    assert sessions.expiry(token) is None


def test_another_api_key_a_changed_expiry_or_a_changed_signature_is_refused() -> None:
    clock = Clock()
    token, expires = DeskSessions("key-1", clock).issue()
    assert DeskSessions("key-2", clock).expiry(token) is None
    assert DeskSessions("key-1", clock).expiry(token) == expires
    signature = token.split(".")[1]
    assert DeskSessions("key-1", clock).expiry(f"{expires + 60}.{signature}") is None
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert DeskSessions("key-1", clock).expiry(f"{expires}.{flipped}") is None


def test_the_token_holds_neither_the_key_nor_its_plain_digest() -> None:
    token, _ = DeskSessions("a-long-desk-key", Clock()).issue()
    assert "a-long-desk-key" not in token
    assert len(token) < 100


def test_what_is_not_a_token_is_refused_without_an_error() -> None:
    sessions = DeskSessions("key-1", Clock())
    # Full-width digits are digits to str.isdigit(), not to the token's format.
    for junk in [None, "", ".", "abc", "\uff11\uff12.abc", "9" * 13 + ".ab", "1.2.3", "x" * 10_000, "-5.ab"]:
        assert sessions.expiry(junk) is None


def test_a_token_that_claims_to_outlive_its_lifetime_is_refused() -> None:
    clock = Clock()
    sessions = DeskSessions("key-1", clock)
    token, expires = sessions.issue()
    clock.now = NOW - 3600  # a token from the future: issued by a clock that ran ahead
    assert sessions.expiry(token) is None
    clock.now = NOW
    assert sessions.expiry(token) == expires


def test_the_cookie_header_is_read_among_others_and_the_key_check_is_exact() -> None:
    sessions = DeskSessions("key-1", Clock())
    token, expires = sessions.issue()
    assert sessions.expiry_in(f"theme=dark; {COOKIE_NAME}={token}; other=1".encode()) == expires
    assert sessions.expiry_in(b"theme=dark") is None
    assert sessions.expiry_in(None) is None
    assert sessions.opened_by("key-1")
    assert not sessions.opened_by("key-1 ")
    assert not sessions.opened_by("k" * 5000)


def test_the_cookie_is_http_only_strict_and_secure_only_over_https() -> None:
    sessions = DeskSessions("key-1", Clock())
    token, expires = sessions.issue()
    plain = sessions.cookie(token, expires, secure=False)
    assert plain == f"{COOKIE_NAME}={token}; Path=/; Max-Age={LIFETIME_SECONDS}; HttpOnly; SameSite=Strict"
    assert sessions.cookie(token, expires, secure=True).endswith("; Secure")
    assert cleared_cookie(secure=False) == f"{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
