"""Bearer tokens: a token checked once is remembered, but its expiry is checked on every use."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service import auth
from service.errors import Unauthorized

SECRET = "unit-secret-of-at-least-32-bytes-length"


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    token = auth.mint_token(SECRET, "li", ["data_bureau"], False, now, timedelta(minutes=10))
    assert auth.decode_token(SECRET, token) == auth.Principal("li", frozenset({"data_bureau"}))
    expires = (now + timedelta(minutes=10)).timestamp()
    monkeypatch.setattr(auth, "_now", lambda: int(expires) - 1)
    assert auth.decode_token(SECRET, token).user == "li"  # from the remembered check
    monkeypatch.setattr(auth, "_now", lambda: int(expires))
    with pytest.raises(Unauthorized, match="expired"):
        auth.decode_token(SECRET, token)


def test_a_refused_token_is_refused_again_and_a_wrong_secret_is_not_served_from_memory() -> None:
    token = auth.mint_token(SECRET, "li", [], True, datetime.now(UTC), timedelta(minutes=10))
    assert auth.decode_token(SECRET, token).is_admin
    for _ in range(2):
        with pytest.raises(Unauthorized, match="invalid token"):
            auth.decode_token("another-secret-of-at-least-32-bytes-long", token)
    expired = auth.mint_token(SECRET, "li", [], False, datetime.now(UTC) - timedelta(hours=2), timedelta(hours=1))
    for _ in range(2):
        with pytest.raises(Unauthorized, match="expired"):
            auth.decode_token(SECRET, expired)


def test_expiry_is_read_as_the_token_library_reads_it() -> None:
    import jwt

    now = datetime.now(UTC).timestamp()
    fraction = jwt.encode({"sub": "li", "exp": int(now) + 600.9, "iss": "govflow"}, SECRET, algorithm="HS256")
    assert auth.decode_token(SECRET, fraction).user == "li"
    huge = jwt.encode({"sub": "li", "exp": 10**400, "iss": "govflow"}, SECRET, algorithm="HS256")
    assert auth.decode_token(SECRET, huge).user == "li"  # far in the future: no overflow on the way


def test_a_remembered_token_with_a_fraction_of_a_second_expires_with_the_whole_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import jwt

    exp = int(datetime.now(UTC).timestamp()) + 600
    token = jwt.encode({"sub": "li", "exp": exp + 0.9, "iss": "govflow"}, SECRET, algorithm="HS256")
    assert auth.decode_token(SECRET, token).user == "li"
    monkeypatch.setattr(auth, "_now", lambda: exp + 0.5)
    with pytest.raises(Unauthorized, match="expired"):
        auth.decode_token(SECRET, token)
