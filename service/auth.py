"""Who is calling: bearer tokens (JWT) carrying a user id and groups. What a caller may do is service/policy.py."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

import jwt

from service.errors import Unauthorized
from service.text import NAME_LENGTH, storable_problem

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    user: str
    groups: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False
    kind: str = "user"  # user | system
    # process keys granted to the principal (an API key's own, plus its groups' from configuration); what a
    # grant allows is service/policy.py's to say
    processes: frozenset[str] = field(default_factory=frozenset)


def mint_token(secret: str, user: str, groups: list[str], admin: bool, now: datetime, ttl: timedelta,
               issuer: str = "govflow") -> str:
    claims = {
        "sub": user,
        "groups": sorted(set(groups)),
        "admin": admin,
        "iss": issuer,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str, issuer: str = "govflow") -> Principal:
    """The principal a token names. A token checked once is remembered (its signature and claims cannot change);
    its expiry is checked again on every use."""
    principal, expires = _checked(secret, token, issuer)
    if _now() >= expires:
        raise Unauthorized("the token has expired")
    return principal


def _now() -> float:
    return time.time()


@lru_cache(maxsize=4096)
def _checked(secret: str, token: str, issuer: str) -> tuple[Principal, int]:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=issuer,
                            options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.PyJWTError as e:
        raise Unauthorized(f"invalid token: {e}") from None
    groups = claims.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise Unauthorized("invalid token: groups must be a list of strings")
    # only the JSON boolean true makes an administrator ("false", 1 or "yes" do not)
    try:
        expires = int(claims["exp"])  # as the token library reads it (a fraction of a second does not count)
    except (OverflowError, TypeError, ValueError):
        raise Unauthorized("invalid token: exp must be a number of seconds") from None
    user = str(claims["sub"])
    # who did it is stored with every change; the groups are looked up (a longer one matches nothing)
    problem = storable_problem(user, NAME_LENGTH) or next(filter(None, (storable_problem(g, None) for g in groups)),
                                                          None)
    if problem:
        raise Unauthorized(f"invalid token: a user or group name is not storable: {problem}")
    principal = Principal(user=user, groups=frozenset(groups), is_admin=claims.get("admin") is True)
    return principal, expires
