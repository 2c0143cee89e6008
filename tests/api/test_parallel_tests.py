"""The test command runs the suite in parallel (pytest-xdist), each worker on its own database."""
from __future__ import annotations

import os
import tomllib

from sqlalchemy import text

from service.db.session import make_engine
from tests.support import REPO, database_for_worker

PG_URL = os.environ.get("GOVFLOW_TEST_DATABASE_URL")


def test_the_test_command_runs_the_suite_in_parallel() -> None:
    script = (REPO / "scripts" / "test").read_text(encoding="utf-8")
    assert '"$bin/pytest" -n "${GOVFLOW_TEST_WORKERS:-auto}"' in script
    extra = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert any(r.startswith("pytest-xdist") for r in extra["test"])
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "minutes" in readme.split("## A first walk", 1)[0]  # the README says how long it takes


def test_without_workers_or_postgresql_the_database_is_unchanged() -> None:
    assert database_for_worker(None, "gw0") is None
    assert database_for_worker("postgresql://u@h/db", None) == "postgresql://u@h/db"


def _each_worker_gets_its_own_postgresql_database() -> None:
    assert PG_URL is not None
    url = database_for_worker(PG_URL, "gw_probe")
    assert url is not None and url.rsplit("/", 1)[1].endswith("_gw_probe")
    assert database_for_worker(PG_URL, "gw_probe") == url  # an existing one is reused
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_database()")).scalar_one().endswith("_gw_probe")
    engine.dispose()
    admin = make_engine(PG_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{url.rsplit("/", 1)[1]}"'))
    admin.dispose()


if PG_URL:  # the suite's run on PostgreSQL (.ci/run runs both); on SQLite there is no database server to ask
    test_each_worker_gets_its_own_postgresql_database = _each_worker_gets_its_own_postgresql_database
