"""Engine and session factory; the one place that knows SQLite from PostgreSQL."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def make_engine(url: str, *, read_only: bool = False, busy_timeout: float = 30.0, pool_size: int = 10,
                max_overflow: int = 5, pool_timeout: float = 10.0) -> Engine:
    """The engine for a database URL. On SQLite, a write engine starts its transactions with BEGIN IMMEDIATE
    (writers queue for the lock at the start instead of failing when a read turns into a write); a read engine
    (read_only) starts them deferred, so reads never take the write lock. Its connection pool keeps pool_size
    connections, opens up to max_overflow more under load, and makes a caller wait at most pool_timeout seconds
    for one (then sqlalchemy.exc.TimeoutError, answered 503)."""
    url = normalise_url(url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    if url.startswith("sqlite"):
        in_memory = ":memory:" in url or url.rstrip("/") == "sqlite:"  # one connection per thread: no queue to size
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout},
                               **({} if in_memory else pool))

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # let SQLAlchemy issue BEGIN itself (see below); pysqlite's own handling defers it
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")  # a read transaction that tries to write fails loudly
            cursor.close()
            # lower() of every letter, as PostgreSQL's under a UTF-8 locale (SQLite's own lowers only A-Z), so a
            # case-insensitive order is the same on both
            dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # on the driver's connection: SQLAlchemy's exec_driver_sql (events, logging, a result) took a twelfth
            # of a completion's time for this one statement. Its errors are raised as SQLAlchemy's, as there (a
            # busy database is answered 503)
            dbapi_connection = conn.connection.dbapi_connection
            try:
                dbapi_connection.execute(begin)
            except conn.dialect.loaded_dbapi.Error as e:
                invalidated = conn.dialect.is_disconnect(e, dbapi_connection, None)
                if invalidated:  # as SQLAlchemy does: the pool's older connections go too, then this one
                    conn.engine.pool._invalidate(conn.connection, e)
                    conn.invalidate(e)
                raise DBAPIError.instance(begin, (), e, conn.dialect.loaded_dbapi.Error,
                                          connection_invalidated=invalidated, dialect=conn.dialect) from e

        return engine
    # a statement that waits for another transaction's row lock gives up (answered 503) instead of hanging
    options = f"-c lock_timeout={int(busy_timeout * 1000)}"
    return create_engine(url, pool_pre_ping=True, connect_args={"options": options}, **pool)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
