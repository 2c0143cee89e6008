"""API keys for systems (OA integrations): created once, stored hashed, revocable. A key acts as a
named principal with groups and the processes it is granted, alongside users' bearer tokens."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import ApiKey, ProcessDefinition
from service.errors import Conflict, InvalidInput, NotFound, Unauthorized
from service.text import NAME_LENGTH, storable_problem

PREFIX = "gfk_"
_FORMAT = re.compile(r"^gfk_([a-z0-9]{12})_([A-Za-z0-9_-]{32,})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


def _hash(secret: str) -> str:
    # keys carry 256 bits of randomness, so a fast digest is as strong as a slow one here
    return hashlib.sha256(secret.encode()).hexdigest()


def key_out(row: ApiKey) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "groups": row.groups, "processes": row.processes or [],
            "admin": row.is_admin, "created_by": row.created_by, "created_at": row.created_at,
            "revoked_at": row.revoked_at}


def create(session: Session, actor: Principal, now: datetime, name: str, groups: list[str],
           admin: bool, processes: list[str] | None = None) -> dict[str, Any]:
    policy.require_admin(actor, "manage API keys")
    if not _NAME.match(name):
        raise InvalidInput("the key name is not valid", {"name": "letters, digits, '.', '_' or '-'"})
    for field, names in (("groups", groups), ("processes", processes or [])):
        # every request of the key looks them up: the database must take them (service/text.py)
        problem = next((p for p in (storable_problem(one, NAME_LENGTH) for one in names) if p), None)
        if problem:
            raise InvalidInput(f"the key's {field} are not valid: {problem}", {field: problem})
    processes = sorted(set(processes or []))
    if processes:
        deployed = set(session.scalars(select(ProcessDefinition.key).distinct()))
        unknown = [p for p in processes if p not in deployed]
        if unknown:
            # a misspelt grant would otherwise give a key that silently sees nothing
            raise InvalidInput(f"no process definition with key {', '.join(repr(p) for p in unknown)}",
                               {"processes": f"deployed process keys: {', '.join(sorted(deployed)) or 'none'}"})
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)):
        raise Conflict(f"an API key named '{name}' exists")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(id=key_id, name=name, groups=sorted(set(groups)), is_admin=admin, secret_hash=_hash(secret),
                 created_by=actor.user, created_at=now, processes=processes)
    session.add(row)
    session.flush()
    return {**key_out(row), "key": f"{PREFIX}{key_id}_{secret}"}


def list_keys(session: Session, actor: Principal) -> list[dict[str, Any]]:
    policy.require_admin(actor, "manage API keys")
    return [key_out(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name))]


def revoke(session: Session, actor: Principal, now: datetime, key_id: str) -> dict[str, Any]:
    policy.require_admin(actor, "manage API keys")
    # compared, not looked up by primary key: an id longer than the column is no key's (404), not a text to refuse
    row = session.scalar(select(ApiKey).where(ApiKey.id == key_id))
    if row is None:
        raise NotFound(f"no API key '{key_id}'")
    if row.revoked_at is None:
        row.revoked_at = now
    return key_out(row)


def authenticate(session: Session, presented: str) -> Principal:
    m = _FORMAT.match(presented.strip())
    if not m:
        raise Unauthorized("invalid API key")
    row = session.get(ApiKey, m.group(1))
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(m.group(2))):
        raise Unauthorized("invalid API key")
    if row.revoked_at is not None:
        raise Unauthorized("the API key has been revoked")
    return Principal(user=row.name, groups=frozenset(row.groups), is_admin=row.is_admin, kind="system",
                     processes=frozenset(row.processes or []))
