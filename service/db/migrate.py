"""Alembic, driven from code: upgrade to head, and read the current and head revisions."""
from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from service.db.locks import MIGRATE, hold_for_transaction

ROOT = Path(__file__).resolve().parent.parent.parent


def migrations_dir() -> Path:
    """The repository's migrations/ (editable install), else the working directory's (image)."""
    for candidate in (ROOT / "migrations", Path.cwd() / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise RuntimeError("migrations/ not found next to the package or in the working directory")


def _config(location: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", location or str(migrations_dir()))
    return cfg


def upgrade(engine: Engine) -> None:
    """Upgrade to head. Processes that start together on PostgreSQL migrate one after another: each waits for
    the advisory lock, then finds the work done (the version is read inside the locked transaction). A database
    already at head is left alone without alembic loading every migration script again."""
    cfg = _config()
    with engine.begin() as connection:
        hold_for_transaction(connection, MIGRATE, wait_forever=True)
        if MigrationContext.configure(connection).get_current_revision() == _head(str(migrations_dir())):
            return
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


class NotMigrated(Exception):
    """The database is not at the latest migration and start-up was told not to migrate it."""


def require_latest(engine: Engine, description: str) -> str:
    """The current revision, if it is the latest; else NotMigrated saying what to run."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise NotMigrated(f"the database {description} is at migration {current or 'none (empty)'}, not the latest "
                          f"({head}), and GOVFLOW_MIGRATE_ON_START is false: run `govflow migrate` first")
    return current or ""


def head_revision() -> str | None:
    return _head(str(migrations_dir()))


@functools.lru_cache(maxsize=4)
def _head(location: str) -> str | None:
    """The latest revision of the migration scripts in `location` (read once per process)."""
    return ScriptDirectory.from_config(_config(location)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
