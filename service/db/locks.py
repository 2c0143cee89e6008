"""PostgreSQL advisory locks that make start-up work of replicas started together run one after another
(migrations, deploys); on SQLite they are no-ops, since its write transactions are serialised already."""
from __future__ import annotations

import hashlib

from sqlalchemy import Connection, text

MIGRATE = "govflow:migrate"
DEPLOY = "govflow:deploy"


def lock_key(name: str) -> int:
    """The 64-bit advisory lock key of a name: the same in every process and every version of Python."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def hold_for_transaction(connection: Connection, name: str, *, wait_forever: bool = False) -> None:
    """Take the named lock until the connection's transaction ends, waiting while another process holds it.
    The wait is bounded by the connection's lock_timeout (GOVFLOW_DATABASE_BUSY_TIMEOUT_SECONDS: then an error
    answered 503), unless wait_forever: a replica waits for another's migration however long it takes."""
    if connection.dialect.name != "postgresql":
        return
    if not wait_forever:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
        return
    previous = connection.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
    connection.execute(text("SELECT set_config('lock_timeout', '0', true)"))
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
    # the work done under the lock keeps the configured timeout for the locks it takes
    connection.execute(text("SELECT set_config('lock_timeout', :previous, true)"), {"previous": previous})
