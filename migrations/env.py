"""Alembic environment: one history for SQLite and PostgreSQL."""
from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from service.config import Settings
from service.db.models import Base
from service.db.session import make_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # On SQLite a batch migration rebuilds a table (a copy under a new name, the old one dropped, the copy renamed):
    # with foreign keys enforced, dropping a table that other rows refer to fails (going down from 0006 over any
    # instance did). SQLite's procedure for it (sqlite.org/lang_altertable.html, "other kinds of table schema
    # changes"): foreign keys off for the migration, set outside a transaction, and a foreign_key_check before the
    # commit. Only where the connection is not in a transaction yet (`alembic downgrade …`, tests); the service's
    # upgrade runs in its own transaction and needs none of it.
    relax = connection.dialect.name == "sqlite" and not connection.in_transaction()
    if relax:
        connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            # alembic commits each SQLite migration on its own (no transactional DDL assumed): here they run in one
            # transaction, so the check below comes before anything is committed and a failure undoes them all
            **({"transactional_ddl": True} if relax else {}),
        )
        with context.begin_transaction():
            context.run_migrations()
            if relax:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration would leave rows whose foreign keys point nowhere "
                                       f"(table, row, parent): {broken[:5]}; nothing was changed")
    finally:
        if relax:
            if connection.in_transaction():
                connection.rollback()  # a failed migration: the pragma is only taken outside a transaction
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # `alembic upgrade|downgrade …` from the repository: the database the service's settings name
    # (GOVFLOW_DATABASE_URL, else the SQLite file in GOVFLOW_DATA_DIR), unless the ini file gives sqlalchemy.url
    engine = make_engine(config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
